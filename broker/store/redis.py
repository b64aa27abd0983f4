"""The Redis store: shared state for many workers and instances.

Every operation is O(1) Redis commands: no ``KEYS``, no ``SCAN``, no per-user index
scans on the request path.  Values are JSON.

Commands are packed here and sent on each thread's own connection, whose replies a bare
hiredis reader parses (:mod:`broker.store.line`).  redis-py's command layer (argument
packing in Python, response callbacks, retry wrappers, pipeline objects) and its pool's
checkout around every command cost more CPU than the round trip itself: for the dozen
commands a login needs, sending them directly cuts the client CPU by more than half
(docs/performance.md).  Making connections (addresses, authentication, TLS, timeouts,
Sentinel's primary lookup, a cluster node's pool) stays redis-py's.  It needs redis-py 5.3
or later: before 5.3, ``ConnectionPool.get_connection()`` required a command name.

When a command is sent again
----------------------------
A timeout or a dropped connection after a command was sent does not mean it did not
run: Redis may have run it and only its reply was late or lost.  Sending it again would
run it twice, and for the commands replay detection rests on that is a lie told to the
caller: ``SET NX`` (``add``) would answer "already there", a false replay; ``GETDEL``
(``take``) would answer "absent" for a code that was there, and the token endpoint would
revoke a good grant; ``INCR`` would count twice; ``DEL`` would report 0 deletions.  So:

1. Before anything is sent, the connection is made ready: it is polled (a connection the
   server closed while it idled shows its FIN or RST, or stray bytes, at once, without a
   round trip) and, when it has been
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
   ``SREM``, a plain ``EXPIRE`` (the store uses none of their counts) and the script of
   ``set_add_bounded`` (:data:`broker.store.commands.RESENDABLE_SCRIPTS`).
4. Anything else (``SET NX``, ``GETDEL``, ``INCR``, ``DEL``, ``EXPIRE NX``, any other
   command, and any batch holding one) raises :class:`StoreOutcomeUnknown`, a
   :class:`StoreError` saying so.  Callers treat it like Redis being down (the token
   endpoint answers 503 ``temporarily_unavailable``): a retry by the user then meets
   the true state, never a fabricated one.

An error reply (``WRONGTYPE``) is an answer: the remaining replies are read, the
connection stays in step and in use, and the caller gets a StoreError.  The other
commands of the batch ran (a batch is not a transaction), but for any refused "not run"
beside it, which are not sent again: what ``set_add_bounded`` added in a batch that raised
is removed again (:class:`~broker.store.base.TakeBack`).

Failover and redirection
------------------------
Some error replies say the command was refused, not run (:data:`_NOT_RUN`).  What a refusal
means for the *other* commands of its round trip depends on why it came:

- ``MOVED``, ``ASK`` and ``TRYAGAIN`` (a cluster: the slot has a new owner, is migrating key by
  key, or a multi-key command met it half moved) say where the keys are, not that the node is
  failing: the node still serves, and what it ran in that round trip stands, its data going
  with the slot (a migration moves every key the node holds; a manual failover catches the
  replica up first).  During a migration one round trip may be answered in part (commands on
  keys still on the source run there) and refused in part (keys already moved answer ``ASK``):
  the commands that ran keep their replies, and only the refused ones are sent again, in their
  order, to the node named (after ``ASKING`` before each, for ``ASK``), their replies merged
  into their places, as the Redis Cluster specification and redis-py's cluster pipeline do.
- ``READONLY`` (the node was demoted to a replica), ``MASTERDOWN``, ``LOADING`` and a cluster's
  ``CLUSTERDOWN`` say the node itself cannot serve: what it ran just before, in the same round
  trip, may be lost with its role (a demoted primary resyncs from the new one).  Those commands
  are sent again with the refused ones if every one of them is idempotent (as after a lost
  reply); if a non-idempotent one ran, :class:`StoreOutcomeUnknown`.  The connection is
  dropped, so that its next connect asks the sentinels for the primary again.

A ``WAIT`` confirms the writes sent before it on its own connection: when some of them go
again elsewhere it goes with them, and its reply is the least of its answers.  Refused
commands are sent again at most :data:`_NOT_RUN_RESENDS` times; a batch still refused then
raises :class:`StoreError` if nothing of it ran, else :class:`StoreOutcomeUnknown` (part of it
ran), and so does one whose rest cannot be sent again (its node unreachable).  (redis-py's own
Sentinel connection would turn ``READONLY`` into a ``ConnectionError`` and drop the connection
mid-batch, making a refusal look like a lost reply; the store's reader sees it as the error
reply it is, docs/decisions/0015-redis-high-availability.md.)

Durable batches
---------------
Redis replicates asynchronously: a write acknowledged by a primary killed a moment later
can be missing on the replica promoted in its place.  ``batch(durable=True)`` (the write
that completes a login: the grant and its refresh token) appends ``WAIT <replicas>
<wait_ms>`` to the batch when the store was opened with ``replicas`` > 0 (the default for
Sentinel URLs), in the same round trip, and raises :class:`StoreError` when a connected
replica did not acknowledge in time: the tokens are then not handed out, so none can be
lost.  The writes did run on the primary: the caller undoes them (the token endpoint,
:mod:`broker.tokens.grants`, also puts back the code or refresh token it took,
``put_back``).  A primary with fewer replicas than configured (just after a failover) is
waited on for those it has (:mod:`broker.store.confirm`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import hiredis
import orjson
import redis

from broker import metrics
from broker.store import sentinel
from broker.store.base import Store, StoreError, StoreOutcomeUnknown, TakeBack
from broker.store.commands import (
    SET_ADD_BOUNDED,
    SET_CLAIM,
    ZSET_CLAIM,
    command_name,
    idempotent,
    incr,
    operation,
    pack,
)
from broker.store.commands import names as command_names
from broker.store.confirm import Confirmation, connected_replicas
from broker.store.line import Line, Lines, error_of

#: Values are JSON, encoded and decoded in C by orjson (about ten times json's speed on a session record).
_dumps = orjson.dumps
_loads = orjson.loads


# A missing reply: the socket timed out, was reset or closed, or the bytes made no sense.
_NO_REPLY = (redis.RedisError, OSError)

#: Error replies meaning "refused, not run" (module docstring, Failover and redirection), as
#: redis-py's parser classes them (it strips the code from the message): READONLY, MASTERDOWN,
#: LOADING, and a cluster's MOVED, ASK, TRYAGAIN, CLUSTERDOWN (broker/store/cluster.py).
_NOT_RUN: dict[type[Exception], str] = {redis.exceptions.ReadOnlyError: "READONLY",
                                        redis.exceptions.MasterDownError: "MASTERDOWN",
                                        redis.exceptions.BusyLoadingError: "LOADING",
                                        redis.exceptions.MovedError: "MOVED",
                                        redis.exceptions.AskError: "ASK",
                                        redis.exceptions.TryAgainError: "TRYAGAIN",
                                        redis.exceptions.ClusterDownError: "CLUSTERDOWN"}
#: Of those, the ones saying where the keys are (the node still serves): what ran beside them stands.
_REDIRECTS = frozenset({redis.exceptions.MovedError, redis.exceptions.AskError, redis.exceptions.TryAgainError})
#: How many times the refused commands of a batch are sent again (each time where the refusal points).
_NOT_RUN_RESENDS = 3


def _taken(pttl: Any, raw: Any) -> tuple[Any, float] | None:
    """A ``PTTL`` + ``GETDEL`` pair's replies as ``(value, seconds it had left)``, ``None`` if absent."""
    return None if raw is None else (_loads(raw), max(int(pttl), 0) / 1000)


