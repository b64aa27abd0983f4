"""Fixtures for the token tests: stores, a key ring, registered clients and a live provider.

Store-dependent fixtures run once on :class:`MemoryStore` and once on :class:`RedisStore`
(``BROKER_TEST_REDIS_URL``, default db 15).  Each Redis test uses its own key prefix and
deletes exactly those keys afterwards, so concurrent test runs on the same database do not
wipe each other's state.
"""

from __future__ import annotations

import os
import secrets

import pytest
from tokens_env import Clock, Env, cleanup_redis, make_env, next_pooled_rsa, redis_store
from tokens_harness import Server

from broker.store import MemoryStore
from broker.tokens import jws as jws_module


@pytest.fixture(autouse=True)
def _pooled_rsa_keys(monkeypatch):
    """Key generation is the slowest thing in these tests (RSA-2048: ~60 ms); reuse a pool.

    Only the RSA *material* is pooled; every key ring still goes through the real
    :meth:`SigningKey.generate` path for EC keys and the real encryption for both.
    """
    original = jws_module.SigningKey.generate.__func__

    def generate(cls, alg):
        if alg == "RS256":
            return cls(next_pooled_rsa(), alg)
        return original(cls, alg)

    monkeypatch.setattr(jws_module.SigningKey, "generate", classmethod(generate))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request):
    """Every store-dependent test runs on both stores."""
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = f"test:tokens:{os.getpid()}:{secrets.token_hex(4)}:"
    store = redis_store(prefix)
    yield store
    cleanup_redis(store, prefix)


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --------------------------------------------------------------------------- the live provider


@pytest.fixture(scope="session")
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def env(store, clock, server, tmp_path) -> Env:
    """The provider on both stores, served over HTTP through :class:`ProviderApp`."""
    return make_env(store, clock, server, tmp_path)


@pytest.fixture
def memory_env(clock, server, tmp_path) -> Env:
    """The provider on the memory store only (for tests whose subject is not storage)."""
    return make_env(MemoryStore(), clock, server, tmp_path)


@pytest.fixture(params=["provider", "satosa"])
def any_env(request, store, clock, server, tmp_path) -> Env:
    """Both stores x both adapters (the Provider directly, and through the SATOSA frontend)."""
    return make_env(store, clock, server, tmp_path, mode=request.param)


@pytest.fixture(autouse=True)
def _insecure_transport(monkeypatch):
    """Authlib refuses plain-http token endpoints unless told this is a test on localhost."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
