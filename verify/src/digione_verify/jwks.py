"""The issuer's keys: fetched over https, cached, refreshed with a rate limit (:class:`JWKSCache`)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from digione_verify.errors import KeySetUnavailable
from digione_verify.jose import PublicKey, load_jwks

__all__ = ["JWKSCache", "USER_AGENT", "MAX_RESPONSE", "check_url", "default_http_get", "fetch_json"]

#: What the kit calls itself in HTTP requests to the broker.
USER_AGENT = "digione-verify/1"
#: The largest discovery document, JWKS or introspection answer read.
MAX_RESPONSE = 1024 * 1024


def default_http_get(url: str) -> bytes:
    """GET ``url`` with urllib (5 s timeout); its body, at most :data:`MAX_RESPONSE` bytes; else :class:`OSError`."""
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - scheme checked
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        body = response.read(MAX_RESPONSE + 1)
    if len(body) > MAX_RESPONSE:
        raise OSError("response larger than 1 MiB")
    return bytes(body)


def check_url(url: str) -> None:
    """Refuse (:class:`KeySetUnavailable`) to fetch keys over anything but https (http for loopback only)."""
    parts = urlsplit(url)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise KeySetUnavailable(f"refusing to fetch keys over {parts.scheme or 'no scheme'}: https required")


def fetch_json(http_get: Callable[[str], bytes], url: str) -> dict[str, Any]:
    """``url``'s JSON object, fetched with ``http_get``; any failure is :class:`KeySetUnavailable`."""
    check_url(url)
    # http_get may be any HTTP client a service plugs in, so what it raises is open-ended; whatever
    # it is (network, HTTP status, a body that is not JSON), the keys are unavailable: 503, not 401.
    try:
        data = json.loads(http_get(url))
    except Exception as exc:  # noqa: BLE001 - the service's own http_get: every failure means "unavailable"
        raise KeySetUnavailable(f"could not fetch {url}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise KeySetUnavailable(f"{url} did not return a JSON object")
    return data


class JWKSCache:
    """A JWK Set fetched from ``uri`` and cached in the process.

    :meth:`get` answers from memory.  The set is fetched again when it is older than
    ``max_age`` seconds, and at once when a ``kid`` is unknown, but never more often than
    every ``min_refresh_interval`` seconds.  If a refresh fails, the keys already held stay
    in use (a short broker outage does not stop services); with no keys at all,
    :class:`KeySetUnavailable` is raised.  Thread-safe.
    """

    def __init__(self, uri: str | Callable[[], str], *, http_get: Callable[[str], bytes] | None = None,
                 min_refresh_interval: float = 30.0, max_age: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self._uri = uri
        self._http_get = http_get or default_http_get
        self.min_refresh_interval = min_refresh_interval
        self.max_age = max_age
        self._clock = clock
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def _refresh(self, now: float) -> None:
        with self._lock:
            if self._attempted_at is not None and now - self._attempted_at < self.min_refresh_interval:
                return  # another thread just refreshed, or we are rate-limited
            self._attempted_at = now
            uri = self._uri() if callable(self._uri) else self._uri
            try:
                keys = load_jwks(fetch_json(self._http_get, uri))
            except KeySetUnavailable:
                if not self._keys:
                    raise
                return
            self._keys = keys
            self._fetched_at = now

    def get(self, kid: str) -> PublicKey | None:
        """The key with ``kid``, refreshing the set if it is stale or ``kid`` is unknown."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self.max_age:
            self._refresh(now)
        key = self._keys.get(kid)
        if key is None and (self._attempted_at is None or now - self._attempted_at >= self.min_refresh_interval):
            self._refresh(now)
            key = self._keys.get(kid)
        if key is None and not self._keys:  # never fetched successfully: not the token's fault
            raise KeySetUnavailable("no keys could be fetched yet")
        return key

    __call__ = get

    def all(self) -> dict[str, PublicKey]:
        """Every key held, by ``kid`` (fetching the set first if it is stale)."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self.max_age:
            self._refresh(now)
        if not self._keys:
            raise KeySetUnavailable("no keys could be fetched yet")
        return dict(self._keys)

    def kids(self) -> set[str]:
        """The ``kid`` values currently held (for diagnostics)."""
        return set(self._keys)
