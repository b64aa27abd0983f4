"""The flusher: a thread per worker that moves buffered audit records to the database.

Each round it claims up to ``batch`` records (:meth:`AuditBuffer.claim`: lapsed claims
first), writes them in one transaction (ids already stored are ignored), and only then
drops their claims.  When the database is away, the claims are handed back (due again at
once) and the thread backs off, doubling its wait up to ``max_backoff``; buffered records
stay in the store and are written when the database answers again.  Whatever happens, a
record is in the buffer, in the claimed set or in the database (:mod:`broker.audit.buffer`).

The bound: once the buffer holds ``buffer.limit`` unclaimed records (the database away for
long at a busy hour), new records are refused where they are added, atomically for the whole
deployment (:meth:`AuditBuffer.push`), and counted in the store.  Once per ``report_every``
seconds one flusher of the deployment (the one that wins a store lock) reads and resets that
count and, if records were refused, says how many in a WARNING (``audit records dropped``;
counts only).  Redis also holds the sign-in sessions and flows of every pupil: filling its
memory with audit records would stop logins, which the bound prevents.

Once an hour one flusher of the deployment (the one that wins a store lock) deletes
records older than ``retention_days``, in bounded batches (:meth:`AuditLog.purge`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from broker.audit.buffer import AuditBuffer
from broker.audit.records import Release
from broker.audit.storage import AuditLog
from broker.store import StoreError

logger = logging.getLogger("broker.audit")

PURGE_LOCK = "audit:{audit}:purge"
DROPPED_LOCK = "audit:{audit}:dropped-report"


class AuditFlusher:
    """Moves records from ``buffer`` to ``log``; purges by ``retention_days``."""

    def __init__(self, buffer: AuditBuffer, log: AuditLog, *, retention_days: int, batch: int = 500,
                 lease: float = 60.0, interval: float = 1.0, max_backoff: float = 30.0, purge_every: int = 3600,
                 report_every: int = 60, clock: Callable[[], float] = time.time):
        self.buffer = buffer
        self.log = log
        self.retention_days = retention_days
        self.report_every = report_every
        self.batch = batch
        self.lease = lease
        self.interval = interval
        self.max_backoff = max_backoff
        self.purge_every = purge_every
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._failing = False

    # -- one round -------------------------------------------------------------------------------

    def flush_once(self) -> int:
        """Claim, write and settle one batch; return how many records it held.

        Raises what the store or the database raised; the claims are then handed back (or,
        if even that fails, lapse after ``lease``): nothing is lost.
        """
        now = self._clock()
        members = self.buffer.claim(self.batch, now=now, lease=self.lease)
        if not members:
            return 0
        releases, malformed = [], 0
        for member in members:
            try:
                releases.append(Release.from_wire(member))
            except ValueError:
                malformed += 1
        if malformed:  # never ours in practice: someone else wrote to the key; never retried
            logger.error("audit records malformed and discarded count=%d", malformed)
        try:
            self.log.write_releases(releases)
        except Exception:
            try:
                self.buffer.release(members, now=self._clock())
            except StoreError:
                pass  # the claims lapse after the lease instead
            raise
        self.buffer.done(members)
        return len(members)

    def report_dropped(self, *, locked: bool = True) -> int:
        """Log how many records the bound refused since the last report, if any; return that count.

        With ``locked``, only if this flusher wins this period's lock: one line per period for the
        whole deployment, however many workers.  The count is taken atomically, so no refusal is
        reported twice.
        """
        if locked and not self._won(DROPPED_LOCK, self.report_every):
            return 0
        dropped = self.buffer.take_refused()
        if dropped:
            logger.warning("audit records dropped count=%d reason=buffer_full max_buffered=%d "
                           "(the database has been unreachable)", dropped, self.buffer.limit)
        return dropped

    def purge_once(self, *, locked: bool = True) -> int:
        """Delete records past retention (with ``locked``, only if this flusher wins this period's lock)."""
        if locked and not self._won(PURGE_LOCK, self.purge_every):
            return 0
        before = dt.datetime.fromtimestamp(self._clock(), dt.UTC) - dt.timedelta(days=self.retention_days)
        removed = self.log.purge(before)
        if removed:
            logger.info("audit records purged count=%d older_than_days=%d", removed, self.retention_days)
        return removed

    def _won(self, lock: str, period: int) -> bool:
        """Whether this flusher, of all the deployment's, does this ``period``'s turn of ``lock``."""
        return self.buffer.store.add(lock, 1, period)

    def run_once(self) -> int:
        """What the thread does each round: the report of dropped records when due (first: it matters
        while the database is away, when the flush raises), flushes until the buffer is drained (at
        most 20 batches, so that stop() never waits long), the purge when due.  Returns how many
        records were written."""
        if self._clock() >= self._next_report:
            self._next_report = self._clock() + self.report_every
            self.report_dropped()
        written = 0
        for _ in range(20):
            count = self.flush_once()
            written += count
            if count < self.batch:
                break
        if self._clock() >= self._next_purge:
            self._next_purge = self._clock() + self.purge_every
            self.purge_once()
        return written

    _next_purge = 0.0
    _next_report = 0.0

    # -- the thread ---------------------------------------------------------------------------------

    def start(self) -> AuditFlusher:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = threading.Event()
                self._thread = threading.Thread(target=self._loop, args=(self._stopping,), name="audit-flusher",
                                                daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread after its current round."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def close(self) -> None:
        """:meth:`stop`, then one last flush, so that a worker shutting down leaves nothing behind
        (what it cannot write stays buffered for the others)."""
        self.stop()
        try:
            self.run_once()
        except Exception as exc:  # noqa: BLE001 - buffered records stay for the next flusher
            logger.warning("audit flush at shutdown failed (%s); records stay buffered", exc.__class__.__name__)

    def _loop(self, stopping: threading.Event) -> None:
        wait = self.interval
        while not stopping.is_set():
            try:
                self.run_once()
                if self._failing:
                    logger.warning("audit flush resumed: buffered records are being written")
                self._failing, wait = False, self.interval
            except Exception as exc:  # noqa: BLE001 - the flusher outlives any outage; records stay buffered
                if not self._failing:
                    logger.warning("audit flush failed (%s); records stay buffered and are written when it answers",
                                   exc.__class__.__name__)
                self._failing, wait = True, min(self.max_backoff, wait * 2)
            stopping.wait(wait)
