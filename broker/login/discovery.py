"""The city page's endpoints: step 2 of the login when the request names no IdP.

* ``GET /disco[?tenant=<id>][&lang=xx]`` shows the city list (or one city's ways
  in); a ``lang`` chosen here stays with the flow for the rest of the login.
* ``POST /disco/choose`` (``idp``, ``csrf``) sends the person to the chosen IdP.
  The CSRF token is the flow's id, which only the sealed flow cookie and the page
  rendered for that flow know: a cross-site form or link cannot choose an IdP
  for someone else's login.  A ``GET`` changes nothing and shows the page again.
* ``POST /disco/forget`` (``csrf``) forgets the IdP this browser last signed in with.

Nothing here writes to the store: the page needs no server-side state beyond the
flow cookie, so replaying a cookie costs the broker no memory.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

from satosa.response import Redirect, Response

from broker.discovery import DiscoveryPages
from broker.errors import BrokerError, ExpiredFlow, NotFound, UnknownIdp
from broker.i18n import LANGUAGES
from broker.login.context import LoginContext
from broker.login.flow import LoginFlow
from broker.login.router import Router
from broker.login.steps import Login

PATHS = {"page": "disco", "choose": "disco/choose", "forget": "disco/forget"}


class CsrfError(BrokerError):
    status = 403
    code = "invalid_request"
    message_key = "error.expired_flow"


class DiscoveryEndpoints:
    def __init__(self, login: Login, pages: DiscoveryPages):
        self.login = login
        self.pages = pages

    def register(self, router: Router) -> None:
        router.add(PATHS["page"], self.page, owner=("broker", "discovery"))
        router.add(PATHS["choose"], self.choose, owner=("broker", "discovery"))
        router.add(PATHS["forget"], self.forget, owner=("broker", "discovery"))

    def _flow(self, context: LoginContext) -> LoginFlow:
        flow = context.flow
        if flow is None:
            raise ExpiredFlow(f"city page without a login in progress ({context.flow_problem or 'no flow cookie'})")
        return flow

    def page(self, context: LoginContext) -> Response:
        flow = self._flow(context)
        params = context.qs_params or {}
        lang = params.get("lang")
        if lang in LANGUAGES:
            context.flow = flow = flow.in_language(lang)
        remembered = self.login.selector.remembered(context.cookies.get(self.login.cookies.idp))
        html = self.pages.render(tenant_id=params.get("tenant"), lang=flow.lang,
                                 accept_language=context.header("Accept-Language"), remembered=remembered,
                                 csrf=flow.id, service_name=flow.service.requester_name)
        if html is None:
            raise NotFound("unknown tenant on the city page")
        response = Response(html, content="text/html; charset=utf-8")
        response.headers.append(("Cache-Control", "no-store"))
        response.headers.append(("Content-Security-Policy", self.pages.csp))
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
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected.encode()):
            raise CsrfError("the city page's form does not belong to this login (CSRF token)")
