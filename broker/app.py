"""The WSGI application: the guard, health endpoints, the login path, and in-process rebuilds.

:func:`create_app` is the application factory (``gunicorn 'broker.app:create_app()'``).
Everything is built when it is called, never at import.  Every request passes the
guard first (:func:`broker.web.protect_broker`: correlation id, request limits,
duplicate cookies, security headers), whichever server runs the application.
:meth:`BrokerApp.rebuild` loads the registry again and swaps in a new login path
atomically: requests in flight finish on the old one, and a registry that fails
validation changes nothing.
"""

from __future__ import annotations

import json
import logging
import threading

from broker.assemble import Registry, assemble, load_registry
from broker.logs import quiet_library_loggers
from broker.settings import Settings
from broker.store import Store, open_store
from broker.web import protect_broker

logger = logging.getLogger(__name__)


class BrokerApp:
    #: The guard is built in (every request passes it), so ``broker.web.protect`` never wraps this twice.
    digione_guarded = True

    def __init__(self, settings: Settings, store: Store, registry: Registry, *, keyring=None, http=None):
        self.settings = settings
        self.store = store
        self.registry = registry
        self._keyring = keyring
        self._http = http
        self._lock = threading.Lock()
        from broker.sessions.delivery import BackchannelDelivery

        # Back-channel logout deliveries outlive a registry version; retries run in the background.
        # A retry signs a fresh token with the registry version current then (a token lives two minutes).
        self.delivery = BackchannelDelivery(store, http=http,
                                            renew=lambda *args: self.proxy.logout.renew_token(*args))
        if store.shared:  # every instance retries what any instance queued; in memory, the first logout starts it
            self.delivery.start()
        self.proxy = assemble(settings, registry, store, keyring=keyring, http=http, delivery=self.delivery)
        self._guarded = protect_broker(self._dispatch, settings)
        from broker.saml.metadata_refresh import MetadataRefreshThread

        # IdP metadata by URL kept current in the background; a changed document rebuilds the proxy.
        self.metadata_refresh = MetadataRefreshThread.for_app(self)
        self.metadata_refresh.start()

    def rebuild(self) -> None:
        """Reload tenants and relying parties and swap in a new proxy (all or nothing)."""
        with self._lock:
            registry = load_registry(self.settings)
            proxy = assemble(self.settings, registry, self.store, keyring=self._keyring, http=self._http,
                             delivery=self.delivery)
            self.registry, self.proxy = registry, proxy
        logger.info("configuration rebuilt tenants=%d clients=%d sps=%d", len(registry.tenants),
                    len(registry.parties.clients), len(registry.parties.sps))

    def __call__(self, environ, start_response):
        return self._guarded(environ, start_response)

    def close(self) -> None:
        """Stop the background retries (waiting for deliveries in flight) and release the store."""
        self.metadata_refresh.stop()
        self.delivery.close()
        self.store.close()

    def _dispatch(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == "/readyz":
            ready = self.store.ping()
            return _json(start_response, "200 OK" if ready else "503 Service Unavailable",
                         {"status": "ok" if ready else "store unavailable", "store": type(self.store).__name__})
        return self.proxy(environ, start_response)


def _json(start_response, status: str, body: dict):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-store")])
    return [data]


def create_app(settings: Settings | None = None, *, store: Store | None = None, **kwargs) -> BrokerApp:
    """Build the broker for ``settings`` (default: from the environment).

    Also holds the protocol libraries' loggers at WARNING (:func:`quiet_library_loggers`),
    whoever configured logging: the broker never logs assertions, tokens or personal data.
    """
    quiet_library_loggers()
    settings = settings or Settings.from_env()
    if store is None:
        store = open_store(settings.redis_url, prefix=settings.redis_prefix)
        if store.shared:
            logger.info("shared state in Redis")
        else:
            logger.warning("shared state in process memory: one process only (set BROKER_REDIS_URL "
                           "to run several workers or instances)")
    return BrokerApp(settings, store, load_registry(settings), **kwargs)
