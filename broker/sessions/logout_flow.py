"""The logout in progress: who asked (:class:`Initiator`) and what is left (:class:`LogoutFlow`).

A logout crosses browser redirects (the SAML SPs one after another, then the city IdP), so,
like a login, it carries its state sealed in its own cookie; :class:`broker.sessions.logout.Logout`
reads and writes it at every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from broker.errors import BrokerError
from broker.login.seal import SealError
from broker.sessions.model import UpstreamSession

Kind = Literal["oidc", "saml", "broker", "upstream"]


class LogoutRefused(BrokerError):
    code = "invalid_request"
    message_key = "error.invalid_logout_request"


@dataclasses.dataclass(frozen=True)
class Initiator:
    """Who asked for the logout, and how they get their answer."""

    kind: Kind
    requester: str | None = None        # OIDC client_id, SAML SP entity id, or the city IdP's key
    return_to: str | None = None        # OIDC: the registered post_logout_redirect_uri
    state: str | None = None            # OIDC: state to return
    request_id: str | None = None       # SAML: the LogoutRequest to answer (InResponseTo)
    relay_state: str | None = None      # SAML: RelayState to return


@dataclasses.dataclass(frozen=True)
class PendingSp:
    sp: str
    name_id: str
    session_index: str


@dataclasses.dataclass(frozen=True)
class LogoutFlow:
    """A logout in progress: what is still to be done, what was done."""

    id: str
    created: int
    initiator: Initiator
    lang: str | None = None
    saml_sps: tuple[PendingSp, ...] = ()        # SAML SPs still to be visited, in order
    upstream: UpstreamSession | None = None      # the city IdP, still to be told
    waiting: str | None = None                   # the request id of the LogoutRequest we wait an answer to
    waiting_for: str | None = None               # "sp:<entity id>" or "upstream"
    signed_out: tuple[str, ...] = ()             # names of the services signed out (for the page)
    failed: tuple[str, ...] = ()                 # names of the services that did not confirm
    frontchannel: tuple[str, ...] = ()           # iframe URLs (Front-Channel Logout 1.0)
    upstream_left: str | None = None             # the city service that could not be signed out
    upstream_idp: str | None = None              # the city IdP a LogoutRequest went to (for the page)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["upstream"] = self.upstream.to_dict() if self.upstream else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogoutFlow:
        try:
            return cls(id=str(data["id"]), created=int(data["created"]), initiator=Initiator(**data["initiator"]),
                       lang=data.get("lang"), saml_sps=tuple(PendingSp(**s) for s in data.get("saml_sps") or ()),
                       upstream=UpstreamSession.from_dict(data["upstream"]) if data.get("upstream") else None,
                       waiting=data.get("waiting"), waiting_for=data.get("waiting_for"),
                       signed_out=tuple(data.get("signed_out") or ()), failed=tuple(data.get("failed") or ()),
                       frontchannel=tuple(data.get("frontchannel") or ()), upstream_left=data.get("upstream_left"),
                       upstream_idp=data.get("upstream_idp"))
        except (KeyError, TypeError, ValueError) as exc:
            raise SealError(f"not a logout flow: {exc.__class__.__name__}") from None
