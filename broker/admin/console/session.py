"""Console sessions: kept server-side in the broker's store, named by a random id in one cookie.

* The cookie (``digione_admin``; ``__Host-digione_admin`` on https) holds 256 random bits and
  nothing else; it is ``HttpOnly``, ``SameSite=Lax`` and, on https, ``Secure``.  The store
  keeps the session under the SHA-256 of that id, so the store alone cannot name a cookie.
* A session remembers how the person signed in: the ``sub`` the broker issued to the
  console's own OIDC client, or an API token.  The token is kept encrypted under a key
  derived from the cookie's id (AES-256-GCM): a copy of the store does not reveal it.  The
  principal is looked up again on every request, so a revoked grant or token, or one that
  has expired, ends the session at the next click.
* A session ends after :data:`IDLE_TIMEOUT` seconds without a request (the store's TTL and
  a timestamp both say so) and after :data:`MAX_LIFETIME` seconds in all; signing out
  deletes it.
* Every POST form carries the session's CSRF token (``csrf``).  Before sign-in the token
  sign-in form carries an HMAC of a random pre-session cookie (``digione_admin_pre``), which
  also binds an OIDC sign-in's ``state`` to the browser that started it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
import time
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.derive import derive_key
from broker.login.cookies import Cookies
from broker.store import Store, StoreError

SESSION = "digione_admin"
PRE_SESSION = "digione_admin_pre"
#: Seconds without a request after which a console session ends (``admin_console.idle_timeout``).
IDLE_TIMEOUT = 15 * 60
#: Seconds after sign-in after which it ends in any case.
MAX_LIFETIME = 8 * 3600
_PREFIX = "admin-console:session:"

#: The clock (seconds); tests move it forward.
clock = time.time


def cookie_names(secure: bool) -> tuple[str, str]:
    cookies = Cookies(secure=secure)
    return cookies.name(SESSION), cookies.name(PRE_SESSION)


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None = None) -> str:
    """``Set-Cookie`` value: HttpOnly, SameSite=Lax; on https Secure with Path=/ (``__Host-``)."""
    parts = [f"{name}={value}", "Path=/" if secure else "Path=/admin", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclasses.dataclass
class ConsoleSession:
    """One signed-in browser."""

    sid: str                     # the cookie's value (never stored)
    method: str                  # "oidc" or "token"
    subject: str | None
    token: str | None
    csrf: str
    created: float
    seen: float
    name: str = ""
    lang: str | None = None

    def check_csrf(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(self.csrf, str(value))


class Sessions:
    """Console sessions in ``store`` (see the module documentation)."""

    def __init__(self, store: Store, *, idle_timeout: int = IDLE_TIMEOUT, max_lifetime: int = MAX_LIFETIME):
        self.store = store
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime

    def create(self, *, method: str, subject: str | None = None, token: str | None = None,
               name: str = "") -> ConsoleSession:
        now = clock()
        session = ConsoleSession(sid=secrets.token_urlsafe(32), method=method, subject=subject, token=token,
                                 csrf=secrets.token_urlsafe(24), created=now, seen=now, name=name)
        self._save(session)
        return session

    def load(self, sid: str | None) -> ConsoleSession | None:
        """The live session named by the cookie value ``sid``, its idle clock restarted; else ``None``."""
        if not sid or len(sid) > 128:
            return None
        try:
            record = self.store.get(_PREFIX + _digest(sid))
        except StoreError:
            return None
        if not isinstance(record, dict):
            return None
        now = clock()
        try:
            created, seen = float(record["created"]), float(record["seen"])
        except (KeyError, TypeError, ValueError):
            return None
        if now - seen > self.idle_timeout or now - created > self.max_lifetime:
            self.end(sid)
            return None
        token = _open(sid, record.get("token")) if record.get("token") else None
        session = ConsoleSession(sid=sid, method=str(record.get("method")), subject=record.get("subject"),
                                 token=token, csrf=str(record.get("csrf")), created=created, seen=now,
                                 name=str(record.get("name") or ""), lang=record.get("lang"))
        self._save(session)
        return session

    def end(self, sid: str | None) -> None:
        if sid:
            try:
                self.store.delete(_PREFIX + _digest(sid))
            except StoreError:
                pass

    def _save(self, session: ConsoleSession) -> None:
        record: dict[str, Any] = {"method": session.method, "subject": session.subject, "csrf": session.csrf,
                                  "created": session.created, "seen": session.seen, "name": session.name,
                                  "lang": session.lang}
        if session.token:
            record["token"] = _seal(session.sid, session.token)
        ttl = max(1, int(min(self.idle_timeout, self.max_lifetime - (session.seen - session.created))) + 1)
        self.store.put(_PREFIX + _digest(session.sid), record, ttl)


def _cipher(sid: str) -> AESGCM:
    return AESGCM(derive_key(sid.encode(), b"admin-console-session"))


def _seal(sid: str, value: str) -> str:
    nonce = secrets.token_bytes(12)
    return base64.urlsafe_b64encode(nonce + _cipher(sid).encrypt(nonce, value.encode(), None)).decode()


def _open(sid: str, sealed: Any) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(str(sealed))
        return _cipher(sid).decrypt(raw[:12], raw[12:], None).decode()
    except (ValueError, InvalidTag):
        return None


def pre_session_csrf(key: bytes, pre_cookie: str | None) -> str:
    """The CSRF token of forms shown before sign-in: an HMAC of the pre-session cookie."""
    if not pre_cookie:
        return ""
    return hmac.new(key, b"csrf:" + pre_cookie.encode(), hashlib.sha256).hexdigest()


def check_pre_session_csrf(key: bytes, pre_cookie: str | None, value: str | None) -> bool:
    expected = pre_session_csrf(key, pre_cookie)
    return bool(expected) and bool(value) and hmac.compare_digest(expected, str(value))


def binding(key: bytes, pre_cookie: str) -> str:
    """What an OIDC sign-in's state record keeps to recognise the browser that started it."""
    return hmac.new(key, b"bind:" + pre_cookie.encode(), hashlib.sha256).hexdigest()
