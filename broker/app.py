"""The WSGI application: the guard, health endpoints, the login path, and in-process rebuilds.

:func:`create_app` is the application factory (``gunicorn 'broker.app:create_app()'``).
Everything is built when it is called, never at import.  Every request passes the
guard first (:func:`broker.web.protect_broker`: correlation id, request limits,
duplicate cookies, security headers), whichever server runs the application.
:meth:`BrokerApp.rebuild` builds the registry's active version (the database,
:mod:`broker.registry.versions`) and swaps in a new login path atomically: requests
in flight finish on the old one, and a version that fails to build changes nothing.
A :class:`~broker.registry.watch.RegistryWatcher` thread calls it whenever another
version is activated, on this instance or any other.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from typing import Any

from broker.assemble import Registry, assemble, registry_of
from broker.logs import quiet_library_loggers
from broker.registry.preview import PATH as PREVIEW_PATH
from broker.registry.preview import Previews
from broker.registry.service import RegistryService
from broker.registry.versions import Documents
from broker.registry.watch import RegistryWatcher
from broker.settings import Settings
from broker.store import Store, open_store
from broker.web import protect_broker

logger = logging.getLogger(__name__)


class BrokerApp:
    #: The guard is built in (every request passes it), so ``broker.web.protect`` never wraps this twice.
    digione_guarded = True

    def __init__(self, settings: Settings, store: Store, registry_service: RegistryService, *, keyring=None,
                 http=None, watch: bool = True):
        self.settings = settings
        self.store = store
        self.registry_service = registry_service
        from broker.tokens import KeyRing

        # The token-signing keys outlive a registry version: every rebuild signs with the same ring.
        self._keyring = keyring or KeyRing(store, settings.master_secret)
        self._http = http
        self._lock = threading.Lock()
        from broker.sessions.delivery import BackchannelDelivery

        # Back-channel logout deliveries outlive a registry version; retries run in the background.
        # A retry signs a fresh token with the registry version current then (a token lives two minutes).
        self.delivery = BackchannelDelivery(store, http=http,
                                            renew=lambda *args: self.proxy.logout.renew_token(*args))
        if store.shared:  # every instance retries what any instance queued; in memory, the first logout starts it
            self.delivery.start()
        from broker.audit import build_audit

        # What every service receives is audited; the records outlive a registry version and a
        # thread per worker moves them from the store to the database (broker.audit).
        self.audit, self.audit_flusher = build_audit(settings, store, registry_service.audit)
        if watch:
            self.audit_flusher.start()
        registry_service.seed()
        self.registry: Registry
        self.seq = self._build()
        self.watcher = RegistryWatcher(lambda: registry_service.versions.head()[0], self._build, built=self.seq,
                                       redis=store.client if store.shared and hasattr(store, "client") else None,
                                       prefix=settings.redis_prefix)
        registry_service.after_activation(lambda _seq: self.watcher.wake())
        if watch:
            self.watcher.start()
        self._admin: Any = None
        self.previews = Previews(self)
        self._guarded = protect_broker(self._dispatch, settings)
        from broker.saml.metadata_refresh import MetadataRefreshThread

        # IdP metadata by URL kept current in the background; a changed document rebuilds the served version.
        self.metadata_refresh = MetadataRefreshThread.for_app(self)
        if watch:
            self.metadata_refresh.start()

    def build_proxy(self, documents: Documents, *, cookie_suffix: str = "") -> tuple[Registry, Any]:
        """The registry and login path of ``documents`` (a whole registry); raises if they do not validate."""
        registry = registry_of(self.settings, documents)
        return registry, assemble(self.settings, registry, self.store, keyring=self._keyring, http=self._http,
                                  delivery=self.delivery, cookie_suffix=cookie_suffix, audit=self.audit)

    def _build(self) -> int:
        """Build the active version and serve it; return its sequence (all or nothing)."""
        with self._lock:
            state = self.registry_service.versions.state()
            registry, proxy = self.build_proxy(state.documents)
            self.registry, self.proxy, self.seq, self.version_id = registry, proxy, state.seq, state.version_id
            if self.freeze_heap:
                freeze_heap()
        logger.info("registry version served version=%s seq=%s tenants=%d clients=%d sps=%d", state.version_id,
                    state.seq, len(registry.tenants), len(registry.parties.clients), len(registry.parties.sps))
        return state.seq

    #: Set by the WSGI entry point of a server worker (:mod:`broker.wsgi`): after each build the heap
    #: is frozen (:func:`freeze_heap`).  Off elsewhere: tests build hundreds of applications.
    freeze_heap = False

    def rebuild(self) -> bool:
        """Serve the active version now if it is not the one served (what the watcher does within seconds)."""
        return self.watcher.check()

    def __call__(self, environ, start_response):
        return self._guarded(environ, start_response)

    def close(self) -> None:
        """Stop watching the registry and the IdP metadata, and the background retries (waiting for
        deliveries in flight); release the store."""
        self.watcher.stop()
        self.metadata_refresh.stop()
        self.delivery.close()
        self.audit_flusher.close()
        self.store.close()

    def readiness(self) -> dict[str, str]:
        """What a login needs, each ``ok`` or why not: the store, a signing key, an active registry version."""
        from broker.store import StoreError
        from broker.tokens.keys import KeyRingError

        checks = {"store": "ok" if self.store.ping() else "not answering"}
        try:
            self._keyring.signing_key()
            checks["signing_keys"] = "ok"
        except (KeyRingError, StoreError) as exc:
            checks["signing_keys"] = f"no active signing key ({exc.__class__.__name__})"
        checks["registry"] = "ok" if self.version_id is not None else "no active registry version"
        return checks

    def _dispatch(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == "/readyz":
            checks = self.readiness()
            failed = [name for name, result in checks.items() if result != "ok"]
            return _json(start_response, "503 Service Unavailable" if failed else "200 OK",
                         {"status": f"{failed[0].replace('_', ' ')} unavailable" if failed else "ok",
                          "checks": checks, "store": type(self.store).__name__})
        if path in ("/admin", "/register") or path.startswith(("/admin/", "/register/")):
            return self.admin(environ, start_response)
        if path.startswith(PREVIEW_PATH):
            return self.previews.endpoint(environ, start_response)
        preview = self.previews.version_of(environ)
        if preview is not None:
            return self.previews.serve(preview, environ, start_response)
        return self.proxy(environ, start_response)

    @property
    def admin(self) -> Any:
        """The admin API and console (:mod:`broker.admin`), built at their first request."""
        if self._admin is None:
            from broker.admin import create_admin_app

            self._admin = create_admin_app(self)
        return self._admin


def freeze_heap() -> None:
    """Keep the garbage collector off the objects a login path is built of (``gc.freeze``).

    A built proxy holds hundreds of thousands of long-lived objects (pysaml2's metadata
    above all); without this, each full collection walks them all, on some unlucky
    request (110-300 ms seen in bench/bench_discovery.py; with it, at most 6 ms).  The
    previous version's objects are unfrozen and collected first, so a rebuild leaks
    nothing; that one collection runs in the watcher's thread, once per activation.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


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
    return BrokerApp(settings, store, open_registry(settings, store), **kwargs)


def open_registry(settings: Settings, store: Store | None = None) -> RegistryService:
    """The registry in ``settings.database_url`` (migrated to the newest schema); activations are
    announced over ``store``'s Redis when it has one."""
    from broker.registry.database import open_database
    from broker.registry.versions import RegistryVersions
    from broker.registry.watch import announcer

    service = RegistryService(settings, RegistryVersions(open_database(settings.database_url)))
    if store is not None and store.shared and hasattr(store, "client"):
        service.after_activation(announcer(store.client, settings.redis_prefix))
    return service
