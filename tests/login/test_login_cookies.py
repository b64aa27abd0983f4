"""The broker's cookies on https: ``__Host-`` names, ``Secure``, ``SameSite=None``, and only ever one of each."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from werkzeug.test import Client

from broker.app import create_app
from broker.demo.stack import DemoStack
from broker.login.cookies import Cookies
from broker.settings import Settings
from broker.store import MemoryStore


def test_cookie_names_and_attributes_by_scheme():
    secure, plain = Cookies(secure=True), Cookies(secure=False)
    assert secure.names == ("__Host-digione_flow", "__Host-digione_sso", "__Host-digione_idp", "__Host-digione_lang")
    assert plain.names == ("digione_flow", "digione_sso", "digione_idp", "digione_lang")
    name, value = secure.header(secure.flow, "v")
    assert name == "Set-Cookie"
    # RFC 6265bis §4.1.3.2: __Host- cookies need Secure and Path=/, and must not name a Domain.
    assert "Secure" in value and "Path=/" in value and "Domain" not in value and "HttpOnly" in value
    assert "SameSite=None" in value
    assert "Secure" not in plain.header(plain.flow, "v")[1] and "SameSite=Lax" in plain.header(plain.flow, "v")[1]


@pytest.fixture(scope="module")
def https_app(tmp_path_factory):
    """The broker as deployed behind TLS (base URL https), driven in-process through WSGI."""
    root = tmp_path_factory.mktemp("https")
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", environ={})
    demo.prepare()
    settings = Settings.from_env(demo.env(), base_url="https://login.example.fi")
    return create_app(settings, store=MemoryStore())


def test_a_login_on_https_sets_host_prefixed_secure_cookies(https_app):
    parties = https_app.registry.parties
    client_id = next(iter(parties.clients))
    client = parties.client(client_id)
    response = Client(https_app).get("/authorize", query_string={
        "response_type": "code", "client_id": client_id, "redirect_uri": client.redirect_uris[0],
        "scope": "openid", "state": "s", "nonce": "n", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256"})
    assert response.status_code == 302
    cookies = [v for k, v in response.headers.items() if k == "Set-Cookie"]
    assert cookies and all(c.startswith("__Host-") and "Secure" in c for c in cookies), cookies
    jar = SimpleCookie()
    jar.load(cookies[0])
    assert "__Host-digione_flow" in jar
