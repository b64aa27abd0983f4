"""Verify DigiOne Login access tokens in a service, without calling the broker.

The verification kit for platform services (``pip install ./verify`` from the broker's
repository; import name ``digione_verify``).  It needs the standard library and
``cryptography`` only, never the broker; the broker itself verifies with the same JOSE
functions (:mod:`digione_verify.jose`), so every signature check exists once.

Typical use in a service::

    from digione_verify import TokenVerifier, InvalidToken

    verifier = TokenVerifier("https://login.digione.fi", audience="https://grades.example.fi",
                             required_scopes=("grades",))
    claims = verifier.verify(bearer_token)      # raises InvalidToken (with .reason)
    claims = verifier.verify(bearer_token, roles=("teacher",), schools=("03083",))   # a teacher at 03083

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
* the required scopes are in ``scope`` (RFC 9068 §2.2.3), the required roles in ``roles``
  (role names, RFC 9068 §2.2.3.1) and, when schools are required, each required role is held
  at one of them according to ``role_assignments`` (the broker's per-school claim).

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

Modules: :mod:`~digione_verify.errors`, :mod:`~digione_verify.jose` (base64url, strict JSON,
keys, JWS), :mod:`~digione_verify.jwks` (fetching and caching keys),
:mod:`~digione_verify.introspection`, :mod:`~digione_verify.verifier` and
:mod:`~digione_verify.service` (:func:`require_token`).  Everything public is importable
from the package itself.
"""

from __future__ import annotations

from digione_verify.errors import (
    BadSignature,
    ExpiredToken,
    Forbidden,
    InsufficientScope,
    IntrospectionUnavailable,
    InvalidToken,
    KeySetUnavailable,
    MalformedToken,
    MissingClaim,
    MissingRole,
    NotYetValid,
    ReplayedToken,
    RevokedToken,
    UnknownKey,
    UnsupportedAlgorithm,
    VerificationError,
    WrongAudience,
    WrongIssuer,
    WrongSchool,
    WrongTokenType,
)
from digione_verify.introspection import Introspection
from digione_verify.jose import (
    MAX_HEADER_LENGTH,
    MAX_JSON_DEPTH,
    MAX_JSON_STRUCTURES,
    MAX_TOKEN_LENGTH,
    SUPPORTED_ALGORITHMS,
    PublicKey,
    b64url_decode,
    b64url_encode,
    decode_json_object,
    json_depth_exceeds,
    load_jwk,
    load_jwks,
    parse_jws,
    verify_jws,
    verify_signature,
)
from digione_verify.jwks import JWKSCache
from digione_verify.service import require_token
from digione_verify.verifier import BACKCHANNEL_LOGOUT_EVENT, TokenVerifier, roles_of, schools_of

__version__ = "1.0.0"

__all__ = [
    "VerificationError", "InvalidToken", "MalformedToken", "UnsupportedAlgorithm", "UnknownKey",
    "BadSignature", "WrongTokenType", "WrongIssuer", "WrongAudience", "ExpiredToken", "NotYetValid",
    "MissingClaim", "Forbidden", "InsufficientScope", "MissingRole", "WrongSchool", "KeySetUnavailable",
    "RevokedToken", "ReplayedToken", "IntrospectionUnavailable", "Introspection", "BACKCHANNEL_LOGOUT_EVENT",
    "SUPPORTED_ALGORITHMS", "TokenVerifier", "JWKSCache", "PublicKey", "require_token", "roles_of", "schools_of",
    "parse_jws", "verify_signature", "verify_jws", "load_jwk", "load_jwks", "b64url_encode", "b64url_decode",
    "decode_json_object", "json_depth_exceeds", "MAX_JSON_DEPTH", "MAX_JSON_STRUCTURES", "MAX_TOKEN_LENGTH",
    "MAX_HEADER_LENGTH", "__version__",
]
