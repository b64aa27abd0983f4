"""Logout at the Entra-shaped demo IdP: sid in ID tokens, the end-session endpoint, front-channel iframes."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlencode, urlsplit

import lxml.html
import pytest
import requests
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import RSAKey

from broker.demo.directory import DEMO_DIRECTORY
from tests.demo.test_demo_entra_idp import authorize, callback, client_for, discovery, sign_in, verify_id_token


def signed_in(entra, login_form, city="vantaa", username="teacher.vantaa"):
    """Sign in in a fresh browser; returns (browser, raw ID token, its claims)."""
    browser, client, verifier = requests.Session(), client_for(entra), generate_token(48)
    page, _ = authorize(entra, city, browser, client, verifier=verifier)
    location, _ = callback(sign_in(browser, page, login_form, username), entra)
    token = client.fetch_token(discovery(entra, city)["token_endpoint"], authorization_response=location,
                               code_verifier=verifier)
    return browser, token["id_token"], verify_id_token(entra, city, token["id_token"], "n-0S6_WzA2Mj")[1]


def has_session(entra, browser, city="vantaa") -> bool:
    answer, _ = authorize(entra, city, browser, client_for(entra), prompt="none")
    return "code" in callback(answer, entra)[1]


def end_session(entra, browser, city="vantaa", **params):
    return browser.get(discovery(entra, city)["end_session_endpoint"], params=params, allow_redirects=False,
                       timeout=10)


def frames(page) -> list[str]:
    return [frame.get("src") for frame in lxml.html.fromstring(page.text).xpath("//iframe")]


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_discovery_names_the_end_session_endpoint_and_front_channel_logout(entra_server):
    tid = DEMO_DIRECTORY["vantaa"]["entra_tenant_id"]
    doc = discovery(entra_server, "vantaa")
    assert doc["end_session_endpoint"] == f"{entra_server.url}/{tid}/oauth2/v2.0/logout"
    assert doc["frontchannel_logout_supported"] is True
    assert doc["frontchannel_logout_session_supported"] is True
    assert "sid" in doc["claims_supported"]


def test_id_tokens_carry_one_sid_per_session(entra_server, login_form):
    browser, _, claims = signed_in(entra_server, login_form)
    assert claims["sid"]
    # A silent sign-in in the same session: the same sid.
    client, verifier = client_for(entra_server), generate_token(48)
    answer, _ = authorize(entra_server, "vantaa", browser, client, verifier=verifier)
    location, _ = callback(answer, entra_server)
    token = client.fetch_token(discovery(entra_server, "vantaa")["token_endpoint"], authorization_response=location,
                               code_verifier=verifier)
    assert verify_id_token(entra_server, "vantaa", token["id_token"], "n-0S6_WzA2Mj")[1]["sid"] == claims["sid"]
    # Another browser, another session.
    assert signed_in(entra_server, login_form)[2]["sid"] != claims["sid"]


def test_end_session_ends_the_session_frames_every_client_and_returns_with_state(entra_server, login_form):
    entra = entra_server
    browser, id_token, claims = signed_in(entra, login_form)
    # The second application signs in silently in the same session.
    other = dataclasses.replace(entra, client_id=entra.other_client_id, client_secret=entra.other_client_secret,
                                redirect_uri=entra.other_redirect_uri)
    client = client_for(other)
    answer, _ = authorize(other, "vantaa", browser, client)
    location, _ = callback(answer, other)
    client.fetch_token(discovery(entra, "vantaa")["token_endpoint"], authorization_response=location)

    page = end_session(entra, browser, id_token_hint=id_token, post_logout_redirect_uri=entra.post_logout_redirect_uri,
                       state="st-4711", lang="en")
    assert page.status_code == 200, page.text
    assert page.headers["Cache-Control"] == "no-store"
    html = lxml.html.fromstring(page.text)
    assert html.get_element_by_id("status").text_content() == "Signing out…"
    issuer = entra.issuer("vantaa")
    assert sorted(frames(page)) == sorted([
        f"http://rp.test/frontchannel_logout?{_qs(iss=issuer, sid=claims['sid'])}",
        f"http://rp2.test/fc-logout?app=2&{_qs(iss=issuer, sid=claims['sid'])}",
    ])
    target = html.get_element_by_id("continue").get("href")
    assert target == f"{entra.post_logout_redirect_uri}?state=st-4711"
    assert "location.replace" in page.text

    assert not has_session(entra, browser), "the session has ended"


def _qs(**params: str) -> str:
    return urlencode(params)


def _entra_key(key_dir) -> RSAKey:
    return RSAKey.import_key((key_dir / "entra-idp.key").read_bytes())


def test_end_session_without_a_return_address_shows_signed_out(entra_server, login_form):
    browser, _, claims = signed_in(entra_server, login_form)
    page = end_session(entra_server, browser, lang="en")
    assert page.status_code == 200
    html = lxml.html.fromstring(page.text)
    assert html.get_element_by_id("status").text_content() == "You have signed out."
    assert not html.xpath('//*[@id="continue"]')
    assert [query(src)["sid"] for src in frames(page)] == [[claims["sid"]]]
    assert not has_session(entra_server, browser)
    # Again: nothing left to end, still signed out, no frames.
    again = end_session(entra_server, browser)
    assert again.status_code == 200 and frames(again) == []


def test_an_unregistered_post_logout_redirect_uri_is_a_page_not_a_redirect(entra_server, login_form):
    browser, id_token, _ = signed_in(entra_server, login_form)
    for params in ({"id_token_hint": id_token, "post_logout_redirect_uri": "http://evil.test/"},
                   {"post_logout_redirect_uri": entra_server.post_logout_redirect_uri},  # whose is it?
                   {"client_id": entra_server.other_client_id,
                    "post_logout_redirect_uri": entra_server.post_logout_redirect_uri},
                   {"id_token_hint": id_token, "client_id": entra_server.other_client_id}):
        page = end_session(entra_server, browser, **params)
        assert page.status_code == 400, params
        assert 'id="error"' in page.text and "evil.test" not in page.text and "Location" not in page.headers
    assert has_session(entra_server, browser), "nothing was ended"


def test_a_forged_or_foreign_id_token_hint_is_refused(entra_server, login_form, key_dir):
    browser, id_token, claims = signed_in(entra_server, login_form)
    kid = jwt.decode(id_token, _entra_key(key_dir), algorithms=["RS256"]).header["kid"]
    # Signed with another key under the genuine key's kid.
    forged = jwt.encode({"alg": "RS256", "kid": kid}, claims, RSAKey.generate_key(2048))
    oulu = signed_in(entra_server, login_form, city="oulu", username="pupil.oulu")[1]
    for hint in (forged, oulu, "not-a-jwt"):
        page = end_session(entra_server, browser, id_token_hint=hint,
                           post_logout_redirect_uri=entra_server.post_logout_redirect_uri)
        assert page.status_code == 400 and 'id="error"' in page.text
    assert has_session(entra_server, browser)


def test_signing_out_at_entra_itself(entra_server, login_form):
    browser, _, claims = signed_in(entra_server, login_form)
    url = f"{entra_server.url}/{DEMO_DIRECTORY['vantaa']['entra_tenant_id']}/logout"
    page = browser.get(url, params={"lang": "en"}, timeout=10)
    html = lxml.html.fromstring(page.text)
    assert "teacher@vantaa.example" in html.get_element_by_id("who").text_content()
    form = html.xpath('//form[.//button[@id="sign-out"]]')[0]
    done = browser.post(form.action, data=dict(form.form_values()), timeout=10)
    assert lxml.html.fromstring(done.text).get_element_by_id("status").text_content() == "You have signed out."
    assert [query(src)["sid"] for src in frames(done)] == [[claims["sid"]]]
    assert not has_session(entra_server, browser)
    page = browser.get(url, params={"lang": "en"}, timeout=10)
    assert lxml.html.fromstring(page.text).get_element_by_id("status").text_content() == "You are not signed in."


@pytest.mark.parametrize("response_mode", ["query", "form_post"])
def test_cancel_answers_access_denied_with_state(entra_server, login_form, only_form, response_mode):
    browser = requests.Session()
    page, state = authorize(entra_server, "vantaa", browser, client_for(entra_server), response_mode=response_mode)
    action, fields = login_form(page.text)
    answer = browser.post(action, data={**fields, "cancel": "1"}, allow_redirects=False, timeout=10)
    if response_mode == "query":
        params = callback(answer, entra_server)[1]
    else:
        target, params = only_form(answer.text)
        assert target == entra_server.redirect_uri
    assert params["error"] == "access_denied" and params["state"] == state
    assert params["error_description"].startswith("AADSTS")
