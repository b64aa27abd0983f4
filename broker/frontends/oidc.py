"""The OpenID Connect frontend: :class:`broker.tokens.provider.Provider` as a SATOSA ``FrontendModule``.

Endpoints sit at the issuer root: ``/.well-known/openid-configuration``, ``/jwks``,
``/authorize``, ``/token``, ``/userinfo``, ``/introspect``, ``/revoke``, ``/end_session``.

Its part of a login (:mod:`broker.login.steps`):

1. ``/authorize``: the provider validates the request.  A refusal is answered at
   once (shown, or redirected to the validated ``redirect_uri``).  Otherwise the
   validated :class:`~broker.tokens.authorize.AuthorizationRequest` becomes the
   flow's :class:`~broker.login.flow.ServiceRequest` and the login begins
   (``auth_req_callback_func``).
2. :meth:`OIDCFrontend.handle_authn_response`: the login ends with the canonical
   identity; the provider issues the code (``sid`` is the broker session's) and
   redirects with ``code``, ``state`` and ``iss``.
3. :meth:`OIDCFrontend.deny`: the login ends without one (``login_required``,
   ``access_denied``...), redirected as an error to the validated ``redirect_uri``
   (with a notice, a page for the person whose link is that redirect).

Token, userinfo, introspection and revocation requests never touch the flow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from satosa.frontends.base import FrontendModule
from satosa.internal import InternalData
from satosa.response import Response as SatosaResponse

from broker.errors import ExpiredFlow
from broker.login.access import Notice
from broker.login.context import LoginContext, parse_form_lists
from broker.login.flow import ServiceRequest
from broker.tokens.authorize import AuthorizationRequest
from broker.tokens.discovery import PATHS
from broker.tokens.http import Request, Response
from broker.tokens.provider import Provider

logger = logging.getLogger("broker.frontends.oidc")

#: Errors the login may send back by name; everything else becomes ``server_error``.
PASSED_ERRORS = frozenset({"login_required", "access_denied", "consent_required", "interaction_required",
                           "account_selection_required", "temporarily_unavailable"})


def to_request(context: LoginContext, path: str) -> Request:
    """The provider's view of a request, every parameter with all its values.

    RFC 6749 §3.1 allows each parameter at most once, so the raw query and form
    body are parsed again here rather than taken from SATOSA's one-value dicts.
    """
    method = (context.request_method or "GET").upper()
    raw_headers = context.http_headers or {}
    headers = {k[5:].replace("_", "-").lower(): v for k, v in raw_headers.items()
               if k.startswith("HTTP_") and isinstance(v, str)}
    if isinstance(raw_headers.get("CONTENT_TYPE"), str):
        headers["content-type"] = raw_headers["CONTENT_TYPE"]
    query = parse_form_lists(context.raw_query) if context.raw_query else {}
    form: dict[str, list[str]] = {}
    if method == "POST" and "application/x-www-form-urlencoded" in headers.get("content-type", ""):
        form = parse_form_lists(context.body.decode("utf-8", "replace"))
    remote = raw_headers.get("REMOTE_ADDR")
    return Request(method, path, headers, query, form, remote_addr=remote if isinstance(remote, str) else None)


#: Status lines by code, made once (an ``HTTPStatus(code)`` enum lookup per response is not free).
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def to_satosa(response: Response) -> SatosaResponse:
    status = _STATUS_LINES.get(response.status) or f"{response.status} {HTTPStatus(response.status).phrase}"
    return SatosaResponse(response.body.decode("utf-8"), status=status, headers=list(response.headers),
                          content=response.content_type)


class OIDCFrontend(FrontendModule):
    """The broker's OpenID provider as a SATOSA frontend.

    ``config``: ``provider`` (a :class:`Provider` whose issuer is ``base_url``).
    """

    def __init__(self, auth_req_callback_func: Callable[..., Any], internal_attributes: dict[str, Any],
                 config: Mapping[str, Any], base_url: str, name: str):
        super().__init__(auth_req_callback_func, internal_attributes, base_url, name)
        provider = config.get("provider")
        if not isinstance(provider, Provider):
            raise ValueError(f"{name}: config.provider must be a broker.tokens.provider.Provider")
        if provider.issuer != base_url.rstrip("/"):
            raise ValueError(f"{name}: the provider's issuer {provider.issuer!r} must equal BASE {base_url!r}")
        self.provider = provider
        #: The logout steps (:class:`broker.sessions.logout.Logout`), attached when the broker is assembled.
        self.logout: Any = None

    # -- endpoints -----------------------------------------------------------------------------

    def register_endpoints(self, backend_names: Any) -> list[tuple[str, Callable[[LoginContext], SatosaResponse]]]:
        prefix = self.provider.base_path.strip("/")
        prefix = prefix + "/" if prefix else ""
        handlers = {"authorize": self.authorization_endpoint, "end_session": self.end_session_endpoint}
        endpoints = []
        for name, path in PATHS.items():
            regex = "^" + (prefix + path.lstrip("/")).replace(".", r"\.") + "$"
            endpoints.append((regex, handlers.get(name, self._protocol_endpoint(name))))
        return endpoints

    def _protocol_endpoint(self, name: str) -> Callable[[LoginContext], SatosaResponse]:
        path = self.provider.base_path + PATHS[name]

        def endpoint(context: LoginContext) -> SatosaResponse:
            return to_satosa(self.provider.handle(to_request(context, path)))

        endpoint.__name__ = f"{name}_endpoint"
        return endpoint

    def authorization_endpoint(self, context: LoginContext) -> SatosaResponse:
        """Validate the request; a valid one begins the login."""
        result = self.provider.authorize(to_request(context, self.provider.base_path + PATHS["authorize"]))
        if isinstance(result, Response):
            return to_satosa(result)
        client = self.provider.clients.client(result.client_id)
        request = ServiceRequest(
            protocol="oidc", frontend=self.name, requester=result.client_id,
            requester_name=getattr(client, "name", "") or result.client_id, prompt=result.prompt,
            max_age=result.max_age, login_hint=result.login_hint, idp_hint=result.idp_hint,
            ui_locales=result.ui_locales, oidc=result)
        response: SatosaResponse = self.auth_req_callback_func(context, request)
        return response

    def end_session_endpoint(self, context: LoginContext) -> SatosaResponse:
        """RP-Initiated Logout 1.0: the provider reads the request; the broker's logout does the rest."""
        decision = self.provider.logout_request(to_request(context, self.provider.base_path + PATHS["end_session"]))
        if isinstance(decision, Response):
            return to_satosa(decision)
        response: SatosaResponse = self.logout.rp_initiated(context, decision)
        return response

    # -- the end of a login ----------------------------------------------------------------------

    def _authz(self, context: LoginContext) -> AuthorizationRequest:
        authz = context.service_for(self.name).oidc
        if authz is None:
            raise ExpiredFlow("no OIDC authorization request in the flow")
        return authz

    def handle_authn_response(self, context: LoginContext, internal_resp: InternalData) -> SatosaResponse:
        authz = self._authz(context)
        auth_info = internal_resp.auth_info
        response = self.provider.authorization_response(
            authz, dict(internal_resp.attributes or {}), auth_time=getattr(auth_info, "timestamp", None),
            acr=getattr(auth_info, "auth_class_ref", None), sid=context.sso_sid,
            session=context.session.id if context.session is not None else None)
        return to_satosa(response)

    def deny(self, context: LoginContext, error: str, description: str, *,
             notice: Notice | None = None) -> SatosaResponse:
        authz = self._authz(context)
        if error not in PASSED_ERRORS:
            logger.warning("login error mapped to server_error: %s", error)
            error, description = "server_error", "the sign-in could not be completed"
        # The description is ours, never upstream text (which might not be meant for the client).
        response = self.provider.authorization_error(authz, error, description)
        if notice is not None and response.status in (302, 303) and response.location:
            return notice.link(response.location)   # the person reads the page; its link is the redirect
        return to_satosa(response)

    def session_fits(self, service: ServiceRequest, identity: Mapping[str, Any]) -> bool:
        """OIDC Core §3.1.2.1: an ``id_token_hint`` names the user the client expects."""
        authz = service.oidc
        if authz is None or authz.id_token_hint_sub is None:
            return True
        client = self.provider.clients.client(authz.client_id)
        return client is not None and self.provider.subject(client, dict(identity)) == authz.id_token_hint_sub

    def subject_for(self, service: ServiceRequest, identity: Mapping[str, Any]) -> str:
        """The pairwise ``sub`` this client gets (recorded in the broker session for back-channel logout)."""
        client = self.provider.clients.client(service.requester)
        return self.provider.subject(client, dict(identity)) if client is not None else ""

    def handle_backend_error(self, exception: Any) -> SatosaResponse:
        raise NotImplementedError("the login ends a flow through deny(), with the flow at hand")
