"""From extracted claims to the canonical identity, validated as MPASSid does it.

:mod:`broker.mapping.rules` reads upstream attributes into a :class:`Draft` of
claims, each remembering the rule and upstream attribute it came from.
:func:`finish` then applies, in this order:

1. **Multi-value alignment** of the parallel lists some sources send (school ids,
   role names, classes, learning-materials charges): as many values as school ids
   pair up by position; a single role applies to every school; a single class
   attaches to the first school; any other combination drops all of the parallel
   values (schools, unscoped roles, classes and charges).
2. **Tenant scoping**: a school is kept only if it is one of the tenant's schools
   and active; an education provider only if it is the tenant's.  Values outside
   are dropped, with the roles, classes and charges that refer to them.
3. **Role validation**: an unrecognised role is dropped, and so is the school it
   refers to unless a recognised role refers to that school too.

The field parsers here (:func:`parse_school_ref` and friends) are total: any
string gives a value or ``None`` (meaning "malformed", reported as a drop).
"""

from __future__ import annotations

import re
from typing import Any

from broker.mapping.model import LEARNER_ID, OID, ROLE_NAMES, SCHOOL_CODE, Drops, School, TenantScope, Trace

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GROUP = re.compile(r"^[^;\x00-\x1f\x7f]{1,64}\Z")
MAX_NAME_LENGTH = 256


# -- field parsers ---------------------------------------------------------------------------

def parse_school_ref(value: str) -> str | None:
    """A school code or institution OID, from ``30076``, ``30076;Name`` or ``OID;Name``.

    Codes shorter than five digits are zero-padded (``3083`` is ``03083``), as some
    systems store the national school number as an integer.
    """
    ref = value.split(";", 1)[0].strip()
    if ref.isascii() and ref.isdigit() and len(ref) < 5:
        ref = ref.zfill(5)
    return ref if SCHOOL_CODE.match(ref) or OID.match(ref) else None


def parse_provider_ref(value: str) -> str | None:
    """An education provider OID, from ``OID`` or ``OID;Name`` (educationProviderInfo)."""
    ref = value.split(";", 1)[0].strip()
    return ref if OID.match(ref) else None


def parse_charge(value: str) -> tuple[bool, str | None] | None:
    """A learning-materials charge: ``0``/``1`` (free/paid), optionally ``;school``."""
    paid_text, _, school = value.partition(";")
    paid = {"0": False, "1": True, "false": False, "true": True}.get(paid_text.strip().lower())
    if paid is None:
        return None
    if not school.strip():
        return paid, None
    ref = parse_school_ref(school)
    return (paid, ref) if ref else None


def parse_class_level(value: str) -> int | None:
    """A class level 0-10 (pre-primary is 0)."""
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 2 and int(text) <= 10:
        return int(text)
    return None


def parse_learner_id(value: str) -> str | None:
    """A national learner id: OID ``1.2.246.562.24.NNNNNNNNNNN`` (test: ``...98...``)."""
    text = value.strip()
    return text if LEARNER_ID.match(text) else None


def parse_name(value: str) -> str | None:
    """A personal name: 1-256 characters without control characters."""
    text = value.strip()
    return text if 0 < len(text) <= MAX_NAME_LENGTH and not _CONTROL.search(text) else None


def parse_group(value: str) -> str | None:
    """A class or teaching group (``9A``): 1-64 characters, no ``;`` or control characters,
    since MPASSid role strings carry it between semicolons."""
    text = value.strip()
    return text if _GROUP.match(text) else None


# -- draft -----------------------------------------------------------------------------------

class Claim:
    """One parsed value, with the rule and upstream attribute that produced it."""

    __slots__ = ("value", "rule", "source")

    def __init__(self, value: Any, rule: str, source: str):
        self.value = value
        self.rule = rule
        self.source = source


