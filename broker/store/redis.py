"""The Redis store: shared state for many workers and instances.

Every operation is O(1) Redis commands: no ``KEYS``, no ``SCAN``, no per-user index
scans on the request path.  Values are JSON.

Commands are packed here and sent over redis-py's pooled connections, whose replies
redis-py parses (in C with hiredis).  redis-py's command layer (argument packing in
Python, response callbacks, retry wrappers, pipeline objects) costs about as much CPU
as the round trip itself: for the dozen commands a login needs, sending them directly
halves the client CPU (docs/performance.md).  Connections, authentication, TLS,
timeouts and, later, Sentinel pools stay redis-py's.  It needs redis-py 5.3 or later: before
5.3, ``ConnectionPool.get_connection()`` required a command name (checked by running
tests/store on 5.2.1, which fails, and on 5.3.0, 6.4.0, 7.4.1 and 8.1.0, which pass).

When a command is sent again
----------------------------
A timeout or a dropped connection after a command was sent does not mean it did not
run: Redis may have run it and only its reply was late or lost.  Sending it again would
run it twice, and for the commands replay detection rests on that is a lie told to the
caller: ``SET NX`` (``add``) would answer "already there", a false replay; ``GETDEL``
(``take``) would answer "absent" for a code that was there, and the token endpoint would
revoke a good grant; ``INCR`` would count twice; ``DEL`` would report 0 deletions.  So:

1. Before anything is sent, the connection is made ready: the pool hands it over
   connected, it is polled (a connection the server closed while it idled shows its
   FIN or RST, or stray bytes, at once, without a round trip) and, when it has been
   idle longer than ``health_check_interval``, PINGed (a half-open connection whose
   peer vanished silently).  A connection that fails these is replaced.  Nothing of
   ours has been on it, so this is certain, not guessed, and holds for every command.
2. Once the commands are on the wire, a missing reply (timeout, reset, EOF, garbage)
   means the outcome is unknown.  The connection is discarded at once: a reply that
   comes late must never be read as the answer to a later command.
3. The batch is then sent once more, on a fresh connection, only if every command in
   it is idempotent (:func:`_idempotent`): running it again is indistinguishable from
   the first send never having run, and any write by others in between is simply
   ordered before our still unfinished call.  That holds for ``GET``, ``MGET``,
   ``SMEMBERS``, ``EXISTS``, ``PING``, a plain ``SET key value EX ttl``, ``SADD``,
   ``SREM`` and a plain ``EXPIRE`` (the store uses none of their counts).
4. Anything else (``SET NX``, ``GETDEL``, ``INCR``, ``DEL``, ``EXPIRE NX``, any other
   command, and any batch holding one) raises :class:`StoreOutcomeUnknown`, a
   :class:`StoreError` saying so.  Callers treat it like Redis being down (the token
   endpoint answers 503 ``temporarily_unavailable``): a retry by the user then meets
   the true state, never a fabricated one.

An error reply (``WRONGTYPE``) is an answer: the remaining replies are read, the
connection stays in step and in the pool, and the caller gets a StoreError.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import redis

from broker import metrics
from broker.store.base import Store, StoreError, StoreOutcomeUnknown

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


#: Commands whose second run changes nothing and answers as if it were the only one.
_READS = frozenset({"GET", "MGET", "SMEMBERS", "EXISTS", "PING"})
_SET_WRITES = frozenset({"SADD", "SREM"})   # their counts are not used by the store


def _name(arg: str | bytes | int) -> str:
    return (arg.decode() if isinstance(arg, bytes) else str(arg)).upper()


def _idempotent(command: tuple) -> bool:
    """Whether ``command`` may be sent again when its first send may have run (module docstring)."""
    name = _name(command[0])
    if name in _READS or name in _SET_WRITES:
        return True
    if name == "SET":   # SET key value EX ttl; not NX, XX, GET, KEEPTTL, ...
        return len(command) == 5 and _name(command[3]) == "EX"
    if name == "EXPIRE":   # EXPIRE key ttl; EXPIRE ... NX answers 0 the second time
        return len(command) == 3
    return False


def _names(commands: tuple[tuple, ...]) -> str:
    return " ".join(dict.fromkeys(_name(command[0]) for command in commands))


def _operation(commands: tuple[tuple, ...]) -> str:
    """The operation a failed round trip is counted under (broker.metrics.store_error): its first command."""
    return _name(commands[0][0]).lower() if commands else "other"


#: zset_claim: the due members (ZRANGEBYSCORE, O(log n + count)) re-scored (ZADD XX, O(log n) each)
#: in one atomic step, so two instances claiming at once never get the same member.
_ZSET_CLAIM = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(members) do
    redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member)
end
return members
"""

# A missing reply: the socket timed out, was reset or closed, or the bytes made no sense.
_NO_REPLY = (redis.RedisError, OSError)


