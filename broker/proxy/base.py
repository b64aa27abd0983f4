"""The broker's proxy: SATOSA's core with our state, routing, SSO and errors.

:class:`BrokerProxy` is a :class:`satosa.base.SATOSABase` whose modules are
built in-process by :mod:`broker.proxy.assemble` (so a new registry means a new
proxy object, no files and no restart).  What it changes, and why:

* **State** is sealed with AES-GCM (:mod:`broker.proxy.state`) instead of
  SATOSA's unauthenticated AES-CBC + LZMA, and only written when it changed.
* **Routing** looks paths up in a dict before trying regexes, so the cost does
  not grow with the number of IdPs.
* **IdP selection** happens here (hint → login_hint domain → remembered choice
  → discovery page), because our frontends serve one issuer for all IdPs.
* **SSO**: a live broker session signs the user in without a trip upstream.
* **Errors** become a localized page or JSON with a correlation id that is also
  logged; SATOSA's own error paths log whole states, which we never do.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from io import BytesIO
from typing import Any, Callable
from urllib.parse import unquote, urlencode

from satosa.base import SATOSABase
from satosa.context import Context
from satosa.exception import (SATOSAAuthenticationError, SATOSABadRequestError, SATOSAError,
                              SATOSAMissingStateError, SATOSANoBoundEndpointError, SATOSAStateError)
from satosa.internal import AuthenticationInformation, InternalData
from satosa.response import Redirect, Response
from satosa.routing import STATE_KEY as ROUTER_STATE_KEY
from satosa.routing import ModuleRouter
from satosa.state import State

from broker import errors
from broker.errors import BrokerError, ExpiredFlow, InvalidResponse, NotFound
from broker.proxy import cookies
from broker.proxy.selection import Choice, IdpSelector
from broker.proxy.sessions import SsoSessions
from broker.proxy.state import StateCodec, StateError, StateExpired
from broker.registry.tenants import IdentityProvider, Tenants
from broker.store import StoreError

logger = logging.getLogger(__name__)

PENDING = "digione.pending"        # the frontend's internal request while the user chooses an IdP
CHOSEN_IDP = "digione.idp"         # "<tenant>/<idp>" the flow was sent to
FRONTEND = "digione.frontend"
AUTHN = "digione.authn"            # decoration set by frontends: prompt, max_age, hints, ui_locales
_SESSION_ID = "SESSION_ID"

Route = Callable[[Context], Response]

#: Back-channel and metadata endpoints: no browser flow, so no state cookie is read or written.
STATELESS_PATHS = frozenset({".well-known/openid-configuration", "jwks", "token", "userinfo", "introspect",
                             "revoke", "favicon.ico", "saml2/idp/metadata", "saml2/sp/metadata"})


class FastRouter(ModuleRouter):
    """SATOSA's router with an exact-path index in front of its regex scan."""

    # "^path$", and SATOSA's unanchored "^path" for entity-id endpoints, name one exact path.
    _LITERAL = re.compile(r"^\^([A-Za-z0-9_./-]*)\$?$")

    def __init__(self, frontends, backends, micro_services):
        super().__init__(frontends, backends, micro_services)
        self._exact: dict[str, tuple[str, str, Route]] = {}
        for kind, modules in (("frontend", self.frontends), ("backend", self.backends),
                              ("micro_service", self.micro_services)):
            for name, module in modules.items():
                for regex, spec in module["endpoints"]:
                    match = self._LITERAL.match(regex)
                    if match and match.group(1).replace("\\", "") not in self._exact:
                        self._exact[match.group(1)] = (kind, name, spec)

    def endpoint_routing(self, context: Context):
        hit = self._exact.get(context.path)
        if hit is None:
            return super().endpoint_routing(context)
        kind, name, spec = hit
        if kind == "frontend":
            context.target_frontend = name
        elif kind == "backend":
            context.target_backend = name
        else:
            context.target_micro_service = name
        return spec


