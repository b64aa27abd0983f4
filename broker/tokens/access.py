"""Checking the broker's own access tokens (for userinfo, introspection and revocation).

Unlike a service using :mod:`digione_verify`, the broker also knows what happened after a
token was signed: a deny-listed ``jti`` (RFC 7009 revocation) or a revoked grant (code
replay, refresh-token reuse, refresh-token revocation) makes the token inactive here even
though its signature and ``exp`` are fine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from broker.tokens.grants import Grants
from broker.tokens.keys import KeyRing
from digione_verify import InvalidToken, verify_jws


def signed_access_token(token: str, *, keyring: KeyRing, issuer: str) -> dict[str, Any]:
    """Claims of an access token we signed (any published key), without time or state checks."""
    header, claims = verify_jws(token, keyring.public_key, keyring.algs)
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
    """
    claims = signed_access_token(token, keyring=keyring, issuer=issuer)
    now = clock()
    if now > claims["exp"] + leeway:
        raise InvalidToken("token has expired")
    if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] > now + leeway:
        raise InvalidToken("token is not valid yet")
    gid = claims.get("gid")
    denied, grant = grants.token_state(claims["jti"], gid if isinstance(gid, str) else "")
    if denied:
        raise InvalidToken("token was revoked")
    if grant is None:
        raise InvalidToken("the grant of this token was revoked or has ended")
    return claims, grant
