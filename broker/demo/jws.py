"""RS256 JSON Web Signatures and the matching JWKS, with ``cryptography`` only.

Just what the Entra-shaped demo IdP needs to sign ID tokens; verification is left
to the relying parties (the broker, Authlib) so that they check us independently.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE uses everywhere."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def thumbprint(cert: x509.Certificate) -> str:
    """``x5t``: base64url SHA-1 of the certificate; Entra uses it as the key id too."""
    return b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - x5t is defined as SHA-1


def public_jwk(cert: x509.Certificate, **extra: Any) -> dict[str, Any]:
    """The signing key as a JWK with ``x5c``/``x5t``, shaped like an Entra ID key."""
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    numbers = public.public_numbers()
    kid = thumbprint(cert)
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "kty": "RSA",
        "use": "sig",
        "kid": kid,
        "x5t": kid,
        "n": _uint(numbers.n),
        "e": _uint(numbers.e),
        "x5c": [base64.b64encode(der).decode("ascii")],
        **extra,
    }


def sign_rs256(claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str) -> str:
    """A compact JWS (a JWT) of ``claims``, RS256, with ``kid`` in the header."""
    header = {"typ": "JWT", "alg": "RS256", "kid": kid}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def s256(verifier: str) -> str:
    """The PKCE S256 code challenge of ``verifier``."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())
