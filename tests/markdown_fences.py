"""The fenced code blocks of a Markdown document, for the tests that run or load what the docs show.

Importable by name (pytest puts tests/ on sys.path), like :mod:`databases`.  One reader
serves tests/docs/test_docs_commands.py (shell commands) and tests/docs/test_docs_examples.py
(YAML and JSON examples), so both see the same blocks: a fence opens with three backticks
and an optional language (indented, inside a list item, too) and closes at the next line
that is three backticks alone.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

_OPEN = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_CLOSE = re.compile(r"^\s*```\s*$")


@dataclass(frozen=True)
class Fence:
    """One fenced block: where it opens, its language, its lines, and the line before it."""

    file: str
    line: int                 # 1-based line of the opening fence
    lang: str                 # lower case; "" when untagged
    lines: tuple[str, ...]    # the body, the list item's indent removed
    before: str               # the nearest non-blank line above the fence, stripped ("" at the top)

    @property
    def text(self) -> str:
        return textwrap.dedent("\n".join(self.lines))

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def fences(path: Path, name: str | None = None) -> list[Fence]:
    """Every fenced block of the Markdown file ``path`` (named ``name`` in ids; default its file name)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Fence] = []
    index = 0
    while index < len(lines):
        opening = _OPEN.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, start = len(opening.group("indent")), index
        body: list[str] = []
        index += 1
        while index < len(lines) and not _CLOSE.match(lines[index]):
            line = lines[index]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            index += 1
        index += 1
        before = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        found.append(Fence(name or path.name, start + 1, opening.group("lang").lower(), tuple(body), before))
    return found
