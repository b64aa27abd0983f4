"""The broker's own front page: nothing to sign in to here, so it says where to go."""

from __future__ import annotations

from html import escape

from satosa.response import Response

from broker.errors import page
from broker.i18n import negotiate, text
from broker.login.context import LoginContext
from broker.login.router import Router


class HomePage:
    def __init__(self, base_url: str):
        self.base_url = base_url

    def register(self, router: Router) -> None:
        router.add("", self.home, owner=("broker", "home"))
        router.add("favicon.ico", self.favicon, owner=("broker", "home"))

    def home(self, context: LoginContext) -> Response:
        lang = negotiate(context.lang, context.header("Accept-Language"))
        html = page(lang, text("home.title", lang), f'<p class="lead">{escape(text("home.body", lang))}</p>')
        return Response(html, content="text/html; charset=utf-8")

    def favicon(self, context: LoginContext) -> Response:
        return Response("", status="204 No Content", content="image/x-icon")
