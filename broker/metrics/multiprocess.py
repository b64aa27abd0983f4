"""Prometheus multiprocess mode for ``broker serve``: one directory of counters per run.

Each worker of the pre-fork server writes its counters and histograms to memory-mapped files
named after its pid in ``PROMETHEUS_MULTIPROC_DIR``; a scrape, answered by any worker, sums
them all (:mod:`broker.metrics.exposition`).  ``prometheus_client`` chooses multiprocess mode
when it is first imported, so :func:`prepare` runs in ``broker serve`` before anything imports
:mod:`broker.metrics.families`, and before the server forks its workers.

The directory is the operator's ``PROMETHEUS_MULTIPROC_DIR`` if set (its files are removed at
start: a new run starts from zero, as Prometheus expects of a restarted target) or else a fresh
one in the temporary folder (``/tmp``, an ``emptyDir`` in Kubernetes).  A uWSGI reload
re-executes ``broker serve`` with the variable already set: the same directory, emptied again.
Files of workers that exited stay (their counts are part of the totals); :func:`mark_dead` drops a
dead worker's live gauges, of which the broker has none today (its gauges are computed at scrape).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare(environ: MutableMapping[str, str] | None = None) -> Path:
    """Set up (or empty) the run's directory and export it in ``environ`` (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    if "prometheus_client" in sys.modules and VARIABLE not in environ:
        raise RuntimeError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: "
                           "the workers would count in process memory only")
    configured = environ.get(VARIABLE)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for leftover in path.glob("*.db"):
            leftover.unlink(missing_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="digione-metrics-"))
        environ[VARIABLE] = str(path)
    return path


def mark_dead(pid: int) -> None:
    """A worker exited: forget its live gauges (its counters stay in the totals)."""
    if not os.environ.get(VARIABLE):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def at_worker_exit() -> None:
    """Under uWSGI, have this worker mark itself dead when it exits (``uwsgi.atexit``)."""
    try:
        import uwsgi  # type: ignore[import-not-found]
    except ImportError:
        return
    pid = os.getpid()
    previous = getattr(uwsgi, "atexit", None)

    def exiting() -> None:
        mark_dead(pid)
        if callable(previous):
            previous()

    uwsgi.atexit = exiting
