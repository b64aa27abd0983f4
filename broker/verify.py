"""Verify DigiOne access tokens in a service, without calling the broker.

This module is the verification kit for platform services.  It depends only on the
standard library and ``cryptography`` (nothing else from ``broker``), so a service can
vendor this single file.  It is also the lowest floor of the broker itself:
``broker.tokens.jws`` reuses its JWS primitives, so signature checks exist once.

Typical use in a service::

    from broker.verify import TokenVerifier, InvalidToken

    verifier = TokenVerifier("https://login.digione.fi", audience="https://grades.example.fi",
                             required_scopes=("grades",))
    claims = verifier.verify(bearer_token)      # raises InvalidToken (with .reason)

and as a Flask view decorator or around any WSGI app::

    @app.get("/api/grades")
    @require_token(verifier, scopes=("grades",), roles=("teacher",))
    def grades(): return {"user": flask.g.token_claims["sub"]}

    app.wsgi_app = require_token(verifier)(app.wsgi_app)   # WSGI: claims in environ["digione.token"]

What :meth:`TokenVerifier.verify` enforces, and where each rule comes from:

* the token is a compact JWS (RFC 7515 §7.1) with a JSON-object header and payload, no
  duplicate member names (RFC 7515 §5.2, RFC 8725 §3.1 spirit) and no ``crit`` extensions
  we do not understand (RFC 7515 §4.1.11); tokens over 16 KiB, headers over 4 KiB and
  JSON nested deeper than 32 levels are refused before they are decoded;
* ``alg`` is one of the configured asymmetric algorithms (RFC 8725 §3.1): ``none`` and
  every HMAC algorithm are refused outright, so a token "signed" with the public key as an
  HMAC secret can never verify; the key's type and curve must match ``alg``;
* ``kid`` is present and names a key of the issuer's JWKS; keys are never taken from the
  token (``jwk``, ``jku``, ``x5u``, ``x5c`` headers are ignored);
* ``typ`` is ``at+jwt`` (RFC 9068 §4), so an ID token cannot be replayed as an access token;
* ``iss`` equals the issuer exactly, ``aud`` contains the service's audience
  (RFC 9068 §4, RFC 7519 §4.1.3);
* ``exp`` is required and in the future, ``nbf`` and ``iat`` not in the future, each with
  a small leeway (RFC 7519 §4.1.4-4.1.6);
* the RFC 9068 §2.2 claims ``sub``, ``client_id``, ``iat``, ``jti`` are present;
* the required scopes are in ``scope`` and the required roles in ``roles``
  (RFC 9068 §2.2.2-2.2.3).

Optionally (``introspection=Introspection(...)``) :meth:`TokenVerifier.verify` also asks the
broker's introspection endpoint (RFC 7662) whether the token is still active, and raises
:class:`RevokedToken` when it is not: signed out, the session ended, the grant revoked.
Answers are cached for ``cache_seconds``, so a revocation takes at most that long to reach
the service, at one request to the broker per token per ``cache_seconds``.

A service that registered a ``backchannel_logout_uri`` checks what the broker POSTs there
with :meth:`TokenVerifier.verify_logout_token` (OIDC Back-Channel Logout 1.0 §2.6).

The JWKS is fetched from the issuer's discovery document (or a given ``jwks_uri``),
cached, refreshed after ``jwks_max_age`` seconds and at once when a token names an unknown
``kid`` (at most once per ``jwks_min_refresh`` seconds, so a flood of forged kids cannot
turn into a flood of requests to the broker).  Nothing happens on import or construction:
the first network call is made by the first verification.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "VerificationError", "InvalidToken", "MalformedToken", "UnsupportedAlgorithm", "UnknownKey",
    "BadSignature", "WrongTokenType", "WrongIssuer", "WrongAudience", "ExpiredToken", "NotYetValid",
    "MissingClaim", "Forbidden", "InsufficientScope", "MissingRole", "KeySetUnavailable",
    "RevokedToken", "ReplayedToken", "IntrospectionUnavailable", "Introspection", "BACKCHANNEL_LOGOUT_EVENT",
    "SUPPORTED_ALGORITHMS", "TokenVerifier", "JWKSCache", "PublicKey", "require_token",
    "parse_jws", "verify_signature", "verify_jws", "load_jwk", "load_jwks", "b64url_encode", "b64url_decode",
    "decode_json_object", "MAX_JSON_DEPTH",
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


# --------------------------------------------------------------------------- errors


class VerificationError(Exception):
    """Base of everything :mod:`broker.verify` raises."""


class InvalidToken(VerificationError):
    """The token must not be accepted.  ``reason`` says why, without echoing the token.

    ``error`` and ``status`` are what a resource server answers (RFC 6750 §3.1):
    ``invalid_token`` with 401 here, ``insufficient_scope`` with 403 for :class:`Forbidden`.
    """

    error = "invalid_token"
    status = 401

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MalformedToken(InvalidToken):
    """Not a compact JWS with JSON header and payload, or a required header is missing."""


class UnsupportedAlgorithm(InvalidToken):
    """``alg`` is ``none``, an HMAC, unknown, or not allowed here (RFC 8725 §3.1)."""


class UnknownKey(InvalidToken):
    """No published key has the token's ``kid`` (even after refreshing the JWKS)."""


