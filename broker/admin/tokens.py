"""Admin API tokens: scoped, expiring bearer tokens kept only as SHA-256 hashes.

A token is ``dgadm_<43 characters>``: the prefix lets secret scanners find a leaked
one, the rest is 256 bits from :func:`secrets.token_urlsafe`.  It is shown once,
when created (``broker admin token create``), and the table ``admin_tokens`` keeps
only its SHA-256 (a fast hash is enough for 256 random bits, as for client secrets
in :mod:`broker.registry.relying_parties`), its grants, who made it and when, when it
expires, when it was revoked and when it was last used.

:meth:`TokenStore.authenticate` looks a presented token up by its hash (the lookup
is by an unguessable value, so it leaks nothing by its timing) and refuses it when
unknown, revoked or expired; ``last_used_at`` is written at most once a minute per
token so that an automation loop does not turn every read into a write.  Tokens
are never logged: log lines name them by their public id (``token:<id>``).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from broker.admin.principals import Grant, GrantError, Principal, grants_from_stored, grants_to_json, utc
from broker.registry import database as db

PREFIX = "dgadm_"
#: A token lives at most this long (and at least a minute).
MAX_LIFETIME = datetime.timedelta(days=366)
MIN_LIFETIME = datetime.timedelta(minutes=1)
#: ``last_used_at`` is refreshed at most this often.
USE_RESOLUTION = datetime.timedelta(seconds=60)
_TOKEN = re.compile(r"^dgadm_[A-Za-z0-9_-]{43}\Z")
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([mhd])\Z")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_duration(text: str) -> datetime.timedelta:
    """``30d``, ``12h`` or ``90m`` as a timedelta within the allowed lifetimes; raises :class:`GrantError`."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise GrantError("expires", "a lifetime like 30d, 12h or 90m")
    number, unit = int(match.group(1)), match.group(2)
    delta = {"m": datetime.timedelta(minutes=number), "h": datetime.timedelta(hours=number),
             "d": datetime.timedelta(days=number)}[unit]
    check_lifetime(delta)
    return delta


def check_lifetime(delta: datetime.timedelta) -> None:
    if not MIN_LIFETIME <= delta <= MAX_LIFETIME:
        raise GrantError("expires", f"a lifetime from 1 minute to {MAX_LIFETIME.days} days")


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """What is known of a token (never the token itself)."""

    id: str
    grants: tuple[Grant, ...]
    note: str
    created_by: str
    created_at: datetime.datetime
    expires_at: datetime.datetime
    revoked_at: datetime.datetime | None
    last_used_at: datetime.datetime | None

    def state(self, now: datetime.datetime | None = None) -> str:
        now = now or _now()
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"id": self.id, "grants": [g.to_dict() for g in self.grants], "note": self.note,
                "created_by": self.created_by, "created_at": iso(self.created_at),
                "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at),
                "last_used_at": iso(self.last_used_at), "state": self.state()}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class TokenStore:
    """Create, authenticate, list and revoke API tokens (table ``admin_tokens``)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, grants: Sequence[Grant], *, lifetime: datetime.timedelta, by: str,
               note: str = "") -> tuple[str, TokenInfo]:
        """A new token for ``grants``: ``(the token, shown once and never stored; its info)``."""
        if not grants:
            raise GrantError("grants", "at least one grant")
        check_lifetime(lifetime)
        token = PREFIX + secrets.token_urlsafe(32)
        token_id = "t" + secrets.token_hex(6)
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(sa.insert(db.admin_tokens).values(
                id=token_id, hash=hash_token(token), roles=grants_to_json(grants), note=note[:200],
                created_by=by[:200], created_at=now, expires_at=now + lifetime))
        info = self.get(token_id)
        assert info is not None
        return token, info

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal of a presented bearer token, or ``None`` (unknown, malformed, revoked or expired)."""
        if not isinstance(token, str) or not _TOKEN.match(token):
            return None
        table = db.admin_tokens
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.hash == hash_token(token))).one_or_none()
        if row is None:
            return None
        info = _info(row)
        now = _now()
        if info.state(now) != "active" or not info.grants:
            return None
        if info.last_used_at is None or now - info.last_used_at >= USE_RESOLUTION:
            with self.engine.begin() as conn:
                conn.execute(sa.update(table).where(table.c.id == info.id).values(last_used_at=now))
        return Principal(name=f"token:{info.id}", grants=info.grants, kind="token", note=info.note)

    def get(self, token_id: str) -> TokenInfo | None:
        if not isinstance(token_id, str) or len(token_id) > 32:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.admin_tokens).where(db.admin_tokens.c.id == token_id)).one_or_none()
        return _info(row) if row is not None else None

    def entries(self, *, include_inactive: bool = False) -> list[TokenInfo]:
        """Tokens, newest first; revoked and expired ones only with ``include_inactive``."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(db.admin_tokens).order_by(db.admin_tokens.c.created_at.desc())).all()
        found = [_info(r) for r in rows]
        return found if include_inactive else [t for t in found if t.state() == "active"]

    def revoke(self, token_id: str, *, by: str) -> TokenInfo | None:
        """Revoke a token now (idempotent); ``None`` when there is no such token."""
        info = self.get(token_id)
        if info is None:
            return None
        if info.revoked_at is None:
            with self.engine.begin() as conn:
                conn.execute(sa.update(db.admin_tokens).where(db.admin_tokens.c.id == token_id,
                                                              db.admin_tokens.c.revoked_at.is_(None))
                             .values(revoked_at=_now()))
        return self.get(token_id)


def _info(row: Any) -> TokenInfo:
    return TokenInfo(id=row.id, grants=grants_from_stored(row.roles), note=row.note or "", created_by=row.created_by,
                     created_at=utc(row.created_at), expires_at=utc(row.expires_at),
                     revoked_at=utc(row.revoked_at) if row.revoked_at else None,
                     last_used_at=utc(row.last_used_at) if row.last_used_at else None)
