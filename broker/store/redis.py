"""The Redis store: shared state for many workers and instances.

Each method is one Redis command (or one MULTI/EXEC of O(1) commands): no ``KEYS``,
no ``SCAN``, no per-user index scans on the request path.  Values are JSON.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Iterator

import redis

from broker.store.base import Store, StoreError

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class RedisStore(Store):
    shared = True

    def __init__(self, client: redis.Redis, *, prefix: str = "digione:"):
        self._redis = client
        self._prefix = prefix
        self._batches = threading.local()   # the pipeline of the batch open in this thread

    def _writer(self):
        return getattr(self._batches, "pipe", None) or self._redis

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        if getattr(self._batches, "pipe", None) is not None:  # nested: the outer batch sends
            yield
            return
        pipe = self._batches.pipe = self._redis.pipeline(transaction=False)
        try:
            yield
        except BaseException:
            self._batches.pipe = None
            pipe.reset()
            raise
        self._batches.pipe = None
        if len(pipe):
            self._call(pipe.execute)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "digione:") -> "RedisStore":
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                      health_check_interval=30)
        return cls(client, prefix=prefix)

    @property
    def client(self) -> redis.Redis:
        return self._redis

    def _k(self, key: str) -> str:
        return self._prefix + key

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreError(f"redis: {exc.__class__.__name__}") from exc

    def put(self, key: str, value: Any, ttl: int) -> None:
        self._call(self._writer().set, self._k(key), _dumps(value), ex=ttl)

    def add(self, key: str, value: Any, ttl: int) -> bool:
        return bool(self._call(self._redis.set, self._k(key), _dumps(value), ex=ttl, nx=True))

    def get(self, key: str) -> Any | None:
        raw = self._call(self._redis.get, self._k(key))
        return None if raw is None else json.loads(raw)

    def get_many(self, *keys: str) -> list[Any | None]:
        raws = self._call(self._redis.mget, [self._k(k) for k in keys]) if keys else []
        return [None if raw is None else json.loads(raw) for raw in raws]

    def take(self, key: str) -> Any | None:
        raw = self._call(self._redis.getdel, self._k(key))
        return None if raw is None else json.loads(raw)

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        result = self._call(self._writer().delete, *(self._k(k) for k in keys))
        return int(result) if isinstance(result, int) else 0  # inside a batch the count is unknown

    def set_add(self, key: str, member: str, ttl: int) -> None:
        batch = getattr(self._batches, "pipe", None)
        pipe = batch if batch is not None else self._redis.pipeline(transaction=True)
        pipe.sadd(self._k(key), member)
        pipe.expire(self._k(key), ttl)
        if batch is None:
            self._call(pipe.execute)

    def set_remove(self, key: str, member: str) -> None:
        self._call(self._writer().srem, self._k(key), member)

    def set_members(self, key: str) -> set[str]:
        return {m.decode() for m in self._call(self._redis.smembers, self._k(key))}

    def incr(self, key: str, ttl: int) -> int:
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(self._k(key))
        pipe.expire(self._k(key), ttl, nx=True)
        value, _ = self._call(pipe.execute)
        return int(value)

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._redis.close()
