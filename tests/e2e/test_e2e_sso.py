"""Single sign-on: the second service opened in the same browser signs in without credentials;
``prompt=login`` and ``max_age=0`` demand them again; ``prompt=none`` without a session says so."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from agent import Person, forms, register_client
from authlib.integrations.requests_client import OAuth2Session

REDIRECTS = ("https://one.example.org/cb", "https://two.example.org/cb")


@pytest.fixture(scope="module")
def rps(stack):
    out = []
    for index, redirect in enumerate(REDIRECTS):
        _, secret = register_client(stack, client_id=f"sso-rp-{index}", redirect_uris=[redirect],
                                    post_logout_redirect_uris=[redirect],
                                    policy={"scopes": ["openid", "roles"]})
        out.append((f"sso-rp-{index}", secret, redirect))
    return out


def _start(stack, rp, **params):
    client_id, secret, redirect = rp
    meta = requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()
    session = OAuth2Session(client_id, secret, scope="openid roles", redirect_uri=redirect,
                            code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                              nonce=secrets.token_urlsafe(8), **params)
    return session, meta, url, verifier


def _id_token_claims(session, meta, callback, verifier):
    token = session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    return session.get(meta["userinfo_endpoint"]).json(), token


def test_second_service_signs_in_without_credentials(stack, rps):
    person = Person()
    session, meta, url, verifier = _start(stack, rps[0])
    response = person.get(url)
    response = person.choose(response, "jyvaskyla", "koulu")
    first_info, _ = _id_token_claims(session, meta, Person.callback(person.sign_in(response, "pupil.jyvaskyla")),
                                     verifier)

    session, meta, url, verifier = _start(stack, rps[1])
    response = person.get(url)
    assert response.is_redirect and response.headers["Location"].startswith(REDIRECTS[1]), \
        "SSO: straight back to the second service, no discovery page and no login form"
    second_info, _ = _id_token_claims(session, meta, Person.callback(response), verifier)
    assert first_info["roles"] == second_info["roles"]
    assert first_info["sub"] != second_info["sub"], "pairwise subjects differ per service"


def test_prompt_login_and_max_age_zero_ask_again(stack, rps):
    person = Person()
    session, meta, url, verifier = _start(stack, rps[0], idp_hint="lahti/koulu")
    Person.callback(person.sign_in(person.get(url), "teacher.lahti"))
    for params in ({"prompt": "login"}, {"max_age": "0"}):
        _, _, url, _ = _start(stack, rps[1], idp_hint="lahti/koulu", **params)
        response = person.get(url)
        assert any("password" in f.fields for f in forms(response)), f"{params}: credentials asked again"


def test_prompt_none_without_session_returns_login_required(stack, rps):
    _, _, url, _ = _start(stack, rps[0], prompt="none")
    response = Person().get(url)
    location = Person.callback(response)
    assert location.startswith(REDIRECTS[0])
    assert parse_qs(urlsplit(location).query)["error"] == ["login_required"]


def test_hint_naming_another_city_does_not_reuse_the_session(stack, rps):
    person = Person()
    session, meta, url, verifier = _start(stack, rps[0], idp_hint="turku/koulu")
    Person.callback(person.sign_in(person.get(url), "pupil.turku"))
    _, _, url, _ = _start(stack, rps[1], idp_hint="oulu/koulu")
    response = person.get(url)
    assert any("password" in f.fields for f in forms(response))


def test_logout_ends_the_broker_session_for_every_service(stack, rps):
    person = Person()
    session, meta, url, verifier = _start(stack, rps[0], idp_hint="tampere/koulu")
    callback = Person.callback(person.sign_in(person.get(url), "pupil.tampere"))
    _, token = _id_token_claims(session, meta, callback, verifier)
    logout = person.get(f"{meta['end_session_endpoint']}?id_token_hint={token['id_token']}"
                        f"&post_logout_redirect_uri={REDIRECTS[0]}&state=bye")
    # The broker signs the person out at Tampere's IdP too (its SLO endpoint), then returns to the RP.
    visited = [hop.url for hop in logout.history]
    assert any("/tampere/slo/redirect" in url for url in visited), visited
    assert logout.status_code in (302, 303) and logout.headers["Location"] == f"{REDIRECTS[0]}?state=bye"
    first = logout.history[0]
    assert "Max-Age=0" in " ".join(v for k, v in first.headers.items() if k == "Set-Cookie")
    _, _, url, _ = _start(stack, rps[1], prompt="none")
    location = Person.callback(person.get(url))
    assert parse_qs(urlsplit(location).query)["error"] == ["login_required"], "no session left to reuse"
