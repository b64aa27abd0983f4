"""Redis goes away while the broker runs: a person gets a clear 503 page with a correlation id,
a machine client gets JSON, never a 500 or a stack trace; /readyz tells the load balancer,
/healthz still answers; and logins work again when Redis is back."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from urllib.parse import quote

import pytest
import redis
import requests
from agent import Person

from broker.demo.servers import free_port, serve_in_thread
from broker.store import StoreError
from broker.store.redis import RedisStore

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


def _redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        try:
            if RedisStore.from_url(f"redis://127.0.0.1:{port}/0").ping():
                return process
        except (StoreError, redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError("private redis-server did not start")


@pytest.fixture
def outage(stack):
    """A broker instance with its own Redis, which the test stops and starts again."""
    from broker.app import create_app

    redis_port = free_port()
    redis_process = _redis(redis_port)
    store = RedisStore.from_url(f"redis://127.0.0.1:{redis_port}/0")
    app = create_app(stack.settings(), store=store)
    port = free_port()
    handle = serve_in_thread(app, "127.0.0.1", port)
    state = {"url": f"http://localhost:{port}", "redis": redis_process, "redis_port": redis_port}
    yield state
    handle.shutdown()
    app.close()
    state["redis"].terminate()
    state["redis"].wait(timeout=10)


def _authorize(url: str, service_url: str) -> str:
    return (f"{url}/authorize?response_type=code&client_id=demo-service-a&redirect_uri="
            f"{quote(service_url + '/callback', safe='')}&scope=openid&state=s&nonce=n"
            "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")


def test_redis_outage_gives_clear_answers_and_recovers(stack, outage, caplog):
    caplog.set_level(logging.INFO)
    url = outage["url"]
    outage["redis"].terminate()
    outage["redis"].wait(timeout=10)

    # A person whose browser has a broker session: the broker must ask Redis whether it is alive.
    person = Person(language="sv")
    person.http.headers["Cookie"] = "digione_sso=a-session-token"
    page = person.get(_authorize(url, stack.service_urls[0]))
    assert page.status_code == 503
    assert "Traceback" not in page.text
    cid = re.search(r'id="correlation-id">([0-9a-f]+)<', page.text).group(1)
    assert any(cid in r.getMessage() for r in caplog.records)

    # A machine client at the token endpoint gets JSON.
    token = requests.post(f"{url}/token", data={"grant_type": "authorization_code", "code": "x",
                                                "redirect_uri": "https://x/cb"},
                          auth=("demo-service-a", stack._secret("demo-service-a")),
                          headers={"Accept": "application/json"}, timeout=5)
    assert token.status_code == 503, token.text
    assert token.json()["error"] == "temporarily_unavailable" and token.json()["correlation_id"]

    ready = requests.get(f"{url}/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["status"] == "store unavailable"
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200

    outage["redis"] = _redis(outage["redis_port"])   # Redis is back (empty, as after a failover)
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
