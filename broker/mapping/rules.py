"""Mapping rules: compiled from a tenant file's ``mapping:`` section, applied per login.

:meth:`Ruleset.from_config` validates the whole configuration, merges it over its
preset and compiles every regular expression and lookup table, so that
:meth:`Ruleset.apply` does nothing but dictionary reads and pre-compiled matches.
The configuration format is documented in ``docs/mapping.md``; in short::

    preset: entra                 # rules shipped in broker/mapping/presets/entra.yaml
    require: {tid: 9c2f...}       # refuse logins whose attribute is not one of these
    uid: {from: oid}              # the upstream key of the user (hashed, never released)
    fields:                       # canonical field <- upstream attribute(s), transformed
      learner_id: {from: extension_learnerId}
      schools: {from: extension_schoolIds, split: ";"}
    roles:                        # rules producing roles
      - id: teacher-groups
        from: groups
        lookup: {"1b0e...": {role: teacher, school: "03083"}}
    defaults: {roles: [learner]}  # used when no rule produced a value
"""

from __future__ import annotations

import functools
import logging
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from broker.mapping.errors import RuleError
from broker.mapping.identifiers import stable_user_id
from broker.mapping.model import Drop, MappingResult, TenantScope, Trace
from broker.mapping.roles import normalize_role_names, parse_role_string, role_code
from broker.mapping.transforms import Lookup, Match, Split, TransformError, bounded
from broker.mapping.validate import (Claim, Draft, RoleClaim, finish, parse_charge, parse_class_level,
                                     parse_group, parse_learner_id, parse_name, parse_provider_ref,
                                     parse_school_ref)

logger = logging.getLogger("broker.mapping")

PRESETS = ("mpassid-saml", "entra", "google", "adfs", "wilma")

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
_DRAFT_LISTS = {"schools": "schools", "education_providers": "providers", "groups": "groups",
                "learning_materials_charges": "charges"}

_TOP_KEYS = ("preset", "require", "uid", "fields", "roles", "defaults")
_FIELD_KEYS = ("from", "split", "match", "lookup")
_ROLE_KEYS = ("id", "from", "split", "format", "match", "lookup", "role_names", "role", "school", "group",
              "scope", "disabled")
_DEFAULT_KEYS = ("schools", "roles", "class_level")
_ROLE_SCOPES = ("aligned", "every_school")


# -- compiled rules --------------------------------------------------------------------------

def _read(upstream: Mapping[str, Any], names: tuple[str, ...]) -> tuple[list[str], str, int]:
    """The values of the first of ``names`` present upstream, its name, and how many were skipped."""
    for name in names:
        raw = upstream.get(name)
        if raw:
            values, skipped = bounded(raw)
            return values, name, skipped
    return [], "", 0


class _FieldRule:
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

    def values(self, upstream: Mapping[str, Any], drops: list[Drop]) -> tuple[list[Any], str]:
        raw, source, skipped = _read(upstream, self.names)
        if skipped:
            drops.append(Drop(self.field, self.label, "unreadable_value"))
        out: list[Any] = []
        for value in raw:
            for part in self.split(value) if self.split else (value,):
                if self.match is not None:
                    part = self.match.extract(part)
                    if part is None:
                        continue
                if self.lookup is not None:
                    part = self.lookup.get(part)
                    if part is None:
                        continue
                parsed = self.parse(part)
                if parsed is None:
                    drops.append(Drop(self.field, self.label, self.reason))
                else:
                    out.append(parsed)
        return out, source


class _RoleSpec:
    """A role from a lookup table or a rule's constants: code, school reference, class."""

    __slots__ = ("code", "school", "group")

    def __init__(self, code: int | None, school: str | None, group: str | None):
        self.code = code
        self.school = school
        self.group = group


