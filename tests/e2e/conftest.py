"""The demo stack on free ports, for end-to-end tests with real peers."""

from __future__ import annotations

import os

import pytest

from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _ports() -> Ports:
    return Ports(*(free_port() for _ in range(5)))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Broker (in-memory store), demo IdPs and demo services, on free ports."""
    root = tmp_path_factory.mktemp("demo")
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=_ports(), environ={})
    demo.start()
    yield demo
    demo.stop()
