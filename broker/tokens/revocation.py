"""Token revocation (RFC 7009).

A client revokes its own tokens.  Revoking a refresh token ends its whole grant, so the
access tokens issued under it become inactive too (RFC 7009 §2.1 SHOULD).  Revoking an
access token deny-lists its ``jti`` until it would have expired.  An invalid or unknown
token, or one issued to another client, gets the same 200 as a successful revocation
(RFC 7009 §2.2): the endpoint is no oracle for other clients' tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.tokens.access import signed_access_token
from broker.tokens.errors import OAuthError, invalid_request
from broker.tokens.grants import Grants
from broker.tokens.http import Params, first
from broker.tokens.keys import KeyRing
from digione_verify import InvalidToken

if TYPE_CHECKING:
    from broker.registry.relying_parties import Client

TOKEN_TYPES = ("access_token", "refresh_token")


def revoke(client: Client, form: Params, *, keyring: KeyRing, issuer: str, grants: Grants) -> None:
    """Revoke the ``token`` in ``form`` if ``client`` owns it (RFC 7009 §2.1)."""
    tokens = form.get("token") or []
    if len(tokens) != 1 or not tokens[0]:
        raise invalid_request("exactly one token parameter is required (RFC 7009 §2.1)")
    token = tokens[0]
    hint = first(form, "token_type_hint")
    if hint is not None and hint not in TOKEN_TYPES:  # RFC 7009 §2.2.1
        raise OAuthError("unsupported_token_type", "token_type_hint must be access_token or refresh_token")
    if token.count(".") == 2:
        try:
            claims = signed_access_token(token, keyring=keyring, issuer=issuer)
        except InvalidToken:
            return
        if claims.get("client_id") == client.client_id:
            grants.deny(claims["jti"], claims["exp"])
        return
    grants.revoke_refresh_token(token, client.client_id)
