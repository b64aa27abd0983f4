"""Running the broker: ``broker serve`` under uWSGI (the default) or, with ``BROKER_SERVER=gunicorn``, gunicorn.

Both are pre-fork servers whose workers build the application after the fork (no
connection or lock crosses a fork), reload gracefully on ``SIGHUP`` and stop on
``SIGTERM``.  uWSGI is the default because it parses HTTP in C: gunicorn's sync
worker spends about 0.45 ms of CPU per request around the application, more than a
whole token request costs inside it (docs/performance.md).

**Slow clients.**  The application runs one request at a time per worker, so a client
that sends its request slowly must never hold a worker.  Under uWSGI each worker reads
requests asynchronously, in C, on :data:`ASYNC_CORES` green threads (``--async`` with
``--ugreen``): the request line, the headers and the whole body (``--post-buffering``: in
memory up to 64 KiB, in a temporary file beyond, never more than :data:`broker.web.DRAIN_LIMIT`)
are read before Python sees the request, so a client that trickles them holds one of those
green threads, never the worker.  Python never waits for a client: it reads the body from
memory and returns its answer as a list, which uWSGI writes out asynchronously too.

uWSGI's timeouts are *inactivity* timeouts (it has no total deadline): a connection
silent for :data:`SOCKET_TIMEOUT` seconds is closed.  The application's own time is
limited per request by the guard (``uwsgi.set_user_harakiri``, :data:`broker.web.REQUEST_TIME_LIMIT`),
not by ``--harakiri``, which in async mode starts when a connection is accepted and would
replace workers because a slow client was connected.  Bounding the *total* time of a
request and the number of connections per client is the job of the load balancer in front
(docs/operations.md, "What the deployment in front must do").

gunicorn's sync worker reads the request itself: a slow client holds it until the worker
``timeout`` (30 s) has it killed and replaced.  It is there for comparison and for
platforms without uWSGI, behind a proxy that buffers requests.
"""

from __future__ import annotations

import sys

from broker.settings import Settings
from broker.web import DRAIN_LIMIT, REQUEST_TIME_LIMIT

SERVERS = ("uwsgi", "gunicorn")

#: Connections one worker reads at once (slow clients wait on these, not on the worker).
ASYNC_CORES = 128
#: Seconds a connection may stay silent (request line, headers, body, or reading the answer).
SOCKET_TIMEOUT = 10
#: Bodies up to this size are buffered in memory, larger ones in a temporary file.
POST_BUFFER_MEMORY = 64 * 1024


def metrics_bind(bind: str, port: int) -> str:
    """The address of the metrics socket: the public bind's host with ``port`` (decision 16)."""
    host, sep, public = bind.rpartition(":")
    if not sep or not public.isdigit():
        raise ValueError(f"the metrics port needs a host:port bind, not {bind!r} (or set BROKER_METRICS_PORT=0)")
    if int(public) == port:
        raise ValueError(f"the metrics port {port} is the public port: choose another BROKER_METRICS_PORT")
    return f"{host}:{port}"


def serve(settings: Settings, *, workers: int, bind: str) -> int:
    """Run the broker on ``bind`` with ``workers`` processes until it is stopped: under uWSGI
    unless ``settings.server`` (``BROKER_SERVER``) is ``gunicorn``.  Exit status 2 when the
    metrics port cannot be bound beside ``bind``."""
    if settings.metrics_port:
        try:
            metrics_bind(bind, settings.metrics_port)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if settings.server == "gunicorn":
        return _gunicorn(settings, workers=workers, bind=bind)
    return _uwsgi(settings, workers=workers, bind=bind)


def uwsgi_args(settings: Settings, *, workers: int, bind: str) -> list[str]:
    """The uWSGI command line of ``broker serve`` (see the module documentation)."""
    # /metrics has a socket of its own (broker.metrics.exposition routes by the socket's port).
    metrics = ["--http-socket", metrics_bind(bind, settings.metrics_port)] if settings.metrics_port else []
    return [
        "--http-socket", bind,              # HTTP parsed in C, no separate router process
        *metrics,
        "--master", "--processes", str(workers),
        "--lazy-apps",                      # each worker imports broker.wsgi after the fork
        # Background threads (the registry watcher, logout retries) run while the worker waits.
        "--enable-threads",
        "--module", "broker.wsgi:application", "--need-app",
        "--die-on-term", "--vacuum", "--single-interpreter",
        # A reload re-executes the interpreter: the virtualenv's, not the one behind it, so the
        # broker's dependencies are still importable after SIGHUP.
        "--binary-path", sys.executable,
        # Slow clients wait on green threads; the body is read before the application runs.
        "--async", str(ASYNC_CORES), "--ugreen",
        "--ugreen-stacksize", "512",        # pages: 2 MiB of C stack per green thread, like a thread's
        "--post-buffering", str(POST_BUFFER_MEMORY),
        "--limit-post", str(DRAIN_LIMIT),   # larger bodies are not even read (the guard answers 413 below)
        "--socket-timeout", str(SOCKET_TIMEOUT),
        "--buffer-size", "32768",           # large cookies and SAML redirects fit
        "--max-requests", "100000",         # bounded memory growth, like gunicorn's max_requests
        # The broker writes its own access line (JSON, path only, with the correlation id) when
        # BROKER_ACCESS_LOG is on (broker.web.guard); uWSGI's would carry the decoded path raw.
        "--disable-logging",
    ]


def _uwsgi(settings: Settings, *, workers: int, bind: str) -> int:
    import pyuwsgi

    pyuwsgi.run(uwsgi_args(settings, workers=workers, bind=bind))
    return 0


def gunicorn_options(settings: Settings, *, workers: int, bind: str) -> dict:
    """gunicorn's settings for ``broker serve`` (sync workers; see the module documentation)."""
    from broker.metrics.multiprocess import mark_dead

    binds = [bind, metrics_bind(bind, settings.metrics_port)] if settings.metrics_port else [bind]
    return {
        "bind": binds, "workers": workers,
        "child_exit": lambda _arbiter, worker: mark_dead(worker.pid),   # its live gauges go, its counts stay
        "worker_class": "sync", "timeout": REQUEST_TIME_LIMIT,
        "graceful_timeout": REQUEST_TIME_LIMIT, "preload_app": False,
        # Request line and header sizes: large cookies and SAML redirects fit, nothing much larger.
        "limit_request_line": 8190, "limit_request_fields": 100, "limit_request_field_size": 16384,
        # gunicorn's own lines in the broker's JSON format; the access log is the broker's.
        "accesslog": None,
        "logconfig_dict": {
            "version": 1, "disable_existing_loggers": False,
            "formatters": {"json": {"()": "broker.logs.JsonFormatter"}},
            "handlers": {"stderr": {"class": "broker.logs.LineHandler", "formatter": "json",
                                    "stream": "ext://sys.stderr"}},
            "root": {"level": "INFO", "handlers": ["stderr"]},
            "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                        "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False}},
        },
    }


def _gunicorn(settings: Settings, *, workers: int, bind: str) -> int:
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from broker.app import create_app, freeze_heap
            from broker.cli import configure_logging
            from broker.metrics.exposition import with_metrics
            from broker.web import protect_broker

            configure_logging(settings.log_level)
            app = create_app(settings)
            app.freeze_heap = True   # as broker.wsgi does for uWSGI workers
            freeze_heap()
            return with_metrics(protect_broker(app, settings), settings.metrics_port, broker=app)

    options = gunicorn_options(settings, workers=workers, bind=bind)
    Gunicorn().run()
    return 0
