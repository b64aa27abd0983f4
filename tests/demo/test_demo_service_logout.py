"""Signing out of the demo services: back-channel, front-channel, "Sign out everywhere".

The issuer is the demo Entra (its ID tokens carry ``sid``); logout tokens are made here
with joserfc and signed with the key its JWKS publishes (or, to forge one, another key),
and checked by the service with ``digione_verify`` (``TokenVerifier.verify_logout_token``).
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from broker.demo.directory import DEMO_DIRECTORY
from tests.demo.test_demo_service import claims as claims_table

EVENT = "http://schemas.openid.net/event/backchannel-logout"


def sign_in(services, login_form, url=None, browser=None, username="pupil.vantaa"):
    """Sign in at a service (A by default) through the demo Entra; returns (browser, the ID token's claims)."""
    browser = browser or requests.Session()
    page = browser.get(f"{url or services.a}/login", timeout=10)
    if 'id="login"' in page.text:
        action, fields = login_form(page.text)
        page = browser.post(action, data={**fields, "username": username, "password": "demo"}, timeout=10)
    assert 'id="who"' in page.text, page.text
    return browser, {claim: value for (source, claim), value in claims_table(page).items() if source == "id_token"}


def signed_in(browser, url) -> bool:
    page = browser.get(f"{url}/", timeout=10)
    assert page.status_code == 200
    return 'id="who"' in page.text


def entra_key(key_dir) -> RSAKey:
    return RSAKey.import_key((key_dir / "entra-idp.key").read_bytes())


def entra_kid(services) -> str:
    jwks_uri = requests.get(f"{services.issuer}/.well-known/openid-configuration", timeout=5).json()["jwks_uri"]
    return requests.get(jwks_uri, timeout=5).json()["keys"][0]["kid"]


def logout_token(services, key_dir, *, key=None, header=None, drop=(), **claims) -> str:
    now = int(time.time())
    body = {"iss": services.issuer, "aud": "svc-a", "iat": now, "exp": now + 120, "jti": secrets.token_urlsafe(12),
            "events": {EVENT: {}}, **claims}
    for name in drop:
        body.pop(name, None)
    head = {"alg": "RS256", "kid": entra_kid(services), "typ": "logout+jwt", **(header or {})}
    return jwt.encode(head, body, key or entra_key(key_dir))


def post(services, token, url=None):
    return requests.post(f"{url or services.a}/backchannel-logout", data={"logout_token": token}, timeout=10)


def test_a_valid_logout_token_ends_the_session_it_names(services, key_dir, login_form):
    browser, claims = sign_in(services, login_form)
    assert claims["sid"]
    other_browser, _ = sign_in(services, login_form, username="teacher.vantaa")
    # B shares the Entra session (same sid) but is another client: a token for A does not touch it.
    sign_in(services, login_form, url=services.b, browser=browser)

    answer = post(services, logout_token(services, key_dir, sid=claims["sid"]))
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"

    page = browser.get(f"{services.a}/", timeout=10)
    assert 'id="who"' not in page.text
    assert "signed out" in lxml.html.fromstring(page.text).get_element_by_id("signed-out").text_content()
    assert signed_in(other_browser, services.a), "another session, another sid: still signed in"
    assert signed_in(browser, services.b)

    # Sign in again: a new login, not the old local session back.
    page = browser.get(f"{services.a}/login", timeout=10)
    assert page.url.startswith(services.a + "/") and 'id="who"' in page.text  # Entra's session signs in silently
    assert 'id="signed-out"' not in page.text


def test_a_sub_only_token_ends_every_session_of_that_subject(services, key_dir, login_form):
    first, claims = sign_in(services, login_form, username="principal.vantaa")
    second, _ = sign_in(services, login_form, username="principal.vantaa")
    assert post(services, logout_token(services, key_dir, sub=claims["sub"])).status_code == 200
    assert not signed_in(first, services.a) and not signed_in(second, services.a)


def test_a_replayed_logout_token_does_nothing_more(services, key_dir, login_form):
    browser, claims = sign_in(services, login_form, username="teacher.vantaa")
    token = logout_token(services, key_dir, sub=claims["sub"])
    assert post(services, token).status_code == 200
    assert not signed_in(browser, services.a)
    browser, _ = sign_in(services, login_form, browser=browser, username="teacher.vantaa")
    # The same token again (a retried delivery, or a replay): answered, but the new sign-in stays.
    assert post(services, token).status_code == 200
    assert signed_in(browser, services.a)


def _bad_tokens(services, key_dir, claims):
    sid = claims["sid"]
    return {
        "forged signature": logout_token(services, key_dir, key=RSAKey.generate_key(2048), sid=sid),
        "expired": logout_token(services, key_dir, sid=sid, iat=int(time.time()) - 600, exp=int(time.time()) - 300),
        "nonce": logout_token(services, key_dir, sid=sid, nonce="n-0S6_WzA2Mj"),
        "wrong aud": logout_token(services, key_dir, sid=sid, aud="svc-b"),
        "wrong iss": logout_token(services, key_dir, sid=sid, iss=services.issuer + "/other"),
        "no events": logout_token(services, key_dir, sid=sid, drop=("events",)),
        "other event": logout_token(services, key_dir, sid=sid, events={"urn:example:other": {}}),
        "no jti": logout_token(services, key_dir, sid=sid, drop=("jti",)),
        "no exp": logout_token(services, key_dir, sid=sid, drop=("exp",)),
        "no iat": logout_token(services, key_dir, sid=sid, drop=("iat",)),
        "neither sid nor sub": logout_token(services, key_dir, drop=("sub",)),
        "typ of an access token": logout_token(services, key_dir, sid=sid, header={"typ": "at+jwt"}),
        "no typ": jwt.encode({"alg": "RS256", "kid": entra_kid(services)},
                             {"iss": services.issuer, "aud": "svc-a", "iat": int(time.time()),
                              "exp": int(time.time()) + 60, "jti": "no-typ", "events": {EVENT: {}}, "sid": sid},
                             entra_key(key_dir)),
        "issued long ago": logout_token(services, key_dir, sid=sid, iat=int(time.time()) - 3600),
        "HS256 with the public key": jwt.encode(
            {"alg": "HS256", "kid": entra_kid(services)},
            {"iss": services.issuer, "aud": "svc-a", "iat": int(time.time()), "exp": int(time.time()) + 60,
             "jti": "x", "events": {EVENT: {}}, "sid": sid}, OctKey.import_key(b"k" * 32)),
        "ES256 with an unknown key": jwt.encode(
            {"alg": "ES256", "kid": "nope"}, {"iss": services.issuer, "aud": "svc-a", "sid": sid},
            ECKey.generate_key("P-256")),
        "not a JWT": "not.a.jwt",
    }


def test_invalid_logout_tokens_are_refused_and_end_nothing(services, key_dir, login_form):
    browser, claims = sign_in(services, login_form)
    for reason, token in _bad_tokens(services, key_dir, claims).items():
        answer = post(services, token)
        assert answer.status_code == 400, reason
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.json()["error"] == "invalid_request", reason
    assert signed_in(browser, services.a), "no invalid token ended the session"


def test_an_id_token_is_not_a_logout_token(services, key_dir, login_form):
    browser = requests.Session()
    sign_in(services, login_form, browser=browser)
    # The genuine ID token, taken from the service's "Sign out everywhere" redirect (id_token_hint).
    answer = browser.post(f"{services.a}/logout/everywhere", allow_redirects=False, timeout=10)
    id_token = parse_qs(urlsplit(answer.headers["Location"]).query)["id_token_hint"][0]
    browser, _ = sign_in(services, login_form)
    assert post(services, id_token).status_code == 400
    assert signed_in(browser, services.a)


@pytest.mark.parametrize("data", [{}, {"logout_token": ""}, {"logout_token": ["a", "b"]}])
def test_the_endpoint_wants_exactly_one_logout_token(services, data):
    answer = requests.post(f"{services.a}/backchannel-logout", data=data, timeout=10)
    assert answer.status_code == 400 and answer.headers["Cache-Control"] == "no-store"


def test_front_channel_logout_ends_the_named_session_and_may_be_framed_by_anyone(services, login_form):
    browser, claims = sign_in(services, login_form, url=services.b)
    page = requests.get(f"{services.b}/frontchannel-logout", params={"iss": services.issuer, "sid": claims["sid"]},
                        timeout=10)
    assert page.status_code == 200
    assert "no-store" in page.headers["Cache-Control"]
    assert "X-Frame-Options" not in page.headers
    assert "frame-ancestors" not in page.headers["Content-Security-Policy"]
    assert not signed_in(browser, services.b)


def test_front_channel_logout_checks_iss_and_sid(services, login_form):
    browser, claims = sign_in(services, login_form, url=services.b)
    for params in ({"iss": "http://evil.test", "sid": claims["sid"]}, {"iss": services.issuer},
                   {"sid": claims["sid"]}):
        page = requests.get(f"{services.b}/frontchannel-logout", params=params, timeout=10)
        assert page.status_code == 400, params
    assert signed_in(browser, services.b)
    # Without iss and sid (a client that does not require them): the browser's own sign-in here.
    assert browser.get(f"{services.b}/frontchannel-logout", timeout=10).status_code == 200
    assert not signed_in(browser, services.b)


def test_sign_out_everywhere_goes_to_the_end_session_endpoint_and_checks_state_on_return(services, login_form):
    browser, claims = sign_in(services, login_form)
    sign_in(services, login_form, url=services.b, browser=browser)
    answer = browser.post(f"{services.a}/logout/everywhere", allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    location = answer.headers["Location"]
    tenant = DEMO_DIRECTORY["vantaa"]["entra_tenant_id"]
    assert location.startswith(f"{services.idp}/{tenant}/oauth2/v2.0/logout?")
    params = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    assert params["post_logout_redirect_uri"] == f"{services.a}/"
    assert params["client_id"] == "svc-a"
    assert len(params["state"]) >= 16
    hint = jwt.decode(params["id_token_hint"], RSAKey.import_key(requests.get(
        f"{services.idp}/{tenant}/discovery/v2.0/keys", timeout=5).json()["keys"][0]))
    assert hint.claims["sid"] == claims["sid"] and hint.claims["aud"] == "svc-a"
    # Local sign-out happened at once.
    assert 'id="who"' not in browser.get(f"{services.a}/", timeout=10).text

    # The issuer signs the browser out and frames B's front-channel logout, then returns with state.
    page = browser.get(location, timeout=10)
    html = lxml.html.fromstring(page.text)
    for src in html.xpath("//iframe/@src"):
        browser.get(src, timeout=10)   # what the browser does with the hidden iframes
    assert not signed_in(browser, services.b), "B heard of it through its front-channel URL"
    back = browser.get(html.get_element_by_id("continue").get("href"), timeout=10)
    assert back.url.startswith(f"{services.a}/?state=")
    assert lxml.html.fromstring(back.text).get_element_by_id("signed-out").text_content() == "Signed out everywhere."

    # The same return again: the state was used up.
    again = browser.get(back.url, timeout=10)
    assert again.status_code == 400 and "invalid_state" in again.text

    # Signing in again asks for the password: the issuer's session is gone too.
    page = browser.get(f"{services.a}/login", timeout=10)
    assert 'id="login"' in page.text


def test_a_forged_state_on_return_is_an_error(services):
    page = requests.get(f"{services.a}/", params={"state": "forged"}, timeout=10)
    assert page.status_code == 400
    assert "invalid_state" in lxml.html.fromstring(page.text).get_element_by_id("error").text_content()


def test_the_signed_in_page_offers_both_ways_of_signing_out(services, login_form):
    browser = requests.Session()
    page = browser.get(f"{services.a}/login", timeout=10)
    action, fields = login_form(page.text)
    page = browser.post(action, data={**fields, "username": "pupil.vantaa", "password": "demo"}, timeout=10)
    html = lxml.html.fromstring(page.text)
    assert html.get_element_by_id("sign-out").get("href") == "/logout"
    form = html.xpath('//form[.//button[@id="sign-out-everywhere"]]')[0]
    assert form.method.lower() == "post" and form.action == "/logout/everywhere"
