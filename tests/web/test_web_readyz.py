"""/readyz says whether a login could be served here, and which part is missing: the store, a
token-signing key, an active registry version (the load balancer sends logins only where all are)."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

from broker.app import create_app
from broker.demo.stack import DemoStack
from broker.store import MemoryStore


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("readyz")
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", environ={})
    demo.prepare()
    app = create_app(demo.settings(), store=MemoryStore(), watch=False)
    yield app
    app.close()


def test_ready_when_store_keys_and_registry_are(app):
    answer = Client(app).get("/readyz")
    assert answer.status_code == 200
    assert answer.json == {"status": "ok", "store": "MemoryStore",
                           "checks": {"store": "ok", "signing_keys": "ok", "registry": "ok"}}


def test_not_ready_names_what_is_missing(app, monkeypatch):
    monkeypatch.setattr(app, "version_id", None)
    answer = Client(app).get("/readyz")
    assert answer.status_code == 503 and answer.json["status"] == "registry unavailable"
    assert answer.json["checks"]["registry"] == "no active registry version"
    monkeypatch.setattr(app.store, "ping", lambda: False)
    answer = Client(app).get("/readyz")
    assert answer.status_code == 503 and answer.json["status"] == "store unavailable"
    assert answer.json["checks"]["store"] == "not answering"
    assert Client(app).get("/healthz").status_code == 200, "alive all the same"


def test_a_worker_freezes_its_heap_after_each_build_and_leaks_no_version(app, monkeypatch):
    """Server workers (broker.wsgi) keep the collector off a built proxy; a rebuild unfreezes first."""
    import gc
    import weakref

    monkeypatch.setattr(app, "freeze_heap", True)
    try:
        old = weakref.ref(app.proxy)
        app._build()
        assert gc.get_freeze_count() > 0
        app._build()
        assert old() is None, "the version served before is collected, not frozen for ever"
    finally:
        gc.unfreeze()
