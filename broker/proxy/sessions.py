"""Broker-level SSO sessions, tracked per user.

After a login the canonical identity is kept in the store under a random
session id (``sso:<sid>``, TTL = SSO lifetime) that the browser holds in an
HttpOnly cookie; the next service opened in that browser is signed in from it
without a trip to the city's IdP.  Each user's live session ids are also kept
in a set (``user:sessions:<user_id>``) so single logout and "sign out
everywhere" can find them in O(1) per session, never by scanning.
"""

from __future__ import annotations

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

    def create(self, *, identity: dict[str, Any], idp: str, auth_info: dict[str, Any], requester: str) -> str:
        sid = secrets.token_urlsafe(24)
        now = int(self._clock())
        user_id = identity["user_id"]
        self.store.put(SESSION_KEY + sid, {
            "identity": identity, "idp": idp, "auth_info": auth_info, "auth_time": now,
            "created": now, "rps": [requester],
        }, self.ttl)
        self.store.set_add(USER_SESSIONS_KEY + user_id, sid, self.ttl)
        return sid

    def get(self, sid: str | None) -> dict[str, Any] | None:
        if not sid or len(sid) > 64:
            return None
        return self.store.get(SESSION_KEY + sid)

    def touch(self, sid: str, session: dict[str, Any], requester: str) -> None:
        """Record that ``requester`` was signed in from the session (for single logout)."""
        if requester not in session["rps"]:
            session["rps"].append(requester)
            remaining = max(1, session["created"] + self.ttl - int(self._clock()))
            self.store.put(SESSION_KEY + sid, session, remaining)

    def end(self, sid: str | None) -> dict[str, Any] | None:
        session = self.store.take(SESSION_KEY + sid) if sid else None
        if session:
            self.store.set_remove(USER_SESSIONS_KEY + session["identity"]["user_id"], sid)
        return session

    def sessions_of(self, user_id: str) -> set[str]:
        return self.store.set_members(USER_SESSIONS_KEY + user_id)
