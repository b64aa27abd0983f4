"""The store interface every flow uses.

Values are JSON-compatible objects (dicts, lists, strings, numbers).  Keys are plain
strings chosen by the caller (``"code:" + code``); the store adds its own prefix.
Every write takes a TTL in seconds: nothing in the store lives forever.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, Iterator


class StoreError(RuntimeError):
    """The store could not be reached or answered unexpectedly."""


class Store(abc.ABC):
    """Key-value operations with TTLs, each O(1) in the number of stored keys."""

    #: True when several processes may share this store (Redis); False for memory.
    shared: bool = False

    @abc.abstractmethod
    def put(self, key: str, value: Any, ttl: int) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing any value."""

    @abc.abstractmethod
    def add(self, key: str, value: Any, ttl: int) -> bool:
        """Store ``value`` only if ``key`` is absent; return whether it was stored.

        The primitive behind replay detection: the first writer wins, atomically.
        """

    @abc.abstractmethod
    def get(self, key: str) -> Any | None:
        """Return the value under ``key``, or ``None`` if absent or expired."""

    @abc.abstractmethod
    def take(self, key: str) -> Any | None:
        """Atomically return and delete the value under ``key`` (single use)."""

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
    def incr(self, key: str, ttl: int) -> int:
        """Increment the counter under ``key`` (created at 0 with ``ttl``); return it."""

    def get_many(self, *keys: str) -> list[Any | None]:
        """The values under ``keys`` (``None`` where absent), in one round trip."""
        return [self.get(key) for key in keys]

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Send the writes made inside (``put``, ``delete``, ``set_add``, ``set_remove``) together.

        One round trip at the end instead of one per write; nothing is written if the block
        raises.  Reads inside the block do not see its writes, and ``add``, ``take`` and
        ``incr`` (whose answers are needed at once) are not deferred.
        """
        yield

    def ping(self) -> bool:
        """Return True when the store answers."""
        return True

    def close(self) -> None:
        """Release connections."""
