"""OIDC back-channel logout tokens, delivered in parallel, retried from the store.

When a person signs out, every service that registered a ``backchannel_logout_uri`` gets its
signed logout token POSTed to that URL (OpenID Connect Back-Channel Logout 1.0 §2.5): the
body ``logout_token=<jwt>`` as ``application/x-www-form-urlencoded``, ``Cache-Control:
no-store``, the registered URL only (redirects are never followed).  The orchestrator calls::

    queued = delivery.enqueue(deliveries)                  # in the store, ids assigned
    outcome = delivery.deliver(queued, deadline=now + 3)   # id -> delivered | refused | retrying | pending

and shows the signed-out page when :meth:`BackchannelDelivery.deliver` returns, which it does
by ``deadline`` whatever the services do.

Outcomes of one attempt
-----------------------
* a 2xx answer (the spec's 200, or 204): ``delivered``, final;
* a 4xx other than 429, or a 3xx (a redirect is not followed, so it cannot succeed):
  ``refused``, final, logged as a WARNING;
* a 5xx, a 429, a connection error or a timeout: another attempt after ``backoff[n-1]``
  seconds (the last value repeats); after ``attempts`` attempts the job is dropped with a
  WARNING (``dropped``);
* a URL requests cannot even send to: ``dropped`` at once.

The queue in the store
----------------------
``backchannel:{queue}:job:<id>`` holds a job (JSON, its TTL ``ttl`` from when it was queued);
``backchannel:{queue}`` is a sorted set of job ids scored by when each is next due.  Every
operation is O(1) or O(log n) in the number of queued jobs.  Claiming is
:meth:`~broker.store.base.Store.zset_claim`, atomic across instances: the due ids get the
score ``now + lease`` and go to one claimer only.  So a job is never removed from the queue
before its outcome is written: a job being attempted is merely *leased*.  :meth:`enqueue`
leases the new jobs to the caller's :meth:`deliver`; if this process dies, or an attempt
runs past its lease, or a store reply is lost, the job comes due again when the lease ends
and any instance's :meth:`~BackchannelDelivery.run_due` attempts it.  Delivery is
at-least-once: a token may, rarely, reach a service twice, which the spec allows for
(§2.7: the ``jti`` makes the second one harmless).

Store failures
--------------
A store reply that is lost after a write was sent raises
:class:`~broker.store.base.StoreOutcomeUnknown`.  Every write made here except the claim
sets a value (``SET ... EX``, a plain ``ZADD``, ``ZREM``): running it twice is the same as
once, so it is sent once more.  The claim is never repeated: its ids come due again when
their lease ends.  A store that cannot be reached at all is logged; the attempt in hand
still goes out.

Job records hold the token only while it may still be sent: a final record (delivered,
refused, dropped) keeps the outcome, not the token.  Logs never carry the token (nor the
URL): the delivery id, the client id, the attempt, the status code or error class.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import requests

from broker import metrics
from broker.store import Store, StoreError, StoreOutcomeUnknown

logger = logging.getLogger("broker.sessions.delivery")

QUEUE_KEY = "backchannel:{queue}"   # one hash tag: the queue and its jobs go in one batch (broker/store/slots.py)
JOB_KEY = "backchannel:{queue}:job:"

DELIVERED = "delivered"
REFUSED = "refused"
RETRYING = "retrying"
PENDING = "pending"
DROPPED = "dropped"
_FINAL = frozenset({DELIVERED, REFUSED, DROPPED})

#: A URL requests refuses before sending anything: no retry can succeed.
_UNSENDABLE = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One logout token for one service."""

    client_id: str
    url: str            # the client's registered backchannel_logout_uri
    logout_token: str = dataclasses.field(repr=False)   # already signed; never in a repr or a log
    id: str = ""        # assigned by enqueue
    #: What a retry needs to sign a fresh token (a token lives two minutes; retries go on for longer).
    sub: str | None = None
    sid: str | None = None