class BadSignature(InvalidToken):
    """The signature does not verify with the named key."""


class WrongTokenType(InvalidToken):
    """The ``typ`` header is not the expected one (RFC 9068 §4: ``at+jwt``)."""


class WrongIssuer(InvalidToken):
    """``iss`` is not the configured issuer."""


class WrongAudience(InvalidToken):
    """``aud`` does not contain this service's audience."""


class ExpiredToken(InvalidToken):
    """``exp`` is in the past (beyond the leeway)."""


class NotYetValid(InvalidToken):
    """``nbf`` or ``iat`` is in the future (beyond the leeway)."""


class MissingClaim(InvalidToken):
    """A claim the token type requires is absent or of the wrong type."""


class Forbidden(InvalidToken):
    """The token is valid but does not grant what this request needs (RFC 6750 §3.1)."""

    error = "insufficient_scope"
    status = 403


class InsufficientScope(Forbidden):
    """A required scope is not in ``scope``."""


class MissingRole(Forbidden):
    """A required role is not in ``roles``."""


class RevokedToken(InvalidToken):
    """The broker's introspection endpoint says the token is no longer active (RFC 7662 §2.2):
    revoked, or the person signed out and the session's tokens ended with it."""


class ReplayedToken(InvalidToken):
    """A logout token whose ``jti`` was already accepted (Back-Channel Logout 1.0 §2.6 step 7)."""


class KeySetUnavailable(VerificationError):
    """The JWKS (or the discovery document) could not be fetched or parsed.

    Not the token's fault: a service should answer 503, not 401.
    """


class IntrospectionUnavailable(VerificationError):
    """The introspection endpoint could not be asked, refused the service's credentials, or
    answered something that is not an RFC 7662 response.

    Not the token's fault: a service should answer 503, not 401 (and check its credentials).
    """


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


# --------------------------------------------------------------------------- fetching JWKS


def _default_http_get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "broker.verify/1"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - scheme checked
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        body = response.read(1024 * 1024 + 1)
    if len(body) > 1024 * 1024:
        raise OSError("response larger than 1 MiB")
    return body


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise KeySetUnavailable(f"refusing to fetch keys over {parts.scheme or 'no scheme'}: https required")


