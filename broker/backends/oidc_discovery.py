"""Upstream OpenID Provider configuration, fetched at build time, never on the login path.

The discovery document of each upstream issuer is fetched when the proxy is
built and cached in the store for a day, so an instance starting while a city's
IdP is briefly down still gets it from a sibling's fetch.  A provider whose
configuration cannot be had makes only *its* IdP unavailable (a clear error
page for its users); every other city keeps working.

A document fetched under a city's own CA file (``trust``, :func:`broker.backends.trust.ca_key`)
is cached under a key of its own: another city naming the same issuer without that CA
never gets it from the cache.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from broker.store import Store, StoreError

logger = logging.getLogger(__name__)

CACHE_KEY = "oidc:provider:"
CACHE_TTL = 24 * 3600
REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


class ProviderUnavailable(RuntimeError):
    pass


def provider_configuration(issuer: str, *, store: Store, http: requests.Session,
                           timeout: float = 5.0, trust: str = "") -> dict[str, Any]:
    """The validated discovery document of ``issuer`` (OIDC Discovery §4).

    ``trust`` names the CA file ``http`` trusts (:func:`broker.backends.trust.ca_key`; ``""``:
    the public CAs); it is part of the cache key.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    key = CACHE_KEY + issuer + trust
    try:
        reply = http.get(url, timeout=timeout)
        reply.raise_for_status()
        document = reply.json()
        _validate(document, issuer)
    except (requests.RequestException, ValueError) as exc:
        cached = _cached(store, key)
        if cached is not None:
            logger.warning("upstream discovery failed, using cached configuration issuer=%s error=%s",
                           issuer, exc.__class__.__name__)
            return cached
        raise ProviderUnavailable(f"{issuer}: discovery failed ({exc.__class__.__name__}: {exc})") from None
    try:
        store.put(key, document, CACHE_TTL)
    except StoreError:
        pass
    return document


def _validate(document: Any, issuer: str) -> None:
    if not isinstance(document, dict):
        raise ValueError("discovery document is not a JSON object")
    missing = [k for k in REQUIRED if not isinstance(document.get(k), str)]
    if missing:
        raise ValueError(f"discovery document lacks {', '.join(missing)}")
    # OIDC Discovery §4.3: the issuer in the document must be exactly the one we asked for.
    if document["issuer"] != issuer:
        raise ValueError("discovery document names another issuer")
    response_types = document.get("response_types_supported") or ["code"]
    if "code" not in response_types:
        raise ValueError("provider does not support the authorization code flow")


def _cached(store: Store, key: str) -> dict[str, Any] | None:
    try:
        return store.get(key)
    except StoreError:
        return None
