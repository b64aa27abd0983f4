"""Diffs of registry objects for people: each object as YAML, line by line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from broker.registry.versions import Change


def as_yaml(content: Mapping[str, Any] | None) -> list[str]:
    if content is None:
        return []
    return yaml.safe_dump(dict(content), sort_keys=True, allow_unicode=True, width=120).splitlines(keepends=True)


def unified(change: Change, *, context: int = 3) -> str:
    """``diff -u`` of one object, named ``<kind>/<key>``; ``/dev/null`` stands for absent."""
    name = f"{change.kind}/{change.key}"
    return "".join(difflib.unified_diff(
        as_yaml(change.before), as_yaml(change.after), n=context,
        fromfile=name if change.before is not None else "/dev/null",
        tofile=name if change.after is not None else "/dev/null"))


def summary(changes: Iterable[Change]) -> list[dict[str, str]]:
    return [{"kind": c.kind, "key": c.key, "action": c.action} for c in changes]
