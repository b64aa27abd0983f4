"""The platform's name and its help, privacy and accessibility pages, from ``config/site.yaml``.

The file (``site.yaml`` in the configuration folder, else the one shipped in ``config/``) is
the operator's, read once when the login path is built::

    platform_name: {fi: DigiOne-kirjautuminen, sv: DigiOne-inloggning, en: DigiOne Login}
    pages:
      help:
        title: {fi: Ohjeet, sv: Hjälp, en: Help}
        body:
          fi: |
            Paragraphs are separated by a blank line.

            ## A line beginning with "## " is a heading
            - a line beginning with "- " is an item of a list
            Addresses in angle brackets become links: <https://example.fi/tuki>, <mailto:tuki@example.fi>

Every text is needed in fi, sv and en, for each of the pages ``help``, ``privacy`` and
``accessibility``; a missing one stops the build with the key that is missing.  Everything is
escaped: the file can make links (https and mailto only) and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

import yaml

from broker.i18n import LANGUAGES

PAGES = ("help", "privacy", "accessibility")
_LINK_SCHEMES = ("https://", "mailto:")


class SiteTextError(ValueError):
    """``site.yaml`` lacks a text or has one of the wrong shape (the message names which)."""


@dataclasses.dataclass(frozen=True)
class SitePage:
    title: Mapping[str, str]
    body: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class SiteTexts:
    platform_name: Mapping[str, str]
    pages: Mapping[str, SitePage]

    @classmethod
    def load(cls, config_dir: Path | None, *, fallback: Path | None = None) -> SiteTexts:
        """``site.yaml`` of ``config_dir`` if it has one, else ``fallback`` (the shipped file)."""
        path = Path(config_dir) / "site.yaml" if config_dir is not None else None
        if path is None or not path.is_file():
            from broker.settings import ROOT

            path = fallback or ROOT / "config" / "site.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SiteTextError(f"{path}: expected readable YAML ({exc.__class__.__name__})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "site.yaml") -> SiteTexts:
        if not isinstance(data, dict):
            raise SiteTextError(f"{source}: expected a mapping with platform_name and pages")
        raw_pages = data.get("pages")
        if not isinstance(raw_pages, dict):
            raise SiteTextError(f"{source}: pages: expected a mapping of {', '.join(PAGES)}")
        pages = {}
        for name in PAGES:
            raw = raw_pages.get(name)
            if not isinstance(raw, dict):
                raise SiteTextError(f"{source}: pages.{name}: expected a mapping with title and body")
            pages[name] = SitePage(title=_texts(raw.get("title"), f"{source}: pages.{name}.title"),
                                   body=_texts(raw.get("body"), f"{source}: pages.{name}.body"))
        return cls(platform_name=_texts(data.get("platform_name"), f"{source}: platform_name"), pages=pages)


def _texts(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or any(not isinstance(value.get(lang), str) or not value[lang].strip()
                                          for lang in LANGUAGES):
        raise SiteTextError(f"{where}: expected a text in each of {', '.join(LANGUAGES)}")
    return {lang: value[lang].strip() for lang in LANGUAGES}


def render_body(text: str) -> str:
    """The body's paragraphs, headings and lists as HTML, every character escaped but the links made."""
    out: list[str] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        run: list[str] = []         # lines of the paragraph or list being read
        listing = False
        for line in (line.strip() for line in block.split("\n")):
            if not line:
                continue
            heading, item = line.startswith("## "), line.startswith("- ")
            if run and (heading or item != listing):
                out.append(_run(run, listing))
                run = []
            if heading:
                out.append(f"<h2>{_inline(line[3:])}</h2>")
                continue
            listing = item
            run.append(_inline(line[2:] if item else line))
        if run:
            out.append(_run(run, listing))
    return "".join(out)


def _run(lines: list[str], listing: bool) -> str:
    if listing:
        return "<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"
    return f"<p>{' '.join(lines)}</p>"


def _inline(text: str) -> str:
    """Escape ``text``; ``<https://…>`` and ``<mailto:…>`` become links (their text the address)."""
    out: list[str] = []
    rest = text
    while rest:
        start = rest.find("<")
        end = rest.find(">", start + 1) if start >= 0 else -1
        if start < 0 or end < 0:
            out.append(escape(rest))
            break
        target = rest[start + 1:end]
        out.append(escape(rest[:start]))
        if target.startswith(_LINK_SCHEMES) and " " not in target and '"' not in target:
            shown = target[len("mailto:"):] if target.startswith("mailto:") else target
            out.append(f'<a href="{escape(target)}">{escape(shown)}</a>')
        else:
            out.append(escape(rest[start:end + 1]))
        rest = rest[end + 1:]
    return "".join(out)
