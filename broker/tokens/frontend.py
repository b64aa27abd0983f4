"""The SATOSA frontend: :class:`broker.tokens.provider.Provider` behind SATOSA's FrontendModule API.

Configuration (assembled in-process, so values are Python objects)::

    {"name": "OIDC", "module": "broker.tokens.frontend.OIDCFrontend",
     "config": {"provider": build_provider(issuer=BASE, ...),   # required; issuer == BASE
                "end_session": callable(context) -> None}}      # optional: ends the SSO session

Endpoints sit at the issuer root: ``/.well-known/openid-configuration``, ``/jwks``,
``/authorize``, ``/token``, ``/userinfo``, ``/introspect``, ``/revoke``, ``/end_session``.

The login path:

1. ``/authorize``: the provider validates the request.  Refusals are answered at once
   (shown, or redirected to the validated ``redirect_uri``).  Otherwise the request is kept
   in ``context.state[name]`` (JSON), the context is decorated with ``digione.authn``
   (``prompt``, ``max_age``, ``login_hint``, ``idp_hint``, ``acr_values``, ``ui_locales``,
   ``client_id``, ``id_token_hint_sub``) and with SATOSA's ``force_authn`` ("true" for
   ``prompt=login`` or any ``max_age``), and SATOSA's callback takes over.
2. :meth:`OIDCFrontend.handle_authn_response`: ``internal_response.attributes`` is the
   canonical identity; ``auth_info.timestamp`` is ``auth_time`` and ``auth_class_ref`` the
   ``acr``; the code is issued (``sid`` from the ``digione.sso_session`` decoration, ``amr``
   from an optional ``digione.amr`` list decoration) and the browser redirected with
   ``code``, ``state`` and ``iss``.  An authentication older than ``max_age`` is answered
   ``login_required``.
3. :meth:`OIDCFrontend.handle_backend_error`: ``login_required``, ``access_denied``,
   ``consent_required``, ``interaction_required`` and ``account_selection_required``
   (the exception's message) are redirected as such, anything else as ``server_error``.

Token, userinfo, introspection and revocation requests never touch ``context.state``.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import parse_qs

from satosa.context import Context
from satosa.frontends.base import FrontendModule
from satosa.internal import InternalData
from satosa.response import Response as SatosaResponse

from broker.errors import ExpiredFlow
from broker.tokens.authorize import AuthorizationRequest
from broker.tokens.discovery import PATHS
from broker.tokens.http import Request, Response
from broker.tokens.provider import Provider

logger = logging.getLogger("broker.tokens.frontend")

#: Errors a backend may report by name; everything else becomes ``server_error``.
PASSED_ERRORS = frozenset({"login_required", "access_denied", "consent_required", "interaction_required",
                           "account_selection_required", "temporarily_unavailable"})
AUTHN_DECORATION = "digione.authn"
SSO_DECORATION = "digione.sso_session"
LOGOUT_DECORATION = "digione.logout"


def _lists(params: Any) -> dict[str, list[str]]:
    """SATOSA's parsed parameters (``{name: value}``) as ``{name: [values]}``; non-strings dropped."""
    if not isinstance(params, dict):
        return {}
    out: dict[str, list[str]] = {}
    for name, value in params.items():
        if isinstance(value, str):
            out[name] = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[name] = list(value)
    return out


def to_request(context: Context, path: str) -> Request:
    """The provider's view of a SATOSA request.

    SATOSA's parsed parameters keep one value per name, which would hide a repeated
    parameter (RFC 6749 §3.1: at most once).  So the raw query (``REQUEST_URI``, or a
    ``digione.query`` decoration) and the raw form body (the ``digione.body`` decoration the
    broker's context builder sets) are parsed again when available.
    """
    method = (context.request_method or "GET").upper()
    raw_headers = context.http_headers or {}
    headers = {k[5:].replace("_", "-").lower(): v for k, v in raw_headers.items()
               if k.startswith("HTTP_") and isinstance(v, str)}
    if isinstance(raw_headers.get("CONTENT_TYPE"), str):
        headers["content-type"] = raw_headers["CONTENT_TYPE"]
    raw_query = context.get_decoration("digione.query")
    if raw_query is None and isinstance(context.request_uri, str):
        raw_query = context.request_uri.partition("?")[2]
    query = parse_qs(raw_query, keep_blank_values=True) if isinstance(raw_query, str) else _lists(context.qs_params)
    form: dict[str, list[str]] = {}
    if method == "POST":
        body = context.get_decoration("digione.body")
        if isinstance(body, bytes) and "application/x-www-form-urlencoded" in headers.get("content-type", ""):
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        else:
            form = _lists(context.request)
    return Request(method, path, headers, query, form)


