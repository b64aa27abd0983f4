"""Fixtures for the web tests: a real ``broker serve`` (uWSGI, two workers, Redis) and
threaded WSGI servers with the guard around small applications."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from web_serve import REDIS_URL, cleanup_redis, start_broker

from broker.demo.servers import serve_in_thread


def pytest_collection_modifyitems(config, items):
    """Tests at the real broker need Redis (two workers share state): mark them."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents and "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """``broker serve`` under uWSGI with two workers and the access log on."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    root = tmp_path_factory.mktemp("web-broker")
    running = start_broker(root, workers=2)
    try:
        yield running
    finally:
        running.stop()
        cleanup_redis(running.prefix)


@pytest.fixture
def serve():
    """``serve(app)`` -> base URL of ``app`` on a threaded server; all stopped after the test."""
    handles = []

    def _serve(app):
        handle = serve_in_thread(app, "127.0.0.1", 0)
        handles.append(handle)
        return handle.url

    yield _serve
    for handle in handles:
        handle.shutdown()


@pytest.fixture
def json_log():
    """The root logger writing JSON lines into a buffer (what :func:`broker.logs.configure_logging` sets up)."""
    import io

    from broker import logs

    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    handler = logs.configure_logging("INFO", stream=buffer)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        for old in saved_handlers:
            root.addHandler(old)
        root.setLevel(saved_level)
        logging.captureWarnings(False)
