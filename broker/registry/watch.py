"""Following the active registry version: every instance switches within seconds, without restart.

Each process runs one :class:`RegistryWatcher` thread.  It wakes when an activation
is announced (Redis pub/sub on ``<prefix>registry``, sent by
:class:`~broker.registry.service.RegistryService`), or every ``interval`` seconds in
any case (one primary-key read of the head row: the fallback when a notice is lost
or Redis is away), and when the head has moved it has the application build the new
version off the login path.  Requests keep being served by the proxy already built
while the next one is assembled, and logins under way finish (their state is in the
store, not in the proxy).  A version this process cannot build (a missing secret on
this instance, say) is logged and retried; the last good login path stays in service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds between polls of the head row; an announced activation is seen at once.
POLL_INTERVAL = 2.0
#: A version that failed to build here is tried again after this many seconds.
RETRY_AFTER = 15.0


def channel(prefix: str) -> str:
    return f"{prefix}registry"


class RegistryWatcher:
    """Calls ``reload()`` whenever ``head()`` differs from the sequence last built.

    ``head()`` returns the active sequence; ``reload()`` builds it and returns the
    sequence it built.  ``redis`` (a ``redis.Redis``) adds the pub/sub wake-up.
    """

    def __init__(self, head: Callable[[], int], reload: Callable[[], int], *, built: int,
                 redis: Any = None, prefix: str = "digione:", interval: float = POLL_INTERVAL):
        self._head = head
        self._reload = reload
        self.built = built
        self._redis = redis
        self._channel = channel(prefix)
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: tuple[int, float] | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="registry-watcher", daemon=True)
            self._thread.start()
            if self._redis is not None:
                threading.Thread(target=self._listen, name="registry-notices", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        """Look at the head now (an activation in this process, or a notice)."""
        self._wake.set()

    def check(self) -> bool:
        """One look at the head; build if it moved.  Returns whether a new version is served."""
        try:
            seq = self._head()
        except Exception as exc:  # noqa: BLE001 - the database away: keep serving, look again later
            logger.warning("registry head unreadable (%s: %s); serving version seq=%s", exc.__class__.__name__,
                           exc, self.built)
            return False
        if seq == self.built:
            return False
        if self._failed and self._failed[0] == seq and time.monotonic() < self._failed[1]:
            return False
        try:
            self.built = self._reload()
        except Exception as exc:  # noqa: BLE001 - whatever broke the build, the last good login path stays
            self._failed = (seq, time.monotonic() + RETRY_AFTER)
            logger.error("registry version seq=%s not served: its login path did not build (%s: %s); still "
                         "serving seq=%s", seq, exc.__class__.__name__, exc, self.built)
            return False
        self._failed = None
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if not self._stop.is_set():
                self.check()

    def _listen(self) -> None:
        """Wake the watcher on every notice; reconnect after a Redis outage (polling covers the gap)."""
        while not self._stop.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel)
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=1.0) is not None:
                        self._wake.set()
            except Exception as exc:  # noqa: BLE001 - Redis away: polling covers it, try again shortly
                logger.debug("registry notices unavailable (%s)", exc.__class__.__name__)
                self._stop.wait(self._interval)


def announcer(redis: Any, prefix: str) -> Callable[[int], None]:
    """The ``notify`` of :class:`~broker.registry.service.RegistryService`: publish the new sequence."""
    name = channel(prefix)
    return lambda seq: redis.publish(name, str(seq))