class NothingSent(StoreError):
    """The store could not be reached before anything was sent: certain, and safe to try again."""


def _not_run(error: Exception | None) -> bool:
    return error is not None and type(error) in _NOT_RUN


def _code(error: Exception) -> str:
    return _NOT_RUN.get(type(error), type(error).__name__)


def _waits(command: tuple) -> bool:
    return command_name(command[0]) == "WAIT"


class _Answers:
    """The replies to one batch as its round trips bring them (module docstring, Failover and redirection).

    :attr:`pending` holds the positions of the commands still to send, in order; each round trip
    (:meth:`take`) answers some of them and leaves those refused "not run" pending.
    """

    __slots__ = ("commands", "replies", "pending", "ran", "lost_resent")

    def __init__(self, commands: tuple[tuple, ...]):
        self.commands = commands
        self.replies: list[Any] = [None] * len(commands)
        self.pending: list[int] = list(range(len(commands)))
        self.ran = False   # some reply is kept (a WAIT's aside): the batch is no longer "not run"
        self.lost_resent = False   # the one resend after a lost reply (rule 3) is used

    def to_send(self) -> tuple[tuple, ...]:
        return tuple(self.commands[i] for i in self.pending)

    def resendable(self) -> bool:
        """Whether the pending commands may be sent again after a lost reply (rule 3)."""
        return all(idempotent(self.commands[i]) for i in self.pending)

    def take(self, replies: list[Any]) -> Exception | None:
        """Merge the replies to :meth:`to_send`'s commands; return the refusal the pending rest
        is to be sent again after, or ``None`` when every command is answered.

        :class:`StoreError` for an error reply that is an answer (``WRONGTYPE``: every reply was
        read, the connection is in step); :class:`StoreOutcomeUnknown` when a node that cannot
        serve ran a non-idempotent command before refusing another.
        """
        sent = self.pending
        if not self.ran and len(sent) == len(self.commands) and not any(type(r) is hiredis.ReplyError
                                                                        for r in replies):
            self.replies, self.pending, self.ran = replies, [], True   # the common case: all of it, answered
            return None
        errors = [error_of(r) if type(r) is hiredis.ReplyError else None for r in replies]
        refusal = next((e for e in errors if _not_run(e)), None)
        answered = [n for n, e in enumerate(errors) if not _not_run(e)]
        if refusal is not None and any(_not_run(e) and type(e) not in _REDIRECTS for e in errors):
            # The node cannot serve: what it ran beside the refusal may be lost with its role.
            if not all(idempotent(self.commands[sent[n]]) for n in answered):
                raise StoreOutcomeUnknown(
                    f"redis: {command_names(self.commands)} partly refused ({_code(refusal)}) after other "
                    "commands of it ran; not sent again") from refusal
            return refusal   # every command sent goes again: as if none had run
        self.ran = self.ran or any(not _waits(self.commands[sent[n]]) for n in answered)
        self.pending = [i for i, e in zip(sent, errors, strict=True) if _not_run(e)]
        error = next((e for e in errors if e is not None and not _not_run(e)), None)
        if error is not None:
            raise StoreError(f"redis: {command_names(self.commands)}: {error}") from error
        for n in answered:
            i, reply = sent[n], replies[n]
            if _waits(self.commands[i]):
                if self.pending:   # writes before it go again elsewhere: it follows them, to confirm them there
                    self.pending.append(i)
                if self.replies[i] is not None:
                    reply = min(self.replies[i], reply)
            self.replies[i] = reply
        self.pending.sort()
        return refusal

    def unfinished(self, why: str) -> StoreError:
        """The error for a batch whose pending commands end unsent or refused: ``why`` says which."""
        names = command_names(self.commands)
        if self.ran:
            return StoreOutcomeUnknown(f"redis: {names} ran in part; the rest {why}")
        return StoreError(f"redis: {names} {why}; nothing was run")


