"""Claims the ID token does not carry: the provider's userinfo endpoint (OIDC Core §5.3).

OIDC Core §5.4 lets a provider return the profile claims the ``profile`` and ``email``
scopes ask for at the userinfo endpoint only (in the code flow, when an access token is
issued; panva ``oidc-provider`` does so by default).  A city's OIDC backend then asks
userinfo, as the IdP's ``userinfo`` tenant key says:

``auto`` (the default)
    when a claim the IdP's mapping reads (:meth:`broker.mapping.Ruleset.reads`) is in
    neither the ID token nor, for alternatives (``from: [a, b]``), under another name;
``always`` / ``never``
    on every login / on none.

The request carries the access token as a Bearer token (§5.3.1) to an ``https`` endpoint only
(OIDC Discovery §3; ``http`` only for an ``http`` issuer on localhost), over the IdP's own
session (its ``ca_file``, :mod:`broker.backends.trust`), without following redirects.
The answer is used only if it is a JSON object (§5.3.2; a signed or encrypted
``application/jwt`` answer is refused, not half-read) whose ``sub`` is exactly the ID
token's (§5.3.2: "if they do not match, the UserInfo Response values MUST NOT be used"):
a different ``sub`` refuses the login.  Its claims complete the ID token's, never replace
them (the ID token is signed), and the protocol claims of a token (``iss``, ``aud``,
``nonce``, ``acr``, …) are never taken from it.  Which claims were missing, and which
userinfo gave, is logged by name, never by value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from broker.errors import IdpError, InvalidResponse

logger = logging.getLogger("broker.backends.oidc")

#: An answer larger than this is refused (a person's claims, not a document).
MAX_BYTES = 256 * 1024
#: Claims about the token or the authentication, which only the signed ID token may state.
PROTOCOL_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "auth_time",
                             "acr", "amr", "sid", "jti", "sub", "typ", "uti", "rh", "aio"})


def missing(claims: Mapping[str, Any], groups: Sequence[Sequence[str]]) -> list[str]:
    """The groups of ``groups`` (claim names that stand in for each other) none of which is in ``claims``,
    each named by its first name."""
    return [group[0] for group in groups if group and not any(_present(claims.get(name)) for name in group)]


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != []


def fetch(http: requests.Session, endpoint: str, access_token: str, *, sub: str,
          timeout: tuple[float, float]) -> dict[str, Any]:
    """The userinfo claims for ``access_token`` (OIDC Core §5.3.1: a GET with the Bearer token).

    Raises :class:`IdpError` when the endpoint fails or answers what cannot be used, and
    :class:`InvalidResponse` when its ``sub`` is not the ID token's (§5.3.2).
    """
    try:
        with http.get(endpoint, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                      timeout=timeout, stream=True, allow_redirects=False) as reply:
            body = _read(reply)
            status, content_type = reply.status_code, reply.headers.get("Content-Type", "")
    except requests.RequestException as exc:
        raise IdpError(f"userinfo endpoint unreachable: {exc.__class__.__name__}") from None
    if status != 200:
        # §5.3.3: an error answer (e.g. 401 with WWW-Authenticate: Bearer error="invalid_token").
        raise IdpError(f"userinfo endpoint answered {status}")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/jwt":
        raise IdpError("userinfo answered a signed or encrypted JWT (application/jwt), which the broker does not "
                       "accept: configure the IdP to answer JSON")
    if media != "application/json":
        raise IdpError(f"userinfo answered {media[:64] or 'no Content-Type'}, not application/json (OIDC Core §5.3.2)")
    try:
        claims = json.loads(body)
    except ValueError:
        raise IdpError("userinfo answered malformed JSON") from None
    if not isinstance(claims, dict):
        raise IdpError("userinfo answered JSON that is not an object (OIDC Core §5.3.2)")
    if claims.get("sub") != sub:
        raise InvalidResponse("userinfo sub does not match the ID token's sub (OIDC Core §5.3.2)")
    return claims


def _read(reply: requests.Response) -> bytes:
    chunks, size = [], 0
    for chunk in reply.iter_content(16 * 1024):
        size += len(chunk)
        if size > MAX_BYTES:
            raise IdpError(f"userinfo answer larger than {MAX_BYTES // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


def merge(id_token: Mapping[str, Any], userinfo: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The ID token's claims completed by userinfo's (never the protocol claims); and the names added."""
    merged = dict(id_token)
    added = []
    for name, value in userinfo.items():
        if name in PROTOCOL_CLAIMS or not isinstance(name, str) or _present(merged.get(name)):
            continue
        if _present(value):
            merged[name] = value
            added.append(name)
    return merged, added


def complete(claims: dict[str, Any], *, mode: str, groups: Sequence[Sequence[str]], provider: Mapping[str, Any],
             tokens: Mapping[str, Any], http: requests.Session, idp: str,
             timeout: tuple[float, float]) -> dict[str, Any]:
    """``claims`` (a verified ID token's) completed from userinfo as ``mode`` says; see the module."""
    lacking = missing(claims, groups)
    if mode == "never" or (mode == "auto" and not lacking):
        return claims
    endpoint = provider.get("userinfo_endpoint")
    access_token = tokens.get("access_token")
    token_type = str(tokens.get("token_type") or "Bearer")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        logger.info("upstream claims missing from the ID token, and the provider has no userinfo endpoint "
                    "idp=%s missing=%s", idp, ",".join(lacking),
                    extra={"event": "upstream_claims", "idp": idp, "missing": lacking, "userinfo": "none"})
        return claims
    if not endpoint.startswith("https://") and not str(provider.get("issuer", "")).startswith("http://"):
        # OIDC Discovery §3: the userinfo endpoint MUST use https; the access token never travels in clear.
        raise IdpError("the provider's userinfo_endpoint is not https (OIDC Discovery §3)")
    if not isinstance(access_token, str) or not access_token or token_type.lower() != "bearer":
        logger.info("upstream claims missing from the ID token, and the token response has no Bearer access "
                    "token for userinfo idp=%s missing=%s", idp, ",".join(lacking),
                    extra={"event": "upstream_claims", "idp": idp, "missing": lacking, "userinfo": "no_token"})
        return claims
    answer = fetch(http, endpoint, access_token, sub=claims["sub"], timeout=timeout)
    merged, added = merge(claims, answer)
    still = missing(merged, groups)
    logger.info("upstream claims read from userinfo idp=%s missing_from_id_token=%s from_userinfo=%s "
                "still_missing=%s", idp, ",".join(lacking) or "-", ",".join(sorted(added)) or "-",
                ",".join(still) or "-",
                extra={"event": "upstream_claims", "idp": idp, "missing": lacking, "userinfo": "used",
                       "from_userinfo": sorted(added), "still_missing": still})
    return merged
