"""The set-ups of docs/services.md ("Set-ups that are tested"), as the interop tests run them.

Imported by name (tests/interop/conftest.py puts this directory on sys.path).  A block is
marked by ``<!-- tested: NAME -->`` on the line before its fence; :func:`snippet` returns it
with the documented placeholders replaced, and fails when a placeholder it was told to replace
is not in the block, so the page and the tests cannot drift apart silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES_MD = ROOT / "docs" / "services.md"

_BLOCK = re.compile(r"^<!-- tested: (?P<name>[\w.-]+) -->\n```[\w-]*\n(?P<body>.*?)^```$", re.M | re.S)


def blocks() -> dict[str, str]:
    """Every tested block of docs/services.md by name."""
    found: dict[str, str] = {}
    for match in _BLOCK.finditer(SERVICES_MD.read_text()):
        assert match["name"] not in found, f"two blocks named {match['name']} in {SERVICES_MD}"
        found[match["name"]] = match["body"]
    return found


def snippet(name: str, replace: Mapping[str, str] | None = None) -> str:
    """The block ``name`` with each key of ``replace`` (all of which must occur) replaced by its value."""
    text = blocks()[name]
    for old, new in (replace or {}).items():
        assert old in text, f"the {name} block of {SERVICES_MD} no longer has {old!r}"
        text = text.replace(old, new)
    return text
