"""A broker on a given store, served in this process at the demo stack's broker URL."""

from __future__ import annotations

import contextlib
import secrets
import threading

from ha_logins import Service

from broker.demo.servers import serve_in_thread

CLIENT_ID = "ha-rp"


@contextlib.contextmanager
def broker_on(stack, store):
    """The broker on ``store``, served in this process at the stack's broker URL."""
    from broker.app import create_app

    app = create_app(stack.settings(), store=store)
    handle = serve_in_thread(app, "127.0.0.1", stack.ports.broker)
    try:
        yield app, Service(stack.broker_url, CLIENT_ID, stack.ha_secret)
    finally:
        handle.shutdown()
        app.close()


def prefix() -> str:
    return f"test-ha:{secrets.token_hex(6)}:"


def cluster_store(cluster_set, **query):
    """A :class:`~broker.store.cluster.ClusterStore` on ``cluster_set`` under a fresh prefix."""
    from broker.store import open_store
    from broker.store.cluster import ClusterStore

    store = open_store(cluster_set.url(**{"wait_ms": 1500, **query}), prefix=prefix())
    assert isinstance(store, ClusterStore)
    return store


class Wakes(threading.Event):
    """A registry watcher's wake-up event that also records being set: only a notice sets it
    while the test runs (the head never moves, so polling wakes nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.noticed = threading.Event()

    def set(self) -> None:
        self.noticed.set()
        super().set()
