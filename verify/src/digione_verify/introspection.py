"""Asking the broker whether a token is still active: OAuth 2.0 Token Introspection (RFC 7662)."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import quote, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes

from digione_verify.errors import IntrospectionUnavailable
from digione_verify.jwks import MAX_RESPONSE, USER_AGENT

__all__ = ["Introspection", "default_http_post"]


def default_http_post(url: str, data: bytes, headers: Mapping[str, str]) -> bytes:
    """POST ``data`` to ``url`` with urllib (5 s timeout); the body, at most :data:`MAX_RESPONSE` bytes."""
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"User-Agent": USER_AGENT, **headers})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - scheme checked
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        body = response.read(MAX_RESPONSE + 1)
    if len(body) > MAX_RESPONSE:
        raise OSError("response larger than 1 MiB")
    return bytes(body)


def _digest(token: str) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(token.encode("ascii", "replace"))
    return h.finalize()


class Introspection:
    """Ask the broker's introspection endpoint (RFC 7662) whether tokens are still active.

    :param endpoint: the broker's ``introspection_endpoint`` (from its discovery document).
    :param client_id: this service's client id at the broker.  The broker tells a client
        only about tokens issued to it, naming it in ``aud``, or when it is configured as an
        introspection client (RFC 7662 §2.2, §4); for any other token it says inactive.
    :param client_secret: its secret (sent as ``client_secret_basic``, RFC 6749 §2.3.1).
    :param cache_seconds: how long an answer is reused: the longest a revocation takes to
        reach this service.  ``0`` asks on every verification.
    :param http_post: ``http_post(url, body, headers) -> bytes`` (another HTTP client, a test
        double); it raises on anything but HTTP 200.
    :param max_entries: the most answers cached (the oldest are dropped first).
    """

    def __init__(self, endpoint: str, client_id: str, client_secret: str, *, cache_seconds: float = 30,
                 http_post: Callable[[str, bytes, Mapping[str, str]], bytes] | None = None,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000):
        parts = urlsplit(endpoint)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ValueError("the introspection endpoint must be https (client credentials are sent to it)")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required: the endpoint is protected (RFC 7662 §2.1)")
        self.endpoint = endpoint
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self._http_post = http_post or default_http_post
        self._clock = clock
        credentials = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"  # RFC 6749 §2.3.1
        self._headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode("ascii"),
                         "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        self._cache: dict[bytes, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def active(self, token: str) -> bool:
        """Whether the broker says ``token`` is active (``active: true``, RFC 7662 §2.2).

        :raises IntrospectionUnavailable: the endpoint could not be asked or its answer is
            not a JSON object with a boolean ``active``.
        """
        key = _digest(token)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        body = urlencode({"token": token, "token_type_hint": "access_token"}).encode("ascii")
        try:
            raw = self._http_post(self.endpoint, body, self._headers)
        except Exception as exc:  # noqa: BLE001 - the service's own http_post: every failure means "unavailable"
            raise IntrospectionUnavailable(f"could not ask {self.endpoint}: {exc.__class__.__name__}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise IntrospectionUnavailable("the introspection response is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise IntrospectionUnavailable("the introspection response has no boolean active (RFC 7662 §2.2)")
        active: bool = answer["active"]
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    for stale in [k for k, (_, until) in self._cache.items() if until <= now]:
                        del self._cache[stale]
                    while len(self._cache) >= self.max_entries:
                        del self._cache[next(iter(self._cache))]
                self._cache[key] = (active, now + self.cache_seconds)
        return active
