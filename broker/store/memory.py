"""The in-memory store: the embedded default for a single process.

It keeps the same semantics as :class:`~broker.store.redis.RedisStore` (TTLs,
atomic ``take``/``add``) behind one lock, so tests and the demo exercise the same
flows.  It cannot be shared between processes: :attr:`shared` is False and the
broker refuses to start several workers on it.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from broker.store.base import Store, TakeBack


class MemoryStore(Store):
    shared = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._writes = 0
        self._take_back = TakeBack()   # writes here go at once: a failing batch takes back set_add_bounded's

    def _live(self, key: str) -> Any | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._data[key]
            return None
        return value

    def _write(self, key: str, value: Any, ttl: float) -> None:
        self._data[key] = (self._clock() + ttl, value)
        self._writes += 1
        if self._writes % 1024 == 0:
            self._sweep()

    def _sweep(self) -> None:
        # Amortised: one pass per 1024 writes keeps memory bounded without a timer thread.
        now = self._clock()
        for key in [k for k, (exp, _) in self._data.items() if exp <= now]:
            del self._data[key]

    def put(self, key: str, value: Any, ttl: int) -> None:
        with self._lock:
            self._write(key, copy.deepcopy(value), ttl)

    def add(self, key: str, value: Any, ttl: int) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._write(key, copy.deepcopy(value), ttl)
            return True

    def get(self, key: str) -> Any | None:
        with self._lock:
            return copy.deepcopy(self._live(key))

    def take(self, key: str) -> Any | None:
        with self._lock:
            value = self._live(key)
            self._data.pop(key, None)
            return value

    def take_with_ttl(self, key: str) -> tuple[Any, float] | None:
        with self._lock:
            value = self._live(key)
            if value is None:
                return None
            expires, _ = self._data.pop(key)
            return value, expires - self._clock()

    def put_back(self, key: str, value: Any, ttl: float) -> None:
        with self._lock:
            if ttl > 0 and self._live(key) is None:
                self._write(key, copy.deepcopy(value), ttl)

    def delete(self, *keys: str) -> int:
        with self._lock:
            found = 0
            for key in keys:
                if self._live(key) is not None:
                    found += 1
                self._data.pop(key, None)
            return found

    def set_add(self, key: str, member: str, ttl: int) -> None:
        with self._lock:
            members = self._live(key)
            members = set(members) if members else set()
            members.add(member)
            self._write(key, members, ttl)

    def set_remove(self, key: str, member: str) -> None:
        with self._lock:
            members = self._live(key)
            if members:
                members.discard(member)

    def set_members(self, key: str) -> set[str]:
        with self._lock:
            return set(self._live(key) or ())

    def incr(self, key: str, ttl: int, by: int = 1) -> int:
        with self._lock:
            old = self._live(key)
            value = (old or 0) + by
            entry = self._data.get(key)
            expires = entry[0] if entry and old is not None else self._clock() + ttl
            self._data[key] = (expires, value)
            return value

    def zset_add(self, key: str, member: str, score: float, ttl: int) -> None:
        with self._lock:
            zset = self._live(key)
            if not isinstance(zset, _SortedSet):
                zset = _SortedSet()
            zset.add(member, float(score))
            self._write(key, zset, ttl)

    def zset_remove(self, key: str, member: str) -> None:
        with self._lock:
            zset = self._live(key)
            if isinstance(zset, _SortedSet):
                zset.remove(member)

    def zset_claim(self, key: str, *, max_score: float, count: int, new_score: float) -> list[str]:
        with self._lock:
            zset = self._live(key)
            if not isinstance(zset, _SortedSet):
                return []
            return zset.claim(float(max_score), count, float(new_score))

    def set_size(self, key: str) -> int:
        with self._lock:
            members = self._live(key)
            return len(members) if isinstance(members, set) else 0

    def set_claim(self, key: str, into: str, *, count: int, score: float, ttl: int) -> list[str]:
        with self._lock:   # one lock: no reader sees a member in neither structure
            members = self._live(key)
            if not isinstance(members, set) or count <= 0 or not members:
                return []
            moved = [members.pop() for _ in range(min(count, len(members)))]
            zset = self._live(into)
            if not isinstance(zset, _SortedSet):
                zset = _SortedSet()
            for member in moved:
                zset.add(member, float(score))
            self._write(into, zset, ttl)
            return moved

    def set_add_bounded(self, key: str, member: str, *, limit: int, ttl: int, refused: str) -> bool | None:
        with self._lock:
            members = self._live(key)
            members = set(members) if isinstance(members, set) else set()
            if member not in members and len(members) >= limit:
                self._write(refused, (self._live(refused) or 0) + 1, ttl)
                return False
            members.add(member)
            self._write(key, members, ttl)
        self._take_back.note(key, member)
        return True

    @contextlib.contextmanager
    def batch(self, *, durable: bool = False) -> Iterator[None]:
        with self._take_back.scope(self):
            yield


class _SortedSet:
    """A sorted set: each member's score, and a heap of ``(score, member)`` for the lowest.

    A heap entry whose score is no longer its member's is stale and skipped when it reaches
    the top; the heap is rebuilt when stale entries outnumber live ones, so every operation
    is O(log n) amortised.  Ties are ordered by member, as Redis orders them.
    """

    __slots__ = ("heap", "scores")

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.heap: list[tuple[float, str]] = []

    def add(self, member: str, score: float) -> None:
        self.scores[member] = score
        heapq.heappush(self.heap, (score, member))
        if len(self.heap) > 2 * len(self.scores) + 64:
            self.heap = [(s, m) for m, s in self.scores.items()]
            heapq.heapify(self.heap)

    def remove(self, member: str) -> None:
        self.scores.pop(member, None)   # its heap entry goes stale

    def claim(self, max_score: float, count: int, new_score: float) -> list[str]:
        claimed: list[str] = []
        while self.heap and len(claimed) < count and self.heap[0][0] <= max_score:
            score, member = heapq.heappop(self.heap)
            if self.scores.get(member) == score:
                del self.scores[member]   # a duplicate heap entry of it is stale from now on
                claimed.append(member)
        for member in claimed:   # re-scored only now: a new score <= max_score is not claimed twice
            self.add(member, new_score)
        return claimed
