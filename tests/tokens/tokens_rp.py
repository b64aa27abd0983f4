"""Relying-party helpers built on independent client libraries (Authlib, joserfc).

Nothing here imports the provider's code: a test that uses these helpers exercises the
broker exactly as an outside relying party would.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet


class ClockedPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's ``private_key_jwt``, its assertions issued at the tests' clock.

    Authlib stamps ``iat`` from the wall clock and lets an assertion live 3600 s, exactly the
    longest the provider accepts; the provider's clock is frozen when the test starts, so any
    second the wall clock has moved on since would make the assertion live too long.
    """

    def __init__(self, clock, token_endpoint: str, *, alg: str):
        super().__init__(token_endpoint, alg=alg)
        self.clock = clock

    def sign(self, auth, token_endpoint):
        return private_key_jwt_sign(auth.client_secret, client_id=auth.client_id, token_endpoint=token_endpoint,
                                    claims=self.claims, header=self.headers, alg=self.alg,
                                    issued_at=int(self.clock()))


def session(env, client_id: str, *, scope: str = "openid profile roles", pkce: bool = True) -> OAuth2Session:
    """An Authlib session configured as the registered client ``client_id`` authenticates."""
    reg = env.clients[client_id]
    client = env.registry.client(client_id)
    method = client.token_endpoint_auth_method
    kwargs = dict(scope=scope, redirect_uri=reg.redirect_uri)
    if pkce:
        kwargs["code_challenge_method"] = "S256"
    if method == "private_key_jwt":
        auth = ClockedPrivateKeyJWT(env.clock, env.url("token"), alg=reg.private_key.alg or "RS256")
        s = OAuth2Session(client_id, reg.private_key, token_endpoint_auth_method=auth,
                          revocation_endpoint_auth_method=auth, **kwargs)
    else:
        s = OAuth2Session(client_id, reg.secret, token_endpoint_auth_method=method,
                          revocation_endpoint_auth_method=method, **kwargs)
    return s


def discover(env) -> dict:
    doc = requests.get(env.issuer + "/.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == env.issuer
    return doc


def authorize(env, s: OAuth2Session, **params) -> tuple[str, dict]:
    """Send the browser to the authorization endpoint; return the redirect and its parameters."""
    verifier = params.pop("code_verifier", None)
    url, state = s.create_authorization_url(env.url("authorize"), code_verifier=verifier, **params)
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302, (response.status_code, response.text[:300])
    location = response.headers["Location"]
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def code_flow(env, client_id: str, *, scope: str = "openid profile roles", pkce: bool = True, **params):
    """A complete authorization code flow; returns ``(session, token, nonce, verifier)``."""
    s = session(env, client_id, scope=scope, pkce=pkce)
    nonce = generate_token(20)
    verifier = generate_token(48) if pkce else None
    location, query = authorize(env, s, nonce=nonce, code_verifier=verifier, **params)
    assert "code" in query, query
    assert query["iss"] == env.issuer  # RFC 9207
    token = s.fetch_token(env.url("token"), authorization_response=location, code_verifier=verifier)
    return s, token, nonce, verifier


def verify_id_token(env, id_token: str, client_id: str, *, nonce: str | None = None,
                    access_token: str | None = None) -> dict:
    """Verify an ID token the way an RP does: JWKS from discovery, joserfc + Authlib's OIDC claims."""
    jwks = requests.get(discover(env)["jwks_uri"], timeout=5).json()
    decoded = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["ES256", "RS256"])
    assert decoded.header.get("kid"), "kid must always be present"
    claims = CodeIDToken(decoded.claims, decoded.header,
                         options={"iss": {"essential": True, "value": env.issuer},
                                  "aud": {"essential": True, "value": client_id}},
                         params={"nonce": nonce, "client_id": client_id, "access_token": access_token})
    claims.validate()
    return dict(claims)