class _RoleRule:
    """A rule producing roles from one upstream attribute; see ``docs/mapping.md``."""

    __slots__ = ("id", "names", "split", "mpassid", "match", "structured", "lookup", "role_names", "const",
                 "scope", "label")

    def __init__(self, **kw: Any):
        for name in self.__slots__:
            setattr(self, name, kw[name])

    def collect(self, upstream: Mapping[str, Any], draft: Draft) -> None:
        raw, source, skipped = _read(upstream, self.names)
        if skipped:
            draft.drops.append(Drop("roles", self.label, "unreadable_value"))
        for value in raw:
            for part in self.split(value) if self.split else (value,):
                claim = self._claim(part, source, draft.drops)
                if claim is not None:
                    draft.roles.append(claim)

    def _claim(self, value: str, source: str, drops: list[Drop]) -> RoleClaim | None:
        if self.mpassid:
            rs = parse_role_string(value)
            if rs is None:
                drops.append(Drop("roles", self.label, "malformed_role"))
                return None
            school = (parse_school_ref(rs.school) or rs.school) if rs.school else None
            return RoleClaim(rs.code, school=school, school_oid=rs.school_oid, provider=rs.provider,
                             group=rs.group or None, office=rs.office_oid, scope="scoped",
                             rule=self.label, source=source)
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
                        drops.append(Drop("roles", self.label, "malformed_school"))
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
        return RoleClaim(code, school=school, group=group, scope=scope, rule=self.label, source=source)


