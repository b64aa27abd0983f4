"""The city page's endpoints: step 2 of the login when the request names no IdP.

* ``GET /disco[?tenant=<id>][&lang=xx][&q=<query>][&school=<code>]`` shows the city page
  (with the results of ``q``: the search works without JavaScript) or one city's ways in;
  a ``lang`` chosen here stays with the flow for the rest of the login.
* ``GET /disco/search?q=<query>[&lang=xx]`` answers the page's script with the results as
  JSON.  It needs no flow: it tells nothing but the registry's public names, and choosing
  still takes the page's CSRF-protected form.
* ``POST /disco/choose`` (``idp``, ``csrf``) sends the person to the chosen IdP.  The CSRF
  token is the flow's id, which only the sealed flow cookie and the page rendered for that
  flow know: a cross-site form or link cannot choose an IdP for someone else's login.  A
  ``GET`` changes nothing and shows the page again.
* ``POST /disco/forget`` (``csrf``) forgets the IdP this browser last signed in with.
* ``GET /help``, ``/privacy``, ``/accessibility``: the site's pages (``config/site.yaml``).

Pages and answers are gzip-compressed when the browser accepts it.  The city page echoes the
query next to the CSRF token, so the token is masked afresh for every response (a random pad
and the token XOR the pad, as Django does against BREACH): the compressed length then tells
nothing about it.  :func:`unmask` accepts the plain flow id too (a page rendered before the
masking); either way the check compares in constant time.

Nothing here writes to the store: the page needs no server-side state beyond the
flow cookie, so replaying a cookie costs the broker no memory.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from collections.abc import Callable
from urllib.parse import urlencode

from satosa.response import Redirect, Response

from broker.discovery import DiscoveryPages
from broker.discovery.site import PAGES as SITE_PAGES
from broker.errors import BrokerError, ExpiredFlow, NotFound, UnknownIdp, UnknownTenant
from broker.i18n import LANGUAGES
from broker.login.context import LoginContext
from broker.login.flow import LoginFlow, ServiceRequest
from broker.login.router import Router
from broker.login.steps import Login
from broker.web import compress, csp

PATHS = {"page": "disco", "search": "disco/search", "choose": "disco/choose", "forget": "disco/forget"}

#: ``logo(service request)`` -> the https URL of the service's registered logo, or ``None``.
LogoOf = Callable[[ServiceRequest], str | None]


class CsrfError(BrokerError):
    status = 403
    code = "invalid_request"
    message_key = "error.expired_flow"


def mask(token: str) -> str:
    """``token`` under a fresh random pad: ``base64url(pad || token XOR pad)``, different every time."""
    raw = token.encode()
    pad = secrets.token_bytes(len(raw))
    return base64.urlsafe_b64encode(pad + bytes(a ^ b for a, b in zip(pad, raw, strict=True))).decode().rstrip("=")


def unmask(value: str) -> bytes | None:
    """The token a :func:`mask` value carries; ``None`` for a value of another shape."""
    if not value or len(value) > 512:
        return None
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        return None
    half = len(data) // 2
    if not data or len(data) % 2:
        return None
    return bytes(a ^ b for a, b in zip(data[:half], data[half:], strict=True))


class DiscoveryEndpoints:
    def __init__(self, login: Login, pages: DiscoveryPages, *, logo: LogoOf | None = None):
        self.login = login
        self.pages = pages
        self.logo = logo or (lambda service: None)

    def register(self, router: Router) -> None:
        owner = ("broker", "discovery")
        router.add(PATHS["page"], self.page, owner=owner)
        router.add(PATHS["search"], self.search, owner=owner)
        router.add(PATHS["choose"], self.choose, owner=owner)
        router.add(PATHS["forget"], self.forget, owner=owner)
        for name in SITE_PAGES:
            router.add(name, self.site_page, owner=owner)

    def _flow(self, context: LoginContext) -> LoginFlow:
        flow = context.flow
        if flow is None:
            raise ExpiredFlow(f"city page without a login in progress ({context.flow_problem or 'no flow cookie'})")
        return flow

    def page(self, context: LoginContext) -> Response:
        params = context.qs_params or {}
        tenant_id = params.get("tenant")
        # Opened first, so that the refusal of an unknown city offers the city search during a login.
        opened = context.flow
        if tenant_id and not self.pages.knows(tenant_id):
            # A mistyped city is the problem to tell, whether a login is under way or not.
            raise UnknownTenant(f"unknown tenant on the city page (login {'under way' if opened else 'none'})")
        flow = self._flow(context)
        lang = params.get("lang")
        if lang in LANGUAGES:
            context.flow = flow = flow.in_language(lang)
        remembered = self.login.selector.remembered(context.cookies.get(self.login.cookies.idp))
        logo = self.logo(flow.service)
        html = self.pages.render(tenant_id=tenant_id, lang=flow.lang,
                                 accept_language=context.header("Accept-Language"), remembered=remembered,
                                 csrf=mask(flow.id), service_name=flow.service.requester_name, service_logo=logo,
                                 query=params.get("q"), school=params.get("school"))
        if html is None:
            raise UnknownTenant("unknown tenant on the city page")
        return self._answer(context, html.encode("utf-8"), "text/html; charset=utf-8", self.pages.csp(logo))

    def search(self, context: LoginContext) -> Response:
        params = context.qs_params or {}
        lang = params.get("lang") if params.get("lang") in LANGUAGES else context.lang
        body = json.dumps(self.pages.search(params.get("q") or "", lang), ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
        return self._answer(context, body, "application/json; charset=utf-8", csp.NON_HTML_POLICY)

    def site_page(self, context: LoginContext) -> Response:
        """Help, the privacy notice or the accessibility statement; with a login under way, a way back to it."""
        back = self.login.cookies.flow in context.cookies
        html = self.pages.site_page(context.path or "", context.lang, context.header("Accept-Language"), back=back)
        if html is None:
            raise NotFound(f"no site page at /{context.path}")
        return self._answer(context, html.encode("utf-8"), "text/html; charset=utf-8", self.pages.csp())

    @staticmethod
    def _answer(context: LoginContext, body: bytes, content_type: str, policy: str) -> Response:
        body, headers = compress.compress(body, context.header("Accept-Encoding"))
        response = Response(body, content=content_type, headers=headers)
        response.headers.append(("Cache-Control", "no-store"))
        response.headers.append(("Content-Security-Policy", policy))
        return response

    def choose(self, context: LoginContext) -> Response:
        flow = self._flow(context)
        if context.request_method != "POST":
            return Redirect(self._page_url(flow.lang))
        form = context.request or {}
        self._check_csrf(form.get("csrf"), flow.id)
        idp = self.login.tenants.idps.get(form.get("idp") or "")
        if idp is None:
            raise UnknownIdp("the chosen IdP is not registered")
        lang = form.get("lang")
        return self.login.choose(context, idp, lang=lang if lang in LANGUAGES else None)

    def forget(self, context: LoginContext) -> Response:
        flow = self._flow(context)
        if context.request_method == "POST":
            self._check_csrf((context.request or {}).get("csrf"), flow.id)
            context.set_cookie(self.login.cookies.expire(self.login.cookies.idp))
        return Redirect(self._page_url(flow.lang))

    def _page_url(self, lang: str | None) -> str:
        return f"{self.login.base_url}/{PATHS['page']}" + (f"?{urlencode({'lang': lang})}" if lang else "")

    @staticmethod
    def _check_csrf(token: str | None, expected: str) -> None:
        """The form's token must be the flow's id, masked (:func:`mask`) or, from an older page, plain."""
        if isinstance(token, str) and token:
            wanted = expected.encode()
            plain = token.encode() if len(token) == len(expected) else unmask(token)
            if plain is not None and hmac.compare_digest(plain, wanted):
                return
        raise CsrfError("the city page's form does not belong to this login (CSRF token)")
