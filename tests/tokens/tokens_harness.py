"""A real HTTP server around the provider, whose "login" completes at once.

The upstream login is not the provider's concern, so the harness stands in for it: an
authorization request that the provider accepts is answered with the code for a fixed
canonical identity, as if the person had just signed in.  Everything else is the real
protocol over real sockets, so the clients in the tests are independent libraries
(Authlib, pyoidc) speaking HTTP.

Two adapters are served:

* :class:`ProviderApp` drives :class:`broker.tokens.provider.Provider` directly;
* :class:`SatosaApp` drives :class:`broker.frontends.oidc.OIDCFrontend` the way the broker's
  proxy does (a :class:`~broker.login.context.LoginContext` per request, the registered
  endpoint regexes, the login callback with a typed service request).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from satosa.internal import AuthenticationInformation, InternalData
from werkzeug.serving import make_server

from broker.login.context import LoginContext
from broker.login.flow import LoginFlow, ServiceRequest
from broker.tokens.authorize import AuthorizationRequest
from broker.tokens.http import Request, Response
from broker.tokens.logout import LogoutRequest, confirmation_page, logged_out_response

IDENTITY = {
    "user_id": "1.2.246.562.24.10000000001",
    "given_name": "Maija",
    "family_name": "Meikäläinen",
    "name": "Maija Meikäläinen",
    "email": "maija@koulu.example",
    "roles": ["teacher"],
    "school": "00001",
}


def release(client, identity: dict, scopes: set) -> dict:
    """A small release policy: profile claims for ``profile``, roles for ``roles``."""
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        claims.update(name=identity["name"], given_name=identity["given_name"], family_name=identity["family_name"])
    if "email" in scopes:
        claims["email"] = identity["email"]
    if "roles" in scopes:
        claims["roles"] = identity["roles"]
    return claims


def subject(client, identity: dict) -> str:
    """Pairwise: a different ``sub`` for each client's sector."""
    return hashlib.sha256(f"{client.sector}|{identity['user_id']}".encode()).hexdigest()


class Login:
    """What the stand-in login does: who signs in, when, and whether an SSO session exists."""

    def __init__(self):
        self.identity = dict(IDENTITY)
        self.auth_time: float | None = None  # None: now
        self.sso = True
        self.sid = "sso-session-1"  # the sid every client sees, unless sids names one for it
        self.sids: dict[str, str] = {}
        self.session: str | None = "broker-session-1"  # the broker session's own id (never sent)

    def sid_for(self, client_id: str) -> str:
        return self.sids.get(client_id, self.sid)

    def when(self) -> float:
        return self.auth_time if self.auth_time is not None else time.time()


def _respond(response: Response, start_response) -> list[bytes]:
    from http import HTTPStatus

    start_response(f"{response.status} {HTTPStatus(response.status).phrase}",
                   [*response.headers, ("Content-Length", str(len(response.body)))])
    return [response.body]


#: The CSRF token of the harness's logout confirmation page.
CSRF = "harness-csrf"


class ProviderApp:
    """WSGI app: the provider's endpoints, plus ``/client-jwks/<id>`` for ``jwks_uri`` clients.

    At the logout endpoint it stands in for the broker's sessions: an outright refusal is
    answered as is; a confirmed request (or a confirmation POST carrying :data:`CSRF`) ends
    the stand-in session (``ended``) and gets :func:`logged_out_response` (with the URLs
    ``frontchannel(decision)`` returns); anything else gets the confirmation page.
    """

    def __init__(self, provider, login: Login, client_jwks: dict[str, dict]):
        self.provider = provider
        self.login = login
        self.client_jwks = client_jwks
        self.logouts: list[LogoutRequest] = []  # every decision the provider returned
        self.ended: list[LogoutRequest] = []  # those the stand-in acted on
        self.frontchannel: Callable[[LogoutRequest], list[str]] = lambda decision: []

    def __call__(self, environ, start_response):
        request = Request.from_wsgi(environ)
        if request.path.startswith("/client-jwks/"):
            jwks = self.client_jwks.get(request.path.rsplit("/", 1)[1])
            body = json.dumps(jwks).encode() if jwks else b"{}"
            return _respond(Response(200 if jwks else 404, [("Content-Type", "application/json")], body),
                            start_response)
        name = self.provider.endpoint(request.path)
        if name == "authorize":
            result = self.provider.authorize(request)
            if isinstance(result, AuthorizationRequest):
                if "none" in result.prompt and not self.login.sso:
                    result = self.provider.authorization_error(result, "login_required")
                else:
                    result = self.provider.authorization_response(result, self.login.identity,
                                                                  auth_time=self.login.when(), acr="urn:test:pwd",
                                                                  sid=self.login.sid_for(result.client_id),
                                                                  session=self.login.session)
            return _respond(result, start_response)
        if name == "end_session":
            decision = self.provider.logout_request(request)
            if isinstance(decision, Response):
                return _respond(decision, start_response)
            self.logouts.append(decision)
            if decision.confirmed or (request.method == "POST" and request.form.get("csrf") == [CSRF]):
                self.ended.append(decision)
                response = logged_out_response(decision, request, frontchannel_urls=self.frontchannel(decision))
            else:
                response = confirmation_page(decision, request, action=self.provider.urls["end_session"], csrf=CSRF)
            return _respond(response, start_response)
        return _respond(self.provider.handle(request), start_response)


