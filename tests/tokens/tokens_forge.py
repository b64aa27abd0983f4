"""Raw HTTP and forged tokens for the attack tests (standard library + requests only)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.hazmat.primitives import serialization


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, claims: dict, *, hmac_key: bytes | None = None) -> str:
    """``alg=none`` (empty signature) or ``HS256`` keyed with ``hmac_key``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if hmac_key is None:
        return signing_input + "."
    return signing_input + "." + b64(hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest())


def public_key_material(env, alg: str = "RS256") -> tuple[str, list[bytes]]:
    """The kid of our published key for ``alg`` and what an attacker would use as an HMAC secret."""
    jwk = next(k for k in requests.get(env.url("jwks"), timeout=5).json()["keys"] if k["alg"] == alg)
    key = env.keyring.public_key(jwk["kid"]).key
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return jwk["kid"], [pem, der, json.dumps(jwk).encode()]


def auth_params(env, client_id: str, **extra) -> dict:
    verifier = "v" * 64
    params = {"client_id": client_id, "redirect_uri": env.clients[client_id].redirect_uri, "response_type": "code",
              "scope": "openid", "state": "s-1", "nonce": "n-1", "code_challenge": create_s256_code_challenge(verifier),
              "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def get_authorize(env, params, **kwargs) -> requests.Response:
    return requests.get(env.url("authorize") + "?" + urlencode(params, doseq=True), allow_redirects=False,
                        timeout=5, **kwargs)


def redirected_error(response: requests.Response, redirect_uri: str) -> dict:
    assert response.status_code == 302, response.text[:200]
    location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token_request(env, client_id: str, data: dict, *, secret: str | None = None) -> requests.Response:
    secret = env.clients[client_id].secret if secret is None else secret
    return requests.post(env.url("token"), data=data, auth=(client_id, secret), timeout=5)


def introspect(env, token: str) -> dict:
    return requests.post(env.url("introspect"), data={"token": token}, auth=("rs", env.clients["rs"].secret),
                         timeout=5).json()
