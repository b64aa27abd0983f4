"""Broker-level SSO sessions, tracked per user.

After a login the canonical identity is kept in the store (TTL = SSO lifetime)
under the session id ``sid``; the browser holds a random *token* in an HttpOnly
cookie, and ``sid`` is the token's SHA-256.  The ``sid`` may be shown to
relying parties (the ID token's ``sid`` claim, for logout) because it cannot be
turned back into the cookie.  The next service opened in that browser is signed
in from the session without a trip to the city's IdP.  Each user's live session ids are also kept
in a set (``user:sessions:<user_id>``) so single logout and "sign out
everywhere" can find them in O(1) per session, never by scanning.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

from broker.store import Store

SESSION_KEY = "sso:"
USER_SESSIONS_KEY = "user:sessions:"


class SsoSessions:
    def __init__(self, store: Store, *, ttl: int, clock=time.time):
        self.store = store
        self.ttl = ttl
        self._clock = clock

    @staticmethod
    def sid_of(token: str) -> str:
        """The public session id of a cookie token."""
        return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()[:24]).decode()

    def create(self, *, identity: dict[str, Any], idp: str, auth_info: dict[str, Any],
               requester: str) -> tuple[str, str]:
        """Start a session; return ``(cookie token, sid)``."""
        token = secrets.token_urlsafe(32)
        sid = self.sid_of(token)
        now = int(self._clock())
        user_id = identity["user_id"]
        self.store.put(SESSION_KEY + sid, {
            "identity": identity, "idp": idp, "auth_info": auth_info, "auth_time": now,
            "created": now, "rps": [requester],
        }, self.ttl)
        self.store.set_add(USER_SESSIONS_KEY + user_id, sid, self.ttl)
        return token, sid

    def get(self, token: str | None) -> tuple[str, dict[str, Any]] | tuple[None, None]:
        """The ``(sid, session)`` of a cookie token, or ``(None, None)``."""
        if not token or len(token) > 64:
            return None, None
        sid = self.sid_of(token)
        session = self.store.get(SESSION_KEY + sid)
        return (sid, session) if session else (None, None)

    def touch(self, sid: str, session: dict[str, Any], requester: str) -> None:
        """Record that ``requester`` was signed in from the session (for single logout)."""
        if requester not in session["rps"]:
            session["rps"].append(requester)
            remaining = max(1, session["created"] + self.ttl - int(self._clock()))
            self.store.put(SESSION_KEY + sid, session, remaining)

    def end(self, token: str | None) -> dict[str, Any] | None:
        """End the session of a cookie token; return it."""
        if not token or len(token) > 64:
            return None
        sid = self.sid_of(token)
        session: dict[str, Any] | None = self.store.take(SESSION_KEY + sid)
        if session:
            self.store.set_remove(USER_SESSIONS_KEY + session["identity"]["user_id"], sid)
        return session

    def sessions_of(self, user_id: str) -> set[str]:
        return self.store.set_members(USER_SESSIONS_KEY + user_id)
