"""Our broker's WSGI application, instrumented, for ``bench_login.py --profile``.

Served by ``gunicorn login.profiled_app:app`` with one worker and the same environment as
``broker serve``.  ``BENCH_PROFILE_MODE`` selects what is recorded around the broker's own
handling of each request (not gunicorn's parsing and writing):

* ``timing`` — CPU time (``time.process_time``) per request path, no profiler: the exact
  cost of each endpoint, and by difference with the worker's total, gunicorn's share;
* ``cprofile`` — a cProfile of every request, timed with the process's CPU clock (not wall
  time: waiting for Redis or the IdP is not cost): where the CPU goes, inflated by the
  profiler, so read it as shares of the ``timing`` figure.

Two paths outside the broker drive it:

* ``POST /__bench__/profile/reset`` — forget what was recorded (after the warm-up);
* ``POST /__bench__/profile/dump`` — write it to ``$BENCH_PROFILE_OUT`` (pstats, or JSON for
  ``timing``).
"""

from __future__ import annotations

import cProfile
import json
import os
import time

from broker.app import create_app
from broker.cli import configure_logging
from broker.settings import Settings

_settings = Settings.from_env()
configure_logging(_settings.log_level)
_broker = create_app(_settings)
_mode = os.environ.get("BENCH_PROFILE_MODE", "cprofile")
_profile = cProfile.Profile(time.process_time)
_timing: dict[str, list[float]] = {}


def app(environ, start_response):
    global _profile, _timing
    path = environ.get("PATH_INFO", "")
    if path.startswith("/__bench__/profile/"):
        if path.endswith("/reset"):
            _profile, _timing = cProfile.Profile(time.process_time), {}
        elif path.endswith("/dump"):
            if _mode == "timing":
                with open(os.environ["BENCH_PROFILE_OUT"], "w") as out:
                    json.dump(_timing, out)
            else:
                _profile.dump_stats(os.environ["BENCH_PROFILE_OUT"])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    if _mode == "timing":
        start = time.process_time()
        try:
            return list(_broker(environ, start_response))
        finally:
            entry = _timing.setdefault(path, [0, 0.0])
            entry[0] += 1
            entry[1] += time.process_time() - start
    _profile.enable()
    try:
        return list(_broker(environ, start_response))
    finally:
        _profile.disable()
