"""The Redis store: shared state for many workers and instances.

Every operation is O(1) Redis commands: no ``KEYS``, no ``SCAN``, no per-user index
scans on the request path.  Values are JSON.

Commands are packed here and sent over redis-py's pooled connections, whose replies
redis-py parses (in C with hiredis).  redis-py's command layer (argument packing in
Python, response callbacks, retry wrappers, pipeline objects) costs about as much CPU
as the round trip itself: for the dozen commands a login needs, sending them directly
halves the client CPU (docs/performance.md).  Connections, authentication, TLS,
timeouts and, later, Sentinel pools stay redis-py's.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Iterator

import redis

from broker.store.base import Store, StoreError

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _pack(args: tuple) -> bytes:
    """One command in RESP (the Redis protocol): an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class RedisStore(Store):
    shared = True

    def __init__(self, client: redis.Redis, *, prefix: str = "digione:"):
        self._redis = client
        self._prefix = prefix
        self._batches = threading.local()   # the commands of the batch open in this thread

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

    # -- the wire ---------------------------------------------------------------------------

    def _run(self, *commands: tuple) -> list[Any]:
        """Send ``commands`` in one round trip and return their replies, in order."""
        pool = self._redis.connection_pool
        try:
            connection = pool.get_connection()
        except redis.RedisError as exc:
            raise StoreError(f"redis: {exc.__class__.__name__}") from exc
        try:
            payload = [b"".join(_pack(command) for command in commands)]
            for attempt in (1, 2):
                try:
                    connection.send_packed_command(payload, check_health=attempt == 2)
                    return [connection.read_response() for _ in commands]
                except (redis.ConnectionError, redis.TimeoutError):
                    # A connection the server closed (idle timeout, restart): one fresh try.
                    connection.disconnect()
                    if attempt == 2:
                        raise
        except redis.RedisError as exc:
            connection.disconnect()  # replies may be left unread: never reuse it
            raise StoreError(f"redis: {exc.__class__.__name__}") from exc
        finally:
            pool.release(connection)
        raise AssertionError("unreachable")

    def _write(self, *commands: tuple) -> list[Any] | None:
        """Run write ``commands`` now, or queue them in the open batch."""
        batch = getattr(self._batches, "commands", None)
        if batch is not None:
            batch.extend(commands)
            return None
        return self._run(*commands)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        if getattr(self._batches, "commands", None) is not None:  # nested: the outer batch sends
            yield
            return
        commands: list[tuple] = []
        self._batches.commands = commands
        try:
            yield
        finally:
            self._batches.commands = None
        if commands:
            self._run(*commands)

    # -- the store ---------------------------------------------------------------------------

    def put(self, key: str, value: Any, ttl: int) -> None:
        self._write(("SET", self._k(key), _dumps(value), "EX", ttl))

    def add(self, key: str, value: Any, ttl: int) -> bool:
        return self._run(("SET", self._k(key), _dumps(value), "EX", ttl, "NX"))[0] is not None

    def get(self, key: str) -> Any | None:
        raw = self._run(("GET", self._k(key)))[0]
        return None if raw is None else json.loads(raw)

    def get_many(self, *keys: str) -> list[Any | None]:
        if not keys:
            return []
        raws = self._run(("MGET", *(self._k(k) for k in keys)))[0]
        return [None if raw is None else json.loads(raw) for raw in raws]

    def take(self, key: str) -> Any | None:
        raw = self._run(("GETDEL", self._k(key)))[0]
        return None if raw is None else json.loads(raw)

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        replies = self._write(("DEL", *(self._k(k) for k in keys)))
        return int(replies[0]) if replies else 0  # inside a batch the count is unknown

    def set_add(self, key: str, member: str, ttl: int) -> None:
        self._write(("SADD", self._k(key), member), ("EXPIRE", self._k(key), ttl))

    def set_remove(self, key: str, member: str) -> None:
        self._write(("SREM", self._k(key), member))

    def set_members(self, key: str) -> set[str]:
        members = self._run(("SMEMBERS", self._k(key)))[0] or ()
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    def incr(self, key: str, ttl: int) -> int:
        value, _ = self._run(("INCR", self._k(key)), ("EXPIRE", self._k(key), ttl, "NX"))
        return int(value)

    def ping(self) -> bool:
        try:
            return self._run(("PING",))[0] in (b"PONG", "PONG", True)
        except StoreError:
            return False

    def close(self) -> None:
        self._redis.close()
