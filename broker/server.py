"""Running the broker under gunicorn, each worker building its own app after fork.

Each worker calls :func:`broker.app.create_app` itself (no ``preload_app``), so
no Redis connection or lock crosses a fork.
"""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from broker.settings import Settings


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from broker.app import create_app
        from broker.cli import configure_logging

        configure_logging(self.settings.log_level)
        return create_app(self.settings)


def serve(settings: Settings, *, workers: int, bind: str) -> int:
    options = {"bind": bind, "workers": workers, "worker_class": "sync", "timeout": 30, "preload_app": False}
    if settings.access_log:
        # Path only (%(U)s): query strings carry codes and SAML messages.  Off by default: a
        # load balancer usually logs requests, and the line costs ~0.1 ms of CPU per request.
        options.update(accesslog="-", access_log_format='%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss')
    _Gunicorn(settings, options).run()
    return 0
