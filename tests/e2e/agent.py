"""A person's browser, minus JavaScript: follows redirects, picks from the discovery page,
fills the demo IdPs' login forms and submits the auto-post forms (SAML HTTP-POST binding).

It only clicks and types what a person would; every protocol message it carries is the real
one produced by the peers.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urljoin

import lxml.html
import requests


@dataclasses.dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str]


def forms(response: requests.Response) -> list[Form]:
    if "html" not in response.headers.get("Content-Type", ""):
        return []
    doc = lxml.html.fromstring(response.text)
    out = []
    for form in doc.forms:
        fields = {i.name: i.value or "" for i in form.inputs if i.name and getattr(i, "type", "") != "submit"}
        out.append(Form(urljoin(response.url, form.action or response.url), (form.method or "GET").upper(), fields))
    return out


def choice_form(response: requests.Response, value: str, name: str = "idp") -> Form | None:
    """The form whose button ``name=value`` a person would click, with that button's value in its fields."""
    if "html" not in response.headers.get("Content-Type", ""):
        return None
    doc = lxml.html.fromstring(response.text)
    for form in doc.forms:
        for button in form.iter("button"):
            if button.get("name") == name and button.get("value") == value:
                fields = {i.name: i.value or "" for i in form.inputs if i.name and getattr(i, "type", "") != "submit"}
                fields[name] = value
                return Form(urljoin(response.url, form.action or response.url), (form.method or "GET").upper(),
                            fields)
    return None


def links(response: requests.Response, contains: str) -> list[str]:
    doc = lxml.html.fromstring(response.text)
    return [urljoin(response.url, a.get("href")) for a in doc.iter("a") if contains in (a.get("href") or "")]


class Person:
    """One browser (one cookie jar).

    Redirects are followed by hand so that a redirect to a relying party's callback
    (``stop_at``) is returned rather than followed: the test plays that relying party.
    """

    def __init__(self, session: requests.Session | None = None, *, stop_at: tuple[str, ...] = ("https://",),
                 language: str = "fi"):
        self.http = session or requests.Session()
        self.http.headers["Accept"] = "text/html,application/xhtml+xml"
        self.http.headers["Accept-Language"] = language
        self.stop_at = stop_at
        #: Where each request is really sent (e.g. another instance behind the same public URL).
        self.rewrite = lambda url: url

    def request(self, method: str, url: str, data=None, allow_redirects: bool = True) -> requests.Response:
        response = self.http.request(method, self.rewrite(url), data=data, timeout=15, allow_redirects=False)
        history = []
        while allow_redirects and response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(self.stop_at):
                break
            history.append(response)
            response = self.http.get(self.rewrite(location), timeout=15, allow_redirects=False)
        response.history = history
        return response

    def get(self, url: str, allow_redirects: bool = True) -> requests.Response:
        return self.request("GET", url, allow_redirects=allow_redirects)

    def post(self, url: str, data) -> requests.Response:
        return self.request("POST", url, data=data)

    @staticmethod
    def callback(response: requests.Response) -> str:
        """The Location a flow ended with (a redirect to a relying party)."""
        assert response.is_redirect, f"expected a redirect to the relying party, got {response.status_code} " \
                                     f"at {response.url}"
        return response.headers["Location"]

    def choose(self, response: requests.Response, tenant: str, idp: str) -> requests.Response:
        """On the discovery page: pick the city, then the sign-in method if asked (a button of a POST form)."""
        key = f"{tenant}/{idp}"
        form = choice_form(response, key)
        if form is None:
            city = links(response, f"tenant={tenant}")
            assert city, f"no {tenant} on the discovery page"
            response = self.get(city[0])
            form = choice_form(response, key)
        assert form is not None, f"no {key} on the discovery page"
        return self.post(form.action, form.fields)

    def sign_in(self, response: requests.Response, username: str, password: str = "demo") -> requests.Response:
        """Fill the IdP's login form, then follow auto-post forms back to the service."""
        login = next(f for f in forms(response) if "username" in f.fields or "password" in f.fields)
        login.fields.update(username=username, password=password)
        return self.follow_posts(self.post(login.action, login.fields))

    def follow_posts(self, response: requests.Response) -> requests.Response:
        """Submit SAML auto-post forms (what the page's script does in a browser)."""
        for _ in range(4):
            posts = [f for f in forms(response) if "SAMLResponse" in f.fields or "SAMLRequest" in f.fields]
            if not posts:
                return response
            form = posts[0]
            if form.action.startswith(self.stop_at):
                return response  # addressed to the service the test plays
            response = self.post(form.action, form.fields)
        return response

    def login(self, start_url: str, tenant: str, idp: str, username: str) -> requests.Response:
        response = self.get(start_url)
        if "/disco" in response.url:
            response = self.choose(response, tenant, idp)
        return self.sign_in(response, username)


def register_client(stack, **data):
    """Register an OIDC client with the running broker, as `broker clients add` does, and serve it now."""
    client, secret, _ = stack.app.registry_service.register_client(data, by="test")
    stack.app.rebuild()
    return client, secret