class RedisStore(Store):
    shared = True

    def __init__(self, client: redis.Redis, *, prefix: str = "digione:"):
        self._redis = client
        self._prefix = prefix
        self._batches = threading.local()   # the commands of the batch open in this thread

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "digione:") -> RedisStore:
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
        """Send ``commands`` in one round trip and return their replies, in order.

        Resent at most once, and only when that is safe (the module docstring).
        """
        payload = [b"".join(_pack(command) for command in commands)]
        resendable = all(_idempotent(command) for command in commands)
        pool = self._redis.connection_pool
        try:
            connection = pool.get_connection()
        except redis.RedisError as exc:
            metrics.store_error("connect")
            raise StoreError(f"redis unreachable ({exc.__class__.__name__}); nothing was sent") from exc
        try:
            return self._exchange(connection, payload, commands, resendable)
        except StoreError:
            metrics.store_error(_operation(commands))
            raise   # the connection is in step, or _exchange has discarded it
        except BaseException:
            connection.disconnect()   # replies may be on their way or unread: never reuse it
            raise
        finally:
            pool.release(connection)

    @staticmethod
    def _ready(connection) -> None:
        """Make sure nothing stale is on ``connection`` before a command of ours goes on it."""
        try:
            if not connection.can_read():   # the server closed it (FIN/RST raises) or bytes are left over
                connection.check_health()   # PING, if idle longer than health_check_interval
                return
        except (redis.RedisError, OSError):
            pass
        connection.disconnect()   # nothing of ours is on it: replacing it is safe for any command
        try:
            connection.connect()
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"redis unreachable ({exc.__class__.__name__}); nothing was sent") from exc

    def _exchange(self, connection, payload: list[bytes], commands: tuple[tuple, ...],
                  resendable: bool) -> list[Any]:
        for attempt in (1, 2):
            self._ready(connection)
            try:
                connection.send_packed_command(payload, check_health=False)
                replies: list[Any] = []
                error: redis.ResponseError | None = None
                for _ in commands:
                    try:
                        replies.append(connection.read_response())
                    except redis.ResponseError as exc:   # an error reply: the stream stays in step
                        error = error or exc
                        replies.append(None)
            except _NO_REPLY as exc:
                connection.disconnect()   # a late reply must never answer a later command
                if resendable and attempt == 1:
                    continue
                if resendable:
                    raise StoreError(f"redis: no reply to {_names(commands)} ({exc.__class__.__name__}), "
                                     "also when sent again") from exc
                raise StoreOutcomeUnknown(
                    f"redis: no reply to {_names(commands)} ({exc.__class__.__name__}); the outcome is unknown "
                    "and it was not sent again (not idempotent)") from exc
            if error is not None:
                raise StoreError(f"redis: {_names(commands)}: {error}") from error
            return replies
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

    def get_after_writes(self, key: str) -> Any | None:
        queued = getattr(self._batches, "commands", None)
        if not queued:
            return self.get(key)
        commands = (*queued, ("GET", self._k(key)))
        queued.clear()   # sent now, whatever the outcome: the batch's exit must not send them again
        raw = self._run(*commands)[-1]
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

    def incr_and_get(self, key: str, ttl: int, other: str) -> tuple[int, Any | None]:
        value, _, raw = self._run(("INCR", self._k(key)), ("EXPIRE", self._k(key), ttl, "NX"),
                                  ("GET", self._k(other)))
        return int(value), None if raw is None else json.loads(raw)

    def zset_add(self, key: str, member: str, score: float, ttl: int) -> None:
        # ZADD is not on the resend list (_idempotent): a lost reply raises StoreOutcomeUnknown,
        # and the caller, knowing that a second ZADD of the same score changes nothing, may repeat it.
        self._write(("ZADD", self._k(key), repr(float(score)), member), ("EXPIRE", self._k(key), ttl))

    def zset_remove(self, key: str, member: str) -> None:
        self._write(("ZREM", self._k(key), member))

    def zset_claim(self, key: str, *, max_score: float, count: int, new_score: float) -> list[str]:
        if count <= 0:
            return []
        members = self._run(("EVAL", _ZSET_CLAIM, 1, self._k(key), repr(float(max_score)), count,
                             repr(float(new_score))))[0] or ()
        return [m.decode() if isinstance(m, bytes) else m for m in members]

    def ping(self) -> bool:
        try:
            return self._run(("PING",))[0] in (b"PONG", "PONG", True)
        except StoreError:
            return False

    def close(self) -> None:
        self._redis.close()

    # -- set claims: the audit buffer (broker.audit.buffer) ------------------------------------

    def set_size(self, key: str) -> int:
        return int(self._run(("SCARD", self._k(key)))[0] or 0)

    def set_pop(self, key: str, count: int) -> list[str]:
        if count <= 0:
            return []
        members = self._run(("SPOP", self._k(key), count))[0] or ()
        return [m.decode() if isinstance(m, bytes) else m for m in members]

    def set_claim(self, key: str, into: str, *, count: int, score: float, ttl: int) -> list[str]:
        if count <= 0:
            return []
        members = self._run(("EVAL", _SET_CLAIM, 2, self._k(key), self._k(into), count, repr(float(score)),
                             ttl))[0] or ()
        return [m.decode() if isinstance(m, bytes) else m for m in members]


#: set_claim: up to ARGV[1] members popped from the set (SPOP, O(count)) and added to the sorted set
#: (ZADD, O(log n) each) in one atomic step; never sent again (EVAL is not idempotent), and a lost
#: reply leaves the members in the sorted set, due at their score.
_SET_CLAIM = """
local members = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
for _, member in ipairs(members) do
    redis.call('ZADD', KEYS[2], ARGV[2], member)
end
if #members > 0 then
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
end
return members
"""
