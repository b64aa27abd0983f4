"""A hostile OpenID Provider: a real HTTP peer that answers the broker as a test tells it to.

It is a complete, correct authorization-code OP (discovery, JWKS, authorize with
PKCE, single-use codes checked against client credentials and ``code_verifier``,
RS256 ID tokens) until a test sets :attr:`HostileOp.scenario`; then it lies in
exactly one way: an unsigned or HMAC-forged ID token, a wrong ``iss``/``aud``/
``nonce``, an expired token, a token-endpoint error, ``error=access_denied`` or a
forged ``state`` in the callback.  Its tenant (``hostile``) is registered with
the broker like any city, so the broker's checks are what stands in the way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask, jsonify, redirect, request

TENANT = "hostile"
IDP = "op"
CLIENT_ID = "digione-hostile"
KID = "hostile-1"
SUBJECT_OID = "0c0f3a52-3a8e-4d2e-9a4b-6f0f3d2a1b10"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()

    def encode(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": encode(numbers.n), "e": encode(numbers.e)}


def compact(header: dict[str, Any], claims: dict[str, Any], sign) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


class HostileOp:
    """State and keys of the OP; :meth:`app` serves it."""

    def __init__(self, client_secret: str):
        self.client_secret = client_secret
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.base_url = ""                      # set once served
        self.scenario = "valid"
        self.impersonated: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self._lock = threading.Lock()

    @property
    def issuer(self) -> str:
        return self.base_url

    def public_pem(self, fmt=serialization.PublicFormat.SubjectPublicKeyInfo) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.PEM, fmt)

    # -- tokens ------------------------------------------------------------------------

    def claims(self, nonce: str) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.issuer, "aud": CLIENT_ID, "sub": "pairwise-" + SUBJECT_OID[:8], "oid": SUBJECT_OID,
                "tid": "hostile-tenant", "nonce": nonce, "iat": now, "nbf": now, "exp": now + 600,
                "given_name": "Hilda", "family_name": "Hostila", "roles": ["Teacher"]}

    def rs256(self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str = KID) -> str:
        key = key or self.key
        return compact({"alg": "RS256", "typ": "JWT", "kid": kid}, claims,
                       lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256()))

    def id_token(self, nonce: str) -> str:
        claims = self.claims(nonce)
        scenario = self.scenario
        if scenario == "alg_none":
            return compact({"alg": "none", "typ": "JWT", "kid": KID}, claims, lambda data: b"")
        if scenario.startswith("hs256_"):
            secret = {"hs256_spki_pem": self.public_pem(),
                      "hs256_pkcs1_pem": self.public_pem(serialization.PublicFormat.PKCS1),
                      "hs256_jwk_n": base64.urlsafe_b64decode(_rsa_jwk(self.key, KID)["n"] + "==")}[scenario]
            return compact({"alg": "HS256", "typ": "JWT", "kid": KID}, claims,
                           lambda data: hmac.new(secret, data, hashlib.sha256).digest())
        if scenario == "foreign_key":
            return self.rs256(claims, key=self.other_key)
        if scenario == "unknown_kid":
            return self.rs256(claims, key=self.other_key, kid="rotated-2")
        if scenario == "embedded_jwk":
            jwk = _rsa_jwk(self.other_key, "attacker")
            return compact({"alg": "RS256", "typ": "JWT", "kid": "attacker", "jwk": jwk}, claims,
                           lambda data: self.other_key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        if scenario == "no_exp":
            del claims["exp"]
        if scenario == "wrong_iss":
            claims["iss"] = "https://login.evil.example/v2.0"
        elif scenario == "wrong_aud":
            claims["aud"] = "digione-someone-else"
        elif scenario == "other_azp":
            claims["aud"], claims["azp"] = [CLIENT_ID, "digione-someone-else"], "digione-someone-else"
        elif scenario == "nonce_mismatch":
            claims["nonce"] = secrets.token_urlsafe(24)
        elif scenario == "no_sub":
            del claims["sub"]
        elif scenario == "no_nonce":
            del claims["nonce"]
        elif scenario == "expired":
            claims.update(iat=claims["iat"] - 3600, nbf=claims["nbf"] - 3600, exp=claims["iat"] - 600)
        elif scenario.startswith("impersonate:"):
            # Another city's person, claim for claim (their Entra oid and tid), from this OP.
            claims.update(self.impersonated)
        elif scenario == "not_yet_valid":
            claims.update(iat=claims["iat"] + 3600, nbf=claims["nbf"] + 3600, exp=claims["exp"] + 3600)
        return self.rs256(claims)

    # -- the app -----------------------------------------------------------------------------

    def app(self) -> Flask:
        app = Flask("hostile_op")

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({
                "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "code_challenge_methods_supported": ["S256"],
            })

        @app.get("/jwks")
        def jwks():
            return jsonify({"keys": [_rsa_jwk(self.key, KID)]})

        @app.get("/authorize")
        def authorize():
            args = request.args
            if args.get("client_id") != CLIENT_ID or args.get("code_challenge_method") != "S256":
                return "bad authorization request", 400
            back = {"state": args["state"]}
            if self.scenario == "access_denied":
                back.update(error="access_denied", error_description="The user declined")
            else:
                code = secrets.token_urlsafe(16)
                with self._lock:
                    self.codes[code] = {"nonce": args.get("nonce", ""), "challenge": args["code_challenge"],
                                        "redirect_uri": args["redirect_uri"]}
                back["code"] = code
                if self.scenario == "state_mismatch":
                    back["state"] = secrets.token_urlsafe(24)
                elif self.scenario == "iss_mismatch":
                    back["iss"] = "https://login.evil.example/v2.0"
            return redirect(f"{args['redirect_uri']}?{urlencode(back)}", 302)

        @app.post("/token")
        def token():
            form = request.form
            self.token_requests.append(dict(form))
            auth = request.authorization
            if auth is None or auth.username != CLIENT_ID or not hmac.compare_digest(
                    (auth.password or "").encode(), self.client_secret.encode()):
                return jsonify({"error": "invalid_client"}), 401
            with self._lock:
                grant = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if grant is None or grant["redirect_uri"] != form.get("redirect_uri") or \
                    b64url(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
                return jsonify({"error": "invalid_grant"}), 400
            if self.scenario == "token_error":
                return jsonify({"error": "invalid_grant", "error_description": "AADSTS70008: expired"}), 400
            return jsonify({"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 600,
                            "id_token": self.id_token(grant["nonce"])})

        return app


def tenant_yaml(issuer: str) -> str:
    """The hostile OP's tenant file: a city like the others, its one IdP at ``issuer``."""
    return f"""\
# A test tenant whose only IdP is the hostile OpenID Provider of tests/security.
id: {TENANT}
names: {{fi: Vihamielinen, sv: Fientlig, en: Hostile}}
municipality_code: "999"
domains: [hostile.example]
education_provider:
  oid: "1.2.246.562.10.99990000000"
  names: {{fi: Vihamielinen kunta, sv: Fientlig kommun, en: Hostile municipality}}
schools:
  - code: "99991"
    oid: "1.2.246.562.10.99990000001"
    names: {{fi: Testikoulu, sv: Testskola, en: Test School}}
identity_providers:
  - id: {IDP}
    type: oidc
    names: {{fi: Vihamielinen OP, sv: Fientlig OP, en: Hostile OP}}
    issuer: {issuer}
    client_id: {CLIENT_ID}
    client_secret: {{env: TENANT_SECRET_HOSTILE_OP}}
    scopes: [openid, profile]
    mapping:
      preset: entra
"""
