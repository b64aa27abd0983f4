"""Mapping configuration: validation, presets and compilation.

Everything a tenant file can get wrong is caught here, when the file is loaded,
never on the login path; every error is a :class:`RuleError` naming the file, the
path inside it and what was expected.  Presets are YAML files shipped in
``broker/mapping/presets/``, read on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from broker.mapping.errors import RuleError
from broker.mapping.model import TenantScope
from broker.mapping.roles import normalize_role_names, role_code
from broker.mapping.rules import FIELDS, FieldRule, RoleRule, RoleSpec
from broker.mapping.transforms import Lookup, Match, Split, TransformError
from broker.mapping.validate import parse_group, parse_school_ref

PRESETS = ("mpassid-saml", "entra", "google", "adfs", "wilma")

_TOP_KEYS = ("preset", "require", "uid", "fields", "roles", "defaults")
_FIELD_KEYS = ("from", "split", "match", "lookup")
_ROLE_KEYS = ("id", "from", "split", "format", "match", "lookup", "role_names", "role", "school", "group",
              "scope", "disabled")
_DEFAULT_KEYS = ("schools", "roles", "class_level")
_ROLE_SCOPES = ("aligned", "every_school")


def compile_config(config: Any, *, tenant: TenantScope, source: str,
                   path: str) -> tuple[str | None, dict[str, Any]]:
    """Validate ``config`` and compile it over its preset.

    Returns the preset name and the merged parts (``require``, ``uid``, ``fields``,
    ``roles``, ``defaults``) that :class:`~broker.mapping.ruleset.Ruleset` takes.
    Raises :class:`RuleError`.
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
    return preset_name, _merge(preset, own, source, path)


@functools.cache
def _preset_text(name: str) -> str:
    from importlib import resources

    return resources.files("broker.mapping").joinpath("presets", f"{name}.yaml").read_text("utf-8")


def _preset(name: str) -> dict[str, Any]:
    """The preset's rules, parsed once per process; callers get their own copy to merge into."""
    import copy

    return copy.deepcopy(_parsed_preset(name))


@functools.cache
def _parsed_preset(name: str) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present
    return yaml.load(_preset_text(name), Loader=loader) or {}


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


def _merge_keyed(base: list[tuple[str, Any, str]], over: list[tuple[str, Any, str]]) -> list[tuple[str, Any, str]]:
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

    def fields(self, data: Any) -> dict[str, list[FieldRule]]:
        if data is None:
            return {}
        self.keys(data, "fields", tuple(FIELDS))
        out: dict[str, list[FieldRule]] = {}
        for field, spec in data.items():
            if isinstance(spec, Mapping):
                out[field] = [self.field_rule(field, spec, f"fields.{field}")]
            elif isinstance(spec, (list, tuple)):  # several rules; [] disables the preset's
                out[field] = [self.field_rule(field, s, f"fields.{field}[{i}]") for i, s in enumerate(spec)]
            else:
                raise self.fail(f"fields.{field}", "a rule (a mapping with `from`) or a list of rules")
        return out

    def field_rule(self, field: str, spec: Any, where: str) -> FieldRule:
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
        return FieldRule(field, self.names(spec.get("from"), f"{where}.from"), split, match, lookup,
                          self.prefix + where)

    def transforms(self, spec: Mapping[str, Any], where: str, *, convert: Callable[[str, Any], Any] | None,
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
        const = RoleSpec(
            self.role_name(spec["role"], f"{where}.role", role_names) if "role" in spec else None,
            self.school_ref(spec["school"], f"{where}.school") if "school" in spec else None,
            self.group(spec["group"], f"{where}.group") if "group" in spec else None,
        )

        def convert(key: str, result: Any) -> RoleSpec:
            at = f"lookup[{key!r}]"
            try:
                if isinstance(result, Mapping):
                    self.keys(result, f"{where}.{at}", ("role", "school", "group"))
                    code = self.role_name(result["role"], f"{where}.{at}.role", role_names) \
                        if "role" in result else const.code
                    if code is None:
                        raise self.fail(f"{where}.{at}.role", "a role (here or as the rule's `role`)")
                    return RoleSpec(
                        code,
                        self.school_ref(result["school"], f"{where}.{at}.school") if "school" in result else None,
                        self.group(result["group"], f"{where}.{at}.group") if "group" in result else None)
                return RoleSpec(self.role_name(result, f"{where}.{at}", role_names), None, None)
            except RuleError as exc:
                raise _Nested(exc) from None

        try:
            split, match, lookup = self.transforms(spec, where, convert=convert,
                                                   groups=("role", "school", "group", "value"))
        except _Nested as nested:
            raise nested.error from None
        structured = bool(match and set(match.pattern.groupindex) & {"role", "school", "group"})
        if structured and match is not None and "role" not in match.pattern.groupindex and const.code is None:
            raise self.fail(f"{where}.match", "a `role` group or a `role` on the rule, with school/group groups")
        if structured and lookup is not None:
            raise self.fail(f"{where}.lookup", "no lookup with a `match` that has role/school/group groups: "
                            "use role_names for role vocabulary")
        label = self.prefix + where + (f" ({rid})" if rid else "")
        return RoleRule(id=rid, names=names, split=split, mpassid=bool(fmt), match=match, structured=structured,
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
