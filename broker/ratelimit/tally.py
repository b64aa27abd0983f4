"""A process's share of a shared count, sent to the store in steps: most events cost no round trip.

Counting every login start with its own ``INCR`` was a round trip per login, and at a
national morning peak most of those counts are of sources that start one login (a pupil at
home) or of large ones far below their limit (a school behind one address).  A
:class:`Tally` counts events in the process and adds them to the shared counter
(``INCRBY``) once ``step`` of them have gathered for a key, reading back the total all
processes have added.  Between two sends, a key's count as this process sees it is that
total plus its own unsent events, so:

* a limit is never exceeded by more than ``step - 1`` events per process (per worker of
  every instance) in a window: with ``step`` at most a thousandth of the limit
  (:func:`step_for`), 40 workers overshoot 12,000 login starts per minute by at most 4 %;
  a limit under 2,000 has ``step`` 1, every event is sent, and the count is exact;
* a refusal is as prompt as before for a source that goes over the limit on one
  process, and within ``step`` events per process for one spread over many;
* events still unsent when their window ends are never sent: a key that expires just
  after its window would drop them anyway.

What is kept per process is one entry per key of the current window, and at most
:data:`MAX_KEYS` of them: past that the entries are cleared (the unsent events of sources
seen once are forgotten, an undercount of at most ``step - 1`` each, never a refusal).
"""

from __future__ import annotations

import threading

#: Events of one key sent together at most this fraction of the limit (see the module docstring).
STEP_FRACTION = 1000
#: Entries kept per tally before they are cleared.
MAX_KEYS = 100_000


def step_for(count: int) -> int:
    """How many events of a key are sent in one ``INCRBY`` under a limit of ``count``."""
    return max(1, count // STEP_FRACTION)


class Tally:
    """This process's unsent events and the last known total of each key of one window."""

    def __init__(self) -> None:
        self._window: int | None = None
        self._entries: dict[str, list[int]] = {}   # key -> [unsent events, total last read]
        self._lock = threading.Lock()   # background threads do not count, but a gthread server might

    def add(self, key: str, window: int, step: int) -> tuple[int, int]:
        """Count one event of ``key`` (in window number ``window``).

        Returns ``(to_send, seen)``: ``to_send`` events must now go to the store (0: not yet;
        the caller then reports the new total with :meth:`sent`), ``seen`` is the count as
        this process knows it, this event included.
        """
        with self._lock:
            if window != self._window or len(self._entries) >= MAX_KEYS:
                self._window, self._entries = window, {}
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [0, 0]
            entry[0] += 1
            seen = entry[0] + entry[1]
            if entry[0] < step:
                return 0, seen
            to_send, entry[0] = entry[0], 0
            return to_send, seen

    def sent(self, key: str, total: int) -> None:
        """The store's total for ``key`` after this process's send (every process's events)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry[1] = max(entry[1], total)

    def unsent(self, key: str, events: int) -> None:
        """A send failed: keep its ``events`` to go with the next one."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry[0] += events
