"""``/metrics`` on its own port, and the gauges computed when Prometheus scrapes.

:func:`with_metrics` puts the scrape endpoint in front of the broker: a request that came in on
the metrics port (``BROKER_METRICS_PORT``, 9102) is answered by :class:`MetricsEndpoint` and
nothing else; every other request goes to the broker, where ``/metrics`` is just an unknown
path (404).  The port is told by the socket the request arrived on, never by a header: uWSGI
sets ``SERVER_PORT`` from its socket's name; gunicorn from the socket for TCP binds (for a UNIX
socket it would take the ``Host`` header, so the local port of the connection is read instead).
Decision 16 says why a port and not a token.

In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``broker serve``) a scrape sums the
files of every worker, dead ones included, so counters survive a worker's replacement.  Gauges
that describe the registry are not kept in files: :class:`RegistryCollector` computes them from
the worker answering the scrape (every worker serves the active version within seconds):

* ``digione_registry_version``: the sequence number of the active registry version served;
* ``digione_certificate_expiry_days`` and ``digione_metadata_expiry_days``: days (fractional, negative
  once past) to the soonest expiry per IdP and kind, from :func:`broker.registry.expiry.expiry_report`
  (recomputed at most every :data:`EXPIRY_CACHE_SECONDS` or when the version changes; no fetch).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

#: The classic text format (what generate_latest writes; every Prometheus version reads it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Expiry items are parsed from certificates and metadata: at most this often (seconds).
EXPIRY_CACHE_SECONDS = 300.0
_DAY = 86400.0

#: ExpiryItem.what -> the ``certificate`` label (broker.registry.expiry names them).
_CERTIFICATE_KINDS = {
    "signing certificate": "signing",
    "encryption certificate": "encryption",
    "signing and encryption certificate": "signing_encryption",
    "TLS CA certificate": "tls_ca",
}
_METADATA = "metadata validUntil"


def with_metrics(app: Any, metrics_port: int, *, broker: Any = None) -> Any:
    """``app`` with ``/metrics`` answered on ``metrics_port`` (``0``: ``app`` itself); the registry
    gauges describe ``broker`` (the :class:`broker.app.BrokerApp`; default ``app``)."""
    if not metrics_port:
        return app
    return PortRouter(app, MetricsEndpoint(broker if broker is not None else app), metrics_port)


class PortRouter:
    """Requests on the metrics port to the metrics endpoint, all others to the broker."""

    def __init__(self, app: Any, metrics: Callable[..., Any], port: int):
        self.app = app
        self.metrics = metrics
        self.port = str(port)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if _local_port(environ) == self.port:
            return self.metrics(environ, start_response)
        return self.app(environ, start_response)

    def __getattr__(self, name: str) -> Any:   # the broker's attributes (close, registry...) stay reachable
        return getattr(self.app, name)


def _local_port(environ: dict[str, Any]) -> str | None:
    """The port of the socket the request arrived on."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        try:
            return str(sock.getsockname()[1])
        except (OSError, IndexError, TypeError):
            return None
    return environ.get("SERVER_PORT")


class MetricsEndpoint:
    """``GET /metrics`` in the Prometheus text format; anything else 404 (405 for other methods)."""

    def __init__(self, broker: Any):
        self.collector = RegistryCollector(broker)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            return _plain(start_response, "404 Not Found", b"only /metrics here\n")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", b"GET /metrics\n", [("Allow", "GET, HEAD")])
        body = generate_latest(self.registry())
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store")])
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def registry(self) -> CollectorRegistry:
        """What one scrape reads: every worker's files (multiprocess mode) or this process's metrics."""
        registry = CollectorRegistry(auto_describe=False)
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if path:
            MultiProcessCollector(registry, path=path)
        else:
            registry.register(_Delegate(REGISTRY))
        registry.register(self.collector)
        return registry


class _Delegate:
    """The process's default registry, as one collector of a scrape's registry."""

    def __init__(self, registry: CollectorRegistry):
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


class RegistryCollector:
    """The gauges of the registry version this worker serves (see the module documentation)."""

    def __init__(self, broker: Any, *, clock: Callable[[], float] = time.time):
        self._broker = broker
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[Any, float, list[tuple[str, str, str, float]]] | None = None

    def describe(self) -> list[Metric]:
        return []   # computed at scrape time: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        version = GaugeMetricFamily("digione_registry_version", "Sequence number of the registry version served")
        seq = getattr(self._broker, "seq", None)
        if isinstance(seq, int):
            version.add_metric([], seq)
        yield version
        now = self._clock()
        certificates = GaugeMetricFamily(
            "digione_certificate_expiry_days", "Days until the soonest-expiring certificate of an IdP (tenant, idp) "
            "or of the broker itself (tenant=\"broker\"), by certificate kind; negative once expired",
            labels=["tenant", "idp", "certificate"])
        metadata = GaugeMetricFamily("digione_metadata_expiry_days", "Days until an IdP's metadata validUntil; "
                                     "negative once past", labels=["tenant", "idp"])
        for tenant, idp, kind, not_after in self._expiries(now):
            days = (not_after - now) / _DAY
            if kind == _METADATA:
                metadata.add_metric([tenant, idp], days)
            else:
                certificates.add_metric([tenant, idp, kind], days)
        yield certificates
        yield metadata

    def _expiries(self, now: float) -> list[tuple[str, str, str, float]]:
        """``(tenant, idp, kind, not_after)``, the soonest per label set; cached per version for a while."""
        seq = getattr(self._broker, "seq", None)
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] == seq and now - cached[1] < EXPIRY_CACHE_SECONDS:
                return cached[2]
            try:
                items = self._report()
            except Exception:   # noqa: BLE001 - a scrape must answer; the counters matter more than these gauges
                logger.exception("expiry gauges not computed")
                items = cached[2] if cached is not None else []
            self._cached = (seq, now, items)
            return items

    def _report(self) -> list[tuple[str, str, str, float]]:
        from broker.registry.expiry import OWN_CERTIFICATES, expiry_report
        from broker.saml.metadata_refresh import last_good_copies

        registry = getattr(self._broker, "registry", None)
        if registry is None:
            return []
        tenants = list(registry.tenants.by_id.values())
        remote = last_good_copies(tenants, self._broker.store)
        settings = getattr(self._broker, "settings", None)
        own = {description: name.replace("-", "_") for name, description in OWN_CERTIFICATES.items()}
        soonest: dict[tuple[str, str, str], float] = {}
        for item in expiry_report(tenants, remote=remote, keys_dir=getattr(settings, "keys_dir", None)):
            if item.idp is None:
                labels = ("broker", "broker", own.get(item.what, "other"))
            else:
                tenant, _, idp = item.idp.partition("/")
                kind = _METADATA if item.what == _METADATA else _CERTIFICATE_KINDS.get(item.what, "other")
                labels = (tenant, idp, kind)
            not_after = item.not_after.timestamp()
            if labels not in soonest or not_after < soonest[labels]:
                soonest[labels] = not_after
        return [(*labels, not_after) for labels, not_after in sorted(soonest.items())]


def _plain(start_response: Callable[..., Any], status: str, body: bytes,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]
