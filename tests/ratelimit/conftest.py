"""Broker instances with small rate limits on the real Redis, served over real HTTP.

``brokers(limits, count=2)`` starts ``count`` broker applications (each its own
:class:`RedisStore` client, all on one fresh key prefix: instances sharing the store) on
loopback ports, and gives them one settable clock, so that windows and ``Retry-After`` are
exact without sleeping.  The demo's registry (its clients, the demo cities) is prepared once
per module; no IdP needs to run: every test stops at the broker.
"""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest
import redis

from broker.app import create_app
from broker.demo.servers import serve_in_thread
from broker.demo.stack import DemoStack, Ports
from broker.ratelimit import RateLimits
from broker.ratelimit.config import parse_networks
from broker.store.redis import RedisStore

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: The start of a window of every length the tests use (60, 300 s): the clock starts here.
EPOCH = 1_800_000_000 - 1_800_000_000 % 600


class Clock:
    """A clock the tests move; every instance's limiter reads the same one."""

    def __init__(self, now: float):
        self.now = now
        #: Where the clock started: the start of a window of every length the tests use.
        self.epoch = EPOCH

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Broker:
    url: str
    app: object


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from broker.demo.servers import free_port

    root = tmp_path_factory.mktemp("ratelimit")
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata",
                      ports=Ports(*(free_port() for _ in range(5))), environ={})
    stack.prepare()
    return stack


@pytest.fixture
def clock():
    return Clock(EPOCH + 13.25)


@pytest.fixture
def brokers(demo, clock):
    """``brokers(limits, count=1, trusted="")``: that many instances sharing one store prefix."""
    prefix = f"test-ratelimit:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({exc.__class__.__name__})")
    started: list[tuple[object, object]] = []

    def start(limits: RateLimits, *, count: int = 1, trusted: str = "") -> list[Broker]:
        out = []
        for _ in range(count):
            settings = demo.settings(rate_limits=limits, trusted_proxies=parse_networks(trusted, "trusted"))
            app = create_app(settings, store=RedisStore.from_url(REDIS_URL, prefix=prefix), watch=False)
            app.proxy.limiter.clock = clock
            handle = serve_in_thread(app, "127.0.0.1", 0)
            started.append((handle, app))
            out.append(Broker(handle.url, app))
        return out

    start.prefix = prefix
    start.redis = client
    yield start
    for handle, app in started:
        handle.shutdown()
        app.close()
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
