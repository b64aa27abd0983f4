"""Token introspection (RFC 7662).

Only authenticated confidential clients may introspect (RFC 7662 §2.1: the endpoint is
protected).  A token is described as active only to a caller entitled to know about it
(RFC 7662 §2.2, §4): the client it was issued to, a resource server named in its ``aud``,
or a resource server configured as an introspection client.  To everyone else, and for
every invalid, expired or revoked token, the answer is just ``{"active": false}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from broker.tokens.access import active_access_token
from broker.tokens.errors import invalid_request
from broker.tokens.grants import Grants
from broker.tokens.http import Params, first
from broker.tokens.keys import KeyRing
from digione_verify import InvalidToken

if TYPE_CHECKING:
    from broker.registry.relying_parties import Client

INACTIVE = {"active": False}


def introspect(client: Client, form: Params, *, keyring: KeyRing, issuer: str, grants: Grants,
               clock: Callable[[], float], leeway: int, trusted: Iterable[str] = ()) -> dict[str, Any]:
    """The RFC 7662 §2.2 response for the ``token`` in ``form``, as seen by ``client``."""
    tokens = form.get("token") or []
    if len(tokens) != 1 or not tokens[0]:
        raise invalid_request("exactly one token parameter is required (RFC 7662 §2.1)")
    token = tokens[0]
    hint = first(form, "token_type_hint")
    # RFC 7662 §2.1: the hint only orders the lookups; an unknown hint is ignored.
    order = ("refresh_token", "access_token") if hint == "refresh_token" else ("access_token", "refresh_token")
    for kind in order:
        if kind == "access_token" and token.count(".") == 2:
            try:
                claims, _ = active_access_token(token, keyring=keyring, issuer=issuer, grants=grants,
                                                clock=clock, leeway=leeway)
            except InvalidToken:
                return INACTIVE
            aud = claims.get("aud")
            auds = [aud] if isinstance(aud, str) else list(aud or ())
            if client.client_id != claims.get("client_id") and client.client_id not in auds \
                    and client.client_id not in trusted:
                return INACTIVE
            answer: dict[str, Any] = {"active": True, "token_type": "Bearer"}
            for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "auth_time",
                         "acr", "roles", "role_assignments"):
                if name in claims:
                    answer[name] = claims[name]
            return answer
        if kind == "refresh_token" and "." not in token:
            found = grants.refresh_record(token)
            if found is None:
                continue
            record, grant = found
            if record["c"] != client.client_id:  # only its own client may learn about a refresh token
                return INACTIVE
            return {"active": True, "token_type": "refresh_token", "client_id": record["c"],
                    "sub": grant["sub"], "scope": " ".join(grant["s"]), "exp": int(grant["exp"]), "iss": issuer}
    return INACTIVE
