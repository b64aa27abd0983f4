"""The Entra-shaped demo IdP against Authlib's OAuth2Session, with ID tokens verified by joserfc."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from broker.demo.directory import DEMO_DIRECTORY

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def discovery(entra, city):
    return requests.get(f"{entra.issuer(city)}/.well-known/openid-configuration", timeout=5).json()


def client_for(entra, **kwargs):
    return OAuth2Session(entra.client_id, entra.client_secret, scope="openid profile email",
                         redirect_uri=entra.redirect_uri, code_challenge_method="S256", **kwargs)


def authorize(entra, city, browser, client, *, verifier="", nonce="n-0S6_WzA2Mj", **params):
    """Open the authorize URL in ``browser``; returns the IdP's answer (not followed)."""
    url, state = client.create_authorization_url(
        discovery(entra, city)["authorization_endpoint"], nonce=nonce, code_verifier=verifier or None, **params)
    return browser.get(url, allow_redirects=False, timeout=10), state


def sign_in(browser, page, login_form, username, password="demo"):
    action, fields = login_form(page.text)
    return browser.post(action, data={**fields, "username": username, "password": password},
                        allow_redirects=False, timeout=10)


def callback(response, entra):
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(entra.redirect_uri + "?")
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def verify_id_token(entra, city, id_token, nonce):
    jwks = requests.get(discovery(entra, city)["jwks_uri"], timeout=5).json()
    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": entra.issuer(city)},
        aud={"essential": True, "value": entra.client_id},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
    ).validate(token.claims)
    return token.header, token.claims


