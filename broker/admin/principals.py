"""Who is asking: principals, the roles they hold, and the console users' grants.

A :class:`Principal` is whoever calls an admin operation: an API token
(:mod:`broker.admin.tokens`), a person signed in to the console (a *subject*, the
``sub`` the broker issues to its own admin client ``digione-admin``, looked up in
the ``admin_grants`` table by :class:`SubjectGrants`), or the operator's shell
(``broker admin …``).  It holds one or more :class:`Grant`:

``platform_admin``
    everything: every tenant, every service, approvals, tokens and grants.
``city_admin`` (one ``tenant``)
    read and change that tenant's document (its IdPs, metadata, mapping rules,
    allowed services), activate, discard and roll back versions that change only it.
``city_viewer`` (one ``tenant``)
    read that tenant's document and versions; change nothing.
``service_owner`` (one ``service``: a client id, or ``sp/<name>`` for a SAML SP)
    register and update that service; its release policy waits for a platform admin.

Several grants add up (a city admin of two cities holds two).  What a grant allows
is decided in one place, :mod:`broker.admin.operations`; this module only answers
"which tenants / services does this principal hold, and how".

Grants are stored as JSON lists of ``{"role", "tenant"?, "service"?}``
(:meth:`Grant.to_dict`), both in ``admin_tokens.roles`` and ``admin_grants.roles``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from broker.registry import database as db

PLATFORM_ADMIN = "platform_admin"
CITY_ADMIN = "city_admin"
CITY_VIEWER = "city_viewer"
SERVICE_OWNER = "service_owner"
ROLES = (PLATFORM_ADMIN, CITY_ADMIN, CITY_VIEWER, SERVICE_OWNER)
#: Roles scoped to one tenant, and the role scoped to one service.
TENANT_ROLES = (CITY_ADMIN, CITY_VIEWER)

#: A tenant id as tenant files spell it (broker.registry.tenants._ID).
TENANT_ID = re.compile(r"^[a-z][a-z0-9-]{1,62}\Z")
#: A service id as allowed_services spells it: a client id, or sp/<registration name>.
SERVICE_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._:-]{0,127}|sp/[A-Za-z0-9][A-Za-z0-9._-]{0,127})\Z")
#: A console subject: the broker's own ``sub`` for digione-admin (pairwise hex or public ids).
SUBJECT = re.compile(r"^[A-Za-z0-9._:@-]{1,200}\Z")
#: No principal holds more grants than this (a token is not a list of every city).
MAX_GRANTS = 50


class GrantError(ValueError):
    """A grant is malformed; ``field`` names what is wrong and ``expected`` what was expected."""

    def __init__(self, field: str, expected: str):
        self.field = field
        self.expected = expected
        super().__init__(f"{field}: expected {expected}")


@dataclasses.dataclass(frozen=True, order=True)
class Grant:
    """One role, scoped to a tenant (city roles) or a service (service owner) or to nothing (platform)."""

    role: str
    tenant: str | None = None
    service: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"role": self.role}
        if self.tenant is not None:
            out["tenant"] = self.tenant
        if self.service is not None:
            out["service"] = self.service
        return out

    def __str__(self) -> str:
        scope = self.tenant or self.service
        return f"{self.role}:{scope}" if scope else self.role


def make_grant(role: Any, *, tenant: Any = None, service: Any = None, field: str = "grant") -> Grant:
    """A checked :class:`Grant`; raises :class:`GrantError` naming ``field`` and what was expected."""
    if role not in ROLES:
        raise GrantError(f"{field}.role", f"one of {', '.join(ROLES)}")
    if role in TENANT_ROLES:
        if not (isinstance(tenant, str) and TENANT_ID.match(tenant)):
            raise GrantError(f"{field}.tenant", f"the tenant id a {role} administers (e.g. vantaa)")
        if service is not None:
            raise GrantError(f"{field}.service", f"no service for {role}")
        return Grant(role, tenant=tenant)
    if role == SERVICE_OWNER:
        if not (isinstance(service, str) and SERVICE_ID.match(service)):
            raise GrantError(f"{field}.service", "the service owned: a client id, or sp/<name> for a SAML SP")
        if tenant is not None:
            raise GrantError(f"{field}.tenant", "no tenant for service_owner")
        return Grant(role, service=service)
    if tenant is not None or service is not None:
        raise GrantError(f"{field}", "platform_admin without a tenant or service (it holds them all)")
    return Grant(role)


def grants_from_json(raw: Any, *, field: str = "grants") -> tuple[Grant, ...]:
    """Parse a list of ``{"role", "tenant"?, "service"?}``; raises :class:`GrantError`."""
    if not isinstance(raw, list) or not raw or len(raw) > MAX_GRANTS:
        raise GrantError(field, f"a list of 1 to {MAX_GRANTS} grants ({{role, tenant?, service?}})")
    grants = []
    for index, item in enumerate(raw):
        where = f"{field}[{index}]"
        if not isinstance(item, dict) or not set(item) <= {"role", "tenant", "service"}:
            raise GrantError(where, "an object with role and, for city roles, tenant; for service_owner, service")
        grants.append(make_grant(item.get("role"), tenant=item.get("tenant"), service=item.get("service"),
                                 field=where))
    return tuple(sorted(set(grants)))


def grants_to_json(grants: Iterable[Grant]) -> str:
    return json.dumps([g.to_dict() for g in sorted(set(grants))], sort_keys=True)


def service_key(service_id: str) -> tuple[str, str]:
    """The registry object of a service id: ``("sp", name)`` for ``sp/<name>``, else ``("client", id)``."""
    if service_id.startswith("sp/"):
        return "sp", service_id[3:]
    return "client", service_id


def service_id(kind: str, key: str) -> str:
    """The service id of a registry object of kind ``client`` or ``sp`` (the inverse of :func:`service_key`)."""
    return f"sp/{key}" if kind == "sp" else key


@dataclasses.dataclass(frozen=True)
class Principal:
    """Whoever calls an admin operation.

    ``name`` is what versions record as their author and log lines name: ``token:<id>``,
    ``user:<subject>`` or ``cli:<login>@<host>``; it is never a secret.
    """

    name: str
    grants: tuple[Grant, ...]
    kind: str = "token"          # token, user or cli
    #: A human note (the token's purpose, the person's name as the grant recorded it).
    note: str = ""

    @property
    def is_platform_admin(self) -> bool:
        return any(g.role == PLATFORM_ADMIN for g in self.grants)

    def tenants(self, *roles: str) -> frozenset[str]:
        """Tenants this principal holds one of ``roles`` for (default: either city role)."""
        wanted = roles or TENANT_ROLES
        return frozenset(g.tenant for g in self.grants if g.role in wanted and g.tenant)

    @property
    def services(self) -> frozenset[str]:
        """Service ids this principal owns (client ids and ``sp/<name>``)."""
        return frozenset(g.service for g in self.grants if g.role == SERVICE_OWNER and g.service)

    def reads_tenant(self, tenant_id: str) -> bool:
        return self.is_platform_admin or tenant_id in self.tenants()

    def writes_tenant(self, tenant_id: str) -> bool:
        return self.is_platform_admin or tenant_id in self.tenants(CITY_ADMIN)

    def owns_service(self, service: str) -> bool:
        return self.is_platform_admin or service in self.services

    def reads(self, kind: str, key: str) -> bool:
        """May this principal see the registry object ``(kind, key)`` at all?"""
        if kind == "tenant":
            return self.reads_tenant(key)
        return self.owns_service(service_id(kind, key))

    def writes(self, kind: str, key: str) -> bool:
        """May this principal stage a change of ``(kind, key)`` (activation rules aside)?"""
        if kind == "tenant":
            return self.writes_tenant(key)
        return self.owns_service(service_id(kind, key))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "note": self.note,
                "grants": [g.to_dict() for g in self.grants]}


def cli_principal(who: str) -> Principal:
    """The operator at a shell: a platform admin (whoever runs ``broker`` on the server holds the database)."""
    return Principal(name=f"cli:{who}", grants=(Grant(PLATFORM_ADMIN),), kind="cli")


@dataclasses.dataclass(frozen=True)
class SubjectGrant:
    """One row of ``admin_grants``: a console subject and what it holds."""

    subject: str
    grants: tuple[Grant, ...]
    note: str
    created_by: str
    created_at: datetime.datetime
    updated_at: datetime.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "grants": [g.to_dict() for g in self.grants], "note": self.note,
                "created_by": self.created_by, "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}


class SubjectGrants:
    """The console users' grants (table ``admin_grants``: subject → roles)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def principal_for_subject(self, subject: str) -> Principal | None:
        """The principal of a signed-in console user, or ``None`` when the subject holds no grant."""
        if not isinstance(subject, str) or not SUBJECT.match(subject):
            return None
        found = self.get(subject)
        if found is None or not found.grants:
            return None
        return Principal(name=f"user:{subject}", grants=found.grants, kind="user", note=found.note)

    def get(self, subject: str) -> SubjectGrant | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.admin_grants).where(db.admin_grants.c.subject == subject)).one_or_none()
        return _row_to_grant(row) if row is not None else None

    def entries(self) -> list[SubjectGrant]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(db.admin_grants).order_by(db.admin_grants.c.subject)).all()
        return [_row_to_grant(r) for r in rows]

    def add(self, subject: str, grants: Sequence[Grant], *, by: str, note: str | None = None) -> SubjectGrant | None:
        """Give ``subject`` these grants as well as those it holds; returns the row as stored."""
        current = self.get(subject)
        return self.assign(subject, (*(current.grants if current else ()), *grants), by=by,
                        note=note if note is not None else (current.note if current else ""))

    def remove(self, subject: str, grants: Sequence[Grant] | None = None, *, by: str) -> SubjectGrant | None:
        """Take ``grants`` (default: all) from ``subject``; returns what is left (``None``: nothing)."""
        current = self.get(subject)
        if current is None:
            return None
        taken = frozenset(grants or ())
        left = () if grants is None else tuple(g for g in current.grants if g not in taken)
        return self.assign(subject, left, by=by, note=current.note)

    def assign(self, subject: str, grants: Sequence[Grant], *, by: str, note: str = "") -> SubjectGrant | None:
        """Make ``subject`` hold exactly ``grants`` (none: the row is deleted and ``None`` returned)."""
        if not isinstance(subject, str) or not SUBJECT.match(subject):
            raise GrantError("subject", "the broker's sub for the person (1-200 letters, digits, '.', '_', ':', "
                                        "'@' or '-')")
        unique = tuple(sorted(set(grants)))
        if len(unique) > MAX_GRANTS:
            raise GrantError("grants", f"at most {MAX_GRANTS} grants")
        now = datetime.datetime.now(datetime.UTC)
        table = db.admin_grants
        with self.engine.begin() as conn:
            if not unique:
                conn.execute(sa.delete(table).where(table.c.subject == subject))
                return None
            values = {"roles": grants_to_json(unique), "note": note[:200], "updated_at": now}
            moved = conn.execute(sa.update(table).where(table.c.subject == subject).values(**values)).rowcount
            if not moved:
                conn.execute(sa.insert(table).values(subject=subject, created_by=by[:200], created_at=now, **values))
            row = conn.execute(sa.select(table).where(table.c.subject == subject)).one()
        return _row_to_grant(row)


def _row_to_grant(row: Any) -> SubjectGrant:
    return SubjectGrant(subject=row.subject, grants=grants_from_stored(row.roles), note=row.note or "",
                        created_by=row.created_by, created_at=utc(row.created_at), updated_at=utc(row.updated_at))


def grants_from_stored(text: str) -> tuple[Grant, ...]:
    """Grants as stored by :func:`grants_to_json`; a row that no longer parses grants nothing."""
    try:
        raw = json.loads(text)
        return grants_from_json(raw) if raw else ()
    except (ValueError, GrantError):
        return ()


def utc(value: datetime.datetime) -> datetime.datetime:
    # SQLite hands back naive datetimes; every value written was UTC.
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def describe(grants: Iterable[Grant]) -> str:
    return ", ".join(str(g) for g in grants)


def grants_of(items: Iterable[Mapping[str, Any]]) -> tuple[Grant, ...]:
    """Grants from already-parsed dicts (the CLI's ``--role/--tenant/--service``)."""
    return tuple(make_grant(i.get("role"), tenant=i.get("tenant"), service=i.get("service")) for i in items)
