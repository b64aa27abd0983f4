"""JOSE verification primitives: base64url, strict JSON, public keys from JWKs, JWS signatures.

The floor every check stands on (RFC 7515 compact JWS, RFC 7517 JWK, RFC 7518 algorithms),
with the standard library and ``cryptography`` only.  The DigiOne broker signs and verifies
its own tokens with these same functions, so there is one implementation of each check.

Only asymmetric algorithms exist here (:data:`SUPPORTED_ALGORITHMS`): ``none`` and every
HMAC are absent by construction (RFC 8725 §3.1, §3.2), and keys are typed, so an EC key
cannot verify an RSA signature and no key can ever be used as an HMAC secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from digione_verify.errors import BadSignature, MalformedToken, UnknownKey, UnsupportedAlgorithm

__all__ = [
    "MAX_TOKEN_LENGTH", "MAX_HEADER_LENGTH", "MAX_JSON_DEPTH", "MAX_JSON_STRUCTURES", "MIN_RSA_BITS",
    "SUPPORTED_ALGORITHMS", "PublicKey", "b64url_encode", "b64url_decode", "json_depth_exceeds",
    "decode_json_object", "load_jwk", "load_jwks", "verify_signature", "parse_jws", "verify_jws",
]

#: The longest token accepted at all; anything longer is refused before parsing.
MAX_TOKEN_LENGTH = 16 * 1024
#: The longest base64url JOSE header accepted (a header names an algorithm and a key).
MAX_HEADER_LENGTH = 4 * 1024
#: The deepest nesting of arrays and objects accepted in a JOSE header or payload.  Ours
#: nest three deep; without a bound, JSON nested thousands deep exhausts the recursion limit.
MAX_JSON_DEPTH = 32
#: The most arrays and objects one JOSE header or payload may hold (bounds the depth check).
MAX_JSON_STRUCTURES = 512


# --------------------------------------------------------------------------- base64url and JSON


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Strict base64url without padding (RFC 7515 §2): any other character is an error."""
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("not base64url") from None
    if b"=" in text or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.b64decode(text + b"=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise ValueError("not base64url") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


_strict_json = json.JSONDecoder(object_pairs_hook=_no_duplicates).decode
# Every byte but the four brackets and the quote, deleted at C speed (UTF-8 continuation bytes
# are never ASCII, so no character of a multi-byte sequence is mistaken for one of them).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``raw`` nests arrays and objects deeper than ``limit`` (outside strings),
    or holds more than :data:`MAX_JSON_STRUCTURES` of them (then it is refused unread).

    Ordinary tokens take two counts (fewer brackets than ``limit`` cannot nest deeper);
    otherwise escapes and strings are removed with byte operations and at most
    :data:`MAX_JSON_STRUCTURES` brackets are walked.
    """
    count = raw.count(b"[") + raw.count(b"{")
    if count <= limit:
        return False
    if count > MAX_JSON_STRUCTURES:
        return True
    # Escaped backslashes first, then escaped quotes: every remaining quote opens or closes a string.
    structure = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    depth = 0
    for byte in b"".join(structure.split(b'"')[0::2]):
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def decode_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JOSE header or JWT payload as a dict: a strict JSON object, without duplicate member
    names and nested at most :data:`MAX_JSON_DEPTH` deep; else :class:`MalformedToken`.

    The one place this module decodes token JSON, so no input reaches the decoder's
    recursion limit or escapes as anything but :class:`MalformedToken`.
    """
    try:
        if json_depth_exceeds(raw):
            raise MalformedToken(f"{what} nests deeper than {MAX_JSON_DEPTH} or holds too many arrays and objects")
        obj = _strict_json(raw.decode("utf-8"))
    except MalformedToken:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError):
        raise MalformedToken(f"{what} is not a JSON object without duplicate members") from None
    if not isinstance(obj, dict):
        raise MalformedToken(f"{what} is not a JSON object")
    return obj



# --------------------------------------------------------------------------- algorithms and keys

