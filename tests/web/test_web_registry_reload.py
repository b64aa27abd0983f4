"""Registry changes reach running servers: two `broker serve` (uWSGI) instances on one PostgreSQL
database and Redis serve an activation within 5 s and a rollback too; SIGHUP reloads a uWSGI
broker in a virtualenv gracefully; a version a worker cannot build leaves the last good one serving."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import requests
from databases import create_database, drop_database
from web_serve import ROOT, Broker, cleanup_redis, start_broker

REDIRECT = "https://late.example/cb"
#: The issue's bound: every instance serves an activation within this many seconds.
SWITCH_WITHIN = 5.0


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """One fresh PostgreSQL database for the module's brokers (the production database)."""
    url = create_database("registry_reload")
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def brokers(tmp_path_factory, database):
    started: list[Broker] = []
    try:
        for index in range(2):
            root = tmp_path_factory.mktemp(f"reload{index}")
            started.append(start_broker(root, workers=2, access_log=False,
                                        extra_env={"BROKER_DATABASE_URL": database, "BROKER_LOG_LEVEL": "INFO"}))
        yield started
    finally:
        for broker in started:
            broker.stop()
            cleanup_redis(broker.prefix)


def _cli(broker: Broker, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", *args], env=broker.env, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def _answers(broker: Broker, client_id: str) -> set[int]:
    """``/authorize``'s statuses for the client, asked several times (so of every worker, most likely)."""
    url = (f"{broker.url}/authorize?response_type=code&client_id={client_id}&redirect_uri={REDIRECT}"
           "&scope=openid&state=s&nonce=n")
    return {requests.get(url, allow_redirects=False, timeout=5).status_code for _ in range(8)}


def _accepts(broker: Broker, client_id: str) -> bool:
    """Every answer knows the client (a redirect on to discovery)."""
    return _answers(broker, client_id) <= {302, 303}


def _refuses(broker: Broker, client_id: str) -> bool:
    """Every answer refuses it as unknown."""
    return not _answers(broker, client_id) & {302, 303}


def _until(condition, within: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {within} s")


def test_both_instances_serve_an_activation_and_a_rollback_within_5_s(brokers):
    one, two = brokers
    assert _refuses(one, "late-rp") and _refuses(two, "late-rp")
    added = _cli(one, "clients", "add", "--client-id", "late-rp", "--redirect-uri", REDIRECT, "-m", "a late service")
    assert added.returncode == 0, added.stderr
    took = _until(lambda: _accepts(one, "late-rp") and _accepts(two, "late-rp"), SWITCH_WITHIN)
    print(f"activation served by both instances after {took:.2f} s")
    back = _cli(two, "registry", "rollback", "-m", "not yet")
    assert back.returncode == 0, back.stderr
    took = _until(lambda: _refuses(one, "late-rp") and _refuses(two, "late-rp"), SWITCH_WITHIN)
    print(f"rollback served by both instances after {took:.2f} s")
    versions = _cli(one, "registry", "versions", "--json")
    assert "a late service" in versions.stdout and "not yet" in versions.stdout


def test_sighup_reloads_a_uwsgi_broker_in_a_virtualenv_and_it_keeps_serving(brokers):
    one = brokers[0]
    offset = one.log_size()
    one.process.send_signal(signal.SIGHUP)
    text = one.wait_for_log("WSGI app 0 (mountpoint='') ready", offset, timeout=30)
    assert text.count("WSGI app 0 (mountpoint='') ready") >= 1, text[-3000:]
    assert one.process.poll() is None, "the master survived the reload"
    _until(lambda: requests.get(f"{one.url}/readyz", timeout=2).status_code == 200, 30)
    assert "No module named" not in one.log_since(offset)