class RedisStore(Store):
    shared = True

    def __init__(self, client: redis.Redis, *, prefix: str = "digione:", replicas: int = 0, wait_ms: int = 500,
                 follows_primary: bool = False):
        self._redis = client
        self._follows_primary = follows_primary   # Sentinel: readiness asks ROLE, not PING
        self._prefix = prefix
        self._confirm = Confirmation(replicas, wait_ms)   # WAIT in a durable batch (replicas=0: none)
        self._batches = threading.local()   # the commands of the batch open in this thread
        self._lines = Lines()   # each thread's own connection to each pool (broker.store.line)
        self._take_back = TakeBack()   # what set_add_bounded added in it, removed if it fails

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "digione:") -> RedisStore:
        """``redis://``, ``rediss://``, ``unix://``, or ``redis+sentinel://`` (:mod:`broker.store.sentinel`)."""
        if url.split(":", 1)[0] in sentinel.SCHEMES:
            spec = sentinel.parse(url)
            return cls(sentinel.client(spec, socket_timeout=2.0, connect_timeout=2.0, health_check_interval=30),
                       prefix=prefix, replicas=spec.replicas, wait_ms=spec.wait_ms, follows_primary=True)
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                      health_check_interval=30)
        return cls(client, prefix=prefix)

    @property
    def client(self) -> redis.Redis:
        return self._redis

    def _k(self, key: str) -> str:
        return self._prefix + key

    # -- the wire ---------------------------------------------------------------------------

    def _run(self, *commands: tuple, route: Any = None) -> list[Any]:
        """Send ``commands`` in one round trip and return their replies, in order.

        Sent again at most once after a lost reply, and only when that is safe; those refused "not
        run" at most :data:`_NOT_RUN_RESENDS` times, where the refusal points (the module docstring).
        ``route``: where they go first (:meth:`_route`; ``None`` here: the one pool).
        """
        answers = _Answers(commands)
        route = self._route(commands) if route is None else route
        refusal: Exception | None = None
        for _ in range(_NOT_RUN_RESENDS + 1):
            try:
                refusal = self._round(route, answers)
                if refusal is None:
                    return answers.replies
                route = self._rerouted(route, refusal)
            except NothingSent as exc:
                if not answers.ran:
                    raise
                # Not "nothing was sent" to the caller, who might send it all again (ClusterStore._run).
                raise answers.unfinished("could not be sent again (unreachable)") from exc
        metrics.store_error(operation(commands))
        raise answers.unfinished(f"refused ({_code(refusal) if refusal else '?'}), also when sent again "
                                 f"{_NOT_RUN_RESENDS} times") from refusal

    def _round(self, route: Any, answers: _Answers) -> Exception | None:
        """One round trip of ``answers``' pending commands on ``route``; the refusal to send the rest
        again after, or ``None`` (:meth:`_Answers.take`)."""
        sent = self._on_route(route, answers.to_send())
        try:
            line = self._lines.line(self._pool(route))
        except (redis.RedisError, OSError) as exc:
            metrics.store_error("connect")
            raise NothingSent(f"redis unreachable ({exc.__class__.__name__}); nothing was sent") from exc
        try:
            refusal = answers.take(self._off_route(route, self._exchange(line, b"".join(pack(c) for c in sent),
                                                                         sent, answers)))
        except StoreOutcomeUnknown:
            line.drop()   # lost reply (dropped already), or a node that cannot serve: the next connect finds anew
            metrics.store_error(operation(answers.commands))
            raise
        except StoreError:
            metrics.store_error(operation(answers.commands))
            raise   # the line is in step, or _exchange has dropped it
        except BaseException:
            line.drop()   # replies may be on their way or unread: never read them as ours
            raise
        if refusal is not None:
            line.drop()   # a demoted or unready node: the next connect finds the primary anew
        return refusal

    # -- routing: one pool here; a cluster store sends each batch to the node owning its slot -------

    def _route(self, commands: tuple[tuple, ...]) -> Any:
        """Where ``commands`` go (``None``: the one pool)."""
        return None

    def _pool(self, route: Any):
        return self._redis.connection_pool

    def _on_route(self, route: Any, commands: tuple[tuple, ...]) -> tuple[tuple, ...]:
        """The commands as sent on ``route`` (a cluster's ``ASK`` puts ``ASKING`` before each)."""
        return commands

    def _off_route(self, route: Any, replies: list[Any]) -> list[Any]:
        """The replies to the caller's commands, out of those to :meth:`_on_route`'s."""
        return replies

    def _node_name(self, route: Any) -> str | None:
        """Which primary ``route`` reaches, for the per-node replica count (:mod:`broker.store.confirm`)."""
        return None

    def _rerouted(self, route: Any, error: Exception) -> Any:
        """Where to send again after the refusal ``error`` (Sentinel: the same pool, which asks anew)."""
        return route

    def _exchange(self, line: Line, payload: bytes, commands: tuple[tuple, ...], answers: _Answers) -> list[Any]:
        """One round trip of ``commands`` (``payload`` packed) on ``line``: their replies, an error reply
        as a ``hiredis.ReplyError``.  After a lost reply, sent again once on a fresh connection when
        every pending command of ``answers`` is idempotent (rules 1 to 4)."""
        while True:
            try:
                line.ready()   # rule 1: nothing of ours is on it yet, so replacing it is safe
            except (redis.RedisError, OSError) as exc:
                raise NothingSent(f"redis unreachable ({exc.__class__.__name__}); nothing was sent") from exc
            try:
                return line.exchange(payload, len(commands))
            except _NO_REPLY as exc:
                line.drop()   # a late reply must never answer a later command
                resendable, names = answers.resendable(), command_names(answers.to_send())
                if resendable and not answers.lost_resent:
                    answers.lost_resent = True
                    continue
                if resendable:
                    raise StoreError(f"redis: no reply to {names} ({exc.__class__.__name__}), "
                                     "also when sent again") from exc
                raise StoreOutcomeUnknown(
                    f"redis: no reply to {names} ({exc.__class__.__name__}); the outcome is unknown "
                    "and it was not sent again (not idempotent)") from exc

    def _write(self, *commands: tuple) -> list[Any] | None:
        """Run write ``commands`` now, or queue them in the open batch."""
        batch = getattr(self._batches, "commands", None)
        if batch is not None:
            batch.extend(commands)
            return None
        return self._run(*commands)

    @contextlib.contextmanager
    def batch(self, *, durable: bool = False) -> Iterator[None]:
        with self._take_back.scope(self):
            if getattr(self._batches, "commands", None) is not None:  # nested: the outer batch sends
                if durable:
                    self._batches.durable = True
                yield
                return
            commands: list[tuple] = []
            self._batches.commands, self._batches.durable = commands, durable
            try:
                yield
            finally:
                self._batches.commands = None
                durable = self._batches.durable
            if commands:
                self._send_batch(commands, durable)

    @contextlib.contextmanager
    def unbatched(self) -> Iterator[None]:
        queued = getattr(self._batches, "commands", None)
        self._batches.commands = None
        try:
            yield
        finally:
            self._batches.commands = queued

    def _send_batch(self, commands: list[tuple] | tuple, durable: bool) -> list[Any]:
        """Send a batch's ``commands``; when ``durable``, with the ``WAIT`` that confirms them (module docstring)."""
        route = self._route(tuple(commands))
        node = self._node_name(route)

        def connected() -> int:
            return connected_replicas(self._run(("INFO", "replication"), route=route)[0])

        wanted = self._confirm.wanted(connected, node) if durable else 0
        if not wanted:
            return self._run(*commands, route=route)
        replies = self._run(*commands, ("WAIT", wanted, self._confirm.wait_ms), route=route)
        self._confirm.check(int(replies.pop()), wanted, connected, node)
        return replies

    # -- the store ---------------------------------------------------------------------------

    def put(self, key: str, value: Any, ttl: int) -> None:
        self._write(("SET", self._k(key), _dumps(value), "EX", ttl))

    def add(self, key: str, value: Any, ttl: int) -> bool:
        return self._run(("SET", self._k(key), _dumps(value), "EX", ttl, "NX"))[0] is not None

    def get(self, key: str) -> Any | None:
        raw = self._run(("GET", self._k(key)))[0]
        return None if raw is None else _loads(raw)

    def get_after_writes(self, key: str) -> Any | None:
        queued = getattr(self._batches, "commands", None)
        if not queued:
            return self.get(key)
        commands = (*queued, ("GET", self._k(key)))
        queued.clear()   # sent now, whatever the outcome: the batch's exit must not send them again
        # A durable batch's WAIT goes with them (the GET after it): the writes are confirmed here.
        raw = self._send_batch(commands, getattr(self._batches, "durable", False))[-1]
        return None if raw is None else _loads(raw)

    def get_many(self, *keys: str) -> list[Any | None]:
        if not keys:
            return []
        raws = self._run(("MGET", *(self._k(k) for k in keys)))[0]
        return [None if raw is None else _loads(raw) for raw in raws]

    def take(self, key: str) -> Any | None:
        raw = self._run(("GETDEL", self._k(key)))[0]
        return None if raw is None else _loads(raw)

    def take_with_ttl(self, key: str) -> tuple[Any, float] | None:
        # PTTL before GETDEL, one round trip.  Not atomic as a pair, and need not be: a value
        # written under the key in between is only ever one put back, with no longer a TTL.
        return _taken(*self._run(("PTTL", self._k(key)), ("GETDEL", self._k(key))))

    def take_beside(self, key: str, other: str) -> tuple[tuple[Any, float] | None, Any | None]:
        if self.one_slot_batches:   # a cluster: the two keys are in different slots
            return super().take_beside(key, other)
        raw_other, pttl, raw = self._run(("GET", self._k(other)), ("PTTL", self._k(key)), ("GETDEL", self._k(key)))
        return _taken(pttl, raw), None if raw_other is None else _loads(raw_other)

    def put_back(self, key: str, value: Any, ttl: float) -> None:
        ttl_ms = int(ttl * 1000)   # rounded down: never longer than it had
        if ttl_ms > 0:
            self._write(("SET", self._k(key), _dumps(value), "PX", ttl_ms, "NX"))

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

    def incr(self, key: str, ttl: int, by: int = 1) -> int:
        value, _ = self._run(incr(self._k(key), by), ("EXPIRE", self._k(key), ttl, "NX"))
        return int(value)

    def incr_and_get(self, key: str, ttl: int, other: str, by: int = 1) -> tuple[int, Any | None]:
        value, _, raw = self._run(incr(self._k(key), by), ("EXPIRE", self._k(key), ttl, "NX"),
                                  ("GET", self._k(other)))
        return int(value), None if raw is None else _loads(raw)

    def zset_add(self, key: str, member: str, score: float, ttl: int) -> None:
        # ZADD is not on the resend list (_idempotent): a lost reply raises StoreOutcomeUnknown,
        # and the caller, knowing that a second ZADD of the same score changes nothing, may repeat it.
        self._write(("ZADD", self._k(key), repr(float(score)), member), ("EXPIRE", self._k(key), ttl))

    def zset_remove(self, key: str, member: str) -> None:
        self._write(("ZREM", self._k(key), member))

    def zset_claim(self, key: str, *, max_score: float, count: int, new_score: float) -> list[str]:
        if count <= 0:
            return []
        members = self._run(("EVAL", ZSET_CLAIM, 1, self._k(key), repr(float(max_score)), count,
                             repr(float(new_score))))[0] or ()
        return [m.decode() if isinstance(m, bytes) else m for m in members]

    def ping(self) -> bool:
        """Whether the store answers; behind Sentinel, whether the node reached is a primary (it can write)."""
        try:
            if self._follows_primary:
                role = self._run(("ROLE",))[0]
                return bool(role) and role[0] in (b"master", "master")
            return self._run(("PING",))[0] in (b"PONG", "PONG", True)
        except StoreError:
            return False

    def close(self) -> None:
        self._redis.close()

    # -- set claims: the audit buffer (broker.audit.buffer) ------------------------------------

    def set_size(self, key: str) -> int:
        return int(self._run(("SCARD", self._k(key)))[0] or 0)

    def set_claim(self, key: str, into: str, *, count: int, score: float, ttl: int) -> list[str]:
        if count <= 0:
            return []
        members = self._run(("EVAL", SET_CLAIM, 2, self._k(key), self._k(into), count, repr(float(score)),
                             ttl))[0] or ()
        return [m.decode() if isinstance(m, bytes) else m for m in members]

    def set_add_bounded(self, key: str, member: str, *, limit: int, ttl: int, refused: str) -> bool | None:
        self._take_back.note(key, member)   # first: a batch failing from here on takes it back
        replies = self._write(("EVAL", SET_ADD_BOUNDED, 2, self._k(key), self._k(refused), member, limit, ttl))
        return None if replies is None else bool(replies[0])
