"""A real Redis (``BROKER_TEST_REDIS_URL``, default db 15) reached through a :class:`DelayingProxy`.

Each test gets its own key prefix; its keys are deleted at the end.  Without a Redis the
tests that need one are skipped, saying why.
"""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from store_proxy import TIMEOUT, DelayingProxy

from broker.store.redis import RedisStore

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def direct():
    """A plain redis-py client on the real Redis, beside the proxy: to look and to clean up."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"no Redis at {REDIS_URL} ({exc.__class__.__name__}): these tests need a real one")
    yield client
    client.close()


@pytest.fixture
def prefix(direct):
    prefix = f"test:store:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(direct.scan_iter(match=prefix + "*", count=1000))
    if keys:
        direct.delete(*keys)


@pytest.fixture
def proxy(direct):
    kwargs = direct.connection_pool.connection_kwargs
    proxy = DelayingProxy((kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)))
    yield proxy
    proxy.close()


@pytest.fixture
def make_store(direct, proxy, prefix):
    """``make_store(**redis_kwargs)``: a RedisStore that talks to Redis through the proxy."""
    stores = []

    def make(**overrides) -> RedisStore:
        kwargs = direct.connection_pool.connection_kwargs
        options = {"host": "127.0.0.1", "port": proxy.port, "db": kwargs.get("db", 0),
                   "username": kwargs.get("username"), "password": kwargs.get("password"),
                   "socket_timeout": TIMEOUT, "socket_connect_timeout": 1.0,
                   # redis-py's own retries play no part in what is tested here
                   "retry": Retry(NoBackoff(), 0)}
        options.update(overrides)
        store = RedisStore(redis.Redis(**options), prefix=prefix)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()