def _fetch_json(http_get: Callable[[str], bytes], url: str) -> dict[str, Any]:
    _check_url(url)
    # http_get may be any HTTP client a service plugs in, so what it raises is open-ended; whatever
    # it is (network, HTTP status, a body that is not JSON), the keys are unavailable: 503, not 401.
    try:
        data = json.loads(http_get(url))
    except Exception as exc:  # noqa: BLE001 - the service's own http_get: every failure means "unavailable"
        raise KeySetUnavailable(f"could not fetch {url}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise KeySetUnavailable(f"{url} did not return a JSON object")
    return data


class JWKSCache:
    """A JWK Set fetched from ``uri`` and cached in the process.

    :meth:`get` answers from memory.  The set is fetched again when it is older than
    ``max_age`` seconds, and at once when a ``kid`` is unknown, but never more often than
    every ``min_refresh_interval`` seconds.  If a refresh fails, the keys already held stay
    in use (a short broker outage does not stop services); with no keys at all,
    :class:`KeySetUnavailable` is raised.  Thread-safe.
    """

    def __init__(self, uri: str | Callable[[], str], *, http_get: Callable[[str], bytes] | None = None,
                 min_refresh_interval: float = 30.0, max_age: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self._uri = uri
        self._http_get = http_get or _default_http_get
        self.min_refresh_interval = min_refresh_interval
        self.max_age = max_age
        self._clock = clock
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def _refresh(self, now: float) -> None:
        with self._lock:
            if self._attempted_at is not None and now - self._attempted_at < self.min_refresh_interval:
                return  # another thread just refreshed, or we are rate-limited
            self._attempted_at = now
            uri = self._uri() if callable(self._uri) else self._uri
            try:
                keys = load_jwks(_fetch_json(self._http_get, uri))
            except KeySetUnavailable:
                if not self._keys:
                    raise
                return
            self._keys = keys
            self._fetched_at = now

    def get(self, kid: str) -> PublicKey | None:
        """The key with ``kid``, refreshing the set if it is stale or ``kid`` is unknown."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self.max_age:
            self._refresh(now)
        key = self._keys.get(kid)
        if key is None and (self._attempted_at is None or now - self._attempted_at >= self.min_refresh_interval):
            self._refresh(now)
            key = self._keys.get(kid)
        if key is None and not self._keys:  # never fetched successfully: not the token's fault
            raise KeySetUnavailable("no keys could be fetched yet")
        return key

    __call__ = get

    def all(self) -> dict[str, PublicKey]:
        """Every key held, by ``kid`` (fetching the set first if it is stale)."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self.max_age:
            self._refresh(now)
        if not self._keys:
            raise KeySetUnavailable("no keys could be fetched yet")
        return dict(self._keys)

    def kids(self) -> set[str]:
        """The ``kid`` values currently held (for diagnostics)."""
        return set(self._keys)


# --------------------------------------------------------------------------- introspection (revocation)


def _default_http_post(url: str, data: bytes, headers: Mapping[str, str]) -> bytes:
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"User-Agent": "broker.verify/1", **headers})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - scheme checked
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        body = response.read(1024 * 1024 + 1)
    if len(body) > 1024 * 1024:
        raise OSError("response larger than 1 MiB")
    return bytes(body)


def _digest(token: str) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(token.encode("ascii", "replace"))
    return h.finalize()


