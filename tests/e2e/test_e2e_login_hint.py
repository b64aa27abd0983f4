"""``login_hint=user@<domain>`` picks the IdP that claims the domain (``login_hint_domains``), through
the running broker and the demo IdPs.

The shipped tenant files, with Vantaa's two IdPs each claiming a domain: the Entra ID its
pupils use (``edu.vantaa.example``) and the SAML IdP of its staff (``staff.vantaa.example``);
the city keeps ``vantaa.example`` (its ``domains``), where the person still picks.  A service
that knows the address sends the person straight to the right IdP, which gets the hint too.
"""

from __future__ import annotations

import secrets
import shutil
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import yaml
from agent import Person, register_client

from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports
from broker.settings import ROOT

REDIRECT = "https://rp.example.org/login-hint"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("login-hint")
    tenants = root / "tenants"
    shutil.copytree(ROOT / "tenants", tenants)
    vantaa = yaml.safe_load((tenants / "vantaa.yaml").read_text())
    for idp in vantaa["identity_providers"]:
        idp["login_hint_domains"] = ["edu.vantaa.example"] if idp["type"] == "oidc" else ["staff.vantaa.example"]
    (tenants / "vantaa.yaml").write_text(yaml.safe_dump(vantaa, allow_unicode=True, sort_keys=False))
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata",
                     ports=Ports(*(free_port() for _ in range(5))), environ={"BROKER_TENANTS_DIR": str(tenants)})
    demo.start()
    yield demo
    demo.stop()


@pytest.fixture(scope="module")
def client(stack):
    client, _secret = register_client(stack, client_id="login-hint-rp", redirect_uris=[REDIRECT],
                                      policy={"scopes": ["openid", "profile"]})
    return client.client_id


def _authorize(stack, client: str, login_hint: str) -> str:
    params = {"response_type": "code", "client_id": client, "redirect_uri": REDIRECT, "scope": "openid profile",
              "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8), "login_hint": login_hint,
              "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
    return f"{stack.broker_url}/authorize?{urlencode(params)}"


def test_the_pupils_domain_goes_straight_to_the_citys_entra(stack, client):
    person = Person()
    response = person.get(_authorize(stack, client, "pupil.vantaa@EDU.vantaa.example"))
    assert "/disco" not in response.url
    assert response.url.startswith(f"{stack.entra_url}/96bc3632-8d93-5867-9289-3a33c8fb6608/oauth2/v2.0/authorize")
    assert parse_qs(urlsplit(response.url).query)["login_hint"] == ["pupil.vantaa@EDU.vantaa.example"]
    signed_in = person.sign_in(response, "pupil.vantaa")
    assert Person.callback(signed_in).startswith(REDIRECT) and "code=" in Person.callback(signed_in)


def test_the_staff_domain_goes_straight_to_the_citys_saml_idp(stack, client):
    response = Person().get(_authorize(stack, client, "teacher.vantaa@staff.vantaa.example"))
    assert "/disco" not in response.url
    assert response.url.startswith(f"{stack.saml_url}/vantaa/")


def test_the_citys_own_domain_asks_which_idp_and_an_unknown_one_asks_which_city(stack, client):
    city = Person().get(_authorize(stack, client, "someone@vantaa.example"))
    assert "/disco" in city.url and "tenant=vantaa" in city.url, city.url
    anywhere = Person().get(_authorize(stack, client, "someone@elsewhere.example"))
    assert "/disco" in anywhere.url and "tenant=" not in anywhere.url, anywhere.url
