"""Compiled rules: what one rule of a tenant's mapping does with upstream values.

:mod:`broker.mapping.config` builds these from configuration (validating every
option and compiling regular expressions and tables once);
:meth:`broker.mapping.ruleset.Ruleset.apply` runs them on each login.  Evaluating
a rule never raises: a value a rule cannot use is skipped, or reported as a
:class:`~broker.mapping.model.Drop` (the value only kept for the simulator, see
:class:`~broker.mapping.model.Drops`) when it should have been usable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from broker.mapping.model import Drops
from broker.mapping.roles import parse_role_string, role_code
from broker.mapping.transforms import Lookup, Match, Split, bounded
from broker.mapping.validate import (
    Draft,
    RoleClaim,
    parse_charge,
    parse_class_level,
    parse_group,
    parse_learner_id,
    parse_name,
    parse_provider_ref,
    parse_school_ref,
)

#: Canonical fields a field rule may fill, with the parser that validates each value
#: and the drop reason for a value it rejects.
FIELDS: Mapping[str, tuple[Callable[[str], Any], str]] = {
    "given_name": (parse_name, "invalid_name"),
    "family_name": (parse_name, "invalid_name"),
    "nickname": (parse_name, "invalid_name"),
    "learner_id": (parse_learner_id, "invalid_learner_id"),
    "class_level": (parse_class_level, "invalid_class_level"),
    "schools": (parse_school_ref, "malformed_school"),
    "education_providers": (parse_provider_ref, "malformed_provider"),
    "groups": (parse_group, "invalid_group"),
    "learning_materials_charges": (parse_charge, "malformed_charge"),
}
SCALAR_FIELDS = frozenset({"given_name", "family_name", "nickname", "learner_id", "class_level"})
DRAFT_LISTS = {"schools": "schools", "education_providers": "providers", "groups": "groups",
                "learning_materials_charges": "charges"}


def read(upstream: Mapping[str, Any], names: tuple[str, ...]) -> tuple[list[str], str, int]:
    """The values of the first of ``names`` present upstream, its name, and how many were skipped."""
    for name in names:
        raw = upstream.get(name)
        if raw:
            values, skipped = bounded(raw)
            return values, name, skipped
    return [], "", 0


class FieldRule:
    """``canonical field <- from``, through split, match and lookup, then the field's parser."""

    __slots__ = ("field", "names", "split", "match", "lookup", "parse", "reason", "label")

    def __init__(self, field: str, names: tuple[str, ...], split: Split | None, match: Match | None,
                 lookup: Lookup | None, label: str):
        self.field = field
        self.names = names
        self.split = split
        self.match = match
        self.lookup = lookup
        self.parse, self.reason = FIELDS[field]
        self.label = label

    def values(self, upstream: Mapping[str, Any], drops: Drops) -> tuple[list[Any], str]:
        raw, source, skipped = read(upstream, self.names)
        if skipped:
            drops.add(self.field, self.label, "unreadable_value")
        out: list[Any] = []
        for value in raw:
            for part in self.split(value) if self.split else (value,):
                if self.match is not None:
                    extracted = self.match.extract(part)
                    if extracted is None:
                        continue
                    part = extracted
                if self.lookup is not None:
                    part = self.lookup.get(part)
                    if part is None:
                        continue
                parsed = self.parse(part)
                if parsed is None:
                    drops.add(self.field, self.label, self.reason, part)
                else:
                    out.append(parsed)
        return out, source

    def picks(self, value: str) -> bool:
        """Whether this rule takes ``value`` (one value of an attribute it reads) rather than
        passing it by: every value without ``match`` or ``lookup``, else one with a part the
        match finds and the table holds.  A taken value may still be dropped as invalid."""
        return _takes(value, self.split, self.match, self.lookup, structured=False)


class RoleSpec:
    """A role from a lookup table or a rule's constants: code, school reference, class."""

    __slots__ = ("code", "school", "group")

    def __init__(self, code: int | None, school: str | None, group: str | None):
        self.code = code
        self.school = school
        self.group = group


class RoleRule:
    """A rule producing roles from one upstream attribute; see ``docs/mapping.md``."""

    __slots__ = ("id", "names", "split", "mpassid", "match", "structured", "lookup", "role_names", "const",
                 "scope", "label")

    def __init__(self, *, id: str | None, names: tuple[str, ...], split: Split | None, mpassid: bool,
                 match: Match | None, structured: bool, lookup: Lookup | None, role_names: Mapping[str, int] | None,
                 const: RoleSpec, scope: str, label: str):
        self.id = id
        self.names = names
        self.split = split
        self.mpassid = mpassid
        self.match = match
        self.structured = structured
        self.lookup = lookup
        self.role_names = role_names
        self.const = const
        self.scope = scope
        self.label = label

    def collect(self, upstream: Mapping[str, Any], draft: Draft) -> None:
        raw, source, skipped = read(upstream, self.names)
        if skipped:
            draft.drops.add("roles", self.label, "unreadable_value")
        for value in raw:
            for part in self.split(value) if self.split else (value,):
                claim = self._claim(part, source, draft.drops)
                if claim is not None:
                    draft.roles.append(claim)

    def picks(self, value: str) -> bool:
        """Whether this rule takes ``value`` rather than passing it by (see :meth:`FieldRule.picks`):
        a role string always, else a value the match finds and the table holds."""
        return self.mpassid or _takes(value, self.split, self.match, self.lookup, structured=self.structured)

    def _claim(self, value: str, source: str, drops: Drops) -> RoleClaim | None:
        raw = value
        if self.mpassid:
            rs = parse_role_string(value)
            if rs is None:
                drops.add("roles", self.label, "malformed_role", value)
                return None
            school = (parse_school_ref(rs.school) or rs.school) if rs.school else None
            return RoleClaim(rs.code, school=school, school_oid=rs.school_oid, provider=rs.provider,
                             group=rs.group or None, office=rs.office_oid, scope="scoped",
                             rule=self.label, source=source, raw=raw)
        const = self.const
        role_text: str | None = None
        school = const.school
        group = const.group
        code = const.code
        if self.match is not None:
            if self.structured:
                parts = self.match.parts(value)
                if parts is None:
                    return None
                role_text = parts.get("role")
                if "school" in parts:
                    school = parse_school_ref(parts["school"])
                    if school is None:
                        drops.add("roles", self.label, "malformed_school", raw, parts["school"])
                        return None
                group = parts.get("group", group)
            else:
                extracted = self.match.extract(value)
                if extracted is None:
                    return None
                value = extracted
        if self.lookup is not None:
            spec = self.lookup.get(value)
            if spec is None:
                return None
            code = spec.code or code
            school = spec.school or school
            group = spec.group or group
        elif role_text is not None or code is None:
            code = role_code(role_text if role_text is not None else value, self.role_names)
        scope = "scoped" if school else self.scope
        return RoleClaim(code, school=school, group=group, scope=scope, rule=self.label, source=source, raw=raw)


def _takes(value: str, split: Split | None, match: Match | None, lookup: Lookup | None, *, structured: bool) -> bool:
    """Whether a rule reading ``value`` takes some part of it: one its ``match`` finds (a structured
    match: one it parses, looked up whole) and its ``lookup`` holds; without either, every part."""
    for part in split(value) if split else (value,):
        if match is not None:
            if structured:
                if match.parts(part) is None:
                    continue
            else:
                extracted = match.extract(part)
                if extracted is None:
                    continue
                part = extracted
        if lookup is None or lookup.get(part) is not None:
            return True
    return False
