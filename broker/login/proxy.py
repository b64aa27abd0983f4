"""The broker's WSGI application for the login path: request in, response out, nothing lost on the way.

For every request :class:`Proxy` builds a :class:`LoginContext`, finds the
endpoint (a plugin's, or one of the broker's own pages), runs it, and turns
every refusal into a localized page or JSON carrying the request's correlation
id (also on the refusal's log line).  The flow cookie is opened only when an
endpoint asks for the flow, and written back only when the flow changed: token,
JWKS and metadata requests never touch it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from satosa.exception import SATOSAAuthenticationError, SATOSAError
from satosa.response import Response

from broker import errors
from broker.errors import BrokerError, ExpiredFlow, IdpError, InvalidResponse, NotFound
from broker.i18n import LANGUAGES
from broker.login.context import LoginContext
from broker.login.cookies import Cookies
from broker.login.flow import FlowMismatch, LoginFlow
from broker.login.router import Router
from broker.login.seal import FlowSeal, SealError, SealExpired
from broker.login.steps import Login
from broker.store import StoreError

logger = logging.getLogger("broker.login")

Route = Callable[[LoginContext], Response]


class Proxy:
    """The login path as one WSGI application (the registry's current version of it)."""

    def __init__(self, *, login: Login, router: Router, seal: FlowSeal, cookies: Cookies, base_url: str,
                 logout: Any = None, limiter: Any = None, login_starts: frozenset[str] = frozenset()):
        self.login = login
        #: Counts the requests to ``login_starts`` (paths) per source (:class:`broker.ratelimit.RateLimiter`).
        self.limiter = limiter
        self.login_starts = login_starts if limiter is not None else frozenset()
        #: The logout steps of this registry version (:class:`broker.sessions.logout.Logout`).
        self.logout = logout
        self.router = router
        self.seal = seal
        self.cookies = cookies
        self.base_url = base_url

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        context = LoginContext.from_environ(environ, cookie_names=self.cookies.names)
        if not context.correlation_id:
            context.correlation_id = errors.new_correlation_id()
        response = self.run(context)
        body = response(environ, start_response)
        # SATOSA responses carry str; WSGI wants bytes.
        return [part.encode("utf-8") if isinstance(part, str) else part for part in body]

    def run(self, context: LoginContext) -> Response:
        context.open_flow_with(lambda: self._open_flow(context))
        context.lang_cookie = self.cookies.lang
        chosen = (context.qs_params or {}).get("lang")
        if chosen in LANGUAGES and context.cookies.get(self.cookies.lang) != chosen:
            # The language a person picks on any broker page stays for the rest of the visit.
            context.set_cookie(self.cookies.header(self.cookies.lang, str(chosen)))
        try:
            hit = self.router.find(context.path or "")
            if hit is None:
                raise NotFound(f"no endpoint at /{context.path}")
            (kind, name), handler = hit
            if context.path in self.login_starts:   # before parsing: a forged request costs a signature check
                self.limiter.login_start(context.http_headers or {})
            if kind == "backend":
                context.target_backend = name
            elif kind == "frontend":
                context.target_frontend = name
            elif kind == "micro_service":
                context.target_micro_service = name
            try:
                response = handler(context)
            except IdpError as exc:
                if exc.upstream_error is None or context.flow_if_loaded is None:
                    raise
                # The person cancelled (or declined) at their city's IdP: back to the service, not a dead end.
                errors.log(exc, context.correlation_id, path="/" + (context.path or ""))
                response = self.login.deny(context, exc.upstream_error, "the person did not sign in")
            self._save_flow(response, context)
        except BrokerError as exc:
            response = self.refuse(context, exc)
        except FlowMismatch as exc:
            response = self.refuse(context, InvalidResponse(str(exc)))
        except StoreError as exc:
            response = self.refuse(context, BrokerError(str(exc), code="temporarily_unavailable", status=503,
                                                        message_key="error.internal"))
        except SATOSAAuthenticationError as exc:  # a plugin outside a chain; chains answer the service
            response = self.refuse(context, BrokerError(str(getattr(exc, "message", ""))[:120],
                                                        code="access_denied", status=403))
        except SATOSAError as exc:
            response = self.refuse(context, InvalidResponse(f"{exc.__class__.__name__}: {str(exc)[:160]}"))
        except Exception:  # noqa: BLE001 - the last line of defence: never a stack trace to a person
            logger.exception("unhandled error correlation_id=%s path=/%s", context.correlation_id, context.path)
            response = self.refuse(context, BrokerError("internal error", code="server_error", status=500,
                                                        message_key="error.internal"), logged=True)
        response.headers.extend(context.response_cookies)
        return response

    # -- refusals --------------------------------------------------------------------------

    def refuse(self, context: LoginContext, error: BrokerError, *, logged: bool = False) -> Response:
        """A localized page (or JSON) for ``error``, with the correlation id that is also logged."""
        flow = context.flow_if_loaded
        if not logged:
            fields = {"path": "/" + (context.path or "")}
            if flow is not None and flow.upstream is not None:
                fields["idp"] = flow.upstream.idp
            errors.log(error, context.correlation_id, **fields)
        self.login.refused(context, error)
        # The person may pick another city (or another way in) while the service's request is still valid.
        restart = f"{self.base_url}/disco" if flow is not None else None
        if flow is not None and isinstance(error, ExpiredFlow):
            restart = None
        # The city search needs a login to choose in; without one the front page says where to start.
        search = f"{self.base_url}/disco" if flow is not None and error.offers_city_search else None
        status, content_type, body = errors.render(
            error, context.correlation_id, lang=context.lang, accept_language=context.header("Accept-Language"),
            as_json=errors.wants_json(context.header("Accept")), restart_url=restart,
            languages=self._language_links(context, flow is not None), search_url=search,
            home_url=f"{self.base_url}/")
        response = Response(body.decode(), status=_status_line(status), content=content_type)
        response.headers.append(("Cache-Control", "no-store"))
        response.headers.extend(error.headers)
        return response

    def _language_links(self, context: LoginContext, in_flow: bool) -> dict[str, str]:
        """Where each language's link of an error page goes: the same page again (GET), else the city list."""
        if context.request_method == "GET" and context.path:
            params = {k: v for k, v in (context.qs_params or {}).items() if k != "lang" and isinstance(v, str)}
            base = f"{self.base_url}/{context.path}?"
            return {lang: base + urlencode({**params, "lang": lang}) for lang in LANGUAGES}
        target = f"{self.base_url}/disco?" if in_flow else f"{self.base_url}/?"
        return {lang: target + urlencode({"lang": lang}) for lang in LANGUAGES}

    # -- the flow cookie -------------------------------------------------------------------------

    def _open_flow(self, context: LoginContext) -> LoginFlow | None:
        sealed = context.cookies.get(self.seal.name)
        if not sealed:
            return None
        try:
            return self.seal.open(sealed)
        except SealExpired:
            context.flow_problem = "expired"
        except SealError as exc:
            logger.warning("flow cookie rejected correlation_id=%s reason=%s", context.correlation_id, exc)
            context.flow_problem = "tampered"
        return None

    def _save_flow(self, response: Response, context: LoginContext) -> None:
        if not context.flow_touched:
            return
        flow = context.flow
        if flow is None:
            if self.seal.name in context.cookies:
                response.headers.append(self.cookies.expire(self.seal.name))
        elif flow != context.opened_flow:
            response.headers.append(self.cookies.header(self.seal.name, self.seal.seal(flow)))


_REASONS = {200: "OK", 302: "Found", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Error')}"
