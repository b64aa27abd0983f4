"""What the broker sends a client when a session ends: OIDC Back- and Front-Channel Logout 1.0.

:func:`mint_logout_token` makes the logout token of Back-Channel Logout 1.0 §2.4 that the
delivery engine POSTs (``logout_token=…``, §2.5) to the client's registered
``backchannel_logout_uri``.  :func:`frontchannel_logout_url` is the address the broker's
"signed out" page loads in an iframe for a client that registered a
``frontchannel_logout_uri`` (Front-Channel Logout 1.0 §2-§4).

``sid`` is always the value *that client* received in its ID tokens (a different one per
client; the broker session's own id never leaves the broker).  Nothing here touches the
store or the network.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from broker.tokens.keys import KeyRing

if TYPE_CHECKING:
    from broker.registry.relying_parties import Client

#: The event a logout token carries (Back-Channel Logout 1.0 §2.4).
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: The explicit type of logout tokens (Back-Channel Logout 1.0 §2.4; RFC 8725 §3.11).
LOGOUT_TOKEN_TYPE = "logout+jwt"


def _alg(client: Client, keyring: KeyRing) -> str:
    """The client's ID-token algorithm: what it verifies already (ES256 unless it asked for RS256)."""
    alg = getattr(client, "id_token_signed_response_alg", None)
    return alg if isinstance(alg, str) and alg in keyring.algs else keyring.default_alg


def mint_logout_token(keyring: KeyRing, *, issuer: str, client: Client, sub: str | None, sid: str | None,
                      now: float, lifetime: int = 120) -> str:
    """A signed logout token for ``client`` (Back-Channel Logout 1.0 §2.4).

    Header ``typ: logout+jwt``, ``alg`` the client's ID-token algorithm, ``kid``.  Claims
    ``iss``, ``aud`` (the client id), ``iat``, ``exp`` (``iat + lifetime``), ``jti``
    (random, for the client's replay check, §2.6 step 7), ``events`` with the
    back-channel-logout member (an empty object), ``sid`` and/or ``sub`` — and never a
    ``nonce`` (§2.4: it is what tells a logout token from an ID token).

    :param sub: the ``sub`` the client knows the person by (its pairwise value), or None.
    :param sid: the ``sid`` this client received in its ID tokens, or None.
    :raises ValueError: neither ``sub`` nor ``sid`` (§2.4: one is required), or no ``sid``
        for a client that registered ``backchannel_logout_session_required`` (§2.2), or a
        lifetime that is not positive.
    """
    if not sub and not sid:
        raise ValueError("a logout token needs sub, sid or both (Back-Channel Logout 1.0 §2.4)")
    if not sid and getattr(client, "backchannel_logout_session_required", True):
        raise ValueError(f"client {client.client_id} requires sid in logout tokens "
                         "(backchannel_logout_session_required, Back-Channel Logout 1.0 §2.2)")
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    iat = int(now)
    claims: dict[str, Any] = {"iss": issuer, "aud": client.client_id, "iat": iat, "exp": iat + lifetime,
                              "jti": secrets.token_urlsafe(16), "events": {BACKCHANNEL_LOGOUT_EVENT: {}}}
    if sub:
        claims["sub"] = sub
    if sid:
        claims["sid"] = sid
    return keyring.signing_key(_alg(client, keyring)).sign(claims, typ=LOGOUT_TOKEN_TYPE)


def frontchannel_logout_url(client: Client, *, issuer: str, sid: str | None) -> str | None:
    """The iframe address for ``client`` (Front-Channel Logout 1.0 §2, §4), or None if it has none.

    With ``frontchannel_logout_session_required`` (the default) the registered URI gets
    ``iss`` and ``sid`` query parameters, after any query of its own.

    :raises ValueError: no ``sid`` for a client that requires it.
    """
    uri = getattr(client, "frontchannel_logout_uri", None)
    if not uri:
        return None
    if not getattr(client, "frontchannel_logout_session_required", True):
        return str(uri)
    if not sid:
        raise ValueError(f"client {client.client_id} requires iss and sid in its front-channel logout URI "
                         "(frontchannel_logout_session_required, Front-Channel Logout 1.0 §2)")
    query = urlencode({"iss": issuer, "sid": sid})
    sep = "&" if urlsplit(uri).query else "" if uri.endswith("?") else "?"
    return f"{uri}{sep}{query}"
