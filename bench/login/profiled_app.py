"""Our broker's WSGI application under cProfile, for ``bench_login.py --profile``.

Served by ``gunicorn login.profiled_app:app`` with one worker and the same environment as
``broker serve``.  Only the broker's own handling of each request is profiled (not
gunicorn's parsing and writing).  Two paths outside the broker drive it:

* ``POST /__bench__/profile/reset`` — forget what was recorded (after the warm-up);
* ``POST /__bench__/profile/dump`` — write the statistics to ``$BENCH_PROFILE_OUT``.
"""

from __future__ import annotations

import cProfile
import os

from broker.app import create_app
from broker.cli import configure_logging
from broker.settings import Settings

_settings = Settings.from_env()
configure_logging(_settings.log_level)
_broker = create_app(_settings)
_profile = cProfile.Profile()


def app(environ, start_response):
    global _profile
    path = environ.get("PATH_INFO", "")
    if path.startswith("/__bench__/profile/"):
        if path.endswith("/reset"):
            _profile = cProfile.Profile()
        elif path.endswith("/dump"):
            _profile.dump_stats(os.environ["BENCH_PROFILE_OUT"])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    _profile.enable()
    try:
        return list(_broker(environ, start_response))
    finally:
        _profile.disable()