class Introspection:
    """Ask the broker's introspection endpoint (RFC 7662) whether tokens are still active.

    :param endpoint: the broker's ``introspection_endpoint`` (from its discovery document).
    :param client_id: this service's client id at the broker.  The broker tells a client
        only about tokens issued to it, naming it in ``aud``, or when it is configured as an
        introspection client (RFC 7662 §2.2, §4); for any other token it says inactive.
    :param client_secret: its secret (sent as ``client_secret_basic``, RFC 6749 §2.3.1).
    :param cache_seconds: how long an answer is reused: the longest a revocation takes to
        reach this service.  ``0`` asks on every verification.
    :param http_post: ``http_post(url, body, headers) -> bytes`` (another HTTP client, a test
        double); it raises on anything but HTTP 200.
    :param max_entries: the most answers cached (the oldest are dropped first).
    """

    def __init__(self, endpoint: str, client_id: str, client_secret: str, *, cache_seconds: float = 30,
                 http_post: Callable[[str, bytes, Mapping[str, str]], bytes] | None = None,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000):
        parts = urlsplit(endpoint)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ValueError("the introspection endpoint must be https (client credentials are sent to it)")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required: the endpoint is protected (RFC 7662 §2.1)")
        self.endpoint = endpoint
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self._http_post = http_post or _default_http_post
        self._clock = clock
        credentials = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"  # RFC 6749 §2.3.1
        self._headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode("ascii"),
                         "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        self._cache: dict[bytes, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def active(self, token: str) -> bool:
        """Whether the broker says ``token`` is active (``active: true``, RFC 7662 §2.2).

        :raises IntrospectionUnavailable: the endpoint could not be asked or its answer is
            not a JSON object with a boolean ``active``.
        """
        key = _digest(token)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        body = urlencode({"token": token, "token_type_hint": "access_token"}).encode("ascii")
        try:
            raw = self._http_post(self.endpoint, body, self._headers)
        except Exception as exc:  # noqa: BLE001 - the service's own http_post: every failure means "unavailable"
            raise IntrospectionUnavailable(f"could not ask {self.endpoint}: {exc.__class__.__name__}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise IntrospectionUnavailable("the introspection response is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise IntrospectionUnavailable("the introspection response has no boolean active (RFC 7662 §2.2)")
        active: bool = answer["active"]
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    for stale in [k for k, (_, until) in self._cache.items() if until <= now]:
                        del self._cache[stale]
                    while len(self._cache) >= self.max_entries:
                        del self._cache[next(iter(self._cache))]
                self._cache[key] = (active, now + self.cache_seconds)
        return active


#: The event a logout token carries (Back-Channel Logout 1.0 §2.4).
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


# --------------------------------------------------------------------------- the verifier


def _as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _nonempty_str(claims: Mapping[str, Any], name: str) -> bool:
    value = claims.get(name)
    return isinstance(value, str) and bool(value)


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MissingClaim(f"{name} is not a NumericDate")
    return value


class TokenVerifier:
    """Verify access tokens (RFC 9068 JWTs) issued by one issuer for one audience.

    :param issuer: the broker's issuer URL, exactly as in its discovery document.
    :param audience: this service's audience (a string, or several accepted alternatives).
    :param jwks_uri: where the keys are; by default read from
        ``{issuer}/.well-known/openid-configuration`` on first use (whose ``issuer`` must
        equal ``issuer``, OIDC Discovery §4.3).
    :param leeway: seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    :param required_scopes: scopes every token must carry (more per call via ``verify``).
    :param required_roles: roles every token must carry.
    :param allowed_algs: accepted signature algorithms; only asymmetric ones can be named.
    :param typ: expected ``typ`` header (``at+jwt``; ``application/at+jwt`` is the same,
        RFC 9068 §4).  ``None`` skips the check and the RFC 9068 claim checks, e.g. to
        verify ID tokens (then ``audience`` is the client id).
    :param http_get: ``http_get(url) -> bytes``, to use another HTTP client (or a test double).
    :param clock: seconds since the epoch (``time.time``).
    :param introspection: an :class:`Introspection`: :meth:`verify` then also asks the broker
        whether the token is still active (:class:`RevokedToken` if not).  Without it a
        revoked token stays valid here until it expires.
    :param logout_token_max_age: seconds a logout token is accepted after its ``iat``.
    """

    def __init__(self, issuer: str, audience: str | Iterable[str], *, jwks_uri: str | None = None,
                 leeway: float = 30, required_scopes: Iterable[str] = (), required_roles: Iterable[str] = (),
                 allowed_algs: Iterable[str] = ("ES256", "RS256"), typ: str | None = "at+jwt",
                 http_get: Callable[[str], bytes] | None = None, clock: Callable[[], float] = time.time,
                 jwks_min_refresh: float = 30.0, jwks_max_age: float = 300.0,
                 introspection: Introspection | None = None, logout_token_max_age: float = 300.0):
        if not issuer:
            raise ValueError("issuer is required")
        self.issuer = issuer
        self.audiences = _as_tuple(audience)
        if not self.audiences:
            raise ValueError("audience is required: a token for another service must be refused")
        self.allowed_algs = frozenset(allowed_algs)
        bad = self.allowed_algs - SUPPORTED_ALGORITHMS
        if bad or not self.allowed_algs:
            raise ValueError(f"unsupported or symmetric algorithms: {sorted(bad) or 'none given'}")
        self.leeway = leeway
        self.required_scopes = _as_tuple(required_scopes)
        self.required_roles = _as_tuple(required_roles)
        self.typ = typ.lower().removeprefix("application/") if typ else None
        self._clock = clock
        self._http_get = http_get or _default_http_get
        self._jwks_uri = jwks_uri
        self.jwks = JWKSCache(self._resolve_jwks_uri, http_get=self._http_get,
                              min_refresh_interval=jwks_min_refresh, max_age=jwks_max_age, clock=clock)
        self.introspection = introspection
        self.logout_token_max_age = logout_token_max_age
        self._logout_jtis: dict[str, float] = {}  # jti -> until when it is remembered
        self._jti_lock = threading.Lock()

    def _resolve_jwks_uri(self) -> str:
        if self._jwks_uri is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = _fetch_json(self._http_get, url)
            if doc.get("issuer") != self.issuer:  # OIDC Discovery §4.3
                raise KeySetUnavailable("discovery document names another issuer")
            if not isinstance(doc.get("jwks_uri"), str):
                raise KeySetUnavailable("discovery document has no jwks_uri")
            self._jwks_uri = doc["jwks_uri"]
        return self._jwks_uri

    def verify(self, token: str | bytes, *, scopes: Iterable[str] = (), roles: Iterable[str] = ()) -> dict[str, Any]:
        """Return the token's claims if every check passes; else raise :class:`InvalidToken`.

        :class:`KeySetUnavailable` means the keys could not be fetched, and
        :class:`IntrospectionUnavailable` that the broker could not be asked (answer 503).
        With ``introspection``, a token the broker no longer considers active (revoked,
        signed out) raises :class:`RevokedToken`; it is asked only about tokens that passed
        every local check.
        """
        header, claims = verify_jws(token, self.jwks.get, self.allowed_algs)
        if self.typ is not None:  # RFC 9068 §4: typ must be at+jwt (or application/at+jwt)
            typ = header.get("typ")
            if not isinstance(typ, str) or typ.lower().removeprefix("application/") != self.typ:
                raise WrongTokenType(f"typ is not {self.typ}")
        self.check_claims(claims)
        self.check_grants(claims, scopes=scopes, roles=roles)
        if self.introspection is not None:
            text = token.decode("ascii") if isinstance(token, bytes) else token  # ASCII: parse_jws checked it
            if not self.introspection.active(text):  # RFC 7662 §2.2
                raise RevokedToken("the token was revoked or its session has ended")
        return claims

    def verify_logout_token(self, token: str | bytes, *, client_id: str | Iterable[str] | None = None,
                            remember_jti: bool = True) -> dict[str, Any]:
        """Validate a logout token the broker POSTed to the ``backchannel_logout_uri``
        (OIDC Back-Channel Logout 1.0 §2.6) and return its claims; else :class:`InvalidToken`.

        The service then ends its sessions with that ``sid`` (or, without one, every session
        of that ``sub``) and answers 200; on :class:`InvalidToken` it answers 400 (§2.8).

        Checks, in the order of §2.6: the signature, with the broker's published keys, as for
        ID tokens; ``typ`` ``logout+jwt`` (§2.4: how a logout token is told from other JWTs);
        ``iss`` the issuer; ``aud`` containing ``client_id`` (default: this verifier's
        audience, i.e. build the verifier with the client id); ``iat`` present, not in the
        future and at most ``logout_token_max_age`` old; ``exp`` present and not past; ``jti``
        present; ``events`` an object with the back-channel-logout member, itself an object;
        ``sid`` and/or ``sub`` present (strings); no ``nonce``; and, with ``remember_jti``,
        a ``jti`` not accepted before by this verifier (step 7; one process — several
        instances behind a load balancer each remember their own).
        """
        header, claims = verify_jws(token, self.jwks.get, self.allowed_algs)
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != "logout+jwt":
            raise WrongTokenType("typ is not logout+jwt")
        if claims.get("iss") != self.issuer:
            raise WrongIssuer("iss is not the expected issuer")
        wanted = self.audiences if client_id is None else _as_tuple(client_id)
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in auds for a in wanted):
            raise WrongAudience("aud does not contain this client")
        now = self._clock()
        iat = _number(claims, "iat")
        if iat is None:
            raise MissingClaim("iat is required")
        if now + self.leeway < iat:
            raise NotYetValid("token was issued in the future (iat)")
        if now - iat > self.logout_token_max_age + self.leeway:
            raise ExpiredToken("logout token was issued too long ago (iat)")
        exp = _number(claims, "exp")
        if exp is None:
            raise MissingClaim("exp is required")
        if now > exp + self.leeway:
            raise ExpiredToken("token has expired")
        if not _nonempty_str(claims, "jti"):
            raise MissingClaim("jti is required")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
            raise MissingClaim("events must hold the back-channel logout event")
        for name in ("sid", "sub"):
            if name in claims and not _nonempty_str(claims, name):
                raise MissingClaim(f"{name} is not a string")
        if not (_nonempty_str(claims, "sid") or _nonempty_str(claims, "sub")):
            raise MissingClaim("sid or sub is required")
        if "nonce" in claims:
            raise MalformedToken("a logout token must not carry a nonce")
        if remember_jti:
            self._remember_logout_jti(claims["jti"], max(exp, iat + self.logout_token_max_age) + self.leeway, now)
        return claims

    def _remember_logout_jti(self, jti: str, until: float, now: float) -> None:
        with self._jti_lock:
            seen = self._logout_jtis.get(jti)
            if seen is not None and seen > now:
                raise ReplayedToken("this logout token was already received")
            if len(self._logout_jtis) >= 10_000:
                for stale in [k for k, t in self._logout_jtis.items() if t <= now]:
                    del self._logout_jtis[stale]
                while len(self._logout_jtis) >= 10_000:
                    del self._logout_jtis[next(iter(self._logout_jtis))]
            self._logout_jtis[jti] = until

    def check_claims(self, claims: Mapping[str, Any]) -> None:
        """The registered-claim checks of RFC 7519 §4.1 and RFC 9068 §4."""
        if claims.get("iss") != self.issuer:  # RFC 9068 §4 / RFC 7519 §4.1.1
            raise WrongIssuer("iss is not the expected issuer")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in auds for a in self.audiences):  # RFC 9068 §4 / RFC 7519 §4.1.3
            raise WrongAudience("aud does not contain this service")
        now = self._clock()
        exp = _number(claims, "exp")
        if exp is None:
            raise MissingClaim("exp is required")
        if now > exp + self.leeway:  # RFC 7519 §4.1.4
            raise ExpiredToken("token has expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and now + self.leeway < nbf:  # RFC 7519 §4.1.5
            raise NotYetValid("token is not valid yet (nbf)")
        iat = _number(claims, "iat")
        if iat is not None and now + self.leeway < iat:  # RFC 7519 §4.1.6 (issued in the future)
            raise NotYetValid("token was issued in the future (iat)")
        if self.typ == "at+jwt":  # RFC 9068 §2.2: required claims
            if iat is None:
                raise MissingClaim("iat is required")
            for name in ("sub", "client_id", "jti"):
                if not _nonempty_str(claims, name):
                    raise MissingClaim(f"{name} is required")

    def check_grants(self, claims: Mapping[str, Any], *, scopes: Iterable[str] = (),
                     roles: Iterable[str] = ()) -> None:
        """Required scopes (RFC 9068 §2.2.3) and roles (RFC 9068 §2.2.3.1, RFC 7643 §4.1.2)."""
        need_scopes = self.required_scopes + _as_tuple(scopes)
        if need_scopes:
            scope = claims.get("scope")
            have = set(scope.split()) if isinstance(scope, str) else set()
            missing = [s for s in need_scopes if s not in have]
            if missing:
                raise InsufficientScope(f"scope {' '.join(missing)} is required")
        need_roles = self.required_roles + _as_tuple(roles)
        if need_roles:
            raw = claims.get("roles")
            have_roles = {raw} if isinstance(raw, str) else {r for r in raw if isinstance(r, str)} \
                if isinstance(raw, list) else set()
            missing = [r for r in need_roles if r not in have_roles]
            if missing:
                raise MissingRole(f"role {' '.join(missing)} is required")


# --------------------------------------------------------------------------- service helpers


def _bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1), else ``None``."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _challenge(error: VerificationError | None, scopes: tuple[str, ...]) -> tuple[int, str, bytes]:
    """Status, ``WWW-Authenticate`` value and JSON body for a refused request (RFC 6750 §3)."""
    if error is None:  # no token at all: RFC 6750 §3.1 says no error code
        return 401, 'Bearer realm="api"', b'{"error_description":"bearer token required"}'
    if isinstance(error, (KeySetUnavailable, IntrospectionUnavailable)):
        return 503, 'Bearer realm="api"', b'{"error":"temporarily_unavailable"}'
    assert isinstance(error, InvalidToken)
    reason = error.reason.replace('"', "'")
    header = f'Bearer realm="api", error="{error.error}", error_description="{reason}"'
    if isinstance(error, Forbidden) and scopes:
        header += f', scope="{" ".join(scopes)}"'
    body = json.dumps({"error": error.error, "error_description": error.reason}).encode()
    return error.status, header, body


