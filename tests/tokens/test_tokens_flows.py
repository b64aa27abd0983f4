"""Every flow and client-authentication method, driven by independent clients over HTTP.

Authlib (``OAuth2Session``, ``PrivateKeyJWT``; joserfc for JOSE) and pyoidc's ``Client``
play the relying parties; the provider runs behind a real socket.  Each test runs on the
memory store and on Redis; ``any_env`` tests also run through the SATOSA frontend.
"""

from __future__ import annotations

import requests
from authlib.integrations.requests_client import OAuth2Session
from tokens_harness import IDENTITY
from tokens_rp import code_flow, discover, verify_id_token

from digione_verify import TokenVerifier


def test_code_flow_with_basic_auth_end_to_end(any_env):
    """Code + PKCE, client_secret_basic; ID token verified against the discovered JWKS."""
    env = any_env
    s, token, nonce, _ = code_flow(env, "rp1", scope="openid profile email roles")
    assert token["token_type"] == "Bearer" and token["expires_in"] == 300
    claims = verify_id_token(env, token["id_token"], "rp1", nonce=nonce, access_token=token["access_token"])
    assert claims["name"] == IDENTITY["name"] and claims["roles"] == ["teacher"]
    assert claims["sid"] == "sso-session-1" and claims["acr"] == "urn:test:pwd" and claims["azp"] == "rp1"
    assert isinstance(claims["auth_time"], int)

    info = s.get(env.url("userinfo")).json()  # Authlib sends the bearer token
    assert info["sub"] == claims["sub"] and info["email"] == IDENTITY["email"]

    refreshed = s.refresh_token(env.url("token"))
    assert refreshed["refresh_token"] != token["refresh_token"]  # rotated on every use
    again = verify_id_token(env, refreshed["id_token"], "rp1", access_token=refreshed["access_token"])
    assert again["sub"] == claims["sub"] and again["auth_time"] == claims["auth_time"]  # OIDC Core §12.2
    assert "nonce" not in again


def test_access_token_is_rfc9068_and_verifies_with_broker_verify(env):
    _, token, _, _ = code_flow(env, "rp1", scope="openid roles")
    verifier = TokenVerifier(env.issuer, "https://api.example", required_scopes=("roles",), required_roles=("teacher",))
    claims = verifier.verify(token["access_token"])
    assert claims["client_id"] == "rp1" and claims["scope"] == "openid roles"
    assert claims["aud"] == ["rp1", "https://api.example"] and claims["roles"] == ["teacher"]
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"]


def test_client_secret_post(env):
    s, token, nonce, _ = code_flow(env, "post")
    verify_id_token(env, token["id_token"], "post", nonce=nonce, access_token=token["access_token"])
    assert s.refresh_token(env.url("token"))["access_token"]


def test_private_key_jwt_with_registered_rsa_jwks(env):
    s, token, nonce, _ = code_flow(env, "pkjwt")
    verify_id_token(env, token["id_token"], "pkjwt", nonce=nonce)
    assert s.refresh_token(env.url("token"))["access_token"]  # a fresh assertion (new jti) each time


def test_private_key_jwt_with_ec_key(env):
    _, token, nonce, _ = code_flow(env, "pkjwt-ec")
    verify_id_token(env, token["id_token"], "pkjwt-ec", nonce=nonce)


def test_private_key_jwt_with_jwks_uri(env):
    """The client's keys are fetched from its jwks_uri over HTTP (RFC 7523, OIDC Core §9)."""
    _, token, nonce, _ = code_flow(env, "pkjwt-uri")
    verify_id_token(env, token["id_token"], "pkjwt-uri", nonce=nonce)


def test_public_client_none_with_pkce(any_env):
    s, token, nonce, _ = code_flow(any_env, "spa")
    verify_id_token(any_env, token["id_token"], "spa", nonce=nonce)
    assert s.refresh_token(any_env.url("token"))["refresh_token"]


def test_confidential_client_without_pkce_and_client_without_refresh(env):
    _, token, _, _ = code_flow(env, "rp2", pkce=False)
    assert token["access_token"] and "refresh_token" in token
    _, token, _, _ = code_flow(env, "nofresh")
    assert "refresh_token" not in token


