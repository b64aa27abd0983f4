"""Audit records: a release to a service and an admin change.

A release record says *that* a service received something about a person and *what
kind*: the names of the OIDC claims or SAML attributes released, never their values.
The person is a pseudonymous :func:`subject_reference`: an HMAC of the broker's
(already salted) user id under a key derived for the audit alone, so it is the same for
one person across services and records, yet differs from every ``sub``/NameID a
service sees and from the ``user_ref`` of log lines (another key): neither a service
nor a reader of the logs can join their identifiers to the audit.

When a release happens (docs/decisions/0017-audit.md): SAML when the Response is built
for the SP; OIDC when the authorization code is redeemed at ``/token`` (the first time the
client holds an ID token or access token).  Userinfo and refreshes are not new records:
they hand the same grant's claims, never more (RFC 6749 §6), to the same client.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: The HKDF purpose of the audit's subject key (broker.derive).
SUBJECT_KEY_PURPOSE = b"audit-subject-ref"
PROTOCOLS = ("oidc", "saml")
#: Bounds on what one record may hold: a record comes from our own code, but the flusher
#: reads it back from Redis, and nothing unbounded goes into the database.
MAX_SCHOOLS = 50
MAX_NAMES = 64
_MAX = {"service": 1024, "tenant": 64, "school": 32, "name": 200, "correlation_id": 64}

_HEX = frozenset("0123456789abcdef")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def subject_reference(user_id: str, key: bytes) -> str:
    """The audit's pseudonymous reference to a person: 32 hex characters of HMAC-SHA256."""
    return hmac.digest(key, user_id.encode("utf-8"), "sha256").hex()[:32]


