"""Shared flow state: the one place that talks to Redis.

Everything one request leaves for a later one (authorization codes, refresh-token
families, SAML request ids, SSO sessions, discovery choices, signing keys) goes
through a :class:`~broker.store.base.Store`.  Every operation is O(1) in the number of
stored users and every key carries a TTL, so any worker or instance can finish a
flow another began and nothing accumulates.
"""

from broker.store.base import Store, StoreError, StoreOutcomeUnknown
from broker.store.memory import MemoryStore


def open_store(url: str | None, *, prefix: str = "digione:") -> Store:
    """Open the store named by ``url``.

    ``None`` or ``""`` gives the in-memory store (one process only); ``redis://``,
    ``rediss://``, ``unix://`` and ``redis+sentinel://`` / ``rediss+sentinel://`` URLs
    (:mod:`broker.store.sentinel`) give a Redis store; ``redis+cluster://`` /
    ``rediss+cluster://`` (:mod:`broker.store.cluster`) one on a Redis Cluster.
    """
    if not url:
        return MemoryStore()
    if url.split(":", 1)[0] in ("redis+cluster", "rediss+cluster"):
        from broker.store.cluster import ClusterStore

        return ClusterStore.from_url(url, prefix=prefix)
    from broker.store.redis import RedisStore

    return RedisStore.from_url(url, prefix=prefix)


__all__ = ["MemoryStore", "Store", "StoreError", "StoreOutcomeUnknown", "open_store"]
