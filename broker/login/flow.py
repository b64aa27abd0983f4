"""The login flow: everything one login knows, in one typed, immutable object.

A login crosses several HTTP requests (the service's request, the city page, the
city IdP, its answer) that may land on different instances.  :class:`LoginFlow`
carries all of it from the service's request to the code or assertion, and
nothing else does: no context decorations, no per-module state keys.  It is
sealed into one cookie (:mod:`broker.login.seal`), so any instance can continue
the login another began.

Three parts, each replaced whole, never edited in place (the dataclasses are
frozen; :meth:`LoginFlow.to_idp` and friends return a new flow):

* :class:`ServiceRequest` — what the service asked for: OIDC
  (:class:`~broker.tokens.authorize.AuthorizationRequest`) or SAML
  (:class:`SamlRequest`), plus the protocol-neutral facts the login needs
  (``prompt``, ``max_age``, hints, language).  Fixed for the life of the flow.
* :class:`Upstream` — the one IdP the flow is waiting for and that IdP's
  one-time values (SAML request id and RelayState; OIDC state, nonce and PKCE
  verifier).  Choosing another IdP replaces it atomically: the old IdP's answer
  then matches nothing and is refused.
* times: when the flow began and when the upstream request was sent.

This module is pure: no Flask, SATOSA, Redis or pysaml2.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from collections.abc import Mapping
from typing import Any, Literal

from broker.tokens.authorize import AuthorizationRequest

Protocol = Literal["oidc", "saml"]


class FlowMismatch(ValueError):
    """An answer does not belong to the flow (another IdP, or no upstream request pending)."""


@dataclasses.dataclass(frozen=True)
class SamlRequest:
    """A SAML service provider's ``<AuthnRequest>``, as far as the answer needs it (Core §3.4.1)."""

    sp: str                             # the SP's entity id (its Issuer)
    request_id: str                     # answered in InResponseTo
    acs_url: str                        # where the Response goes (from metadata, never from the request alone)
    binding: str                        # the ACS binding
    relay_state: str | None = None
    force_authn: bool = False
    is_passive: bool = False
    subject: str | None = None          # a requested <Subject> NameID: only that user may be answered
    authn_context: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _compact(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamlRequest:
        return cls(**_fields(cls, data))


@dataclasses.dataclass(frozen=True)
class ServiceRequest:
    """What a service asked for, as its frontend validated it.

    ``frontend`` names the frontend module that answers; ``requester`` is the
    OIDC ``client_id`` or the SAML SP entity id.  Exactly one of ``oidc`` and
    ``saml`` is set.
    """

    protocol: Protocol
    frontend: str
    requester: str
    requester_name: str = ""
    prompt: tuple[str, ...] = ()        # "none" (OIDC prompt=none, SAML IsPassive), "login" (ForceAuthn)
    max_age: int | None = None
    login_hint: str | None = None
    idp_hint: str | None = None
    ui_locales: str | None = None
    oidc: AuthorizationRequest | None = None
    saml: SamlRequest | None = None

    def __post_init__(self) -> None:
        if (self.oidc is None) == (self.saml is None) or (self.protocol == "oidc") != (self.oidc is not None):
            raise ValueError("a service request carries exactly the request of its protocol")

    @property
    def passive(self) -> bool:
        """The service asked not to interact with the person (OIDC Core §3.1.2.1, SAML Core §3.4.1)."""
        return "none" in self.prompt

    @property
    def force_login(self) -> bool:
        """The person must authenticate again, whatever session exists."""
        return "login" in self.prompt

    @property
    def reauthenticate_upstream(self) -> bool:
        """Whether the city's IdP must authenticate again rather than answer from its own session.

        ``prompt=login`` (ForceAuthn), and any ``max_age``: the broker reuses its own
        session only if it is young enough, but an IdP's session age is unknown, and an
        IdP answering from its session reports its old authentication time, which the
        answer would then fail as older than ``max_age`` (OIDC Core §3.1.2.1).
        """
        return self.force_login or self.max_age is not None

    def to_dict(self) -> dict[str, Any]:
        data = _compact(self, skip=("oidc", "saml"))
        if self.oidc is not None:
            data["oidc"] = self.oidc.to_state()
        if self.saml is not None:
            data["saml"] = self.saml.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceRequest:
        values = dict(data)
        if "oidc" in values:
            values["oidc"] = AuthorizationRequest.from_state(values["oidc"])
        if "saml" in values:
            values["saml"] = SamlRequest.from_dict(values["saml"])
        return cls(**_fields(cls, values))


@dataclasses.dataclass(frozen=True)
class Upstream:
    """The IdP the flow waits for, and the one-time values its answer must carry.

    ``idp`` is the registry key ``<tenant>/<idp>``; ``backend`` the backend module
    that talks to it.  The backend fills in its values when it sends the request
    (:meth:`LoginFlow.upstream_sent`); until then they are ``None``.
    """

    idp: str
    backend: str
    started: int
    request_id: str | None = None       # SAML: the AuthnRequest ID (InResponseTo)
    relay_state: str | None = None      # SAML: RelayState
    state: str | None = None            # OIDC: state (RFC 6749 §10.12)
    nonce: str | None = None            # OIDC: nonce (OIDC Core §3.1.2.1)
    verifier: str | None = None         # OIDC: PKCE code_verifier (RFC 7636)

    def to_dict(self) -> dict[str, Any]:
        return _compact(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Upstream:
        return cls(**_fields(cls, data))


@dataclasses.dataclass(frozen=True)
class LoginFlow:
    """One login, from the service's request to the code or assertion."""

    id: str
    created: int
    service: ServiceRequest
    lang: str | None = None
    upstream: Upstream | None = None

    @classmethod
    def begin(cls, service: ServiceRequest, *, now: float | None = None) -> LoginFlow:
        """A new flow for ``service`` (a random id: also the flow's CSRF token on broker pages)."""
        lang = service.ui_locales.split()[0] if service.ui_locales else None
        return cls(id=secrets.token_urlsafe(18), created=int(time.time() if now is None else now),
                   service=service, lang=lang)

    # -- transitions (each returns a new flow) -----------------------------------------

    def to_idp(self, idp: str, backend: str, *, now: float | None = None) -> LoginFlow:
        """Wait for ``idp`` now; whatever upstream request was pending is forgotten."""
        started = int(time.time() if now is None else now)
        return dataclasses.replace(self, upstream=Upstream(idp=idp, backend=backend, started=started))

    def upstream_sent(self, *, request_id: str | None = None, relay_state: str | None = None,
                      state: str | None = None, nonce: str | None = None, verifier: str | None = None) -> LoginFlow:
        """Record the one-time values of the request just sent to the pending IdP."""
        if self.upstream is None:
            raise FlowMismatch("no IdP chosen for this flow")
        upstream = dataclasses.replace(self.upstream, request_id=request_id, relay_state=relay_state, state=state,
                                       nonce=nonce, verifier=verifier)
        return dataclasses.replace(self, upstream=upstream)

    def upstream_done(self) -> LoginFlow:
        """The pending IdP answered: nothing more is expected from upstream."""
        return dataclasses.replace(self, upstream=None)

    def in_language(self, lang: str | None) -> LoginFlow:
        return self if not lang or lang == self.lang else dataclasses.replace(self, lang=lang)

    # -- checks ---------------------------------------------------------------------------

    def waiting_for(self, backend: str) -> Upstream:
        """The pending upstream request, which ``backend`` must be answering; else :class:`FlowMismatch`."""
        if self.upstream is None:
            raise FlowMismatch("no upstream request is pending in this flow")
        if self.upstream.backend != backend:
            raise FlowMismatch(f"the flow waits for another IdP than the one answering ({backend})")
        return self.upstream

    # -- serialization -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "created": self.created, "service": self.service.to_dict()}
        if self.lang:
            data["lang"] = self.lang
        if self.upstream is not None:
            data["upstream"] = self.upstream.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoginFlow:
        """Rebuild a flow from :meth:`to_dict`; :class:`ValueError` if the data is not a flow."""
        try:
            return cls(id=str(data["id"]), created=int(data["created"]),
                       service=ServiceRequest.from_dict(data["service"]), lang=data.get("lang"),
                       upstream=Upstream.from_dict(data["upstream"]) if data.get("upstream") else None)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a login flow: {exc.__class__.__name__}") from None


def _compact(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Fields without their defaults (the cookie stays small), tuples as lists (JSON)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        if field.name in skip:
            continue
        value = getattr(obj, field.name)
        if value is None or value == () or value is False:
            continue
        out[field.name] = list(value) if isinstance(value, tuple) else value
    return out


def _fields(cls: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of dataclass ``cls`` in ``data`` (lists back to tuples)."""
    names = _field_names(cls)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}


@functools.cache
def _field_names(cls: Any) -> frozenset[str]:
    """The field names of dataclass ``cls``, read once per class (every flow cookie opened needs them)."""
    return frozenset(f.name for f in dataclasses.fields(cls))