# alg -> (key family, hash, EC curve name or None, EC coordinate size)
_ALGORITHMS: dict[str, tuple[str, type[hashes.HashAlgorithm], str | None, int]] = {
    "ES256": ("EC", hashes.SHA256, "secp256r1", 32),
    "ES384": ("EC", hashes.SHA384, "secp384r1", 48),
    "ES512": ("EC", hashes.SHA512, "secp521r1", 66),
    "RS256": ("RSA", hashes.SHA256, None, 0),
    "RS384": ("RSA", hashes.SHA384, None, 0),
    "RS512": ("RSA", hashes.SHA512, None, 0),
    "PS256": ("RSA-PSS", hashes.SHA256, None, 0),
    "PS384": ("RSA-PSS", hashes.SHA384, None, 0),
    "PS512": ("RSA-PSS", hashes.SHA512, None, 0),
}

#: Every algorithm this module can verify.  All asymmetric: ``none`` and ``HS*`` are absent
#: by construction, so no configuration can enable them (RFC 8725 §3.1, §3.2).
SUPPORTED_ALGORITHMS = frozenset(_ALGORITHMS)

_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1,
                                                      "P-521": ec.SECP521R1}
MIN_RSA_BITS = 2048


class PublicKey:
    """A verification key from a JWK: the ``cryptography`` key plus ``kid`` and ``alg``."""

    __slots__ = ("kid", "alg", "kty", "key")

    def __init__(self, key: Any, *, kid: str | None, alg: str | None = None):
        self.key = key
        self.kid = kid
        self.alg = alg
        if isinstance(key, ec.EllipticCurvePublicKey):
            self.kty = "EC"
        elif isinstance(key, rsa.RSAPublicKey):
            self.kty = "RSA"
        else:
            raise ValueError("only EC and RSA public keys are supported")

    def __repr__(self) -> str:
        return f"PublicKey(kid={self.kid!r}, kty={self.kty}, alg={self.alg})"


def load_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    """Build a :class:`PublicKey` from a public JWK (RFC 7517 §4, RFC 7518 §6.2-6.3).

    Only ``EC`` (P-256/384/521) and ``RSA`` (>= 2048 bits) keys are accepted; ``oct`` keys
    never are, so a JWKS cannot smuggle in an HMAC secret.  The EC point is validated to
    lie on the curve.  Raises :class:`ValueError` on anything else.
    """
    kty = jwk.get("kty")
    use = jwk.get("use")
    if use is not None and use != "sig":  # RFC 7517 §4.2
        raise ValueError("key is not for signatures")
    alg = jwk.get("alg")
    if alg is not None and alg not in SUPPORTED_ALGORITHMS:
        raise ValueError("unsupported alg")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid is not a string")
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    try:
        if kty == "EC":
            crv = jwk.get("crv")
            curve = _CURVES.get(crv) if isinstance(crv, str) else None
            if curve is None:
                raise ValueError("unsupported curve")
            x = int.from_bytes(b64url_decode(jwk["x"]), "big")
            y = int.from_bytes(b64url_decode(jwk["y"]), "big")
            key = ec.EllipticCurvePublicNumbers(x, y, curve()).public_key()
        elif kty == "RSA":
            n = int.from_bytes(b64url_decode(jwk["n"]), "big")
            e = int.from_bytes(b64url_decode(jwk["e"]), "big")
            key = rsa.RSAPublicNumbers(e, n).public_key()
            if key.key_size < MIN_RSA_BITS:
                raise ValueError("RSA key shorter than 2048 bits")
        else:
            raise ValueError("unsupported kty")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"incomplete JWK: {exc.__class__.__name__}") from None
    return PublicKey(key, kid=kid, alg=alg)


