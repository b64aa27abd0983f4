"""The broker session: who signed in in this browser, how to sign them out upstream, and who was told.

Plain data, no store and no web framework.  A :class:`BrokerSession` is created when a
login completes at the city's IdP and lives until logout, its idle timeout or its
maximum lifetime (per tenant).  It holds:

* the person: the broker's user id and the canonical identity (for single sign-on),
  the IdP and when and how they authenticated;
* :class:`UpstreamSession`: what the city's IdP needs to sign them out — the SAML
  NameID and SessionIndex it asserted, or the OIDC ID token and ``sid`` it issued;
* a secret from which every service's own identifiers for this session are derived
  (:meth:`BrokerSession.sid_for`): a different OIDC ``sid`` per client and a different
  SAML ``SessionIndex`` per SP, so no value links a pupil's pairwise subjects across
  services.

The services that received something in the session are :class:`ServiceEntry` records
kept next to it in the store (:mod:`broker.sessions.store`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any, Literal

from broker.store import slots


@dataclasses.dataclass(frozen=True)
class UpstreamSession:
    """What the city's IdP needs to end its own session for this person."""

    kind: Literal["saml", "oidc"]
    idp: str                                # registry key <tenant>/<idp>
    name_id: str | None = None              # SAML: the NameID the IdP asserted (SAML Core §3.7.1)
    name_id_format: str | None = None
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None
    session_index: str | None = None        # SAML: the AuthnStatement's SessionIndex
    id_token: str | None = None             # OIDC: the IdP's ID token, as id_token_hint at its end_session
    sid: str | None = None                  # OIDC: the IdP's sid claim (Front-Channel Logout §3)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in _UPSTREAM_FIELDS if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpstreamSession:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class ServiceEntry:
    """One service that received something in the session, and the identifiers it was given."""

    requester: str                          # OIDC client_id or SAML SP entity id
    protocol: Literal["oidc", "saml"]
    subject: str                            # the pairwise sub (OIDC) or NameID (SAML) it received
    sid: str                                # its sid (OIDC) or SessionIndex (SAML) for this session
    at: int

    def to_dict(self) -> dict[str, Any]:
        return {"requester": self.requester, "protocol": self.protocol, "subject": self.subject, "sid": self.sid,
                "at": self.at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceEntry:
        return cls(requester=data["requester"], protocol=data["protocol"], subject=data["subject"], sid=data["sid"],
                   at=int(data["at"]))


@dataclasses.dataclass(frozen=True)
class BrokerSession:
    """One browser's broker session.  ``id`` is the SHA-256 of the cookie token, never sent anywhere."""

    id: str
    secret: str
    user_id: str
    identity: Mapping[str, Any]
    idp: str
    auth_info: Mapping[str, Any]
    auth_time: int
    created: int
    expires: int                            # the maximum lifetime ends here, whatever the activity
    idle_timeout: int                       # seconds of inactivity that end it
    last_seen: int
    upstream: UpstreamSession | None = None

    @property
    def tenant(self) -> str:
        return self.idp.split("/", 1)[0]

    def alive(self, now: float) -> bool:
        return now < self.expires and now - self.last_seen < self.idle_timeout

    def remaining(self, now: float) -> int:
        """Seconds the session may still live if nothing happens (its store TTL)."""
        return max(1, int(min(self.expires - now, self.last_seen + self.idle_timeout - now)))

    def sid_for(self, requester: str, protocol: str) -> str:
        """This session's identifier for one service: OIDC ``sid`` or SAML ``SessionIndex``.

        HMAC of the service under the session's secret: stable for that service for the
        session's life, different for every other service and useless to link them.
        """
        mac = hmac.digest(self.secret.encode(), f"{protocol}|{requester}".encode(), "sha256")
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def to_dict(self) -> dict[str, Any]:
        # Written on every sign-in: by hand, without asdict's deep copy of the identity.
        return {"id": self.id, "secret": self.secret, "user_id": self.user_id, "identity": self.identity,
                "idp": self.idp, "auth_info": self.auth_info, "auth_time": self.auth_time, "created": self.created,
                "expires": self.expires, "idle_timeout": self.idle_timeout, "last_seen": self.last_seen,
                "upstream": self.upstream.to_dict() if self.upstream else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BrokerSession:
        upstream = data.get("upstream")
        return cls(id=data["id"], secret=data["secret"], user_id=data["user_id"], identity=data["identity"],
                   idp=data["idp"], auth_info=data.get("auth_info") or {}, auth_time=int(data["auth_time"]),
                   created=int(data["created"]), expires=int(data["expires"]),
                   idle_timeout=int(data["idle_timeout"]), last_seen=int(data["last_seen"]),
                   upstream=UpstreamSession.from_dict(upstream) if upstream else None)


_UPSTREAM_FIELDS = dataclasses.fields(UpstreamSession)


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def session_id_of(token: str) -> str:
    """The store id of a cookie token: its SHA-256, so a store dump yields no usable cookie.

    The token's login tag (``<tag>~<secret>``, :mod:`broker.store.slots`) stays in front, so
    that every key of the session shares its Redis Cluster slot.
    """
    digest = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()[:24]).decode()
    return slots.with_tag(slots.tag_of(token), digest)
