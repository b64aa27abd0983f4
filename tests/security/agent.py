"""A person's browser (one cookie jar), copied in small from tests/e2e/agent.py.

It follows redirects by hand and stops at any ``stop_at`` prefix (by default an
``https://`` address: the relying party the test plays), so a test sees exactly
where the broker would have sent the person.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urljoin

import lxml.html
import requests

HTML = "text/html,application/xhtml+xml"
JSON = "application/json"


@dataclasses.dataclass
class Form:
    action: str
    fields: dict[str, str]


def forms(response: requests.Response) -> list[Form]:
    if "html" not in response.headers.get("Content-Type", ""):
        return []
    doc = lxml.html.fromstring(response.text)
    return [Form(urljoin(response.url, form.action or response.url),
                 {i.name: i.value or "" for i in form.inputs if i.name and getattr(i, "type", "") != "submit"})
            for form in doc.forms]


class Person:
    def __init__(self, *, stop_at: tuple[str, ...] = ("https://",), language: str = "fi", accept: str = HTML):
        self.http = requests.Session()
        self.http.headers["Accept"] = accept
        self.http.headers["Accept-Language"] = language
        self.stop_at = stop_at
        self.language = language

    @property
    def machine(self) -> bool:
        return "json" in self.http.headers["Accept"]

    def request(self, method: str, url: str, data=None, headers=None) -> requests.Response:
        response = self.http.request(method, url, data=data, headers=headers, timeout=15, allow_redirects=False)
        history = []
        while response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(self.stop_at):
                break
            history.append(response)
            response = self.http.get(location, timeout=15, allow_redirects=False)
        response.history = history
        return response

    def get(self, url: str) -> requests.Response:
        return self.request("GET", url)

    def post(self, url: str, data, headers=None) -> requests.Response:
        return self.request("POST", url, data=data, headers=headers)

    def sign_in(self, response: requests.Response, username: str, password: str = "demo") -> requests.Response:
        """Fill a demo IdP's login form (what a person types), then follow the redirects."""
        login = next(f for f in forms(response) if "username" in f.fields or "password" in f.fields)
        login.fields.update(username=username, password=password)
        return self.post(login.action, login.fields)