class Ruleset:
    """The compiled mapping of one IdP of one tenant.  Build with :meth:`from_config`."""

    def __init__(self, *, tenant: TenantScope, idp_id: str, source: str, preset: str | None,
                 require: list[tuple[str, frozenset[str], str]], uid: tuple[tuple[str, ...], str] | None,
                 fields: dict[str, list[_FieldRule]], roles: list[_RoleRule], defaults: dict[str, Any]):
        self.tenant = tenant
        self.idp_id = idp_id
        self.source = source
        self.preset = preset
        self._require = require
        self._uid = uid
        self._scalars = [(f, rules) for f, rules in fields.items() if f in SCALAR_FIELDS and rules]
        self._lists = [(f, _DRAFT_LISTS[f], rules) for f, rules in fields.items()
                       if f not in SCALAR_FIELDS and rules]
        self._roles = roles
        self._defaults = defaults

    def __repr__(self) -> str:
        return f"<Ruleset tenant={self.tenant.tenant_id} idp={self.idp_id} preset={self.preset}>"

    @property
    def rules(self) -> dict[str, list[str]]:
        """The labels of the compiled rules by kind, for the simulator and the admin API."""
        return {
            "require": [label for _, _, label in self._require],
            "uid": [self._uid[1]] if self._uid else ["upstream subject (NameID / sub)"],
            "fields": [r.label for _, rules in self._scalars for r in rules]
                      + [r.label for _, _, rules in self._lists for r in rules],
            "roles": [r.label for r in self._roles],
            "defaults": [f"defaults.{k}" for k in self._defaults],
        }

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: dict | None, *, tenant: TenantScope, idp_id: str, source: str = "",
                    path: str = "mapping") -> Ruleset:
        """Validate and compile ``config`` (an IdP's ``mapping:`` section) over its preset.

        ``source`` (the tenant file) and ``path`` (where ``config`` sits in it, e.g.
        ``identity_providers[0].mapping``) only name the place of an error.  Raises
        :class:`RuleError` for anything invalid, before any login can use it.

        Preset rules are merged under the tenant's: a tenant field rule replaces the
        preset's rules for that field; a tenant role rule with the ``id`` of a preset
        rule replaces it (``disabled: true`` removes it), other role rules are added
        after the preset's; ``require`` and ``defaults`` merge by key, tenant first.
        """
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise RuleError(source, path, "a mapping with keys " + ", ".join(_TOP_KEYS))
        preset_name = config.get("preset")
        if preset_name is not None and preset_name not in PRESETS:
            raise RuleError(source, f"{path}.preset", "one of " + ", ".join(PRESETS))
        own = _Compiler(tenant, source, path, "").compile(config, allow_preset=True)
        preset_config = _preset(preset_name) if preset_name else {}
        preset = _Compiler(tenant, f"preset {preset_name}", "", f"preset {preset_name}: ").compile(
            preset_config, allow_preset=False)
        merged = _merge(preset, own, source, path)
        return cls(tenant=tenant, idp_id=idp_id, source=source, preset=preset_name, **merged)

    # -- applying --------------------------------------------------------------------------------

    def apply(self, upstream: Mapping[str, Sequence[str]], *, upstream_subject: str | None,
              salt: bytes) -> MappingResult:
        """Map one upstream response to the canonical identity.

        ``upstream`` maps raw attribute names (SAML Attribute Names, OIDC claim names)
        to lists of strings; ``upstream_subject`` is the NameID or ``sub``.  Never
        raises on upstream content; raises :class:`ValueError` only for a bad ``salt``.
        Drops are logged to ``broker.mapping`` with tenant, IdP, field, rule and
        reason, never a value.
        """
        drops: list[Drop] = []
        for attr, allowed, label in self._require:
            values, _ = bounded(upstream.get(attr))
            if not any(v.casefold() in allowed for v in values):
                drops.append(Drop(f"require.{attr}", label, "requirement_not_met"))
                return self._refuse("requirement_not_met", drops)

        if self._uid is None:
            uid, uid_rule, uid_source = upstream_subject, "uid", "subject"
        else:
            values, uid_source, _ = _read(upstream, self._uid[0])
            uid_rule = self._uid[1]
            uid = values[0] if len(set(values)) == 1 else None
            if len(set(values)) > 1:
                drops.append(Drop("user_id", uid_rule, "multiple_values"))
        if not isinstance(uid, str) or not uid.strip():
            drops.append(Drop("user_id", uid_rule, "no_user_id"))
            return self._refuse("no_user_id", drops)
        user_id = stable_user_id(self.tenant.tenant_id, self.idp_id, uid.strip(), salt)

        draft = Draft()
        draft.drops = drops
        for field, rules in self._scalars:
            for rule in rules:
                values, source = rule.values(upstream, drops)
                if not values:
                    continue
                if len(set(values)) > 1:
                    drops.append(Drop(field, rule.label, "multiple_values"))
                else:
                    draft.scalars[field] = Claim(values[0], rule.label, source)
                break
        for _field, slot, rules in self._lists:
            target = getattr(draft, slot)
            for rule in rules:
                values, source = rule.values(upstream, drops)
                target.extend(Claim(v, rule.label, source) for v in values)
        for role_rule in self._roles:
            role_rule.collect(upstream, draft)
        self._apply_defaults(draft)

        body, trace = finish(draft, self.tenant)
        identity = {"user_id": user_id, "tenant": self.tenant.tenant_id, "idp": self.idp_id, **body}
        trace.insert(0, Trace("user_id", uid_rule, uid_source))
        self._log(drops)
        return MappingResult(identity=identity, trace=trace, drops=drops)

    def _apply_defaults(self, draft: Draft) -> None:
        d = self._defaults
        if "schools" in d and not draft.schools:
            draft.schools = [Claim(ref, "defaults.schools", "default") for ref in d["schools"]]
        if "roles" in d and not draft.roles:
            draft.roles = [RoleClaim(code, scope="every_school", rule="defaults.roles", source="default")
                           for code in d["roles"]]
        if "class_level" in d and "class_level" not in draft.scalars:
            draft.scalars["class_level"] = Claim(d["class_level"], "defaults.class_level", "default")

    def _refuse(self, reason: str, drops: list[Drop]) -> MappingResult:
        self._log(drops)
        return MappingResult(identity={}, trace=[], drops=drops, refused=reason)

    def _log(self, drops: list[Drop]) -> None:
        if drops and logger.isEnabledFor(logging.INFO):
            for d in drops:
                logger.info("mapping drop tenant=%s idp=%s field=%s rule=%s reason=%s",
                            self.tenant.tenant_id, self.idp_id, d.field, d.rule, d.reason)


# -- compiling -------------------------------------------------------------------------------

@functools.cache
def _preset_text(name: str) -> str:
    from importlib import resources

    return resources.files("broker.mapping").joinpath("presets", f"{name}.yaml").read_text("utf-8")


def _preset(name: str) -> dict:
    import yaml

    return yaml.safe_load(_preset_text(name)) or {}