def to_satosa(response: Response) -> SatosaResponse:
    status = f"{response.status} {HTTPStatus(response.status).phrase}"
    return SatosaResponse(response.body.decode("utf-8"), status=status, headers=list(response.headers),
                          content=response.content_type)


class OIDCFrontend(FrontendModule):
    """The broker's OpenID Connect provider as a SATOSA frontend."""

    def __init__(self, auth_req_callback_func: Callable, internal_attributes: dict, config: dict, base_url: str,
                 name: str):
        super().__init__(auth_req_callback_func, internal_attributes, base_url, name)
        provider = config.get("provider")
        if not isinstance(provider, Provider):
            raise ValueError(f"{name}: config.provider must be a broker.tokens.provider.Provider")
        if provider.issuer != base_url.rstrip("/"):
            raise ValueError(f"{name}: the provider's issuer {provider.issuer!r} must equal BASE {base_url!r}")
        self.provider = provider
        self.end_session_callback: Callable[[Context], None] | None = config.get("end_session")

    # ------------------------------------------------------------------ endpoints

    def register_endpoints(self, backend_names):
        prefix = self.provider.base_path.strip("/")
        prefix = prefix + "/" if prefix else ""
        handlers = {"authorize": self.authorization_endpoint, "end_session": self.end_session_endpoint}
        endpoints = []
        for name, path in PATHS.items():
            regex = "^" + (prefix + path.lstrip("/")).replace(".", r"\.") + "$"
            endpoints.append((regex, handlers.get(name, self._protocol_endpoint(name))))
        return endpoints

    def _protocol_endpoint(self, name: str):
        path = self.provider.base_path + PATHS[name]

        def endpoint(context: Context) -> SatosaResponse:
            return to_satosa(self.provider.handle(to_request(context, path)))

        endpoint.__name__ = f"{name}_endpoint"
        return endpoint

    def authorization_endpoint(self, context: Context) -> SatosaResponse:
        """Validate, remember the request in SATOSA's state, and hand over to the login path."""
        result = self.provider.authorize(to_request(context, self.provider.base_path + PATHS["authorize"]))
        if isinstance(result, Response):
            return to_satosa(result)
        context.state[self.name] = result.to_state()
        context.decorate(AUTHN_DECORATION, result.decoration())
        if result.force_authn:
            context.decorate(Context.KEY_FORCE_AUTHN, "true")
        client = self.provider.clients.client(result.client_id)
        display = getattr(client, "name", "") or result.client_id
        internal = InternalData(requester=result.client_id, requester_name=[{"text": display, "lang": "en"}])
        return self.auth_req_callback_func(context, internal)

    def end_session_endpoint(self, context: Context) -> SatosaResponse:
        """End the SSO session (callback), then redirect to a registered URI or show a page."""
        response, info = self.provider.end_session(to_request(context, self.provider.base_path + PATHS["end_session"]))
        context.decorate(LOGOUT_DECORATION, info)
        if self.end_session_callback is not None:
            self.end_session_callback(context)
        if context.state is not None:
            context.state.pop(self.name, None)
        return to_satosa(response)

    # ------------------------------------------------------------------ back from the login path

    def _authz(self, state: Any) -> AuthorizationRequest | None:
        data = state.get(self.name) if state is not None else None
        return AuthorizationRequest.from_state(data) if isinstance(data, dict) else None

    def handle_authn_response(self, context: Context, internal_resp: InternalData) -> SatosaResponse:
        authz = self._authz(context.state)
        if authz is None:
            return to_satosa(self.provider.shown_error(ExpiredFlow("no authorization request in the state")))
        context.state.pop(self.name, None)
        auth_info = internal_resp.auth_info
        amr = context.get_decoration("digione.amr")
        response = self.provider.authorization_response(
            authz, dict(internal_resp.attributes or {}), auth_time=getattr(auth_info, "timestamp", None),
            acr=getattr(auth_info, "auth_class_ref", None), amr=amr if isinstance(amr, list) else None,
            sid=context.get_decoration(SSO_DECORATION))
        return to_satosa(response)

    def handle_backend_error(self, exception) -> SatosaResponse:
        authz = self._authz(getattr(exception, "state", None))
        if authz is None:
            return to_satosa(self.provider.shown_error(ExpiredFlow("no authorization request in the state")))
        message = str(exception.args[0]) if getattr(exception, "args", None) else ""
        error = message.split(":", 1)[0].strip()
        if error not in PASSED_ERRORS:
            logger.warning("backend error mapped to server_error: %s", exception.__class__.__name__)
            return to_satosa(self.provider.authorization_error(authz, "server_error",
                                                               "the sign-in could not be completed"))
        # The description is fixed: a backend message may carry upstream text not meant for the client.
        return to_satosa(self.provider.authorization_error(authz, error, error.replace("_", " ")))