class SatosaApp:
    """WSGI app: the OIDC frontend (:mod:`broker.frontends.oidc`), driven as the broker's proxy drives it.

    A :class:`~broker.login.context.LoginContext` per request, the registered endpoint regexes,
    and a stand-in for the login: the frontend's callback receives the validated
    :class:`~broker.login.flow.ServiceRequest`, a flow begins, and the flow ends at once through
    the frontend's ``handle_authn_response`` (signed in) or ``deny`` (an error for the client).
    """

    def __init__(self, frontend, login: Login):
        self.frontend = frontend
        self.login = login
        self.endpoints = frontend.register_endpoints(["TestBackend"])
        self.logouts: list[dict] = []
        self.requests: list = []  # the ServiceRequests the login received
        self.decisions: list[LogoutRequest] = []  # what the provider decided at the logout endpoint
        frontend.auth_req_callback_func = self._login
        if getattr(frontend, "logout", None) is None:
            frontend.logout = self  # the stand-in for the broker's logout steps

    def rp_initiated(self, context: LoginContext, decision: LogoutRequest):
        """The stand-in for the broker's logout: as :class:`ProviderApp` does at ``end_session``."""
        from broker.frontends.oidc import to_request, to_satosa

        self.decisions.append(decision)
        request = to_request(context, self.frontend.provider.base_path + "/end_session")
        if decision.confirmed or (request.method == "POST" and request.form.get("csrf") == [CSRF]):
            return to_satosa(logged_out_response(decision, request))
        return to_satosa(confirmation_page(decision, request, action=self.frontend.provider.urls["end_session"],
                                           csrf=CSRF))

    def _login(self, context: LoginContext, request: ServiceRequest):
        """The stand-in for the broker's login steps."""
        self.requests.append(request)
        context.flow = LoginFlow.begin(request)
        if request.passive and not self.login.sso:
            return self.frontend.deny(context, "login_required", "no broker session")
        if self.login.identity.get("fail"):
            return self.frontend.deny(context, self.login.identity["fail"], "refused")
        context.sso_sid = self.login.sid
        stamp = datetime.fromtimestamp(self.login.when(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        response = InternalData(auth_info=AuthenticationInformation(auth_class_ref="urn:test:pwd", timestamp=stamp),
                                attributes=dict(self.login.identity))
        return self.frontend.handle_authn_response(context, response)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "").lstrip("/")
        context = LoginContext.from_environ(environ)
        for regex, endpoint in self.endpoints:
            if re.search(regex, path):
                response = endpoint(context)
                break
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        if path == "end_session":
            self.logouts.append(dict(context.cookies))
        message = response.message
        data = message.encode() if isinstance(message, str) else (message or b"")
        start_response(response.status, [*response.headers, *context.response_cookies,
                                         ("Content-Length", str(len(data)))])
        return [data]


class Server:
    """A threaded werkzeug server on a free port whose WSGI app can be swapped per test."""

    def __init__(self):
        self.app: Callable | None = None
        self._server = make_server("127.0.0.1", 0, self._dispatch, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _dispatch(self, environ, start_response):
        return self.app(environ, start_response)

    def close(self) -> None:
        self._server.shutdown()
