"""Fixtures of the console tests: the admin test broker (tests/admin/admin_env.py) on SQLite, browsers
without JavaScript (werkzeug test clients on the guarded broker), signed in with a role's API token.

The console reads and acts only through ``AdminOperations``, whose own tests run on SQLite and
PostgreSQL; these tests are about the pages, so one database is enough.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    yield f"sqlite:///{tmp_path_factory.mktemp('console-db') / 'registry.sqlite3'}"


class Browser:
    """One cookie jar on the broker, with the form helpers a person's browser provides."""

    def __init__(self, app: Any, lang: str = "en"):
        from werkzeug.test import Client

        self.client = Client(app)
        self.headers = {"Accept-Language": lang}
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(path, headers=self.headers, **kwargs)
        self._remember(response)
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kwargs: Any) -> Any:
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf", self.csrf)
        response = self.client.post(path, data=data, headers=self.headers, **kwargs)
        self._remember(response)
        return response

    def _remember(self, response: Any) -> None:
        if "html" in response.headers.get("Content-Type", ""):
            found = CSRF.search(response.get_data(as_text=True))
            if found:
                self.csrf = found.group(1)

    def sign_in(self, token: str) -> Any:
        self.get("/admin/signin")
        response = self.post("/admin/signin/token", {"token": token, "next": "/admin/"})
        assert response.status_code == 303, response.get_data(as_text=True)[:2000]
        self.get("/admin/")
        return response


@pytest.fixture
def browser(site):
    """``browser(token=None, lang="en")`` -> a :class:`Browser`, signed in with ``token`` if given."""

    def make(token: str | None = None, lang: str = "en") -> Browser:
        person = Browser(site.app, lang)
        if token:
            person.sign_in(token)
        return person

    return make