class RoleClaim:
    """One role as a rule read it, before tenant validation.

    ``code`` is ``None`` when unrecognised; ``raw`` is the upstream value it was read from.
    ``scope`` says how a role without a school gets one: ``scoped`` (it names its school,
    or has none), ``aligned`` (pairs with the school list by position) or ``every_school``.
    """

    __slots__ = ("code", "school", "school_oid", "provider", "group", "office", "scope", "rule", "source",
                 "raw", "group_rule")

    def __init__(self, code: int | None, *, school: str | None = None, school_oid: str = "",
                 provider: str = "", group: str | None = None, office: str = "", scope: str = "scoped",
                 rule: str = "", source: str = "", raw: str | None = None):
        self.code = code
        self.school = school
        self.school_oid = school_oid
        self.provider = provider
        self.group = group
        self.office = office
        self.scope = scope
        self.rule = rule
        self.source = source
        self.raw = raw              # the upstream value it was read from (None: a default)
        self.group_rule: tuple[str, str] | None = None

    def copy(self, **changes: Any) -> RoleClaim:
        new = RoleClaim.__new__(RoleClaim)
        for name in RoleClaim.__slots__:
            setattr(new, name, changes[name] if name in changes else getattr(self, name))
        return new


class Draft:
    """Claims read from one upstream response, per canonical field."""

    __slots__ = ("scalars", "schools", "providers", "groups", "charges", "roles", "drops")

    def __init__(self) -> None:
        self.scalars: dict[str, Claim] = {}
        self.schools: list[Claim] = []
        self.providers: list[Claim] = []
        self.groups: list[Claim] = []
        self.charges: list[Claim] = []
        self.roles: list[RoleClaim] = []
        self.drops: Drops = Drops()


# -- finish ----------------------------------------------------------------------------------

_SCALAR_ORDER = ("given_name", "family_name", "nickname", "learner_id", "class_level")


