"""The ruleset of one IdP: built from the tenant file, applied on every login.

:meth:`Ruleset.from_config` validates the whole ``mapping:`` configuration, merges
it over its preset and compiles it (:mod:`broker.mapping.config`), so that
:meth:`Ruleset.apply` does nothing but dictionary reads and pre-compiled matches
before :func:`broker.mapping.validate.finish` validates the result.  The
configuration format is documented in ``docs/mapping.md``; in short::

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

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from broker.mapping.config import compile_config
from broker.mapping.identifiers import stable_user_id
from broker.mapping.model import Drop, Drops, MappingResult, TenantScope, Trace
from broker.mapping.rules import DRAFT_LISTS, SCALAR_FIELDS, FieldRule, RoleRule, read
from broker.mapping.transforms import bounded
from broker.mapping.validate import Claim, Draft, RoleClaim, finish

logger = logging.getLogger("broker.mapping")


class Ruleset:
    """The compiled mapping of one IdP of one tenant.  Build with :meth:`from_config`."""

    def __init__(self, *, tenant: TenantScope, idp_id: str, source: str, preset: str | None,
                 require: list[tuple[str, frozenset[str], str]], uid: tuple[tuple[str, ...], str] | None,
                 fields: dict[str, list[FieldRule]], roles: list[RoleRule], defaults: dict[str, Any]):
        self.tenant = tenant
        self.idp_id = idp_id
        self.source = source
        self.preset = preset
        self._require = require
        self._uid = uid
        self._scalars = [(f, rules) for f, rules in fields.items() if f in SCALAR_FIELDS and rules]
        self._lists = [(f, DRAFT_LISTS[f], rules) for f, rules in fields.items()
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

    @property
    def keyed_by_subject(self) -> bool:
        """Whether the user key is the upstream subject (NameID / ``sub``): no ``uid`` rule."""
        return self._uid is None

    @property
    def uid_names(self) -> tuple[str, ...]:
        """The attributes the ``uid`` rule reads the user key from (none: the subject is the key)."""
        return tuple(self._uid[0]) if self._uid is not None else ()

    def reads(self) -> list[tuple[str, ...]]:
        """The upstream attributes the rules read, in order, once each: one tuple per rule of
        names that stand in for each other (``from: [a, b]``: the first one present is read).

        ``require`` keys and ``uid.from`` come first; the subject (NameID / ``sub``) is not
        listed.  The OIDC backend asks userinfo for what the ID token lacks of these
        (:mod:`broker.backends.userinfo`).
        """
        groups: list[tuple[str, ...]] = [(attr,) for attr, _, _ in self._require]
        if self._uid is not None:
            groups.append(tuple(self._uid[0]))
        groups += [tuple(rule.names) for _, rules in self._scalars for rule in rules]
        groups += [tuple(rule.names) for _, _, rules in self._lists for rule in rules]
        groups += [tuple(rule.names) for rule in self._roles]
        return list(dict.fromkeys(group for group in groups if group))

    def unused(self, upstream: Mapping[str, Sequence[str]]) -> tuple[list[str], dict[str, list[str]]]:
        """What of ``upstream`` no rule uses, for the simulator: the attribute names no rule
        reads (of ``from: [a, b]`` only the first present is read), and, per attribute that
        rules read through a ``match`` or ``lookup``, the values none of them takes (a group
        no table holds).  The subject (NameID / ``sub``) is not an attribute here.
        """
        readers: dict[str, list[FieldRule | RoleRule]] = {}
        used = {attr for attr, _, _ in self._require}
        if self._uid is not None:
            used.add(_first_present(upstream, self._uid[0]))
        rules: list[FieldRule | RoleRule] = [r for _, rs in self._scalars for r in rs]
        rules += [r for _, _, rs in self._lists for r in rs]
        rules += self._roles
        for rule in rules:
            name = _first_present(upstream, rule.names)
            if name:
                readers.setdefault(name, []).append(rule)
        names = [name for name in upstream if name not in used and name not in readers]
        values: dict[str, list[str]] = {}
        for name, taking in readers.items():
            left = [v for v in bounded(upstream.get(name))[0] if not any(r.picks(v) for r in taking)]
            if left:
                values[name] = list(dict.fromkeys(left))
        return names, values

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: dict[str, Any] | None, *, tenant: TenantScope, idp_id: str, source: str = "",
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
        preset_name, merged = compile_config(config, tenant=tenant, source=source, path=path)
        return cls(tenant=tenant, idp_id=idp_id, source=source, preset=preset_name, **merged)

    # -- applying --------------------------------------------------------------------------------

    def apply(self, upstream: Mapping[str, Sequence[str]], *, upstream_subject: str | None,
              salt: bytes, keep_dropped_values: bool = False) -> MappingResult:
        """Map one upstream response to the canonical identity.

        ``upstream`` maps raw attribute names (SAML Attribute Names, OIDC claim names)
        to lists of strings; ``upstream_subject`` is the NameID or ``sub``.  Never
        raises on upstream content; raises :class:`ValueError` only for a bad ``salt``.
        Drops are logged to ``broker.mapping`` with tenant, IdP, field, rule and
        reason, never a value.  ``keep_dropped_values`` (the simulator only) also returns
        the value behind each drop in ``MappingResult.dropped_values``.
        """
        drops = Drops(keep_values=keep_dropped_values)
        for attr, allowed, label in self._require:
            values, _ = bounded(upstream.get(attr))
            if not any(v.casefold() in allowed for v in values):
                drops.add(f"require.{attr}", label, "requirement_not_met", values or None)
                return self._refuse("requirement_not_met", drops)

        if self._uid is None:
            uid, uid_rule, uid_source = upstream_subject, "uid", "subject"
        else:
            values, uid_source, _ = read(upstream, self._uid[0])
            uid_rule = self._uid[1]
            uid = values[0] if len(set(values)) == 1 else None
            if len(set(values)) > 1:
                drops.add("user_id", uid_rule, "multiple_values", list(dict.fromkeys(values)))
        if not isinstance(uid, str) or not uid.strip():
            drops.add("user_id", uid_rule, "no_user_id")
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
                    drops.add(field, rule.label, "multiple_values", [str(v) for v in dict.fromkeys(values)])
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
        return MappingResult(identity=identity, trace=trace, drops=drops, dropped_values=drops.values or [])

    def _apply_defaults(self, draft: Draft) -> None:
        d = self._defaults
        if "schools" in d and not draft.schools:
            draft.schools = [Claim(ref, "defaults.schools", "default") for ref in d["schools"]]
        if "roles" in d and not draft.roles:
            draft.roles = [RoleClaim(code, scope="every_school", rule="defaults.roles", source="default")
                           for code in d["roles"]]
        if "class_level" in d and "class_level" not in draft.scalars:
            draft.scalars["class_level"] = Claim(d["class_level"], "defaults.class_level", "default")

    def _refuse(self, reason: str, drops: Drops) -> MappingResult:
        self._log(drops)
        return MappingResult(identity={}, trace=[], drops=drops, refused=reason, dropped_values=drops.values or [])

    def _log(self, drops: list[Drop]) -> None:
        if drops and logger.isEnabledFor(logging.INFO):
            for d in drops:
                logger.info("mapping drop tenant=%s idp=%s field=%s rule=%s reason=%s",
                            self.tenant.tenant_id, self.idp_id, d.field, d.rule, d.reason)


def _first_present(upstream: Mapping[str, Any], names: Sequence[str]) -> str:
    """The name :func:`~broker.mapping.rules.read` reads of ``names`` (``""``: none present)."""
    return next((name for name in names if upstream.get(name)), "")