def test_introspection_by_client_and_by_resource_server(env):
    s, token, _, _ = code_flow(env, "rp1", scope="openid roles")
    own = s.introspect_token(env.url("introspect"), token=token["access_token"]).json()
    assert own["active"] is True and own["client_id"] == "rp1" and own["roles"] == ["teacher"]
    rs = OAuth2Session("rs", env.clients["rs"].secret)
    seen = rs.introspect_token(env.url("introspect"), token=token["access_token"],
                               token_type_hint="access_token").json()
    assert seen["active"] is True and seen["scope"] == "openid roles" and seen["sub"] == own["sub"]
    refresh = s.introspect_token(env.url("introspect"), token=token["refresh_token"],
                                 token_type_hint="refresh_token").json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    # another ordinary client learns nothing about rp1's tokens (RFC 7662 §4)
    other = OAuth2Session("rp2", env.clients["rp2"].secret)
    assert other.introspect_token(env.url("introspect"), token=token["access_token"]).json() == {"active": False}
    assert other.introspect_token(env.url("introspect"), token=token["refresh_token"]).json() == {"active": False}
    assert rs.introspect_token(env.url("introspect"), token="garbage").json() == {"active": False}


def test_introspection_refuses_public_and_unauthenticated_callers(env):
    _, token, _, _ = code_flow(env, "spa")
    response = requests.post(env.url("introspect"), data={"token": token["access_token"], "client_id": "spa"},
                             timeout=5)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    response = requests.post(env.url("introspect"), data={"token": token["access_token"]}, timeout=5)
    assert response.status_code == 401


