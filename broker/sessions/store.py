"""Broker sessions in the shared store: every operation O(1) in the number of sessions.

Layout (every key has a TTL; ``<id>`` is the SHA-256 of the cookie token, behind the token's
login tag ``<t>``: ``{<t>}`` makes all of a session's keys, and its code and grants, one Redis
Cluster slot, :mod:`broker.store.slots`; an id without a tag has keys without one)::

    sso:{<t>}<id>             the session (TTL: what is left of its idle timeout, capped by its
                              maximum lifetime; every sign-in from it extends the idle part)
    sso:{<t>}<id>:svcs        the services that received something in it (a set of requesters)
    sso:{<t>}<id>:svc:<r>     what each of them received: its subject and its sid/SessionIndex
    sso:{<t>}<id>:grants      the OIDC grants issued in it (refresh-token families), revoked at logout
    sso:idx:up:{<h8>}<h>      the city IdP's (idp, SessionIndex, NameID or sid) -> session id, for
                              logouts the city starts where the browser's cookie may not come along
                              (an Entra front-channel iframe); a session with one is
                              tagged ``<h8>``, the hash's first digits, so the index
                              shares its slot

Sessions are read by the login on every sign-in in the browser (single sign-on); the
rest is read only at logout.  :meth:`SessionStore.end` takes the session atomically, so of
two logouts racing (two instances, two tabs) exactly one fans out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from broker.sessions.model import BrokerSession, ServiceEntry, UpstreamSession, new_secret, session_id_of
from broker.store import Store, slots

SESSION_KEY = "sso:"
_INDEX_UPSTREAM = "sso:idx:up:"


@dataclasses.dataclass(frozen=True)
class Limits:
    """How long a session may live: in all, and without being used (seconds)."""

    max_lifetime: int = 8 * 3600
    idle_timeout: int = 3600


@dataclasses.dataclass(frozen=True)
class EndedSession:
    """A session that has just been ended, with everything its logout must reach."""

    session: BrokerSession
    services: tuple[ServiceEntry, ...]
    grants: tuple[str, ...]


def _h(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def session_key(session_id: str, suffix: str = "") -> str:
    """A key of the session ``session_id`` (its login tag as the hash tag)."""
    return slots.key(SESSION_KEY, slots.tag_of(session_id), session_id + suffix)


def _index_key(upstream_hash: str) -> str:
    return slots.key(_INDEX_UPSTREAM, slots.tag_of_hash(upstream_hash), upstream_hash)


class SessionStore:
    def __init__(self, store: Store, *, limits: Limits = Limits(), per_tenant: Mapping[str, Limits] | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.limits = limits
        self.per_tenant = dict(per_tenant or {})
        self._clock = clock

    def limits_for(self, tenant: str) -> Limits:
        return self.per_tenant.get(tenant, self.limits)

    # -- the login's side ---------------------------------------------------------------------

    def create(self, *, identity: Mapping[str, Any], idp: str, auth_info: Mapping[str, Any],
               upstream: UpstreamSession | None = None) -> tuple[str, BrokerSession]:
        """Start a session; return ``(cookie token, session)``."""
        key = _upstream_key(upstream)
        # The login tag: from the upstream index's hash when there is one (the index then shares the slot).
        tag = slots.tag_of_hash(key) if key is not None else slots.new_tag()
        token = slots.with_tag(tag, secrets.token_urlsafe(32))
        now = int(self._clock())
        limits = self.limits_for(idp.split("/", 1)[0])
        session = BrokerSession(
            id=session_id_of(token), secret=new_secret(), user_id=str(identity["user_id"]), identity=dict(identity),
            idp=idp, auth_info=dict(auth_info), auth_time=now, created=now, expires=now + limits.max_lifetime,
            idle_timeout=limits.idle_timeout, last_seen=now, upstream=upstream)
        self.store.put(session_key(session.id), session.to_dict(), session.remaining(now))
        if key is not None:
            self.store.put(_index_key(key), session.id, limits.max_lifetime)
        return token, session

    def get(self, token: str | None) -> BrokerSession | None:
        """The live session of a cookie token, or ``None`` (unknown, expired, idle too long)."""
        if not token or len(token) > 64:
            return None
        return self.by_id(session_id_of(token))

    def by_id(self, session_id: str) -> BrokerSession | None:
        return self._live(self.store.get(session_key(session_id)))

    def _live(self, data: Any) -> BrokerSession | None:
        if not data:
            return None
        session = BrokerSession.from_dict(data)
        return session if session.alive(self._clock()) else None

    def record_service(self, session: BrokerSession, *, requester: str, protocol: Literal["oidc", "saml"],
                       subject: str, sid: str | None = None) -> ServiceEntry:
        """``requester`` received something in ``session``: remember it (for logout) and mark the session used.

        Written without reading (set member, entry): a batch around the release sends it with
        the code in one round trip.  A session created in this same request is not written again.
        """
        now = int(self._clock())
        entry = ServiceEntry(requester=requester, protocol=protocol, subject=subject,
                             sid=sid or session.sid_for(requester, protocol), at=now)
        ttl = max(1, session.expires - now)
        if session.last_seen != now:
            used = dataclasses.replace(session, last_seen=now)
            self.store.put(session_key(session.id), used.to_dict(), used.remaining(now))
        self.store.set_add(session_key(session.id, ":svcs"), requester, ttl)
        self.store.put(session_key(session.id, f":svc:{requester}"), entry.to_dict(), ttl)
        return entry

    def add_grant(self, session_id: str, client_id: str, gid: str) -> bool:
        """An OIDC grant was just written in the session: record it; ``False`` if the session has ended.

        The grant is recorded *before* the session is checked.  A logout takes the session
        first and reads the grants after, so whichever order the two run in, the grant is
        either seen by the logout (and revoked) or refused here (and deleted by the caller).
        """
        self.store.set_add(session_key(session_id, ":grants"), gid, self.limits.max_lifetime)
        # In the grant's batch (the GrantHook contract): the record and this read, one round trip.
        return self._live(self.store.get_after_writes(session_key(session_id))) is not None

    # -- the logout's side ---------------------------------------------------------------------------

    def service(self, session_id: str, requester: str) -> ServiceEntry | None:
        """What ``requester`` received in the session, if anything."""
        data = self.store.get(session_key(session_id, f":svc:{requester}"))
        return ServiceEntry.from_dict(data) if data else None

    def find_by_upstream(self, idp: str, value: str) -> str | None:
        """The session the city IdP ``idp`` knows by ``value`` (its SessionIndex, NameID or sid)."""
        found = self.store.get(_index_key(_h(idp, value)))
        return found if isinstance(found, str) else None

    def services(self, session_id: str) -> tuple[ServiceEntry, ...]:
        requesters = sorted(self.store.set_members(session_key(session_id, ":svcs")))
        entries = self.store.get_many(*(session_key(session_id, f":svc:{r}") for r in requesters))
        return tuple(ServiceEntry.from_dict(e) for e in entries if e)

    def end(self, session_id: str) -> EndedSession | None:
        """End a session: taken atomically (so one logout fans out), with its services and grants.

        Everything under the session is deleted in one round trip; the caller revokes the
        grants and tells the services.
        """
        data = self.store.take(session_key(session_id))
        if not data:
            return None
        session = BrokerSession.from_dict(data)
        services = self.services(session_id)
        grants = tuple(sorted(self.store.set_members(session_key(session_id, ":grants"))))
        keys = [session_key(session_id, ":svcs"), session_key(session_id, ":grants"),
                *(session_key(session_id, f":svc:{s.requester}") for s in services)]
        key = _upstream_key(session.upstream)
        if key is not None and slots.tag_of_hash(key) == slots.tag_of(session_id):   # one slot: one round trip
            keys.append(_index_key(key))
        elif key is not None:   # a session from before login tags: its index lives in another slot
            self.store.delete(_index_key(key))
        self.store.delete(*keys)
        return EndedSession(session=session, services=services, grants=grants)


def _upstream_key(upstream: UpstreamSession | None) -> str | None:
    """The one index key of the city's session: its SessionIndex (else NameID) for SAML, its sid for OIDC."""
    if upstream is None:
        return None
    value = upstream.sid if upstream.kind == "oidc" else (upstream.session_index or upstream.name_id)
    return _h(upstream.idp, value) if value else None
