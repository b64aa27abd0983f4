"""The audit buffer in the store: the login path adds, the flusher claims, nothing is lost.

Keys (one Redis Cluster slot: the ``{audit}`` hash tag):

``audit:{audit}:buffer``   a set of buffered records (JSON, each with a unique id)
``audit:{audit}:claimed``  a sorted set of records a flusher claimed, scored by when the
                           claim lapses
``audit:{audit}:refused``  how many records the bound refused since the flusher last read it

The login path adds with :meth:`Store.set_add_bounded`: one script, O(1) (``SCARD``, then
``SADD`` only while the set holds fewer than ``limit`` records, else the refusal counted), so
the bound is one for the whole deployment, not each worker's guess.  It is queued in the
store batch the delivering step already sends and stands or falls with it: if that batch
raises (the caller answers 503, nothing was released), the record is taken back.  It is on
the Redis store's resend list, so a lost reply is resent instead of turning the whole batch
into "outcome unknown"; a resent record already there changes nothing (a set, and every
record has its own id).

A flusher claims with :meth:`Store.set_claim` (records move from the set to the sorted
set, scored ``now + lease``, atomically) and, first, :meth:`Store.zset_claim` (claims that
lapsed: their flusher died, or the database refused them).  Only after the database has
the records does it remove them (:meth:`done`).  A record is therefore always in the set,
in the sorted set, or in the database; the database ignores ids it has, so one written
twice (a flusher that died after its insert) is still one row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from broker.store import Store

BUFFER = "audit:{audit}:buffer"
CLAIMED = "audit:{audit}:claimed"
REFUSED = "audit:{audit}:refused"
#: How long buffered records live in the store without any new one (the TTL is renewed by every
#: push): far longer than any database outage the buffer is meant to bridge.
BUFFER_TTL = 30 * 24 * 3600


class AuditBuffer:
    """The keys above on ``store``; at most ``limit`` unclaimed records (``BROKER_AUDIT_BUFFER_MAX``)."""

    def __init__(self, store: Store, *, limit: int, ttl: int = BUFFER_TTL):
        self.store = store
        self.limit = limit
        self.ttl = ttl

    def push(self, record: str) -> bool | None:
        """Buffer one record (the login path), in the open batch if any; whether it was buffered
        (``None``: queued in a batch, not known yet).  A record refused by the bound is counted
        (:meth:`take_refused`), never an error: a full buffer does not stop logins.

        On Redis Cluster the buffer is a slot of its own, not the login's: the record goes at once,
        beside the batch (ADR 0015), and is taken back all the same if the batch then fails.
        """
        with self._beside_batch():
            return self.store.set_add_bounded(BUFFER, record, limit=self.limit, ttl=self.ttl, refused=REFUSED)

    def retract(self, record: str) -> None:
        """Take back a record pushed for a delivery that did not happen (nothing if already claimed)."""
        with self._beside_batch():
            self.store.set_remove(BUFFER, record)

    def _beside_batch(self):
        return self.store.unbatched() if self.store.one_slot_batches else contextlib.nullcontext()

    def claim(self, count: int, *, now: float, lease: float) -> list[str]:
        """Up to ``count`` records for this flusher until ``now + lease``: lapsed claims first."""
        claimed = self.store.zset_claim(CLAIMED, max_score=now, count=count, new_score=now + lease)
        if len(claimed) < count:
            claimed += self.store.set_claim(BUFFER, CLAIMED, count=count - len(claimed), score=now + lease,
                                            ttl=self.ttl)
        return claimed

    def done(self, records: Iterable[str]) -> None:
        """The database has ``records``: drop their claims (one round trip)."""
        with self.store.batch():
            for record in records:
                self.store.zset_remove(CLAIMED, record)

    def release(self, records: Iterable[str], *, now: float) -> None:
        """The database refused ``records``: make them due again now (the next flush retries them)."""
        with self.store.batch():
            for record in records:
                self.store.zset_add(CLAIMED, record, now, self.ttl)

    def size(self) -> int:
        """How many records wait unclaimed (O(1))."""
        return self.store.set_size(BUFFER)

    def take_refused(self) -> int:
        """How many records the bound refused since the last call (of any worker): read and reset."""
        return int(self.store.take(REFUSED) or 0)
