"""The request as every plugin sees it: SATOSA's :class:`~satosa.context.Context`, typed.

SATOSA plugins (frontends, backends, micro-services) take a ``Context``; ours is
a subclass whose extra attributes replace the untyped ``digione.*`` decorations
the broker used to pass around.  The login's own facts are not here but in
:attr:`LoginContext.flow`, the one object that carries a login between requests.

``state`` is SATOSA's per-flow dictionary.  The broker does not persist it (the
flow is sealed instead), but stock SATOSA micro-services pass it to the
exceptions they raise, so it is a fresh, empty :class:`~satosa.state.State` on
every request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from io import BytesIO
from typing import Any
from urllib.parse import unquote

from satosa.context import Context
from satosa.internal import AuthenticationInformation
from satosa.state import State

from broker.errors import ExpiredFlow
from broker.i18n import LANGUAGES
from broker.login.cookies import parse as parse_cookies
from broker.login.flow import LoginFlow, ServiceRequest
from broker.sessions.model import BrokerSession, UpstreamSession

MAX_BODY = 1 << 20


@dataclasses.dataclass
class Answer:
    """Who the person is, once their IdP (or their broker session) answered; lives for one request.

    ``identity`` is the canonical identity, ``idp`` the key of the IdP that
    authenticated the person.  ``session`` is the broker session answered from
    (``None`` for a fresh login: the release step creates one, with ``upstream``,
    what the city's IdP needs to end its own session).
    """

    identity: dict[str, Any]
    idp: str
    auth: AuthenticationInformation
    session: BrokerSession | None = None
    upstream: UpstreamSession | None = None


class LoginContext(Context):
    """One HTTP request on its way through the broker."""

    def __init__(self) -> None:
        super().__init__()
        self.correlation_id: str = ""
        self._cookies: dict[str, str] | None = None
        self._cookie_names: tuple[str, ...] = ()
        self.body: bytes = b""
        #: The raw query string: the OIDC frontend refuses repeated parameters (RFC 6749 §3.1).
        self.raw_query: str = ""
        #: Why no flow could be opened from the cookie: ``"expired"``, ``"tampered"`` or ``None``.
        self.flow_problem: str | None = None
        #: Set by the steps once the IdP or the session answered (steps 4-7 run in one request).
        self.answer: Answer | None = None
        #: Set by a backend with the answer it verified: what the city's IdP needs for logout.
        self.upstream_session: UpstreamSession | None = None
        #: The broker session the answer is released in, and this service's sid for it.
        self.session: BrokerSession | None = None
        self.sso_sid: str | None = None
        #: A SAML frontend may choose the SessionIndex it gave the SP (else ``sso_sid``).
        self.service_session_index: str | None = None
        #: ``Set-Cookie`` headers the response must carry.
        self.response_cookies: list[tuple[str, str]] = []
        #: The flow as the cookie held it (the proxy reseals only what changed).
        self.opened_flow: LoginFlow | None = None
        self._flow: LoginFlow | None = None
        self._flow_opener: Callable[[], LoginFlow | None] | None = None

    #: SATOSA's per-flow state, created on first use (:attr:`state`); ``Context.__init__`` sets it to None.
    _state: State | None = None

    @property
    def state(self) -> State:
        """A fresh, empty :class:`~satosa.state.State` (module documentation), made when first read."""
        if self._state is None:
            self._state = State()
        return self._state

    @state.setter
    def state(self, value: State | None) -> None:
        self._state = value

    # The flow is opened from its cookie on first use: token, JWKS and metadata requests never pay for it.

    @property
    def flow(self) -> LoginFlow | None:
        """The login in progress (opened from its cookie, or begun by a frontend); ``None`` otherwise."""
        if self._flow_opener is not None:
            opener, self._flow_opener = self._flow_opener, None
            self._flow = opener()
            self.opened_flow = self._flow
        return self._flow

    @flow.setter
    def flow(self, value: LoginFlow | None) -> None:
        if self._flow_opener is not None:
            _ = self.flow  # the cookie's flow is what this request replaces
        self._flow = value

    @property
    def cookies(self) -> dict[str, str]:
        """The request's cookies, parsed on first use (token and JWKS requests never read them)."""
        if self._cookies is None:
            self._cookies = parse_cookies(self.cookie, self._cookie_names)
        return self._cookies

    @property
    def flow_if_loaded(self) -> LoginFlow | None:
        """The flow if a step has read or set it, without opening the cookie."""
        return None if self._flow_opener is not None else self._flow

    @property
    def flow_touched(self) -> bool:
        return self._flow_opener is None

    def open_flow_with(self, opener: Callable[[], LoginFlow | None]) -> None:
        self._flow_opener = opener

    #: The name of the cookie holding the language chosen for the visit (set by the proxy).
    lang_cookie: str = ""

    @property
    def lang(self) -> str | None:
        """The language of this request: a ``lang`` parameter, the flow's, or the one chosen earlier in the visit."""
        value = (self.qs_params or {}).get("lang")
        if isinstance(value, str) and value in LANGUAGES:
            return value
        flow = self.flow_if_loaded
        if flow is not None and flow.lang:
            return flow.lang
        chosen = self.cookies.get(self.lang_cookie) if self.lang_cookie else None
        return chosen if chosen in LANGUAGES else None

    def service_for(self, frontend: str) -> ServiceRequest:
        """The service request of the flow, which ``frontend`` must be the one to answer."""
        flow = self.flow
        if flow is None or flow.service.frontend != frontend:
            raise ExpiredFlow(f"no login in progress for {frontend} ({self.flow_problem or 'no flow cookie'})")
        return flow.service

    def header(self, name: str) -> str | None:
        """A request header by its HTTP name (``Accept-Language``)."""
        value = (self.http_headers or {}).get("HTTP_" + name.upper().replace("-", "_"))
        return value if isinstance(value, str) else None

    def set_cookie(self, header: tuple[str, str]) -> None:
        self.response_cookies.append(header)

    @classmethod
    def from_environ(cls, environ: dict[str, Any], *, cookie_names: tuple[str, ...] = ()) -> LoginContext:
        """Build the context of a WSGI request without logging any of it."""
        context = cls()
        context.correlation_id = environ.get("digione.correlation_id") or ""
        # SATOSA's setter refuses the root path (""); the broker answers it (its front page).
        context._path = environ.get("PATH_INFO", "").lstrip("/")
        method = environ.get("REQUEST_METHOD", "GET")
        context.request_method = method
        context.request_uri = environ.get("REQUEST_URI")
        query = environ.get("QUERY_STRING", "")
        context.raw_query = query
        context.qs_params = parse_form(query) if query else {}
        body = b""
        if method == "POST":
            try:
                length = min(max(int(environ.get("CONTENT_LENGTH") or 0), 0), MAX_BODY)
            except ValueError:
                length = 0
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = BytesIO(body)
        context.body = body
        content_type = environ.get("CONTENT_TYPE", "")
        if method == "POST" and "application/x-www-form-urlencoded" in content_type:
            context.request = parse_form(body.decode("utf-8", "replace"))
        elif method == "POST":
            context.request = {}
        else:
            context.request = dict(context.qs_params)
        server: dict[str, Any] = {}
        headers: dict[str, Any] = {}
        for key, value in environ.items():   # one pass: a uWSGI environ holds ~40 entries
            if key.startswith(("HTTP_", "REMOTE_")) or key == "CONTENT_TYPE":
                headers[key] = value
            elif key.startswith("SERVER_"):
                server[key] = value
        context.server = server
        context.http_headers = headers
        context.cookie = environ.get("HTTP_COOKIE", "")
        context._cookie_names = cookie_names
        context.request_authorization = environ.get("HTTP_AUTHORIZATION", "")
        return context


def parse_form(encoded: str) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` (or a query) as a dict; the last value of a name wins.

    The same result as ``dict(parse_qsl(encoded, keep_blank_values=True))``, faster for the
    values that dominate here: a SAMLResponse is ~10 KB of base64 whose only escapes are
    %2B, %2F and %3D, which ``str.replace`` decodes at C speed.  Replacing them first is
    safe: the characters they decode to are not hex digits, so no new escape can appear.
    Protocol code that must refuse repeated parameters parses the raw query or body itself.
    """
    form: dict[str, str] = {}
    for pair in encoded.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        form[_unquote_plus(name)] = _unquote_plus(value)
    return form


def parse_form_lists(encoded: str) -> dict[str, list[str]]:
    """Every value of every name, in order: ``parse_qs(encoded, keep_blank_values=True)``, decoded as
    :func:`parse_form` decodes (for protocol code that refuses repeated parameters)."""
    form: dict[str, list[str]] = {}
    for pair in encoded.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        form.setdefault(_unquote_plus(name), []).append(_unquote_plus(value))
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
