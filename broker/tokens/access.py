"""Checking the broker's own access tokens (for userinfo, introspection and revocation).

Unlike a service using :mod:`digione_verify`, the broker also knows what happened after a
token was signed: a deny-listed ``jti`` (RFC 7009 revocation) or a revoked grant (code
replay, refresh-token reuse, refresh-token revocation) makes the token inactive here even
though its signature and ``exp`` are fine.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from broker.tokens.grants import Grants, issued_token_hash
from broker.tokens.keys import KeyRing
from digione_verify import InvalidToken, verify_jws
from digione_verify.jose import decode_json_object, parse_jws


def signed_access_token(token: str, *, keyring: KeyRing, issuer: str) -> dict[str, Any]:
    """Claims of an access token we signed (any published key), without time or state checks."""
    header, claims = verify_jws(token, keyring.public_key, keyring.algs)
    return _access_claims(header, claims, issuer)


def _access_claims(header: dict[str, Any], claims: dict[str, Any], issuer: str) -> dict[str, Any]:
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != "at+jwt":  # RFC 9068 §4
        raise InvalidToken("not an access token (typ)")
    if claims.get("iss") != issuer:
        raise InvalidToken("not issued by this provider")
    if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("exp"), (int, float)):
        raise InvalidToken("malformed access token")
    return claims


def active_access_token(token: str, *, keyring: KeyRing, issuer: str, grants: Grants,
                        clock: Callable[[], float], leeway: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(claims, grant)`` of an active access token, else :class:`InvalidToken` with the reason.

    Active means: our signature, ``typ`` ``at+jwt``, our ``iss``, not expired (RFC 7519
    §4.1.4), not deny-listed (RFC 7009 §2), and its grant not revoked.

    "Our signature" is shown one of two ways.  The grant records the SHA-256 of the access
    token issued with it (:func:`broker.tokens.grants.issued_token_hash`): a token whose
    bytes hash to that is, byte for byte, the one we signed, so its ECDSA verification
    (about 0.1 ms, the largest part of a userinfo call) would prove nothing more.  Any other
    token (one minted at a refresh, a forgery) has its signature verified.  The grant is
    looked up by the token's unverified ``jti`` and ``gid`` for that: one O(1) read, the one
    an active token needs anyway.
    """
    unverified = _unverified_claims(token, issuer)
    state = None
    if unverified is not None and isinstance(unverified.get("gid"), str):
        state = grants.token_state(unverified["jti"], unverified["gid"])
    grant = state[1] if state is not None else None
    claims: dict[str, Any]
    if unverified is not None and grant is not None and \
            hmac.compare_digest(grant.get("ath") or "", issued_token_hash(token)):
        claims = unverified
    else:
        claims = signed_access_token(token, keyring=keyring, issuer=issuer)
    now = clock()
    if now > claims["exp"] + leeway:
        raise InvalidToken("token has expired")
    if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] > now + leeway:
        raise InvalidToken("token is not valid yet")
    if state is None:   # the same bytes as the claims read unverified: nothing new to look up otherwise
        gid = claims.get("gid")
        state = grants.token_state(claims["jti"], gid if isinstance(gid, str) else "")
    denied, grant = state
    if denied:
        raise InvalidToken("token was revoked")
    if grant is None:
        raise InvalidToken("the grant of this token was revoked or has ended")
    return claims, grant


def _unverified_claims(token: str, issuer: str) -> dict[str, Any] | None:
    """The claims of ``token`` as an access token of ours, its signature not checked; ``None`` if malformed
    (the signature check then gives the reason)."""
    try:
        header, payload, _, _ = parse_jws(token)
        return _access_claims(header, decode_json_object(payload, "payload"), issuer)
    except InvalidToken:
        return None