def load_jwks(jwks: Mapping[str, Any]) -> dict[str, PublicKey]:
    """Return the usable signature keys of a JWK Set by ``kid``; others are skipped."""
    keys: dict[str, PublicKey] = {}
    for jwk in (jwks or {}).get("keys", ()) if isinstance(jwks, Mapping) else ():
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
            continue
        try:
            keys[jwk["kid"]] = load_jwk(jwk)
        except ValueError:
            continue
    return keys


def verify_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
    """Verify one JWS signature (RFC 7518 §3.3-3.5); raise :class:`InvalidToken` if it fails.

    The key's type (and curve) must match ``alg`` and the key's own ``alg``, if it declares
    one (RFC 7517 §4.4), so a key published for ES256 cannot be used under RS256 and no key
    can ever be used as an HMAC secret.
    """
    spec = _ALGORITHMS.get(alg)
    if spec is None:
        raise UnsupportedAlgorithm(f"alg {alg!r} is not accepted")
    family, hash_cls, curve, size = spec
    if key.alg is not None and key.alg != alg:
        raise UnsupportedAlgorithm(f"key {key.kid!r} is for {key.alg}, not {alg}")
    hash_alg = hash_cls()
    try:
        if family == "EC":
            if key.kty != "EC" or key.key.curve.name != curve:
                raise UnsupportedAlgorithm(f"key {key.kid!r} does not fit {alg}")
            if len(signature) != 2 * size:  # RFC 7518 §3.4: R || S, fixed length
                raise BadSignature("signature has the wrong length")
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                       int.from_bytes(signature[size:], "big"))
            key.key.verify(der, signing_input, ec.ECDSA(hash_alg))
        else:
            if key.kty != "RSA":
                raise UnsupportedAlgorithm(f"key {key.kid!r} does not fit {alg}")
            pad = (padding.PKCS1v15() if family == "RSA"
                   else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size))
            key.key.verify(signature, signing_input, pad, hash_alg)
    except InvalidSignature:
        raise BadSignature("signature does not verify") from None


def parse_jws(token: str | bytes) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """Split a compact JWS (RFC 7515 §7.1) into ``(header, payload, signing_input, signature)``.

    Nothing is verified except the shape: three base64url parts, a JSON-object header with
    a string ``alg``, and no ``crit`` (RFC 7515 §4.1.11: we implement no extensions, so a
    critical one must make the token invalid).
    """
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedToken("token is not ASCII") from None
    if not isinstance(token, str) or not token:
        raise MalformedToken("no token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise MalformedToken("token too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken("not a compact JWS (three dot-separated parts)")
    if len(parts[0]) > MAX_HEADER_LENGTH:
        raise MalformedToken("JOSE header too long")
    try:
        header_raw = b64url_decode(parts[0])
        payload = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
    except ValueError:
        raise MalformedToken("a part is not base64url") from None
    header = decode_json_object(header_raw, "JOSE header")
    if not isinstance(header.get("alg"), str):
        raise MalformedToken("JOSE header has no alg")
    if "crit" in header:
        raise MalformedToken("critical header extensions are not supported")
    return header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def verify_jws(token: str | bytes, resolve_key: Callable[[str], PublicKey | None],
               allowed_algs: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact JWS whose payload is a JSON object; return ``(header, claims)``.

    ``resolve_key(kid)`` returns the published key with that ``kid`` or ``None``.
    Checks, in order: shape (RFC 7515 §7.1), ``alg`` allowed and asymmetric (RFC 8725
    §3.1), ``kid`` present, key known, signature (RFC 7515 §5.2), payload a JSON object
    (RFC 7519 §7.2 step 10).  Claims are *not* checked here.
    """
    header, payload, signing_input, signature = parse_jws(token)
    alg = header["alg"]
    if alg not in allowed_algs or alg not in SUPPORTED_ALGORITHMS:
        raise UnsupportedAlgorithm(f"alg {alg!r} is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise MalformedToken("JOSE header has no kid")
    key = resolve_key(kid)
    if key is None:
        raise UnknownKey("no published key has this kid")
    verify_signature(alg, key, signing_input, signature)
    return header, decode_json_object(payload, "payload")