def finish(draft: Draft, tenant: TenantScope) -> tuple[dict[str, Any], list[Trace]]:
    """Validate ``draft`` against ``tenant`` and build the canonical identity (without
    ``user_id``, ``tenant`` and ``idp``, which the caller adds) and its trace.

    Appends every rejected value to ``draft.drops``.
    """
    drops = draft.drops
    identity: dict[str, Any] = {}
    trace: list[Trace] = []
    for field in _SCALAR_ORDER:
        claim = draft.scalars.get(field)
        if claim is not None:
            identity[field] = claim.value
            trace.append(Trace(field, claim.rule, claim.source))

    roles, school_refs, charges = _align(draft)

    # Tenant scoping of schools, memoised per reference: a reference is a code or an OID.
    resolved: dict[str, tuple[School | None, str]] = {}

    def resolve(ref: str) -> tuple[School | None, str]:
        got = resolved.get(ref)
        if got is None:
            school = tenant.school(ref)
            if school is None:
                got = (None, "school_not_in_tenant")
            elif not school.active:
                got = (None, "school_inactive")
            else:
                got = (school, "")
            resolved[ref] = got
        return got

    schools: dict[str, tuple[School, Claim]] = {}  # code -> school, first claim; insertion-ordered
    scoping_drop = False
    for claim in school_refs:
        school, reason = resolve(claim.value)
        if school is None:
            drops.add("schools", claim.rule, reason, claim.value)
            scoping_drop = True
        elif school.code not in schools:
            schools[school.code] = (school, claim)

    # Roles: keep the recognised ones whose school (if any) is the tenant's.
    valid: list[tuple[RoleClaim, School | None]] = []
    unsupported: dict[str, tuple[str, str | None]] = {}  # school code -> rule and value of an invalid role there
    for role in roles:
        school = None
        ref = role.school or role.school_oid or None
        if ref is not None:
            school, reason = resolve(ref)
            if school is None:
                drops.add("roles", role.rule, reason, role.raw, ref)
                scoping_drop = True
                continue
        reason = ""
        if role.code is None:
            reason = "unrecognised_role"
        elif role.provider and OID.match(role.provider) and role.provider != tenant.provider_oid:
            reason = "provider_not_in_tenant"
        elif school is not None and role.school_oid and role.school_oid != school.oid:
            reason = "school_oid_mismatch"
        if reason:
            drops.add("roles", role.rule, reason, role.raw, school.code if school is not None else None)
            if school is not None:
                unsupported.setdefault(school.code, (role.rule, role.raw))
            continue
        valid.append((role, school))

    for role, school in valid:
        if school is not None:
            unsupported.pop(school.code, None)
            if school.code not in schools:
                schools[school.code] = (school, Claim(school.code, role.rule, role.source))
    for code, (rule, raw) in unsupported.items():
        if code in schools:
            del schools[code]
            drops.add("schools", rule, "unrecognised_role", raw, code)

    checked: list[tuple[RoleClaim, School | None, str | None]] = []
    for role, school in valid:
        group = role.group
        if group is not None:
            parsed = parse_group(group)
            if parsed is None:
                drops.add("roles.group", role.rule, "invalid_group", group)
            group = parsed
        checked.append((role, school, group))
    # One role per (role, school, class); a role without a class adds nothing when
    # the same role at the same school also came with one (two rules, one fact).
    with_group = {(r.code, s.code if s else None) for r, s, g in checked if g}
    role_entries: list[dict[str, Any]] = []
    seen: set[tuple[int, str | None, str | None]] = set()
    for role, school, group in checked:
        number = role.code
        assert number is not None  # a role without a code was dropped above (unrecognised_role)
        key = (number, school.code if school else None, group)
        if key in seen or (group is None and key[:2] in with_group):
            continue
        seen.add(key)
        entry: dict[str, Any] = {"role": ROLE_NAMES[number], "code": number}
        if school is not None:
            entry["school"] = school.code
        if group:
            entry["group"] = group
        if role.office and OID.match(role.office):
            entry["office_oid"] = role.office
        trace.append(Trace(f"roles[{len(role_entries)}]", role.rule, role.source))
        if group and role.group_rule:
            trace.append(Trace(f"roles[{len(role_entries)}].group", *role.group_rule))
        role_entries.append(entry)

    identity["roles"] = role_entries
    identity["schools"] = []
    for i, (school, claim) in enumerate(schools.values()):
        identity["schools"].append({"code": school.code, "oid": school.oid, "names": dict(school.names)})
        trace.append(Trace(f"schools[{i}]", claim.rule, claim.source))

    # Education providers: only the tenant's own; present when something supports it.
    asserted_ok: Claim | None = None
    for claim in draft.providers:
        if claim.value == tenant.provider_oid:
            asserted_ok = asserted_ok or claim
        else:
            drops.add("education_providers", claim.rule, "provider_not_in_tenant", claim.value)
    providers: list[dict[str, Any]] = []
    if schools or role_entries or (asserted_ok is not None and not scoping_drop):
        providers.append({"oid": tenant.provider_oid, "names": dict(tenant.provider_names)})
        trace.append(Trace("education_providers[0]", *((asserted_ok.rule, asserted_ok.source)
                                                       if asserted_ok else ("tenant provider", "registry"))))
    identity["education_providers"] = providers

    charge_entries: list[dict[str, Any]] = []
    charged: set[str] = set()
    for claim, ref in charges:
        school, reason = resolve(ref)
        if school is None or school.code not in schools:
            drops.add("learning_materials_charges", claim.rule, reason or "school_not_in_identity",
                      _charge_text(claim.value), ref)
            continue
        if school.code in charged:
            continue
        charged.add(school.code)
        trace.append(Trace(f"learning_materials_charges[{len(charge_entries)}]", claim.rule, claim.source))
        charge_entries.append({"school": school.code, "paid": claim.value[0]})
    identity["learning_materials_charges"] = charge_entries
    return identity, trace


