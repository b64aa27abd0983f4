"""Compact JWS signing for the broker's own tokens (RFC 7515, RFC 7518 §3).

Signing lives here; verification is :mod:`digione_verify` (the lower floor), re-exported
so the provider and the services check signatures with the same code, and decode every
JOSE header and payload through the same bounded parser (:func:`decode_json_object`: size
and nesting depth limited, never a ``RecursionError``).  Only asymmetric
algorithms exist on either side: ES256 (the default: a P-256 signature costs ~17 µs with
``cryptography``) and RS256 (for relying parties that cannot verify ECDSA).  Every token
carries a ``kid`` (RFC 7515 §4.1.4) so verifiers pick the key without trying each one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from digione_verify import (  # noqa: F401
    MAX_JSON_DEPTH,
    SUPPORTED_ALGORITHMS,
    InvalidToken,
    PublicKey,
    UnsupportedAlgorithm,
    b64url_decode,
    b64url_encode,
    decode_json_object,
    load_jwk,
    load_jwks,
    parse_jws,
    verify_jws,
    verify_signature,
)

#: The algorithms the broker signs with.
SIGNING_ALGORITHMS = ("ES256", "RS256")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def public_jwk(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> dict[str, str]:
    """The public JWK members of ``key`` (RFC 7518 §6.2.1, §6.3.1), without ``kid``/``alg``."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name != "secp256r1":
            raise ValueError("only P-256 EC keys are used for signing")
        point = key.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64url_encode(point.x.to_bytes(32, "big")),
                "y": b64url_encode(point.y.to_bytes(32, "big"))}
    numbers = key.public_numbers()
    return {"kty": "RSA", "n": b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url_encode(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))}


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url): the ``kid`` of our keys."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = _dumps({name: jwk[name] for name in required})  # members in lexicographic order
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


class SigningKey:
    """A private signing key with its ``kid`` and ``alg``; signs compact JWS.

    The base64url JOSE header for each ``typ`` is computed once per key, so signing a
    token costs one JSON encoding of the claims, two base64 encodings and the signature.
    """

    __slots__ = ("kid", "alg", "private_key", "public", "jwk", "_headers")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, alg: str,
                 kid: str | None = None):
        if alg == "ES256":
            if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
                raise ValueError("ES256 needs a P-256 key")
        elif alg == "RS256":
            if not isinstance(private_key, rsa.RSAPrivateKey) or private_key.key_size < 2048:
                raise ValueError("RS256 needs an RSA key of at least 2048 bits")
        else:
            raise UnsupportedAlgorithm(f"the broker does not sign with {alg!r}")
        self.private_key = private_key
        self.alg = alg
        members = public_jwk(private_key.public_key())
        self.kid = kid or thumbprint(members)
        self.jwk = {**members, "kid": self.kid, "alg": alg, "use": "sig"}
        self.public = PublicKey(private_key.public_key(), kid=self.kid, alg=alg)
        self._headers: dict[str | None, str] = {}

    @classmethod
    def generate(cls, alg: str) -> SigningKey:
        """A fresh key: P-256 for ES256, RSA-2048 (e=65537) for RS256."""
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()), alg)
        if alg == "RS256":
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), alg)
        raise UnsupportedAlgorithm(f"the broker does not sign with {alg!r}")

    def _header(self, typ: str | None) -> str:
        header = self._headers.get(typ)
        if header is None:
            fields = {"alg": self.alg, "kid": self.kid}
            if typ:
                fields["typ"] = typ
            header = self._headers[typ] = b64url_encode(orjson.dumps(fields))
        return header

    def _signature(self, data: bytes) -> bytes:
        key = self.private_key  # an EC key exactly when alg is ES256 (checked in __init__)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # RFC 7518 §3.4
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())  # RFC 7518 §3.3

    def sign(self, claims: dict[str, Any], *, typ: str | None = "JWT") -> str:
        """Return ``claims`` as a compact JWS (RFC 7515 §7.1) with ``alg``, ``kid`` and ``typ``."""
        signing_input = f"{self._header(typ)}.{b64url_encode(orjson.dumps(claims))}"
        return f"{signing_input}.{b64url_encode(self._signature(signing_input.encode('ascii')))}"

    def __repr__(self) -> str:  # never shows key material
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"


def half_hash(value: str, alg: str) -> str:
    """``at_hash``/``c_hash`` (OIDC Core §3.1.3.6): left half of the alg's hash, base64url."""
    digest = (hashlib.sha256 if alg.endswith("256") else hashlib.sha384 if alg.endswith("384")
              else hashlib.sha512)(value.encode("ascii")).digest()
    return b64url_encode(digest[: len(digest) // 2])