def require_token(verifier: TokenVerifier, *, scopes: Iterable[str] = (), roles: Iterable[str] = ()):
    """Protect a Flask view or a whole WSGI application with bearer-token verification.

    On a Flask view the claims are in ``flask.g.token_claims``; wrapped around a WSGI app
    (``app.wsgi_app = require_token(v)(app.wsgi_app)``) they are in
    ``environ["digione.token"]``.  A missing or invalid token gets 401 and a failed scope
    or role check 403, each with ``WWW-Authenticate: Bearer ...`` (RFC 6750 §3); keys that
    cannot be fetched give 503.  Only the ``Authorization`` header is read: tokens in the
    query string are refused (RFC 6750 §2.3 discourages them; they end up in logs).
    """
    scopes, roles = _as_tuple(scopes), _as_tuple(roles)

    def check(authorization: str | None) -> tuple[dict[str, Any] | None, VerificationError | None]:
        token = _bearer(authorization)
        if token is None:
            return None, None
        try:
            return verifier.verify(token, scopes=scopes, roles=roles), None
        except VerificationError as exc:
            return None, exc

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if len(args) == 2 and isinstance(args[0], dict) and "REQUEST_METHOD" in args[0] and callable(args[1]):
                environ, start_response = args  # WSGI application
                claims, error = check(environ.get("HTTP_AUTHORIZATION"))
                if claims is None:
                    status, www, body = _challenge(error, scopes)
                    start_response(f"{status} {_REASONS[status]}",
                                   [("Content-Type", "application/json"), ("WWW-Authenticate", www),
                                    ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
                    return [body]
                environ["digione.token"] = claims
                return fn(environ, start_response)
            import flask  # a Flask view; imported only when used

            claims, error = check(flask.request.headers.get("Authorization"))
            if claims is None:
                status, www, body = _challenge(error, scopes)
                return flask.Response(body, status=status, mimetype="application/json",
                                      headers={"WWW-Authenticate": www, "Cache-Control": "no-store"})
            flask.g.token_claims = claims
            return fn(*args, **kwargs)

        return wrapper

    return decorate


_REASONS = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
