"""Confirming a login's final write on replicas (``WAIT``): how many to wait for, and what a shortfall means.

Redis replicates asynchronously; a write acknowledged by a primary that dies a moment later may
be missing on the replica promoted in its place.  A durable batch (the grant and refresh token
of a login, :meth:`~broker.store.base.Store.batch`) therefore ends with ``WAIT <n> <wait_ms>``
and its tokens leave only when ``n`` replicas hold it.

``n`` is the configured number, lowered to the replicas the primary has connected when it has
fewer (right after a failover the new primary has none until the old one rejoins as its
replica).  Waiting then for a replica that is not there would refuse every login, a full outage
caused by a partial one; such logins are confirmed on the replicas there are
(a warning when that starts), and a second failure in that window may lose them.  A replica
that *is* connected but does not acknowledge in time is a real shortfall: :class:`StoreError`.
How many replicas a primary has connected is read (``INFO replication``) only after a
shortfall, and then once per :data:`RECHECK` seconds per node while it has too few: never on
a healthy path.  Decision and costs: docs/decisions/0015-redis-high-availability.md.
"""

from __future__ import annotations

import logging
import threading
import time

from broker.store.base import StoreError

logger = logging.getLogger("broker.store")

#: Seconds a lowered replica count is trusted before the primary is asked again.
RECHECK = 1.0
#: The longest ``wait_ms`` allowed: a ``WAIT`` must end well inside the store's 2 s socket timeout,
#: or its reply would be taken for a lost one.
MAX_WAIT_MS = 1500


def check_wait_ms(wait_ms: int) -> int:
    """``wait_ms`` if it is allowed; ``ValueError`` saying why not."""
    if not 0 < wait_ms <= MAX_WAIT_MS:
        raise ValueError(f"wait_ms= must be between 1 and {MAX_WAIT_MS} (below the 2 s socket timeout)")
    return wait_ms


def connected_replicas(info: bytes | str | dict) -> int:
    """``connected_slaves`` from an ``INFO replication`` reply (raw text or redis-py's dict)."""
    if isinstance(info, dict):
        return int(info.get("connected_slaves", 0))
    text = info.decode() if isinstance(info, bytes) else info
    for line in text.splitlines():
        if line.startswith("connected_slaves:"):
            return int(line.split(":", 1)[1])
    return 0


class Confirmation:
    """The ``WAIT`` policy of one store: ``replicas`` wanted, ``wait_ms`` allowed."""

    def __init__(self, replicas: int, wait_ms: int, clock=time.monotonic):
        self.replicas = replicas
        self.wait_ms = wait_ms
        self._clock = clock
        self._lowered: dict[object, tuple[int, float]] = {}   # node -> (replicas it has, until when)
        self._lock = threading.Lock()

    def wanted(self, connected, node: object = None) -> int:
        """How many replicas to ``WAIT`` for on ``node`` now (0: send no ``WAIT``).

        While lowered, ``connected()`` (the node's replica count) is asked again every
        :data:`RECHECK` seconds: a replica back in step is waited for again at once, and a
        degraded primary never makes a login sit out ``wait_ms`` for a replica that is not there.
        """
        lowered = self._lowered.get(node)
        if lowered is None:
            return self.replicas
        count, until = lowered
        if self._clock() < until:
            return count
        have = min(connected(), self.replicas)
        with self._lock:
            if have >= self.replicas:
                self._lowered.pop(node, None)
            else:
                self._lowered[node] = (have, self._clock() + RECHECK)
        return have

    def check(self, acknowledged: int, wanted: int, connected, node: object = None) -> None:
        """Judge a ``WAIT`` reply; ``connected()`` reads the replicas the node has (on a shortfall only)."""
        if acknowledged >= wanted:
            if wanted >= self.replicas:
                self._lowered.pop(node, None)
            return
        have = connected()
        if acknowledged >= have:   # every connected replica has it: fewer are there than configured
            with self._lock:
                first = node not in self._lowered
                self._lowered[node] = (min(have, self.replicas), self._clock() + RECHECK)
            if first:
                logger.warning("store degraded: the primary has %d of %d replicas; logins are confirmed on "
                               "%d until more are back", have, self.replicas, have)
            return
        raise StoreError(f"redis: write held by {acknowledged} of {wanted} replicas after {self.wait_ms} ms "
                         "(a replica is connected but behind); not confirmed")
