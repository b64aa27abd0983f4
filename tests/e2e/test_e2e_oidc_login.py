"""An OIDC relying party built on independent libraries signs in through the broker,
via a city's SAML IdP and via a city's Entra-shaped OIDC IdP, and verifies the ID token
against the broker's JWKS."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import pytest
import requests
from agent import Person, register_client
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet
from oic.oic import Client as PyoidcClient
from oic.oic.message import AuthorizationResponse, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD

REDIRECT = "https://rp.example.org/callback"


@pytest.fixture(scope="module")
def rp(stack):
    client, secret = register_client(stack, client_id="e2e-rp", redirect_uris=[REDIRECT],
                                     policy={"scopes": ["openid", "roles", "schools", "profile", "learner_id"]})
    return client.client_id, secret


def _metadata(stack) -> dict:
    return requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()


@pytest.mark.parametrize("tenant,idp,username", [
    ("turku", "koulu", "teacher.turku"),      # SAML upstream, MPASSid attributes
    ("vantaa", "entra", "pupil.vantaa"),      # OIDC upstream, Entra claims
])
def test_code_flow_with_authlib_through_each_upstream(stack, rp, tenant, idp, username):
    person = Person()
    client_id, secret = rp
    meta = _metadata(stack)
    session = OAuth2Session(client_id, secret, scope="openid roles schools profile", redirect_uri=REDIRECT,
                            code_challenge_method="S256")
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    url, state = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                                  nonce=nonce, idp_hint=f"{tenant}/{idp}")
    # The hint names the IdP: no discovery page.
    response = person.get(url)
    assert "/disco" not in response.url
    response = person.sign_in(response, username)
    callback = Person.callback(response)

    token = session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    jwks = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=5).json())
    decoded = jwt.decode(token["id_token"], jwks, algorithms=["ES256", "RS256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": meta["issuer"]},
                          aud={"essential": True, "value": client_id},
                          nonce={"essential": True, "value": nonce}).validate(decoded.claims)
    claims = decoded.claims
    assert claims["sub"] and claims["sub"] != username
    assert claims["roles"] and all(isinstance(role, str) for role in claims["roles"]), claims["roles"]
    assert {a["role"] for a in claims["role_assignments"]} == set(claims["roles"])
    assert all(a["school"] for a in claims["role_assignments"])
    userinfo = session.get(meta["userinfo_endpoint"]).json()
    assert userinfo["sub"] == claims["sub"]
    assert userinfo["given_name"]


def test_code_flow_with_pyoidc_client(stack, rp):
    client_id, secret = rp
    client = PyoidcClient(client_authn_method=CLIENT_AUTHN_METHOD)
    client.provider_config(stack.broker_url)
    client.store_registration_info(RegistrationResponse(client_id=client_id, client_secret=secret,
                                                        redirect_uris=[REDIRECT]))
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    request = client.construct_AuthorizationRequest(request_args={
        "response_type": "code", "scope": "openid roles", "redirect_uri": REDIRECT, "state": state,
        "nonce": nonce, "client_id": client_id, "idp_hint": "oulu/koulu"})
    person = Person()
    response = person.get(request.request(client.authorization_endpoint))
    callback = Person.callback(person.sign_in(response, "principal.oulu"))
    authn = client.parse_response(AuthorizationResponse, info=urlsplit(callback).query, sformat="urlencoded")
    assert authn["state"] == state
    token = client.do_access_token_request(state=state, request_args={"code": authn["code"],
                                                                       "redirect_uri": REDIRECT},
                                           authn_method="client_secret_basic")
    id_token = token["id_token"]  # pyoidc verified its signature against the broker's JWKS
    assert id_token["iss"] == stack.broker_url and id_token["aud"] == [client_id]
    assert id_token["nonce"] == nonce
    assert "principal" in id_token["roles"]
    assert any(a["role"] == "principal" for a in id_token["role_assignments"])