def _align(draft: Draft) -> tuple[list[RoleClaim], list[Claim], list[tuple[Claim, str]]]:
    """Pair the parallel lists by MPASSid's alignment rules; expand every-school roles.

    Returns the roles (each with its school reference, if any), the school claims
    and the charges with their school reference.  Classes are attached to the
    aligned roles here (a class travels with its school); unattached classes are
    reported as drops.
    """
    drops = draft.drops
    school_refs = draft.schools
    n = len(school_refs)
    aligned = [r for r in draft.roles if r.scope == "aligned"]
    groups = draft.groups
    unscoped_charges = [c for c in draft.charges if c.value[1] is None]

    misaligned = (
        (len(aligned) > 1 and n > 0 and len(aligned) != n)
        or (len(groups) > 1 and len(groups) != n)
        or (len(unscoped_charges) > 0 and n > 0 and len(unscoped_charges) != n)
    )
    roles = [r for r in draft.roles if r.scope == "scoped"]
    charges: list[tuple[Claim, str]] = [(c, c.value[1]) for c in draft.charges if c.value[1] is not None]
    group_by_ref: dict[int, Claim] = {}
    if misaligned:
        for field, claims in (("schools", school_refs), ("roles", aligned), ("groups", groups),
                              ("learning_materials_charges", unscoped_charges)):
            by_rule: dict[str, list[str]] = {}
            for c in claims:
                by_rule.setdefault(c.rule, []).append(_claim_text(c))
            for rule, values in by_rule.items():
                drops.add(field, rule, "misaligned_multi_values", values)
        school_refs = []
    else:
        if n == 0:
            roles.extend(r.copy(scope="scoped") for r in aligned)
            for c in groups:
                drops.add("groups", c.rule, "no_school_for_group", c.value)
            for c in unscoped_charges:
                drops.add("learning_materials_charges", c.rule, "no_school_for_charge", _charge_text(c.value))
        else:
            if len(aligned) == n:
                roles.extend(r.copy(school=school_refs[i].value, scope="scoped") for i, r in enumerate(aligned))
            elif aligned:  # exactly one: it applies to every school
                roles.extend(aligned[0].copy(school=c.value, scope="scoped") for c in school_refs)
            for i, c in enumerate(groups):  # as many as schools, or one for the first school
                group_by_ref[i] = c
            charges.extend((c, school_refs[i].value) for i, c in enumerate(unscoped_charges))

    # Every-school roles go to each school named anywhere (or stay without a school).
    every = [r for r in draft.roles if r.scope == "every_school"]
    if every:
        refs = list(dict.fromkeys([c.value for c in school_refs] + [r.school or r.school_oid for r in roles
                                                                    if r.school or r.school_oid]))
        for r in every:
            if refs:
                roles.extend(r.copy(school=ref, scope="scoped") for ref in refs)
            else:
                roles.append(r.copy(scope="scoped"))

    # Classes: attach to the roles at the same school reference that have none.
    for i, gclaim in group_by_ref.items():
        ref = school_refs[i].value
        targets = [r for r in roles if r.group is None and (r.school == ref or r.school_oid == ref)]
        if not targets:
            drops.add("groups", gclaim.rule, "group_without_role", gclaim.value, ref)
            continue
        for j, r in enumerate(roles):
            if r in targets:
                roles[j] = r.copy(group=gclaim.value)
                roles[j].group_rule = (gclaim.rule, gclaim.source)
    return roles, school_refs, charges


def _charge_text(value: tuple[bool, str | None]) -> str:
    """A parsed charge as the upstream wrote it (``1``, ``0;90921``), to name a dropped one."""
    paid, school = value
    return f"{int(paid)};{school}" if school else str(int(paid))


def _claim_text(claim: Claim | RoleClaim) -> str:
    if isinstance(claim, RoleClaim):
        return claim.raw or ""
    return _charge_text(claim.value) if isinstance(claim.value, tuple) else str(claim.value)
