"""The discovery document (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).

Truthful: it lists exactly what the provider implements and nothing it does not (no
implicit or hybrid flow, no request objects, no ``plain`` PKCE, no HMAC, no session
management iframe).  Built once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from broker.tokens.authorize import PROMPTS
from broker.tokens.client_auth import ASSERTION_ALGS

#: Endpoint paths, relative to the issuer (all at its root).
PATHS = {
    "discovery": "/.well-known/openid-configuration",
    "jwks": "/jwks",
    "authorize": "/authorize",
    "token": "/token",
    "userinfo": "/userinfo",
    "introspect": "/introspect",
    "revoke": "/revoke",
    "end_session": "/end_session",
}
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


def document(issuer: str, *, signing_algs: Iterable[str], scopes_supported: Iterable[str],
             claims_supported: Iterable[str], acr_values_supported: Iterable[str] = (),
             ui_locales_supported: Iterable[str] = ("fi", "sv", "en"),
             subject_types_supported: Iterable[str] = ("pairwise", "public"),
             registration_endpoint: str | None = None) -> dict[str, Any]:
    url = {name: issuer + path for name, path in PATHS.items()}
    doc: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": url["authorize"],
        "token_endpoint": url["token"],
        "userinfo_endpoint": url["userinfo"],
        "jwks_uri": url["jwks"],
        "end_session_endpoint": url["end_session"],
        "introspection_endpoint": url["introspect"],
        "revocation_endpoint": url["revoke"],
        "scopes_supported": list(scopes_supported),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": list(subject_types_supported),
        "id_token_signing_alg_values_supported": list(signing_algs),
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS[:3],
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": sorted(set(claims_supported) | {"iss", "sub", "aud", "exp", "iat", "auth_time",
                                                             "nonce", "acr", "amr", "azp", "sid", "at_hash"}),
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 §3
        "prompt_values_supported": sorted(PROMPTS),
        "ui_locales_supported": list(ui_locales_supported),
        # Back-Channel Logout 1.0 §2.1 and Front-Channel Logout 1.0 §3: logout tokens POSTed to
        # backchannel_logout_uri and iframes of frontchannel_logout_uri, both with sid (also in
        # ID tokens).  No check_session_iframe: OIDC Session Management is not implemented.
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": True,
        "frontchannel_logout_session_supported": True,
    }
    if registration_endpoint:   # RFC 7591 §3 / OIDC Discovery §3: only where dynamic registration is on
        doc["registration_endpoint"] = registration_endpoint
    if acr_values_supported:
        doc["acr_values_supported"] = list(acr_values_supported)
    return doc
