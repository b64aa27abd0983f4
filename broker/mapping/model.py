"""The vocabulary of the mapping engine: schools, tenants, role codes, results.

Everything here is plain data.  The canonical identity itself is a ``dict`` (it is
what services receive, logs never see it, and ``docs/identity.schema.json``
describes it); the types here are the inputs that scope it and the records that
explain how it was made.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

#: Role codes of the MPASSid data model (v1.4) and our canonical role names.
ROLE_NAMES: Mapping[int, str] = MappingProxyType({
    1: "learner",
    2: "teacher",
    3: "staff",
    4: "school_secretary",
    5: "substitute_teacher",
    6: "principal",
})
ROLE_CODES: Mapping[str, int] = MappingProxyType({name: code for code, name in ROLE_NAMES.items()})

#: The Finnish role names that MPASSid releases in role strings, exactly.
MPASSID_ROLE_NAMES: Mapping[int, str] = MappingProxyType({
    1: "Oppilas",
    2: "Opettaja",
    3: "Hallintohenkilö",
    4: "Koulusihteeri",
    5: "Sijaisopettaja",
    6: "Rehtori",
})

# Organisation OIDs of the Finnish education registry keep leading zeros in their
# last arc (1.2.246.562.99.00000000001), so this is looser than X.660.
OID = re.compile(r"^[0-9]+(?:\.[0-9]+){2,31}\Z")
SCHOOL_CODE = re.compile(r"^[0-9]{5,6}\Z")
LEARNER_ID = re.compile(r"^1\.2\.246\.562\.(?:24|98)\.[0-9]{11}\Z")


@dataclasses.dataclass(frozen=True)
class School:
    """A school (oppilaitos) of a tenant: its national code, OID and names by language."""

    code: str
    oid: str
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    active: bool = True

    @property
    def name(self) -> str:
        """The official name: Finnish first, as MPASSid releases it."""
        return _official(self.names, self.code)


@dataclasses.dataclass(frozen=True)
class TenantScope:
    """What one tenant (a city, as education provider) may assert about its users.

    ``schools`` is keyed by school code.  An IdP of this tenant can only place a
    user in these schools and in ``provider_oid``; anything else is dropped.
    """

    tenant_id: str
    provider_oid: str
    provider_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    schools: Mapping[str, School] = dataclasses.field(default_factory=dict)
    _by_oid: Mapping[str, School] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for code, school in self.schools.items():
            if code != school.code:
                raise ValueError(f"tenant {self.tenant_id}: schools[{code!r}] has code {school.code!r}")
        # Frozen, so the index is set once here; lookups on the login path are dict reads.
        object.__setattr__(self, "_by_oid", {s.oid: s for s in self.schools.values()})

    @property
    def provider_name(self) -> str:
        return _official(self.provider_names, self.provider_oid)

    def school_by_oid(self, oid: str) -> School | None:
        return self._by_oid.get(oid)

    def school(self, ref: str) -> School | None:
        """The school with this code or OID, active or not; ``None`` if not this tenant's."""
        return self.schools.get(ref) or self._by_oid.get(ref)


class Trace(NamedTuple):
    """Which rule produced one value of the canonical identity.

    ``field`` is a path into the identity (``roles[0]``, ``given_name``), ``rule``
    names the rule (``roles[1]``, ``preset entra: fields.given_name``) and
    ``source`` the upstream attribute it read, or ``default`` / ``registry``.
    """

    field: str
    rule: str
    source: str


class Drop(NamedTuple):
    """A value that was not accepted, without the value itself (no personal data)."""

    field: str
    rule: str
    reason: str


class DroppedValue(NamedTuple):
    """What one :class:`Drop` was about, for the simulator only: ``value`` is the upstream
    value (after split and match; several for ``multiple_values``; ``None`` when nothing
    usable was there) and ``school``
    the school reference the reason is about when that is not ``value`` itself (a role
    string naming a school of another city)."""

    value: str | list[str] | None
    school: str | None = None


class Drops(list[Drop]):
    """The drops of one mapping and, only when asked for, the value behind each.

    The login path never asks (``keep_values=False``): its drops are logged, and a log
    line never holds a value.  The simulator (:func:`broker.mapping.explain`) shows an
    admin their own sample and asks, so that each dropped value can be named.
    """

    def __init__(self, *, keep_values: bool = False) -> None:
        super().__init__()
        self.values: list[DroppedValue] | None = [] if keep_values else None

    def add(self, field: str, rule: str, reason: str, value: str | list[str] | None = None,
            school: str | None = None) -> None:
        self.append(Drop(field, rule, reason))
        if self.values is not None:
            self.values.append(DroppedValue(value, school))


@dataclasses.dataclass
class MappingResult:
    """The outcome of :meth:`Ruleset.apply`.

    ``identity`` is the canonical identity (empty when ``refused``); ``refused`` is a
    reason code (``no_user_id``, ``requirement_not_met``) when the login must be
    refused and nothing released.
    """

    identity: dict[str, Any]
    trace: list[Trace]
    drops: list[Drop]
    refused: str | None = None
    #: The value behind each of ``drops``, in order: only when :meth:`Ruleset.apply` was asked
    #: for them (``keep_dropped_values``, the simulator); empty otherwise.
    dropped_values: list[DroppedValue] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.refused is None


class PolicyLike(Protocol):
    """What the release functions read from a relying party's release policy.

    ``broker.registry.relying_parties.ReleasePolicy`` is one; this package does not
    import it so that it stays usable on its own.
    """

    @property
    def scopes(self) -> Sequence[str]: ...

    @property
    def profile(self) -> str: ...

    @property
    def subject_type(self) -> str: ...

    @property
    def sector(self) -> str: ...


def _official(names: Mapping[str, str], fallback: str) -> str:
    for lang in ("fi", "sv", "en"):
        if names.get(lang):
            return names[lang]
    return next((n for n in names.values() if n), fallback)