class BrokerProxy(SATOSABase):
    """SATOSA's proxy core, assembled in-process; also the WSGI application."""

    def __init__(self, *, config: dict[str, Any], build_frontends, build_backends, request_services,
                 response_services, tenants: Tenants, state_codec: StateCodec, sessions: SsoSessions,
                 selector: IdpSelector, secure_cookies: bool, discovery):
        self.config = config
        self.tenants = tenants
        self.state_codec = state_codec
        self.sessions = sessions
        self.selector = selector
        self.secure_cookies = secure_cookies
        self.discovery = discovery
        frontends = build_frontends(self._auth_req_callback_func)
        backends = build_backends(self._auth_resp_callback_func)
        self.request_micro_services = list(request_services)
        self.response_micro_services = list(response_services)
        self._link_micro_services(self.request_micro_services, self._auth_req_finish)
        self._link_micro_services(self.response_micro_services, self._auth_resp_finish)
        self.module_router = FastRouter(frontends, backends,
                                        self.request_micro_services + self.response_micro_services)
        self.routes: dict[str, Route] = {
            "favicon.ico": lambda context: Response("", status="204 No Content", content="image/x-icon"),
            "disco": self._discovery_page,
            "disco/choose": self._discovery_choose,
            "disco/forget": self._discovery_forget,
        }

    # -- module access -----------------------------------------------------------

    def frontend(self, name: str):
        return self.module_router.frontends[name]["instance"]

    # -- WSGI ----------------------------------------------------------------------

    def __call__(self, environ: dict, start_response):
        context = _context_from_environ(environ)
        response = self.run(context)
        body = response(environ, start_response)
        # SATOSA responses carry str; WSGI wants bytes.
        return [part.encode("utf-8") if isinstance(part, str) else part for part in body]

    def run(self, context: Context) -> Response:
        cid = errors.new_correlation_id()
        context.decorate("digione.correlation_id", cid)
        context.decorate("digione.set_cookies", [])
        stateless = context.path in STATELESS_PATHS
        try:
            if stateless:
                context.state = State()
            else:
                self._load_state(context)
            route = self.routes.get(context.path)
            if route is None:
                try:
                    route = self.module_router.endpoint_routing(context)
                except (ModuleRouter.UnknownEndpoint, SATOSANoBoundEndpointError):
                    raise NotFound(f"no endpoint at /{context.path}") from None
            try:
                response = route(context)
            except SATOSAAuthenticationError as exc:
                response = self._authentication_error(context, exc)
            if not stateless:
                self._save_state(response, context)
        except BrokerError as exc:
            response = self.error_response(context, exc)
        except (SATOSAMissingStateError, SATOSAStateError) as exc:
            response = self.error_response(context, ExpiredFlow(_reason(exc)))
        except SATOSABadRequestError as exc:
            response = self.error_response(context, BrokerError(_reason(exc)))
        except StoreError as exc:
            response = self.error_response(context, BrokerError(
                str(exc), code="temporarily_unavailable", status=503, message_key="error.internal"))
        except SATOSAError as exc:
            response = self.error_response(context, InvalidResponse(_reason(exc)))
        except Exception:  # noqa: BLE001 - the last line of defence: never a stack trace to a person
            logger.exception("unhandled error correlation_id=%s path=/%s", cid, context.path)
            response = self.error_response(context, BrokerError(
                "internal error", code="server_error", status=500, message_key="error.internal"), logged=True)
        response.headers.extend(context.get_decoration("digione.set_cookies") or ())
        return response

    def error_response(self, context: Context, error: BrokerError, *, logged: bool = False) -> Response:
        cid = context.get_decoration("digione.correlation_id") or errors.new_correlation_id()
        if not logged:
            errors.log(error, cid, path="/" + (context.path or ""), idp=(context.state or {}).get(CHOSEN_IDP))
        headers = context.http_headers or {}
        authn = context.get_decoration(AUTHN) or {}
        restart = f"{self.config['BASE']}/disco" if (context.state or {}).get(PENDING) else None
        status, content_type, body = errors.render(
            error, cid, lang=authn.get("ui_locales") or (context.qs_params or {}).get("lang"),
            accept_language=headers.get("HTTP_ACCEPT_LANGUAGE"),
            as_json=errors.wants_json(headers.get("HTTP_ACCEPT")), restart_url=restart)
        response = Response(body.decode(), status=_status_line(status), content=content_type)
        response.headers.append(("Cache-Control", "no-store"))
        return response

    def _authentication_error(self, context: Context, exc: SATOSAAuthenticationError) -> Response:
        """An error the relying party should hear about (e.g. ``login_required``): the frontend answers."""
        logger.info("authentication error sent to requester correlation_id=%s reason=%s",
                    context.get_decoration("digione.correlation_id"), _reason(exc))
        frontend_name = (context.state or {}).get(ROUTER_STATE_KEY) or context.target_frontend
        if not frontend_name:
            raise ExpiredFlow(_reason(exc))
        context.target_frontend = frontend_name
        return self.frontend(frontend_name).handle_backend_error(exc)

    # -- state ---------------------------------------------------------------------

    def _load_state(self, context: Context) -> None:
        jar = cookies.parse(context.cookie)
        context.decorate("digione.cookies", jar)
        state = State()
        sealed = jar.get(self.state_codec.name)
        if sealed:
            try:
                state.data = self.state_codec.open(sealed)
            except StateExpired:
                context.decorate("digione.state_problem", "expired")
            except StateError as exc:
                logger.warning("state cookie rejected correlation_id=%s reason=%s",
                               context.get_decoration("digione.correlation_id"), exc)
                context.decorate("digione.state_problem", "tampered")
        context.state = state
        context.decorate("digione.state_snapshot", dict(state.data))

    def _save_state(self, response: Response, context: Context) -> None:
        state = context.state
        name = self.state_codec.name
        had_cookie = name in (context.get_decoration("digione.cookies") or {})
        meaningful = {k: v for k, v in state.data.items() if k != _SESSION_ID}
        if state.delete or not meaningful:
            if had_cookie:
                response.headers.append(cookies.expire(name, secure=self.secure_cookies))
            return
        if state.data != context.get_decoration("digione.state_snapshot"):
            response.headers.append(cookies.header(name, self.state_codec.seal(state.data),
                                                   secure=self.secure_cookies))

    def _set_cookie(self, context: Context, header: tuple[str, str]) -> None:
        context.get_decoration("digione.set_cookies").append(header)

    # -- request path: SSO and IdP selection -------------------------------------------

    def _auth_req_finish(self, context: Context, internal_request: InternalData) -> Response:
        authn = context.get_decoration(AUTHN) or {}
        prompt = set(authn.get("prompt") or ())
        context.state[FRONTEND] = context.target_frontend
        choice = self.selector.from_request(authn)
        if "login" not in prompt:
            sid, session = self.sessions.get((context.get_decoration("digione.cookies") or {}).get(cookies.SSO))
            if session and _session_fits(session, authn, choice):
                return self._finish_from_session(context, internal_request, sid, session)
        if "none" in prompt:
            raise SATOSAAuthenticationError(context.state, "login_required")
        idp = choice.idp
        if idp is None and choice.tenant is None:
            idp = self.selector.remembered(self._device_id(context, create=False))
        if idp is None:
            context.state[PENDING] = internal_request.to_dict()
            context.state[AUTHN] = authn
            query = {"tenant": choice.tenant.id} if choice.tenant else {}
            if authn.get("ui_locales"):
                query["lang"] = authn["ui_locales"].split()[0]
            return Redirect(f"{self.config['BASE']}/disco" + (f"?{urlencode(query)}" if query else ""))
        return self._start_upstream(context, internal_request, idp)

    def _start_upstream(self, context: Context, internal_request: InternalData, idp: IdentityProvider) -> Response:
        # Kept until the flow ends, so that a person whose city's IdP fails can pick another way.
        context.state[PENDING] = internal_request.to_dict()
        context.state.setdefault(AUTHN, context.get_decoration(AUTHN) or {})
        context.state[CHOSEN_IDP] = idp.key
        context.target_backend = idp.backend_name
        context.target_frontend = context.state.get(FRONTEND) or context.target_frontend
        if idp.type == "saml":
            context.decorate(Context.KEY_TARGET_ENTITYID, idp.entity_id)
        backend = self.module_router.backend_routing(context)
        context.request = None
        return backend.start_auth(context, internal_request)

    def _finish_from_session(self, context: Context, internal_request: InternalData, sid: str,
                             session: dict) -> Response:
        self.sessions.touch(sid, session, internal_request.requester)
        response = InternalData(
            auth_info=AuthenticationInformation(**session["auth_info"]),
            attributes=session["identity"],
            subject_id=session["identity"]["user_id"],
        )
        response.requester = internal_request.requester
        context.state[CHOSEN_IDP] = session["idp"]
        context.state[ROUTER_STATE_KEY] = context.target_frontend
        context.decorate("digione.sso_session", sid)
        context.decorate("digione.sso_reused", True)
        logger.info("sso session reused idp=%s requester=%s", session["idp"], internal_request.requester)
        return super()._auth_resp_finish(context, response)

    # -- response path: SSO session ---------------------------------------------------

    def _auth_resp_finish(self, context: Context, internal_response: InternalData) -> Response:
        # The SSO session and the frontend's code are written in one round trip.
        with self.sessions.store.batch():
            return self._finish_with_session(context, internal_response)

    def _finish_with_session(self, context: Context, internal_response: InternalData) -> Response:
        identity = internal_response.attributes
        auth_info = internal_response.auth_info
        token, sid = self.sessions.create(
            identity=identity, idp=context.state.get(CHOSEN_IDP),
            auth_info={"auth_class_ref": auth_info.auth_class_ref, "timestamp": auth_info.timestamp,
                       "issuer": auth_info.issuer, "authority": auth_info.authority},
            requester=internal_response.requester)
        self._set_cookie(context, cookies.header(cookies.SSO, token, secure=self.secure_cookies))
        context.decorate("digione.sso_session", sid)
        return super()._auth_resp_finish(context, internal_response)

    def end_session(self, context: Context) -> dict | None:
        """End this browser's SSO session (used by the frontends' logout endpoints)."""
        token = (context.get_decoration("digione.cookies") or {}).get(cookies.SSO)
        self._set_cookie(context, cookies.expire(cookies.SSO, secure=self.secure_cookies))
        return self.sessions.end(token)

    # -- discovery -------------------------------------------------------------------

    def _pending(self, context: Context) -> InternalData:
        pending = context.state.get(PENDING)
        if not pending:
            problem = context.get_decoration("digione.state_problem")
            raise ExpiredFlow(f"discovery without a login in progress ({problem or 'no state'})")
        return InternalData.from_dict(pending)

    def _discovery_page(self, context: Context) -> Response:
        self._pending(context)
        params = context.qs_params or {}
        authn = context.state.get(AUTHN) or {}
        lang = params.get("lang") or authn.get("ui_locales")
        remembered = self.selector.remembered(self._device_id(context, create=False))
        html = self.discovery.render(tenant_id=params.get("tenant"), lang=lang,
                                     accept_language=(context.http_headers or {}).get("HTTP_ACCEPT_LANGUAGE"),
                                     remembered=remembered)
        if html is None:
            raise NotFound("unknown tenant on the discovery page")
        response = Response(html, content="text/html; charset=utf-8")
        response.headers.append(("Cache-Control", "no-store"))
        return response

    def _discovery_choose(self, context: Context) -> Response:
        internal_request = self._pending(context)
        idp = self.tenants.idps.get((context.qs_params or {}).get("idp", ""))
        if idp is None:
            raise errors.UnknownIdp("the chosen IdP is not registered")
        self.selector.remember(self._device_id(context, create=True), idp)
        authn = dict(context.state.get(AUTHN) or {})
        lang = (context.qs_params or {}).get("lang")
        if lang and not authn.get("ui_locales"):
            authn["ui_locales"] = lang  # the language chosen on the page travels upstream
        context.decorate(AUTHN, authn)
        return self._start_upstream(context, internal_request, idp)

    def _discovery_forget(self, context: Context) -> Response:
        self.selector.forget(self._device_id(context, create=False))
        query = {k: v for k, v in (context.qs_params or {}).items() if k in ("lang",)}
        return Redirect(f"{self.config['BASE']}/disco" + (f"?{urlencode(query)}" if query else ""))

    def _device_id(self, context: Context, *, create: bool) -> str | None:
        device = (context.get_decoration("digione.cookies") or {}).get(cookies.DEVICE)
        if device or not create:
            return device
        device = secrets.token_urlsafe(18)
        self._set_cookie(context, cookies.header(cookies.DEVICE, device, secure=self.secure_cookies,
                                                 max_age=self.selector.remember_ttl))
        return device


