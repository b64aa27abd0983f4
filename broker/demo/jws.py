"""The Entra-shaped demo IdP's key as a JWK (``x5c``/``x5t``), and its RS256 signing.

Signing is :class:`broker.tokens.jws.SigningKey` (the one JWS signer of the project);
verification is left to the relying parties (the broker, Authlib), so they check the
demo independently.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.tokens.jws import SigningKey
from broker.tokens.jws import public_jwk as members
from digione_verify import b64url_encode as b64url


def thumbprint(cert: x509.Certificate) -> str:
    """``x5t``: base64url SHA-1 of the certificate; Entra uses it as the key id too."""
    return b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - x5t is defined as SHA-1


def public_jwk(cert: x509.Certificate, **extra: Any) -> dict[str, Any]:
    """The signing key as a JWK with ``x5c``/``x5t``, shaped like an Entra ID key."""
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    kid = thumbprint(cert)
    der = cert.public_bytes(serialization.Encoding.DER)
    return {**members(public), "use": "sig", "kid": kid, "x5t": kid,
            "x5c": [base64.b64encode(der).decode("ascii")], **extra}


def sign_rs256(claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str) -> str:
    """A compact JWS (a JWT) of ``claims``, RS256, with ``kid`` in the header."""
    return SigningKey(key, "RS256", kid).sign(claims, typ="JWT")