def _merge(preset: dict[str, Any], own: dict[str, Any], source: str, path: str) -> dict[str, Any]:
    roles = list(preset["roles"])
    ids = {r.id: i for i, r in enumerate(roles) if r.id}
    removed: set[int] = set()
    for i, rule in enumerate(own["roles"]):
        if isinstance(rule, tuple):  # ("disable", id)
            _, rid = rule
            if rid not in ids:
                raise RuleError(source, f"{path}.roles[{i}].id", "the id of a preset rule to disable, one of "
                                + (", ".join(sorted(ids)) or "(the preset has none)"))
            removed.add(ids[rid])
        elif rule.id and rule.id in ids:
            roles[ids[rule.id]] = rule
        else:
            roles.append(rule)
    return {
        "require": _merge_keyed(preset["require"], own["require"]),
        "uid": own["uid"] or preset["uid"],
        "fields": {**preset["fields"], **own["fields"]},
        "roles": [r for i, r in enumerate(roles) if i not in removed],
        "defaults": {**preset["defaults"], **own["defaults"]},
    }


def _merge_keyed(base: list[tuple[str, Any, str]], over: list[tuple[str, Any, str]]) -> list:
    keys = {k for k, _, _ in over}
    return [item for item in base if item[0] not in keys] + list(over)