def test_revoking_access_token_and_refresh_token(env):
    s, token, _, _ = code_flow(env, "rp1")
    rs = OAuth2Session("rs", env.clients["rs"].secret)
    assert s.revoke_token(env.url("revoke"), token=token["access_token"],
                          token_type_hint="access_token").status_code == 200
    assert rs.introspect_token(env.url("introspect"), token=token["access_token"]).json() == {"active": False}
    assert s.get(env.url("userinfo")).status_code == 401

    s, token, _, _ = code_flow(env, "rp1")
    assert s.revoke_token(env.url("revoke"), token=token["refresh_token"]).status_code == 200
    # RFC 7009 §2.1: revoking the refresh token ends the grant, access tokens included
    assert rs.introspect_token(env.url("introspect"), token=token["access_token"]).json() == {"active": False}
    refused = requests.post(env.url("token"), auth=("rp1", env.clients["rp1"].secret), timeout=5,
                            data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_revocation_of_another_clients_token_is_a_silent_no_op(env):
    _, token, _, _ = code_flow(env, "rp1")
    other = OAuth2Session("rp2", env.clients["rp2"].secret)
    assert other.revoke_token(env.url("revoke"), token=token["refresh_token"]).status_code == 200
    assert other.revoke_token(env.url("revoke"), token=token["access_token"]).status_code == 200
    rs = OAuth2Session("rs", env.clients["rs"].secret)
    assert rs.introspect_token(env.url("introspect"), token=token["access_token"]).json()["active"] is True
    assert rs.introspect_token(env.url("introspect"), token=token["refresh_token"]).json() == {"active": False}


def test_public_client_revokes_its_own_refresh_token(env):
    s, token, _, _ = code_flow(env, "spa")
    assert s.revoke_token(env.url("revoke"), token=token["refresh_token"]).status_code == 200
    refused = requests.post(env.url("token"), timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": "spa"})
    assert refused.json()["error"] == "invalid_grant"


def test_refresh_may_narrow_scope_but_never_widen(env):
    s, token, _, _ = code_flow(env, "rp1", scope="openid roles")
    narrowed = s.refresh_token(env.url("token"), scope="openid")
    assert narrowed["scope"] == "openid"
    widened = requests.post(env.url("token"), auth=("rp1", env.clients["rp1"].secret), timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": narrowed["refresh_token"], "scope": "openid roles email"})
    assert widened.status_code == 400 and widened.json()["error"] == "invalid_scope"


def test_userinfo_by_post_form_and_errors(env):
    _, token, _, _ = code_flow(env, "rp1")
    ok = requests.post(env.url("userinfo"), data={"access_token": token["access_token"]}, timeout=5)
    assert ok.status_code == 200 and ok.json()["sub"]
    missing = requests.get(env.url("userinfo"), timeout=5)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    in_query = requests.get(env.url("userinfo"), params={"access_token": token["access_token"]}, timeout=5)
    assert in_query.status_code == 400  # RFC 6750 §2.3 discouraged: refused
    id_as_access = requests.get(env.url("userinfo"), headers={"Authorization": "Bearer " + token["id_token"]},
                                timeout=5)
    assert id_as_access.status_code == 401 and 'error="invalid_token"' in id_as_access.headers["WWW-Authenticate"]


def test_pyoidc_client_completes_the_flow(env):
    """pyoidc (oic) as a second, independent RP library: discovery, code flow, ID token, userinfo."""
    from oic.oic import Client as PyoidcClient
    from oic.oic.message import AuthorizationResponse, RegistrationResponse
    from oic.utils.authn.client import CLIENT_AUTHN_METHOD

    reg = env.clients["rp1"]
    client = PyoidcClient(client_authn_method=CLIENT_AUTHN_METHOD)
    client.provider_config(env.issuer)
    client.store_registration_info(RegistrationResponse(client_id="rp1", client_secret=reg.secret,
                                                        redirect_uris=[reg.redirect_uri]))
    client.redirect_uris = [reg.redirect_uri]
    state, nonce = "pyoidc-state-1", "pyoidc-nonce-1"
    request = client.construct_AuthorizationRequest(request_args={
        "client_id": "rp1", "response_type": "code", "scope": ["openid", "profile"], "state": state,
        "nonce": nonce, "redirect_uri": reg.redirect_uri})
    location = requests.get(request.request(env.url("authorize")), allow_redirects=False,
                            timeout=5).headers["Location"]
    response = client.parse_response(AuthorizationResponse, info=location.split("?", 1)[1], sformat="urlencoded")
    assert response["state"] == state
    token = client.do_access_token_request(state=state, request_args={"code": response["code"]},
                                           authn_method="client_secret_basic")
    id_token = token["id_token"]  # pyoidc verified the signature with the provider's JWKS
    assert id_token["nonce"] == nonce and id_token["iss"] == env.issuer and id_token["aud"] == ["rp1"]
    info = client.do_user_info_request(state=state)
    assert info["sub"] == id_token["sub"] and info["name"] == IDENTITY["name"]


def test_discovery_is_truthful(env):
    doc = discover(env)
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
    assert set(doc["id_token_signing_alg_values_supported"]) == {"ES256", "RS256"}
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["request_parameter_supported"] is False
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                 "introspection_endpoint", "revocation_endpoint", "end_session_endpoint"):
        assert doc[name].startswith(env.issuer + "/")
        assert requests.get(doc[name], allow_redirects=False, timeout=5).status_code < 500
    jwks = requests.get(doc["jwks_uri"], timeout=5).json()
    algs = {k["alg"] for k in jwks["keys"]}
    assert algs == {"ES256", "RS256"} and all(k.get("kid") and k["use"] == "sig" for k in jwks["keys"])
    assert all("d" not in k and "p" not in k for k in jwks["keys"])  # public parts only


def test_rs256_id_tokens_for_clients_that_ask(env, monkeypatch):
    """A client whose registration says ``id_token_signed_response_alg: RS256`` gets RS256 ID tokens."""
    import dataclasses

    from joserfc.jws import extract_compact

    clients = env.registry.clients
    monkeypatch.setitem(clients, "rp2", dataclasses.replace(clients["rp2"], id_token_signed_response_alg="RS256"))
    _, token, nonce, _ = code_flow(env, "rp2")
    assert extract_compact(token["id_token"].encode()).protected["alg"] == "RS256"
    verify_id_token(env, token["id_token"], "rp2", nonce=nonce)
