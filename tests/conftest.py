"""Fixtures shared by every suite: the two stores a store-backed part is tested on.

``store`` is a :class:`MemoryStore`, then a :class:`RedisStore` on the real Redis
(``BROKER_TEST_REDIS_URL``, default db 15) under a fresh key prefix whose keys are deleted
afterwards.  ``make_store()`` gives more clients on the same keys (on Redis: another
instance); ``redis_store`` is the Redis one alone.  Without a Redis the Redis half is
skipped, saying why.  A suite that needs something else (``tests/store``: Redis behind a
delaying proxy) defines its own.
"""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from broker.store import MemoryStore
from broker.store.redis import RedisStore

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _connect(prefix: str) -> RedisStore:
    """A RedisStore on the test Redis under ``prefix``; the test is skipped without one."""
    store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    try:
        store.client.ping()
    except redis.RedisError as exc:
        store.close()
        pytest.skip(f"no Redis at {REDIS_URL} ({exc.__class__.__name__}): this half needs a real one")
    return store


@pytest.fixture(params=["memory", "redis"])
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def make_store(store_kind):
    """``make_store()``: the store; on Redis every call is another client on the same keys."""
    prefix = f"test:{uuid.uuid4().hex}:"
    memory = MemoryStore()
    stores: list[RedisStore] = []

    def make():
        if store_kind == "memory":
            return memory
        stores.append(_connect(prefix))
        return stores[-1]

    yield make
    if stores:
        keys = list(stores[0].client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            stores[0].client.delete(*keys)
        for store in stores:
            store.close()


@pytest.fixture
def store(make_store):
    return make_store()


@pytest.fixture
def redis_store():
    """A RedisStore alone (for what only Redis does), under a fresh prefix cleaned up afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:"
    store = _connect(prefix)
    yield store
    keys = list(store.client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        store.client.delete(*keys)
    store.close()


# -- the registry's databases ------------------------------------------------------------------

@pytest.fixture
def postgres_database():
    """A fresh PostgreSQL database on the test server, dropped afterwards (not skipped: CI starts one)."""
    from databases import create_database, drop_database

    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The registry database URL: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    return request.getfixturevalue("postgres_database")
