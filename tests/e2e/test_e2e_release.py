"""Release through the broker: each service gets only what its policy allows, in its profile."""

from __future__ import annotations

import secrets

import pytest
import requests
from agent import Person, register_client
from authlib.integrations.requests_client import OAuth2Session

REDIRECT = "https://release.example.org/cb"


def _login(stack, client_id, secret, scope, hint, username):
    meta = requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()
    session = OAuth2Session(client_id, secret, scope=scope, redirect_uri=REDIRECT, code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                              nonce="n", idp_hint=hint)
    callback = Person.callback(Person().login(url, *hint.split("/"), username))
    token = session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    return session.get(meta["userinfo_endpoint"]).json(), token


@pytest.fixture(scope="module")
def clients(stack):
    out = {}
    for name, policy in {
        "mpassid-rp": {"scopes": ["openid", "roles", "schools", "profile", "learner_id"], "profile": "mpassid"},
        "digione-rp": {"scopes": ["openid", "roles", "schools", "profile", "learner_id"], "profile": "digione"},
        "minimal-rp": {"scopes": ["openid", "roles"], "profile": "digione"},
    }.items():
        _, secret = register_client(stack, client_id=name, redirect_uris=[REDIRECT], policy=policy)
        out[name] = secret
    return out


def test_mpassid_profile_gets_mpassid_names_and_formats(stack, clients):
    claims, _ = _login(stack, "mpassid-rp", clients["mpassid-rp"], "openid roles schools profile learner_id",
                       "vantaa/koulu", "pupil.vantaa")
    assert claims["urn:mpass.id:uid"].startswith("MPASSOID.")
    assert claims["urn:oid:1.3.6.1.4.1.16161.1.1.27"].startswith("1.2.246.562.98.")
    role = claims["urn:mpass.id:role"][0].split(";")
    assert len(role) == 7 and role[3:5] == ["Oppilas", "1"] and role[1] == "90921"
    assert claims["urn:mpass.id:schoolInfo"]


def test_digione_profile_gets_the_documented_claims(stack, clients):
    claims, _ = _login(stack, "digione-rp", clients["digione-rp"], "openid roles schools profile learner_id",
                       "vantaa/entra", "pupil.vantaa")
    assert claims["roles"] == ["learner"]
    assert claims["role_assignments"] == [{"role": "learner", "code": 1, "school": "90921"}]
    assert claims["schools"][0]["code"] == "90921" and set(claims["schools"][0]["names"]) == {"fi", "sv", "en"}
    assert claims["learner_id"].startswith("1.2.246.562.98.")
    assert claims["given_name"] == "Aino Maria"


def test_a_service_not_entitled_to_the_learner_id_does_not_get_it_even_when_it_asks(stack, clients):
    claims, token = _login(stack, "minimal-rp", clients["minimal-rp"], "openid roles profile learner_id",
                           "vantaa/koulu", "pupil.vantaa")
    assert "learner_id" not in claims and "given_name" not in claims
    assert set(claims) <= {"sub", "roles", "role_assignments"}
    assert "learner_id" not in str(token)