def _session_fits(session: dict, authn: dict, choice: Choice) -> bool:
    """OIDC Core §3.1.2.1 max_age, and a hint naming another IdP, both demand a fresh login."""
    max_age = authn.get("max_age")
    if max_age is not None and time.time() - session["auth_time"] > int(max_age):
        return False
    if choice.idp is not None and choice.idp.key != session["idp"]:
        return False
    if choice.tenant is not None and not session["idp"].startswith(choice.tenant.id + "/"):
        return False
    return True


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or getattr(exc, "error", None) or str(exc)
    if isinstance(message, dict):
        message = message.get("error") or message.get("message") or "error"
    return str(message)[:200]


_REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Error')}"


def parse_form(encoded: str) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` (or a query) as a dict; the last value of a name wins.

    The same result as ``dict(parse_qsl(encoded, keep_blank_values=True))``, faster for the
    values that dominate here: a SAMLResponse is ~10 KB of base64 whose only escapes are
    %2B, %2F and %3D, which ``str.replace`` decodes at C speed.  Replacing them first is
    safe: the characters they decode to are not hex digits, so no new escape can appear.
    """
    form: dict[str, str] = {}
    for pair in encoded.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        form[_unquote_plus(name)] = _unquote_plus(value)
    return form


def _unquote_plus(value: str) -> str:
    if "+" in value:
        value = value.replace("+", " ")
    if "%" in value:
        for escape, char in _BASE64_ESCAPES:
            value = value.replace(escape, char)
        if "%" in value:
            value = unquote(value)
    return value


_BASE64_ESCAPES = (("%2B", "+"), ("%2b", "+"), ("%2F", "/"), ("%2f", "/"), ("%3D", "="), ("%3d", "="))


def _context_from_environ(environ: dict) -> Context:
    """Build a SATOSA Context from WSGI ``environ`` without logging any of it."""
    context = Context()
    path = environ.get("PATH_INFO", "").lstrip("/")
    context.path = path if ".." not in path else ""
    method = environ.get("REQUEST_METHOD", "GET")
    context.request_method = method
    context.request_uri = environ.get("REQUEST_URI")
    query = environ.get("QUERY_STRING", "")
    context.qs_params = parse_form(query) if query else {}
    body = b""
    if method == "POST":
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), 1 << 20)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = BytesIO(body)
    content_type = environ.get("CONTENT_TYPE", "")
    if method == "POST" and "application/x-www-form-urlencoded" in content_type:
        context.request = parse_form(body.decode("utf-8", "replace"))
    elif method == "POST":
        context.request = {}
    else:
        context.request = dict(context.qs_params)
    context.decorate("digione.body", body)
    # The raw query lets the OIDC frontend refuse repeated parameters (RFC 6749 §3.1).
    context.decorate("digione.query", query)
    context.server = {k: v for k, v in environ.items() if k.startswith("SERVER_")}
    context.http_headers = {k: v for k, v in environ.items()
                            if k.startswith("HTTP_") or k.startswith("REMOTE_") or k == "CONTENT_TYPE"}
    context.cookie = environ.get("HTTP_COOKIE", "")
    context.request_authorization = environ.get("HTTP_AUTHORIZATION", "")
    return context
