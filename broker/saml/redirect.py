"""The HTTP-Redirect binding (SAML Bindings §3.4): messages in the query string, signed over it.

Single logout travels mostly by redirects: the broker sends LogoutRequests to service
providers and to the cities' IdPs, and receives LogoutRequests and LogoutResponses back.
A redirect-bound message is DEFLATE-compressed, base64-encoded and URL-encoded
(§3.4.4.1). Its signature is not inside the XML but over the query string itself:
``SAMLRequest=…&RelayState=…&SigAlg=…``, exactly as the values were URL-encoded by the
sender.

:func:`decode` therefore keeps the raw encoded values and verifies over those octets,
never over a re-encoding (two encoders may differ in case or in which characters they
escape). Keys come only from metadata. Only RSA and ECDSA with SHA-256 or better are
accepted (the broker's default policy, decision 9).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import zlib
from collections.abc import Sequence
from urllib.parse import quote, unquote, unquote_plus

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from broker.errors import InvalidResponse

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_ALGORITHMS: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    RSA_SHA256: ("rsa", hashes.SHA256),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": ("rsa", hashes.SHA384),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": ("rsa", hashes.SHA512),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": ("ec", hashes.SHA256),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": ("ec", hashes.SHA384),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": ("ec", hashes.SHA512),
}
_MESSAGE_NAMES = ("SAMLRequest", "SAMLResponse")
_MAX_QUERY = 64 * 1024
_MAX_XML = 256 * 1024


@dataclasses.dataclass(frozen=True)
class RedirectMessage:
    """A message received by the HTTP-Redirect binding, its signature not yet checked."""

    name: str                   # SAMLRequest or SAMLResponse
    xml: bytes
    relay_state: str | None
    sig_alg: str | None
    signature: bytes | None
    signed_octets: bytes        # what the signature covers (Bindings §3.4.4.1), as received

    @property
    def signed(self) -> bool:
        return self.signature is not None


def encode(destination: str, name: str, xml: str, *, relay_state: str | None, key: PrivateKeyTypes,
           sig_alg: str = RSA_SHA256) -> str:
    """The URL that carries ``xml`` to ``destination``, signed with ``key`` (Bindings §3.4.4.1)."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = base64.b64encode(deflate.compress(xml.encode("utf-8")) + deflate.flush()).decode()
    parts = [f"{name}={quote(payload, safe='')}"]
    if relay_state is not None:
        parts.append(f"RelayState={quote(relay_state, safe='')}")
    parts.append(f"SigAlg={quote(sig_alg, safe='')}")
    octets = "&".join(parts).encode()
    signature = _sign(key, sig_alg, octets)
    query = "&".join([*parts, f"Signature={quote(base64.b64encode(signature).decode(), safe='')}"])
    return destination + ("&" if "?" in destination else "?") + query


def decode(raw_query: str) -> RedirectMessage:
    """The message in a raw (still URL-encoded) query string; :class:`InvalidResponse` if malformed."""
    if not raw_query or len(raw_query) > _MAX_QUERY:
        raise InvalidResponse("no SAML message in the query, or one too large (Bindings §3.4.4)")
    raw: dict[str, str] = {}
    for pair in raw_query.split("&"):
        name, _, value = pair.partition("=")
        if name in raw:
            raise InvalidResponse(f"{name} repeated in the query (Bindings §3.4.4.1)")
        raw[name] = value
    names = [n for n in _MESSAGE_NAMES if n in raw]
    if len(names) != 1:
        raise InvalidResponse("expected exactly one of SAMLRequest or SAMLResponse (Bindings §3.4.4)")
    name = names[0]
    try:
        compressed = base64.b64decode(unquote(raw[name]), validate=True)
        inflater = zlib.decompressobj(-15)
        xml = inflater.decompress(compressed, _MAX_XML)
    except (binascii.Error, ValueError, zlib.error):
        raise InvalidResponse("the SAML message is not DEFLATE + base64 (Bindings §3.4.4.1)") from None
    if inflater.unconsumed_tail:
        raise InvalidResponse("the SAML message inflates beyond its limit")
    # Values are form-encoded ('+' is a space); the signature covers them as received (above).
    relay_state = unquote_plus(raw["RelayState"]) if "RelayState" in raw else None
    sig_alg = unquote_plus(raw["SigAlg"]) if "SigAlg" in raw else None
    signature = None
    if "Signature" in raw:
        try:
            signature = base64.b64decode(unquote(raw["Signature"]), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidResponse("the Signature parameter is not base64 (Bindings §3.4.4.1)") from None
    if (signature is None) != (sig_alg is None):
        raise InvalidResponse("SigAlg and Signature come together (Bindings §3.4.4.1)")
    # §3.4.4.1: the octets signed, in this order, with the values exactly as received.
    octets = "&".join(f"{n}={raw[n]}" for n in (name, "RelayState", "SigAlg") if n in raw).encode()
    return RedirectMessage(name=name, xml=xml, relay_state=relay_state, sig_alg=sig_alg, signature=signature,
                           signed_octets=octets)


def verify(message: RedirectMessage, keys: Sequence[PublicKeyTypes]) -> None:
    """Check the message's signature with one of ``keys`` (from metadata); :class:`InvalidResponse` if not."""
    if message.signature is None or message.sig_alg is None:
        raise InvalidResponse("the message is not signed (Bindings §3.4.4.1)")
    if message.sig_alg not in _ALGORITHMS:
        raise InvalidResponse(f"SigAlg {message.sig_alg} is not accepted (RSA or ECDSA with SHA-256 or better)")
    if not keys:
        raise InvalidResponse("no signing certificate for the sender in its metadata")
    for key in keys:
        try:
            _verify(key, message.sig_alg, message.signature, message.signed_octets)
            return
        except (InvalidSignature, TypeError, ValueError):
            continue
    raise InvalidResponse("the message's signature does not verify with its sender's metadata keys")


def public_keys(certificates: Sequence[str]) -> list[PublicKeyTypes]:
    """Public keys of base64 DER certificates, as metadata's ``<ds:X509Certificate>`` holds them."""
    keys: list[PublicKeyTypes] = []
    for certificate in certificates:
        try:
            keys.append(x509.load_der_x509_certificate(base64.b64decode("".join(certificate.split()))).public_key())
        except (ValueError, binascii.Error):
            continue
    return keys


def _sign(key: PrivateKeyTypes, sig_alg: str, octets: bytes) -> bytes:
    kind, digest = _ALGORITHMS[sig_alg]
    if kind == "rsa" and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(octets, padding.PKCS1v15(), digest())
    if kind == "ec" and isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(octets, ec.ECDSA(digest()))
    raise ValueError(f"a {type(key).__name__} cannot make {sig_alg} signatures")


def _verify(key: PublicKeyTypes, sig_alg: str, signature: bytes, octets: bytes) -> None:
    kind, digest = _ALGORITHMS[sig_alg]
    if kind == "rsa" and isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, octets, padding.PKCS1v15(), digest())
    elif kind == "ec" and isinstance(key, ec.EllipticCurvePublicKey):
        # XML-DSig 1.1 §6.4.3: ECDSA signature values are r || s, not DER.
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
        key.verify(der, octets, ec.ECDSA(digest()))
    else:
        raise TypeError("the key does not fit the algorithm")