def school_codes(identity: Mapping[str, Any]) -> tuple[str, ...]:
    """The school codes of an identity: its schools and the schools its roles are held at, sorted."""
    # ``type(...) is dict`` first: the identity's entries are dicts, and the ABC check is slow.
    codes = {s.get("code") for s in identity.get("schools") or () if type(s) is dict or isinstance(s, Mapping)}
    codes |= {r.get("school") for r in identity.get("roles") or () if type(r) is dict or isinstance(r, Mapping)}
    return tuple(sorted(c for c in codes if isinstance(c, str) and c))[:MAX_SCHOOLS]


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _text(value: Any, field: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX[field]:
        raise ValueError(f"audit record: {field} is not a string of 1-{_MAX[field]} characters")
    return value


@dataclasses.dataclass(frozen=True)
class Release:
    """One delivery to a service (a row of ``audit_releases`` and its ``audit_release_schools``)."""

    id: str
    at: dt.datetime
    service: str
    tenant: str
    protocol: str
    schools: tuple[str, ...]
    released: tuple[str, ...]
    subject_ref: str
    correlation_id: str | None

    @classmethod
    def from_wire(cls, raw: str) -> Release:
        """A buffered record (:meth:`ReleaseAudit.prepare`'s JSON, stamped); ValueError if malformed."""
        try:
            data = json.loads(raw)
        except ValueError:
            raise ValueError("audit record: not JSON") from None
        if not isinstance(data, dict) or data.get("v") != 1:
            raise ValueError("audit record: not a version 1 release record")
        record_id, at, ref = data.get("id"), data.get("t"), data.get("ref")
        if not (isinstance(record_id, str) and len(record_id) == 32 and set(record_id) <= _HEX):
            raise ValueError("audit record: id is not 32 hex characters")
        if not isinstance(at, (int, float)) or isinstance(at, bool) or not 0 < at < 2**33:
            raise ValueError("audit record: t is not a time")
        if not (isinstance(ref, str) and len(ref) == 32):
            raise ValueError("audit record: ref is not a subject reference")
        if data.get("p") not in PROTOCOLS:
            raise ValueError("audit record: p is not a protocol")
        schools, names = data.get("sch"), data.get("rel")
        if not (isinstance(schools, list) and len(schools) <= MAX_SCHOOLS):
            raise ValueError("audit record: sch is not a list of school codes")
        if not (isinstance(names, list) and len(names) <= MAX_NAMES):
            raise ValueError("audit record: rel is not a list of names")
        return cls(id=record_id, at=_utc(at), service=str(_text(data.get("svc"), "service")),
                   tenant=str(_text(data.get("ten"), "tenant")), protocol=data["p"],
                   schools=tuple(sorted({str(_text(s, "school")) for s in schools})),
                   released=tuple(sorted({str(_text(n, "name")) for n in names})), subject_ref=ref,
                   correlation_id=_text(data.get("cid"), "correlation_id", optional=True))


class ReleaseAudit:
    """What the login path calls to record a release: builds the record and buffers it (O(1)).

    ``buffer`` is an :class:`~broker.audit.buffer.AuditBuffer`; ``key`` the subject key
    (:data:`SUBJECT_KEY_PURPOSE`); ``correlation_id()`` the current request's id.  Called
    inside the store batch of the step that delivers, the push joins that batch's round trip.
    """

    def __init__(self, buffer: Any, key: bytes, *, correlation_id: Callable[[], str | None],
                 clock: Callable[[], float] = time.time):
        self.buffer = buffer
        self._key = key
        self._correlation_id = correlation_id
        self._clock = clock

    def prepare(self, *, protocol: str, service: str, identity: Mapping[str, Any],
                released: Iterable[str]) -> dict[str, Any]:
        """A release record not yet stamped with its time (OIDC keeps it with the code until ``/token``)."""
        user_id, cid = identity.get("user_id"), self._correlation_id()
        return {"v": 1, "id": secrets.token_hex(16), "svc": service, "ten": identity.get("tenant") or "-",
                "p": protocol, "sch": list(school_codes(identity)), "rel": sorted(set(released))[:MAX_NAMES],
                "ref": subject_reference(user_id if isinstance(user_id, str) else "", self._key),
                "cid": cid[:64] if cid else None}

    def record(self, prepared: Mapping[str, Any] | str) -> str:
        """Buffer a prepared record (or its JSON, as :meth:`oidc` gives it), stamped now: the
        release happens now.  Returns it as buffered."""
        body = prepared if isinstance(prepared, str) else _dumps(dict(prepared))
        member = f'{body[:-1]},"t":{self._clock():.3f}}}'   # the time added without decoding it again
        self.buffer.push(member)
        return member

    def retract(self, member: str) -> None:
        """Take back a record :meth:`record` buffered for a delivery that was then refused."""
        self.buffer.retract(member)

    def saml(self, sp_entity_id: str, identity: Mapping[str, Any], attributes: Iterable[str]) -> None:
        """A SAML Response for ``sp_entity_id`` was built: its attribute names and the NameID."""
        self.record(self.prepare(protocol="saml", service=sp_entity_id, identity=identity,
                                 released=("NameID", *attributes)))

    def oidc(self, client_id: str, identity: Mapping[str, Any], claims: Iterable[str],
             access_claims: Iterable[str]) -> str:
        """The record of a code being issued, as JSON (the code record carries it as a string, not
        decoded and encoded again): ``sub``, the released and the access token's claim names;
        recorded (:meth:`record`) when the code is redeemed."""
        return _dumps(self.prepare(protocol="oidc", service=client_id, identity=identity,
                                   released=("sub", *claims, *access_claims)))


@dataclasses.dataclass(frozen=True)
class AdminChange:
    """One admin change (a row of ``audit_admin``): who, when, what."""

    id: str
    at: dt.datetime
    actor: str
    action: str
    tenant: str | None
    documents: tuple[str, ...]
    version: int | None
    correlation_id: str | None

    @classmethod
    def now(cls, *, actor: str, action: str, documents: Iterable[tuple[str, str]] | Iterable[str],
            version: int | None, correlation_id: str | None,
            clock: Callable[[], float] = time.time) -> AdminChange:
        """A change made now; ``tenant`` is the one tenant it touches (None: none, or several)."""
        names = tuple(sorted({d if isinstance(d, str) else f"{d[0]}:{d[1]}" for d in documents}))
        tenants = {n.split(":", 1)[1] for n in names if n.startswith("tenant:")}
        return cls(id=secrets.token_hex(16), at=_utc(clock()), actor=actor[:200], action=action[:40],
                   tenant=next(iter(tenants))[:64] if len(tenants) == 1 else None, documents=names,
                   version=version, correlation_id=(correlation_id or None) and correlation_id[:64])
