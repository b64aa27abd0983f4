"""The store interface every flow uses.

Values are JSON-compatible objects (dicts, lists, strings, numbers).  Keys are plain
strings chosen by the caller (``"code:" + code``); the store adds its own prefix.
Every write takes a TTL in seconds: nothing in the store lives forever.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Iterator
from typing import Any


class StoreError(RuntimeError):
    """The store could not be reached or answered unexpectedly.

    Callers treat it as "try again later" (the token endpoint answers 503
    ``temporarily_unavailable``), never as an answer about the data.
    """


class StoreOutcomeUnknown(StoreError):
    """A write was sent but its reply never came: it may or may not have happened.

    Also raised for a batch that ran only in part: some of its commands ran, the rest were
    refused (a failover, a slot migration) and could not be run in the end.

    Raised instead of sending again a command that must not run twice (``add``, ``take``,
    ``incr``, ``delete``, a batch holding a ``delete``): a resend would turn a late reply
    into a false answer (a false replay, a value reported absent).  Whoever tries again
    later meets the true state.
    """


class Store(abc.ABC):
    """Key-value operations with TTLs, each O(1) in the number of stored keys."""

    #: True when several processes may share this store (Redis); False for memory.
    shared: bool = False
    #: True when a batch's keys must share one hash-tag slot (Redis Cluster, broker/store/slots.py).
    one_slot_batches: bool = False

    @abc.abstractmethod
    def put(self, key: str, value: Any, ttl: int) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing any value."""

    @abc.abstractmethod
    def add(self, key: str, value: Any, ttl: int) -> bool:
        """Store ``value`` only if ``key`` is absent; return whether it was stored.

        The primitive behind replay detection: the first writer wins, atomically.  False
        means someone stored it first; when that cannot be known, :class:`StoreOutcomeUnknown`.
        """

    @abc.abstractmethod
    def get(self, key: str) -> Any | None:
        """Return the value under ``key``, or ``None`` if absent or expired."""

    @abc.abstractmethod
    def take(self, key: str) -> Any | None:
        """Atomically return and delete the value under ``key`` (single use).

        ``None`` means it was absent; when that cannot be known, :class:`StoreOutcomeUnknown`.
        """

    @abc.abstractmethod
    def take_with_ttl(self, key: str) -> tuple[Any, float] | None:
        """:meth:`take`, also returning the seconds the value had left (0 if it had no TTL).

        For a caller that may have to :meth:`put_back` what it took; one round trip.
        """

    def take_beside(self, key: str, other: str) -> tuple[tuple[Any, float] | None, Any | None]:
        """:meth:`take_with_ttl` ``key`` and :meth:`get` ``other`` (read first), in one round trip where the
        store can: for a check that must be passed before what was taken is used (a client's lock, beside
        its code)."""
        other_value = self.get(other)
        return self.take_with_ttl(key), other_value

    @abc.abstractmethod
    def put_back(self, key: str, value: Any, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, only if ``key`` is absent.

        Undoes a :meth:`take_with_ttl` by a request that then failed: the value can be taken
        again, for no longer than it had left, and whatever was written under ``key`` since
        (by a request racing this one) is never overwritten.  Unlike :meth:`add` it answers
        nothing, so it joins an open batch; it is never sent again after a lost reply (a
        second run could put back a value that another request took in between).  Nothing
        is stored when ``ttl`` is not positive.
        """

    @abc.abstractmethod
    def delete(self, *keys: str) -> int:
        """Delete ``keys``; return how many existed."""

    @abc.abstractmethod
    def set_add(self, key: str, member: str, ttl: int) -> None:
        """Add ``member`` to the set under ``key`` and (re)set the set's TTL."""

    @abc.abstractmethod
    def set_remove(self, key: str, member: str) -> None:
        """Remove ``member`` from the set under ``key``."""

    @abc.abstractmethod
    def set_members(self, key: str) -> set[str]:
        """Return the members of the set under ``key`` (bounded by the caller's use)."""

    @abc.abstractmethod
    def incr(self, key: str, ttl: int, by: int = 1) -> int:
        """Add ``by`` to the counter under ``key`` (created at 0 with ``ttl``); return it."""

    def incr_and_get(self, key: str, ttl: int, other: str, by: int = 1) -> tuple[int, Any | None]:
        """:meth:`incr` ``key`` and :meth:`get` ``other``, in one round trip where the store can.

        For two counters read together (:mod:`broker.ratelimit`); on Redis Cluster the caller
        hash-tags both keys into one slot.  Not atomic as a pair, and need not be.
        """
        return self.incr(key, ttl, by), self.get(other)

    # -- sorted sets: schedules shared by instances ------------------------------------------
    # Not abstract, so that a store written for other uses need not implement them; both
    # stores here do.

    def zset_add(self, key: str, member: str, score: float, ttl: int) -> None:
        """Give ``member`` the ``score`` in the sorted set under ``key`` (adding it); (re)set the set's TTL.

        O(log n) in the set's size.  Running it twice leaves what running it once does, but the
        Redis store does not send it again after a lost reply: :class:`StoreOutcomeUnknown`.
        """
        raise NotImplementedError(f"{type(self).__name__} has no sorted sets")

    def zset_remove(self, key: str, member: str) -> None:
        """Remove ``member`` from the sorted set under ``key`` (nothing if absent).  O(log n)."""
        raise NotImplementedError(f"{type(self).__name__} has no sorted sets")

    def zset_claim(self, key: str, *, max_score: float, count: int, new_score: float) -> list[str]:
        """Atomically claim up to ``count`` members scored at most ``max_score``, lowest first.

        The claimed members get ``new_score`` and are returned: the primitive behind a work
        queue that several instances share.  Of callers racing, each member goes to one only,
        and is not claimable again until ``new_score`` comes due.  Members are re-scored, never
        removed, so one whose claimer dies, or whose reply was lost
        (:class:`StoreOutcomeUnknown`: this is never sent again), is simply due again at
        ``new_score``: nothing is lost.  O(log n) per member claimed.
        """
        raise NotImplementedError(f"{type(self).__name__} has no sorted sets")

    def get_many(self, *keys: str) -> list[Any | None]:
        """The values under ``keys`` (``None`` where absent), in one round trip."""
        return [self.get(key) for key in keys]

    def get_after_writes(self, key: str) -> Any | None:
        """The value under ``key``, read after every write made so far in the open batch.

        Inside a batch the queued writes and this read go together, in order, in one round
        trip, and the batch goes on empty: for a step that must write before it reads (a
        record that a racing reader must see) without paying a round trip for each.  Outside
        a batch, and in stores that write at once, it is :meth:`get`.
        """
        return self.get(key)

    @contextlib.contextmanager
    def batch(self, *, durable: bool = False) -> Iterator[None]:
        """Send the writes made inside (``put``, ``put_back``, ``delete``, ``set_add``, ``set_remove``) together.

        ``durable``: the writes complete something handed out at once (a login's grant and
        refresh token); a replicated store confirms they reached its replicas before the
        block's end returns (or raises :class:`StoreError`); a :meth:`get_after_writes` inside
        confirms the writes it sends.  Nested inside another batch, it makes the outer one durable.

        One round trip at the end instead of one per write; nothing is written if the block
        raises.  Reads inside the block do not see its writes, and ``add``, ``take`` and
        ``incr`` (whose answers are needed at once) are not deferred.  If the reply to the
        batch is lost, it is sent again only when every write in it may run twice (``put``,
        ``set_add``, ``set_remove``); one holding a ``delete`` raises :class:`StoreOutcomeUnknown`.

        A member added with :meth:`set_add_bounded` inside stands only with the batch: if the
        block or any round trip of the batch raises, it is removed again (:class:`TakeBack`).
        """
        yield

    @contextlib.contextmanager
    def unbatched(self) -> Iterator[None]:
        """Writes inside go at once, not into the open batch (keys of another slot than the batch's)."""
        yield

    def ping(self) -> bool:
        """Return True when the store answers."""
        return True

    def close(self) -> None:  # noqa: B027 - deliberately a no-op by default; stores with connections override it
        """Release connections."""

    # -- set claims: the audit buffer (broker.audit.buffer) -------------------------------------
    # Not abstract either; both stores here implement them.

    def set_size(self, key: str) -> int:
        """How many members the set under ``key`` holds (0 when absent).  O(1)."""
        raise NotImplementedError(f"{type(self).__name__} has no set sizes")

    def set_claim(self, key: str, into: str, *, count: int, score: float, ttl: int) -> list[str]:
        """Atomically move up to ``count`` arbitrary members of the set under ``key`` into the
        sorted set under ``into`` with ``score``; (re)set ``into``'s TTL; return the members moved.

        The claim of a work queue whose producers use :meth:`set_add` (resent safely after a
        lost reply, see the Redis store) and whose consumers must lose nothing: a member is in
        the set or in ``into`` at every instant, and one whose claimer dies (or whose reply
        was lost: this is never sent again) comes due in ``into`` at ``score``, for
        :meth:`zset_claim`.  O(log n) per member moved.  Both keys must be in one Redis
        Cluster slot (a shared hash tag).
        """
        raise NotImplementedError(f"{type(self).__name__} has no set claims")

    def set_add_bounded(self, key: str, member: str, *, limit: int, ttl: int, refused: str) -> bool | None:
        """Add ``member`` to the set under ``key`` unless the set already holds ``limit`` members;
        a member refused so is counted in the counter under ``refused`` instead (read and reset it
        with :meth:`take`).  (Re)sets the TTL of the key written.  O(1).

        Atomic, so the bound is one for every worker and instance: of writers racing at it, exactly
        ``limit`` minus the size get in.  Returns whether ``member`` is in the set, or ``None`` when
        the answer is not known yet (queued in a Redis batch).  Inside a batch the member stands or
        falls with it (:meth:`batch`).  Resent after a lost reply like ``set_add`` (a member already
        there is not added or counted again; a refused one may be counted twice).  Both keys must be
        in one Redis Cluster slot.
        """
        raise NotImplementedError(f"{type(self).__name__} has no bounded sets")


class TakeBack:
    """The members a store's open batch added with :meth:`Store.set_add_bounded`, per thread;
    removed again when the batch fails (:meth:`scope`).

    A batch is not a transaction: Redis runs every command of a round trip even when one of
    them fails (``WRONGTYPE``, ``OOM``), and a lost reply leaves it unknown what ran.  A
    member that records something the rest of the batch does (an audit record of a release)
    must not outlive a batch that raised: the caller answers an error, nothing was released.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def note(self, key: str, member: str) -> None:
        """``member`` was added to ``key`` in the open batch, if there is one."""
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            pending.append((key, member))

    @contextlib.contextmanager
    def scope(self, store: Store) -> Iterator[None]:
        """The outermost batch: if it raises, :meth:`Store.set_remove` what it noted, then re-raise.

        Best effort, after the batch has ended (its own round trip): when that fails too, the
        error the batch raised stands and the member stays.
        """
        if getattr(self._local, "pending", None) is not None:   # nested: the outer batch decides
            yield
            return
        pending: list[tuple[str, str]] = []
        self._local.pending = pending
        try:
            yield
        except BaseException:
            self._local.pending = None
            for key, member in pending:
                with contextlib.suppress(StoreError):
                    store.set_remove(key, member)
            raise
        finally:
            self._local.pending = None
