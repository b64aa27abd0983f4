"""Running the broker: ``broker serve`` under uWSGI (default) or gunicorn.

Both are pre-fork servers whose workers build the application after the fork (no
connection or lock crosses a fork), reload gracefully on ``SIGHUP`` and stop on
``SIGTERM``.  uWSGI is the default because it parses HTTP in C: gunicorn's sync
worker spends about 0.45 ms of CPU per request around the application, more than a
whole token request costs inside it (docs/performance.md).
"""

from __future__ import annotations

from broker.settings import Settings

SERVERS = ("uwsgi", "gunicorn")


def serve(settings: Settings, *, workers: int, bind: str) -> int:
    if settings.server == "gunicorn":
        return _gunicorn(settings, workers=workers, bind=bind)
    return _uwsgi(settings, workers=workers, bind=bind)


def _uwsgi(settings: Settings, *, workers: int, bind: str) -> int:
    import pyuwsgi

    args = [
        "--http-socket", bind,              # HTTP parsed in C, no separate router process
        "--master", "--processes", str(workers),
        "--lazy-apps",                      # each worker imports broker.wsgi after the fork
        "--module", "broker.wsgi:application", "--need-app",
        "--die-on-term", "--vacuum", "--single-interpreter",
        "--buffer-size", "32768",           # large cookies and SAML redirects fit
        "--harakiri", "30",                 # a worker stuck 30 s is replaced
        "--max-requests", "100000",         # bounded memory growth, like gunicorn's max_requests
    ]
    if not settings.access_log:
        args.append("--disable-logging")    # request lines only; the app's own logs stay
    else:
        # The path only (PATH_INFO): query strings carry codes and SAML messages.
        args += ["--log-format", '%(addr) "%(method) %(var.PATH_INFO)" %(status) %(size) %(msecs)ms']
    pyuwsgi.run(args)
    return 0


def _gunicorn(settings: Settings, *, workers: int, bind: str) -> int:
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from broker.app import create_app
            from broker.cli import configure_logging

            configure_logging(settings.log_level)
            return create_app(settings)

    options = {"bind": bind, "workers": workers, "worker_class": "sync", "timeout": 30, "preload_app": False}
    if settings.access_log:
        # Path only (%(U)s): query strings carry codes and SAML messages.
        options.update(accesslog="-", access_log_format='%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss')
    Gunicorn().run()
    return 0