class _Compiler:
    """Validates one configuration dict and compiles it; errors name source and path."""

    def __init__(self, tenant: TenantScope, source: str, path: str, label_prefix: str):
        self.tenant = tenant
        self.source = source
        self.base = path
        self.prefix = label_prefix

    def fail(self, where: str, expected: str) -> RuleError:
        return RuleError(self.source, f"{self.base}.{where}" if self.base else where, expected)

    def keys(self, data: Any, where: str, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(where, "a mapping with keys among " + ", ".join(allowed))
        for key in data:
            if key not in allowed:
                at = f"{where}.{key}" if where else str(key)
                if key in ("user_id", "sub"):
                    raise self.fail(at, "no rule for user_id/sub: they are always derived by the broker; "
                                    "choose the upstream key with `uid: {from: ...}`")
                raise self.fail(at, "one of " + ", ".join(allowed))
        return data

    def compile(self, config: Mapping[str, Any], *, allow_preset: bool) -> dict[str, Any]:
        top = _TOP_KEYS if allow_preset else tuple(k for k in _TOP_KEYS if k != "preset")
        if not isinstance(config, Mapping):
            raise self.fail("", "a mapping")
        for key in config:
            if key not in top:
                if key in ("user_id", "sub"):
                    self.keys({key: None}, "", top)
                raise self.fail(str(key), "one of " + ", ".join(top))
        return {
            "require": self.require(config.get("require")),
            "uid": self.uid(config.get("uid")),
            "fields": self.fields(config.get("fields")),
            "roles": self.roles(config.get("roles")),
            "defaults": self.defaults(config.get("defaults")),
        }

    def names(self, value: Any, where: str) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if (not isinstance(items, (list, tuple)) or not items
                or not all(isinstance(n, str) and 0 < len(n) <= 512 for n in items)):
            raise self.fail(where, "an upstream attribute name, or a list of them (the first present is read)")
        return tuple(items)

    def require(self, data: Any) -> list[tuple[str, frozenset[str], str]]:
        if data is None:
            return []
        if not isinstance(data, Mapping) or not data:
            raise self.fail("require", "a mapping of upstream attribute to its allowed value(s)")
        out = []
        for attr, allowed in data.items():
            values = [allowed] if isinstance(allowed, str) else allowed
            if (not isinstance(attr, str) or not attr or not isinstance(values, (list, tuple)) or not values
                    or not all(isinstance(v, str) and v.strip() for v in values)):
                raise self.fail(f"require.{attr}", "an allowed value or a non-empty list of allowed values")
            out.append((attr, frozenset(v.strip().casefold() for v in values), f"{self.prefix}require.{attr}"))
        return out

    def uid(self, data: Any) -> tuple[tuple[str, ...], str] | None:
        if data is None:
            return None
        self.keys(data, "uid", ("from",))
        return self.names(data.get("from"), "uid.from"), f"{self.prefix}uid"

    def fields(self, data: Any) -> dict[str, list[_FieldRule]]:
        if data is None:
            return {}
        self.keys(data, "fields", tuple(FIELDS))
        out: dict[str, list[_FieldRule]] = {}
        for field, spec in data.items():
            if isinstance(spec, Mapping):
                out[field] = [self.field_rule(field, spec, f"fields.{field}")]
            elif isinstance(spec, (list, tuple)):  # several rules; [] disables the preset's
                out[field] = [self.field_rule(field, s, f"fields.{field}[{i}]") for i, s in enumerate(spec)]
            else:
                raise self.fail(f"fields.{field}", "a rule (a mapping with `from`) or a list of rules")
        return out

    def field_rule(self, field: str, spec: Any, where: str) -> _FieldRule:
        self.keys(spec, where, _FIELD_KEYS)
        parse = FIELDS[field][0]

        def convert(key: str, result: Any) -> Any:
            text = str(result) if isinstance(result, (str, int)) and not isinstance(result, bool) else None
            if text is None or parse(text) is None:
                raise TransformError(f"lookup[{key!r}]", f"a valid {field} value")
            if field == "schools" and self.tenant.school(parse(text)) is None:
                raise TransformError(f"lookup[{key!r}]", f"a school code or OID of tenant {self.tenant.tenant_id}")
            return text

        split, match, lookup = self.transforms(spec, where, convert=convert, groups=None)
        return _FieldRule(field, self.names(spec.get("from"), f"{where}.from"), split, match, lookup,
                          self.prefix + where)

    def transforms(self, spec: Mapping[str, Any], where: str, *, convert: Callable | None,
                   groups: Sequence[str] | None) -> tuple[Split | None, Match | None, Lookup | None]:
        try:
            split = Split(spec["split"]) if "split" in spec else None
            match = Match(spec["match"], allowed_groups=groups) if "match" in spec else None
            lookup = Lookup(spec["lookup"], convert=convert) if "lookup" in spec else None
        except TransformError as exc:
            raise self.fail(f"{where}.{exc.key}", exc.expected) from None
        return split, match, lookup

    def role_name(self, value: Any, where: str, extra: Mapping[str, int] | None = None) -> int:
        code = role_code(str(value), extra) if isinstance(value, (str, int)) and not isinstance(value, bool) \
            else None
        if code is None:
            raise self.fail(where, "a role: a code 1-6 or a name such as learner, teacher, staff, "
                            "school_secretary, substitute_teacher, principal (or Oppilas, Opettaja, ...)")
        return code

    def school_ref(self, value: Any, where: str) -> str:
        ref = parse_school_ref(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) \
            else None
        if ref is None or self.tenant.school(ref) is None:
            raise self.fail(where, f"a school code or OID of tenant {self.tenant.tenant_id}")
        return ref

    def group(self, value: Any, where: str) -> str:
        group = parse_group(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if group is None:
            raise self.fail(where, "a class or group: 1-64 characters without ';'")
        return group

    def roles(self, data: Any) -> list[Any]:
        if data is None:
            return []
        if not isinstance(data, (list, tuple)):
            raise self.fail("roles", "a list of role rules")
        return [self.role_rule(spec, f"roles[{i}]") for i, spec in enumerate(data)]

    def role_rule(self, spec: Any, where: str) -> Any:
        self.keys(spec, where, _ROLE_KEYS)
        rid = spec.get("id")
        if rid is not None and (not isinstance(rid, str) or not rid):
            raise self.fail(f"{where}.id", "a non-empty string naming the rule")
        if spec.get("disabled") is not None:
            if spec["disabled"] is not True or set(spec) != {"id", "disabled"}:
                raise self.fail(f"{where}.disabled", "`disabled: true` together with only the `id` of a "
                                "preset rule")
            return ("disable", rid)
        names = self.names(spec.get("from"), f"{where}.from")
        fmt = spec.get("format")
        if fmt is not None and fmt != "mpassid":
            raise self.fail(f"{where}.format", "mpassid (MPASSid role strings, v1.1 or v1.4) or no format")
        if fmt and set(spec) & {"split", "match", "lookup", "role_names", "role", "school", "group", "scope"}:
            raise self.fail(f"{where}.format", "no split/match/lookup/role/school/group/scope with "
                            "`format: mpassid`: role strings carry all of them")
        scope = spec.get("scope", "aligned")
        if scope not in _ROLE_SCOPES:
            raise self.fail(f"{where}.scope", "aligned (pair with the school list by position) or every_school")
        role_names: dict[str, int] | None = None
        if "role_names" in spec:
            rn = spec["role_names"]
            if not isinstance(rn, Mapping) or not rn:
                raise self.fail(f"{where}.role_names", "a mapping of upstream role name to role")
            role_names = normalize_role_names(
                {str(k): self.role_name(v, f"{where}.role_names[{k!r}]") for k, v in rn.items()})
        const = _RoleSpec(
            self.role_name(spec["role"], f"{where}.role", role_names) if "role" in spec else None,
            self.school_ref(spec["school"], f"{where}.school") if "school" in spec else None,
            self.group(spec["group"], f"{where}.group") if "group" in spec else None,
        )

        def convert(key: str, result: Any) -> _RoleSpec:
            at = f"lookup[{key!r}]"
            try:
                if isinstance(result, Mapping):
                    self.keys(result, f"{where}.{at}", ("role", "school", "group"))
                    code = self.role_name(result["role"], f"{where}.{at}.role", role_names) \
                        if "role" in result else const.code
                    if code is None:
                        raise self.fail(f"{where}.{at}.role", "a role (here or as the rule's `role`)")
                    return _RoleSpec(
                        code,
                        self.school_ref(result["school"], f"{where}.{at}.school") if "school" in result else None,
                        self.group(result["group"], f"{where}.{at}.group") if "group" in result else None)
                return _RoleSpec(self.role_name(result, f"{where}.{at}", role_names), None, None)
            except RuleError as exc:
                raise _Nested(exc) from None

        try:
            split, match, lookup = self.transforms(spec, where, convert=convert,
                                                   groups=("role", "school", "group", "value"))
        except _Nested as nested:
            raise nested.error from None
        structured = bool(match and set(match.pattern.groupindex) & {"role", "school", "group"})
        if structured and "role" not in match.pattern.groupindex and const.code is None:
            raise self.fail(f"{where}.match", "a `role` group or a `role` on the rule, with school/group groups")
        if structured and lookup is not None:
            raise self.fail(f"{where}.lookup", "no lookup with a `match` that has role/school/group groups: "
                            "use role_names for role vocabulary")
        label = self.prefix + where + (f" ({rid})" if rid else "")
        return _RoleRule(id=rid, names=names, split=split, mpassid=bool(fmt), match=match, structured=structured,
                         lookup=lookup, role_names=role_names, const=const, scope=scope, label=label)

    def defaults(self, data: Any) -> dict[str, Any]:
        if data is None:
            return {}
        self.keys(data, "defaults", _DEFAULT_KEYS)
        out: dict[str, Any] = {}
        if "schools" in data:
            items = data["schools"]
            if not isinstance(items, (list, tuple)) or not items:
                raise self.fail("defaults.schools", "a list of school codes")
            out["schools"] = [self.school_ref(s, f"defaults.schools[{i}]") for i, s in enumerate(items)]
        if "roles" in data:
            items = data["roles"]
            if not isinstance(items, (list, tuple)) or not items:
                raise self.fail("defaults.roles", "a list of roles")
            out["roles"] = [self.role_name(r, f"defaults.roles[{i}]") for i, r in enumerate(items)]
        if "class_level" in data:
            level = data["class_level"]
            if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 10:
                raise self.fail("defaults.class_level", "an integer 0-10")
            out["class_level"] = level
        return out


class _Nested(Exception):
    """Carries a RuleError out of a lookup conversion through TransformError handling."""

    def __init__(self, error: RuleError):
        self.error = error
