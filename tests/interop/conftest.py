"""The demo stack for the interop tests: real relying-party software against a running broker.

The broker, the demo city IdPs and the demo services run on free loopback ports, one stack
per test module (as in tests/e2e); ``tests/e2e/agent.py``'s :class:`Person` plays the browser.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports

# agent.py (the person's browser) lives with the end-to-end tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Broker (in-memory store), demo IdPs and demo services, on free ports."""
    root = tmp_path_factory.mktemp("demo")
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata",
                     ports=Ports(*(free_port() for _ in range(5))), environ={})
    demo.start()
    yield demo
    demo.stop()