def test_pupil_code_flow_with_pkce_and_client_secret_basic(entra_server, login_form):
    entra, browser = entra_server, requests.Session()
    client, verifier = client_for(entra_server), generate_token(48)
    page, state = authorize(entra, "vantaa", browser, client, verifier=verifier)
    assert page.status_code == 200 and 'id="login"' in page.text
    location, params = callback(sign_in(browser, page, login_form, "pupil@vantaa.example"), entra)
    assert params["state"] == state

    token = client.fetch_token(discovery(entra, "vantaa")["token_endpoint"], authorization_response=location,
                               code_verifier=verifier)
    assert token["token_type"] == "Bearer"
    header, claims = verify_id_token(entra, "vantaa", token["id_token"], "n-0S6_WzA2Mj")
    assert header["alg"] == "RS256" and header["kid"]

    city = DEMO_DIRECTORY["vantaa"]
    pupil_groups = {g["id"] for g in city["groups"] if g["role"] == "pupil" and g["school"] == "90921"}
    assert claims["ver"] == "2.0"
    assert claims["tid"] == city["entra_tenant_id"] and GUID.match(claims["tid"])
    assert GUID.match(claims["oid"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", claims["sub"])
    assert claims["preferred_username"] == claims["email"] == "pupil@vantaa.example"
    assert (claims["given_name"], claims["family_name"], claims["name"]) == ("Aino Maria", "Virtanen",
                                                                            "Aino Virtanen")
    assert set(claims["groups"]) == pupil_groups
    assert claims["roles"] == ["Student"]
    assert claims["extn_learnerId"] == "1.2.246.562.98.09200000001"
    assert claims["schoolIds"] == "90921"
    assert claims["nbf"] <= claims["iat"] < claims["exp"]

    info = client.get(discovery(entra, "vantaa")["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"]
    assert info["given_name"] == "Aino Maria"


def test_teacher_gets_schools_as_one_string_and_no_learner_id(entra_server, login_form):
    entra, browser = entra_server, requests.Session()
    client = client_for(entra, token_endpoint_auth_method="client_secret_post")
    page, _ = authorize(entra, "oulu", browser, client, verifier="v" * 43)
    location, _ = callback(sign_in(browser, page, login_form, "teacher.oulu"), entra)
    token = client.fetch_token(discovery(entra, "oulu")["token_endpoint"], authorization_response=location,
                               code_verifier="v" * 43)
    _, claims = verify_id_token(entra, "oulu", token["id_token"], "n-0S6_WzA2Mj")
    assert claims["schoolIds"] == "95641;95642"
    assert claims["roles"] == ["Teacher"]
    assert "extn_learnerId" not in claims
    assert len(claims["groups"]) == 2


def test_codes_are_single_use_and_bound_to_the_verifier(entra_server, login_form):
    entra, browser = entra_server, requests.Session()
    client, verifier = client_for(entra), generate_token(48)
    token_endpoint = discovery(entra, "vantaa")["token_endpoint"]
    page, _ = authorize(entra, "vantaa", browser, client, verifier=verifier)
    location, _ = callback(sign_in(browser, page, login_form, "pupil.vantaa"), entra)

    with pytest.raises(OAuthError) as wrong:
        client.fetch_token(token_endpoint, authorization_response=location, code_verifier=generate_token(48))
    assert wrong.value.error == "invalid_grant"
    # The failed attempt consumed the code too (like Entra): it cannot be retried.
    with pytest.raises(OAuthError) as again:
        client.fetch_token(token_endpoint, authorization_response=location, code_verifier=verifier)
    assert again.value.error == "invalid_grant" and "AADSTS70008" in again.value.description


def test_client_secret_basic_refuses_a_wrong_secret_and_accepts_rfc_form_encoding(entra_server, login_form):
    entra, browser = entra_server, requests.Session()
    page, _ = authorize(entra, "vantaa", browser, client_for(entra))
    location, params = callback(sign_in(browser, page, login_form, "pupil.vantaa"), entra)
    form = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": entra.redirect_uri}
    token_endpoint = discovery(entra, "vantaa")["token_endpoint"]
    wrong = requests.post(token_endpoint, data=form, auth=(entra.client_id, "nope"), timeout=5)
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client" and wrong.headers["WWW-Authenticate"].startswith("Basic")
    # RFC 6749 2.3.1: credentials form-encoded before base64 (the failed attempt left the code unused).
    right = requests.post(token_endpoint, data=form, timeout=5,
                          auth=(quote_plus(entra.client_id), quote_plus(entra.client_secret)))
    assert right.status_code == 200 and right.json()["id_token"]


@pytest.mark.parametrize(("client_id", "redirect_uri"), [
    ("test-rp", "http://evil.test/callback"),
    ("unknown-client", "http://rp.test/callback"),
])
def test_unknown_clients_and_redirect_uris_get_a_page_never_a_redirect(entra_server, client_id, redirect_uri):
    url = discovery(entra_server, "vantaa")["authorization_endpoint"]
    page = requests.get(url, params={"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
                                     "scope": "openid", "state": "s"}, allow_redirects=False, timeout=5)
    assert page.status_code == 400
    assert "Location" not in page.headers
    assert 'id="error"' in page.text and "evil.test" not in page.text


def test_session_signs_in_silently_prompt_login_asks_again_prompt_none_fails_without(entra_server, login_form):
    entra, browser = entra_server, requests.Session()
    page, _ = authorize(entra, "vantaa", browser, client_for(entra))
    callback(sign_in(browser, page, login_form, "teacher.vantaa"), entra)

    silent, _ = authorize(entra, "vantaa", browser, client_for(entra))
    assert "code" in callback(silent, entra)[1]
    forced, _ = authorize(entra, "vantaa", browser, client_for(entra), prompt="login")
    assert forced.status_code == 200 and 'id="login"' in forced.text

    other_tenant, _ = authorize(entra, "oulu", browser, client_for(entra), prompt="none")
    params = callback(other_tenant, entra)[1]
    assert params["error"] == "login_required" and "code" not in params


def test_form_post_response_mode_and_cancel(entra_server, login_form, only_form):
    entra, browser = entra_server, requests.Session()
    page, state = authorize(entra, "vantaa", browser, client_for(entra), response_mode="form_post")
    action, fields = login_form(page.text)
    answer = browser.post(action, data={**fields, "username": "pupil.vantaa", "password": "demo"}, timeout=10)
    target, posted = only_form(answer.text)
    assert target == entra.redirect_uri and posted["state"] == state and posted["code"]

    page, _ = authorize(entra, "oulu", browser, client_for(entra))
    action, fields = login_form(page.text)
    params = callback(browser.post(action, data={**fields, "cancel": "1"}, allow_redirects=False), entra)[1]
    assert params["error"] == "access_denied"


def test_wrong_password_and_unknown_tenant(entra_server, login_form):
    entra, browser = entra_server, requests.Session()
    page, _ = authorize(entra, "vantaa", browser, client_for(entra))
    again = sign_in(browser, page, login_form, "pupil.vantaa", password="wrong")
    assert again.status_code == 401 and 'id="error"' in again.text
    assert requests.get(f"{entra.url}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration",
                        timeout=5).status_code == 404


def test_discovery_is_shaped_like_entra(entra_server):
    tid = DEMO_DIRECTORY["vantaa"]["entra_tenant_id"]
    doc = discovery(entra_server, "vantaa")
    assert doc["issuer"] == f"{entra_server.url}/{tid}/v2.0"
    assert doc["authorization_endpoint"] == f"{entra_server.url}/{tid}/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{entra_server.url}/{tid}/oauth2/v2.0/token"
    assert doc["jwks_uri"] == f"{entra_server.url}/{tid}/discovery/v2.0/keys"
    assert {"client_secret_basic", "client_secret_post"} <= set(doc["token_endpoint_auth_methods_supported"])
    keys = requests.get(doc["jwks_uri"], timeout=5).json()["keys"]
    assert [key["kty"] for key in keys] == ["RSA"] and keys[0]["kid"] == keys[0]["x5t"]
