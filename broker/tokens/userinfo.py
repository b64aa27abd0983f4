"""The UserInfo endpoint (OIDC Core §5.3), a bearer-protected resource (RFC 6750).

The token comes in the ``Authorization: Bearer`` header, or as ``access_token`` in a form
POST (RFC 6750 §2.2); never in the query (§2.3: it would end up in logs).  The claims are
those released at code time for the grant — only those of the token's scopes after a
narrowing refresh — with the grant's ``sub`` (§5.3.2: it must equal the ID token's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from broker.tokens.access import active_access_token
from broker.tokens.errors import OAuthError, invalid_request, invalid_token
from broker.tokens.grants import Grants
from broker.tokens.http import Request
from broker.tokens.keys import KeyRing
from digione_verify import InvalidToken


def bearer_token(request: Request) -> str:
    """The access token of the request (RFC 6750 §2.1, §2.2), exactly one way."""
    authorization = request.header("authorization") or ""
    header_token = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise invalid_token("Authorization must use the Bearer scheme (RFC 6750 §2.1)")
        header_token = value.strip()
    form_tokens = request.form.get("access_token") if request.method == "POST" else None
    if "access_token" in request.query:
        raise invalid_request("access tokens are not accepted in the query (RFC 6750 §2.3)")
    if header_token and form_tokens:
        raise invalid_request("more than one way of sending the token (RFC 6750 §2)")
    if form_tokens:
        if len(form_tokens) != 1:
            raise invalid_request("access_token repeated")
        return form_tokens[0]
    if not header_token:
        raise OAuthError("invalid_token", "an access token is required", status=401,
                         www_authenticate='Bearer realm="digione"')  # RFC 6750 §3.1: no error code
    return header_token


def userinfo(request: Request, *, keyring: KeyRing, issuer: str, grants: Grants, clock: Callable[[], float],
             leeway: int) -> dict[str, Any]:
    """The claims for the bearer token's grant, or :class:`OAuthError` (401/403, RFC 6750 §3.1)."""
    token = bearer_token(request)
    try:
        claims, grant = active_access_token(token, keyring=keyring, issuer=issuer, grants=grants,
                                            clock=clock, leeway=leeway)
    except InvalidToken as exc:
        raise invalid_token(exc.reason) from None
    if "openid" not in str(claims.get("scope", "")).split():  # OIDC Core §5.3: needs the openid scope
        raise OAuthError("insufficient_scope", "the token lacks the openid scope", status=403,
                         www_authenticate='Bearer realm="digione", error="insufficient_scope", scope="openid"')
    # The claims of the token's scopes: a refresh may have narrowed them (RFC 6749 §6).
    answer = grants.released_claims(grant, str(claims.get("scope", "")).split())
    answer["sub"] = grant["sub"]
    return answer