class BackchannelDelivery:
    """Back-channel logout delivery: now, in parallel, for a person waiting; later, from the store, for retries.

    Two thread pools of ``concurrency`` workers each: one for :meth:`deliver` (a person is
    waiting) and one for :meth:`run_due` (retries), so endpoints that are down and being
    retried never hold up the next person's sign-out.
    """

    def __init__(self, store: Store, *, http: requests.Session | None = None,
                 timeout: tuple[float, float] = (2.0, 3.0), attempts: int = 6,
                 backoff: Sequence[float] = (2, 10, 60, 300, 1800), concurrency: int = 8,
                 ttl: int = 24 * 3600, clock: Callable[[], float] = time.time, lease: float = 60.0,
                 renew: Callable[[str, str | None, str | None], str | None] | None = None):
        if attempts < 1 or concurrency < 1 or not backoff or ttl < 1 or lease < 0:
            raise ValueError("attempts, concurrency and ttl must be positive, backoff not empty, lease >= 0")
        self._store = store
        self._http = http
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = tuple(float(b) for b in backoff)
        self._concurrency = concurrency
        self._ttl = ttl
        self._clock = clock
        self._lease = float(lease)   # how long a job being attempted stays off the queue
        #: ``renew(client_id, sub, sid) -> token``: a retry posts a freshly signed logout token, since
        #: receivers refuse old ones (Back-Channel Logout §2.6: iat); ``None`` keeps the first token.
        self._renew = renew
        self._sessions = threading.local()
        self._now = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="backchannel-now")
        self._retries = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="backchannel-retry")
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- the orchestrator's calls ----------------------------------------------------------------

    def enqueue(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """Store ``deliveries`` as jobs, leased to the :meth:`deliver` that follows; return them with ids.

        A delivery that has an id keeps it.  If the store cannot take them (logged), they are
        returned all the same: :meth:`deliver` still sends them, and stores what must be retried.
        """
        queued = [d if d.id else dataclasses.replace(d, id=secrets.token_urlsafe(16)) for d in deliveries]
        if not queued:
            return []
        now = self._clock()

        def write() -> None:
            with self._store.batch():
                for d in queued:
                    self._store.put(JOB_KEY + d.id, self._record(d, attempt=0, status=PENDING, created=now),
                                    self._ttl)
                    self._store.zset_add(QUEUE_KEY, d.id, now + self._lease, self._ttl)

        if not self._write(write):
            logger.warning("backchannel logout not queued (store unavailable); sent once, not retried ids=%s",
                           ",".join(d.id for d in queued))
        return queued

    def deliver(self, deliveries: Sequence[Delivery], *, deadline: float) -> dict[str, str]:
        """Deliver now, in parallel, until ``deadline`` (epoch seconds).

        Returns id -> ``delivered`` | ``refused`` | ``retrying`` | ``pending``, by ``deadline``.

        Each delivery gets its first attempt (``deliveries`` come from :meth:`enqueue`).  One that
        fails (connection error, timeout, 5xx, 429) is scheduled for a retry in the store
        (``retrying``; ``dropped`` only when ``attempts`` is 1); one still running at the deadline
        (``pending``) finishes in the background and is retried if it fails.  ``refused`` (a 4xx
        other than 429, or a redirect) is final.
        """
        if any(not d.id for d in deliveries):
            raise ValueError("deliver() takes deliveries returned by enqueue()")
        now = self._clock()
        futures = {d.id: self._now.submit(self._attempt, self._record(d, attempt=0, status=PENDING, created=now), 1)
                   for d in deliveries}
        if futures:
            concurrent.futures.wait(futures.values(), timeout=max(0.0, deadline - self._clock()))
        return {job_id: future.result() if future.done() else PENDING for job_id, future in futures.items()}

    def run_due(self, limit: int = 100) -> int:
        """Claim due retries (from any instance; each goes to one claimer), attempt them; return how many.

        At most ``concurrency`` are in flight; more are claimed as slots free up, up to ``limit``.
        Returns when all it claimed have been attempted.
        """
        attempted = claimed = 0
        in_flight: set[concurrent.futures.Future[str]] = set()
        exhausted = False
        while True:
            room = min(self._concurrency - len(in_flight), limit - claimed)
            if room > 0 and not exhausted:
                jobs = self._claim(room)
                if jobs is None or len(jobs) < room:
                    exhausted = True
                for job_id, record in (jobs or {}).items():
                    claimed += 1
                    if not record or record.get("status") in _FINAL or "logout_token" not in record:
                        self._write(functools.partial(self._store.zset_remove, QUEUE_KEY, job_id))
                        continue
                    in_flight.add(self._retries.submit(self._attempt, record, int(record["attempt"]) + 1))
            if not in_flight:
                return attempted
            done, in_flight = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
            attempted += len(done)

    def start(self, interval: float = 2.0) -> None:
        """Call :meth:`run_due` every ``interval`` seconds (at once again after a full batch) in a daemon thread."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = threading.Event()
            self._thread = threading.Thread(target=self._loop, args=(interval, self._stopping),
                                            name="backchannel-retries", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the :meth:`start` thread; it finishes the attempts it has in flight."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=sum(self._timeout) + 5)

    def close(self) -> None:
        """:meth:`stop`, and wait for every attempt in flight to finish."""
        self.stop()
        self._now.shutdown(wait=True)
        self._retries.shutdown(wait=True)

    def status(self, delivery_id: str) -> str | None:
        """``pending``, ``retrying``, ``delivered``, ``refused`` or ``dropped``; ``None`` if unknown or expired."""
        record = self._store.get(JOB_KEY + delivery_id)
        return record.get("status") if isinstance(record, dict) else None

    # -- one attempt ---------------------------------------------------------------------------

    def _attempt(self, record: dict[str, Any], attempt: int) -> str:
        """POST one token, write the outcome to the store, log it; return the outcome."""
        try:
            outcome = self._try(record, attempt)
        except Exception:   # noqa: BLE001 - a worker must not die silently; the lease brings the job back
            logger.exception("backchannel logout attempt failed unexpectedly id=%s client_id=%s attempt=%d",
                             record.get("id"), record.get("client_id"), attempt)
            outcome = RETRYING
        metrics.logout_delivered(outcome)
        return outcome

    def _try(self, record: dict[str, Any], attempt: int) -> str:
        job_id, client_id = record["id"], record["client_id"]
        code: int | None = None
        error = ""
        token = record["logout_token"]
        if attempt > 1 and self._renew is not None:
            token = self._renew(client_id, record.get("sub"), record.get("sid")) or token
        try:
            code = self._post(record["url"], token)
        except _UNSENDABLE as exc:
            self._finish(record, DROPPED, attempt)
            logger.warning("backchannel logout dropped id=%s client_id=%s attempt=%d error=%s (unusable URL)",
                           job_id, client_id, attempt, exc.__class__.__name__)
            return DROPPED
        except requests.RequestException as exc:
            error = exc.__class__.__name__
        except Exception as exc:   # noqa: BLE001 - whatever the HTTP stack raises is a failed attempt, counted
            error = exc.__class__.__name__
        if code is not None and 200 <= code < 300:
            self._finish(record, DELIVERED, attempt)
            logger.info("backchannel logout delivered id=%s client_id=%s attempt=%d status=%d",
                        job_id, client_id, attempt, code)
            return DELIVERED
        if code is not None and code != 429 and code < 500:
            self._finish(record, REFUSED, attempt)
            logger.warning("backchannel logout refused id=%s client_id=%s attempt=%d status=%d%s",
                           job_id, client_id, attempt, code, " (redirect not followed)" if code < 400 else "")
            return REFUSED
        what = f"status={code}" if code is not None else f"error={error}"
        if attempt >= self._attempts:
            self._finish(record, DROPPED, attempt)
            logger.warning("backchannel logout dropped id=%s client_id=%s attempt=%d %s (attempts exhausted)",
                           job_id, client_id, attempt, what)
            return DROPPED
        delay = self._backoff[min(attempt, len(self._backoff)) - 1]
        record = {**record, "attempt": attempt, "status": RETRYING}
        due = self._clock() + delay

        def write() -> None:
            with self._store.batch():
                self._store.put(JOB_KEY + job_id, record, self._remaining(record))
                self._store.zset_add(QUEUE_KEY, job_id, due, self._ttl)

        scheduled = self._write(write)
        logger.info("backchannel logout failed id=%s client_id=%s attempt=%d %s retry_in=%gs%s",
                    job_id, client_id, attempt, what, delay, "" if scheduled else " (not stored: store unavailable)")
        return RETRYING

    def _post(self, url: str, token: str) -> int:
        response = self._session().post(
            url, data={"logout_token": token}, timeout=self._timeout, allow_redirects=False, stream=True,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-store"})
        try:
            return response.status_code
        finally:
            response.close()   # the body is not read: an endless one cannot hold the worker

    def _session(self) -> requests.Session:
        if self._http is not None:
            return self._http
        session: requests.Session | None = getattr(self._sessions, "session", None)
        if session is None:   # one per worker thread: requests.Session is not documented thread-safe
            session = self._sessions.session = requests.Session()
        return session

    def _finish(self, record: dict[str, Any], status: str, attempt: int) -> None:
        """Write a final outcome (the token dropped from the record) and take the job off the queue."""
        final = {k: v for k, v in record.items() if k != "logout_token"}
        final.update(status=status, attempt=attempt)

        def write() -> None:
            with self._store.batch():
                self._store.put(JOB_KEY + record["id"], final, self._remaining(record))
                self._store.zset_remove(QUEUE_KEY, record["id"])

        self._write(write)   # if it fails, the lease brings the job back (delivered twice at worst)

    # -- the store -------------------------------------------------------------------------------

    def _claim(self, count: int) -> dict[str, Any] | None:
        """Claim up to ``count`` due jobs: id -> record (None where gone); None if the store failed."""
        now = self._clock()
        try:
            ids = self._store.zset_claim(QUEUE_KEY, max_score=now, count=count, new_score=now + self._lease)
            records = self._store.get_many(*(JOB_KEY + job_id for job_id in ids)) if ids else []
        except StoreError as exc:   # claimed ones, if any, come due again when their lease ends
            logger.warning("backchannel logout retries not claimed (%s: %s)", exc.__class__.__name__, exc)
            return None
        return dict(zip(ids, records, strict=True))

    def _write(self, write: Callable[[], None]) -> bool:
        """Run ``write``, once more if its outcome is unknown (every write it makes sets a value)."""
        for last in (False, True):
            try:
                write()
                return True
            except StoreOutcomeUnknown as exc:
                if last:
                    logger.warning("backchannel logout store write failed (%s)", exc)
            except StoreError as exc:
                logger.warning("backchannel logout store write failed (%s)", exc)
                return False
        return False

    def _record(self, d: Delivery, *, attempt: int, status: str, created: float) -> dict[str, Any]:
        return {"id": d.id, "client_id": d.client_id, "url": d.url, "logout_token": d.logout_token,
                "sub": d.sub, "sid": d.sid, "attempt": attempt, "status": status, "created": created}

    def _remaining(self, record: dict[str, Any]) -> int:
        """Seconds left of the job's ``ttl`` (counted from when it was queued), at least 1."""
        return max(1, int(record.get("created", self._clock()) + self._ttl - self._clock()))

    def _loop(self, interval: float, stopping: threading.Event) -> None:
        while not stopping.is_set():
            limit = 100
            try:
                busy = self.run_due(limit) >= limit
            except Exception:   # noqa: BLE001 - the retry thread must outlive any one failure
                logger.exception("backchannel logout retry loop failed")
                busy = False
            if not busy:
                stopping.wait(interval)
