"""Tokens for the kit's own tests, signed here with ``cryptography`` (no broker involved).

:class:`Issuer` is a stand-in for the broker's published keys: an ES256 key with a ``kid``,
its JWKS served through an ``http_get`` double, and :meth:`Issuer.access_token` builds an
RFC 9068 access token in the broker's shape (``roles`` names, ``role_assignments``).  The
tests against tokens the broker really issued are ``tests/e2e/test_e2e_verify_kit.py``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from digione_verify import TokenVerifier, b64url_encode

ISSUER = "https://login.example.fi"
AUDIENCE = "https://grades.example.fi"

#: A teacher at 03083 (class 9A) who is the principal of 03084, in the broker's claim shape.
TEACHER_AND_PRINCIPAL = {
    "roles": ["teacher", "principal"],
    "role_assignments": [{"role": "teacher", "code": 2, "school": "03083", "group": "9A"},
                         {"role": "principal", "code": 6, "school": "03084"}],
}


class Issuer:
    """One signing key and the discovery document and JWKS that publish it."""

    def __init__(self, kid: str = "k1") -> None:
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.requests: list[str] = []

    def jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                "x": b64url_encode(numbers.x.to_bytes(32, "big")), "y": b64url_encode(numbers.y.to_bytes(32, "big"))}

    def http_get(self, url: str) -> bytes:
        """What the issuer serves: its discovery document and its JWKS."""
        self.requests.append(url)
        if url == ISSUER + "/.well-known/openid-configuration":
            return json.dumps({"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks"}).encode()
        if url == ISSUER + "/jwks":
            return json.dumps({"keys": [self.jwk()]}).encode()
        raise OSError("HTTP 404")

    def sign(self, claims: dict[str, Any], *, typ: str = "at+jwt", header: dict[str, Any] | None = None) -> str:
        head = {"alg": "ES256", "kid": self.kid, "typ": typ, **(header or {})}
        signing_input = (b64url_encode(json.dumps(head).encode()) + "." +
                         b64url_encode(json.dumps(claims).encode())).encode("ascii")
        r, s = decode_dss_signature(self.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return signing_input.decode("ascii") + "." + b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def access_token(self, **claims: Any) -> str:
        """An access token for :data:`AUDIENCE`, valid now; ``claims`` replace or add (``None`` removes)."""
        now = int(time.time())
        body: dict[str, Any] = {"iss": ISSUER, "sub": "pairwise-sub", "aud": ["grades-app", AUDIENCE],
                                "client_id": "grades-app", "scope": "openid roles", "iat": now, "exp": now + 300,
                                "jti": f"jti-{time.monotonic_ns()}", **TEACHER_AND_PRINCIPAL}
        body.update(claims)
        return self.sign({k: v for k, v in body.items() if v is not None})

    def verifier(self, **options: Any) -> TokenVerifier:
        return TokenVerifier(ISSUER, AUDIENCE, http_get=self.http_get, **options)
