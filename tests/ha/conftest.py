"""High-availability Redis set-ups the tests own (tests/ha/servers.py) and a broker on each.

The demo city IdPs and one refresh-token client are shared by the module; every set of
Redis servers is the test's own, started on free loopback ports and always killed at the end.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logins import REDIRECT, Service  # noqa: E402
from servers import MISSING, ClusterSet, SentinelSet  # noqa: E402

from broker.demo.servers import free_port, serve_in_thread
from broker.demo.stack import DemoStack, Ports

CLIENT_ID = "ha-rp"


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory):
    """The demo IdPs on free ports and a registry holding ``ha-rp`` (code and refresh-token grants)."""
    if MISSING:
        pytest.skip(MISSING)
    root = tmp_path_factory.mktemp("ha")
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata",
                      ports=Ports(*(free_port() for _ in range(5))), environ={})
    stack.prepare()
    from broker.app import open_registry

    _, secret, _ = open_registry(stack.settings()).register_client(
        {"client_id": CLIENT_ID, "redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "refresh_token"],
         "policy": {"scopes": ["openid", "roles"]}}, by="test")
    stack.start_idps()
    stack.ha_secret = secret
    yield stack
    stack.stop()


@pytest.fixture
def sentinel_set(tmp_path):
    servers = SentinelSet(tmp_path / "sentinel")
    try:
        yield servers.start_all()
    finally:
        servers.stop()


@pytest.fixture
def cluster_set(tmp_path):
    servers = ClusterSet(tmp_path / "cluster")
    try:
        yield servers.start_all()
    finally:
        servers.stop()


@contextlib.contextmanager
def broker_on(stack, store):
    """The broker on ``store``, served in this process at the stack's broker URL."""
    from broker.app import create_app

    app = create_app(stack.settings(), store=store)
    handle = serve_in_thread(app, "127.0.0.1", stack.ports.broker)
    try:
        yield app, Service(stack.broker_url, CLIENT_ID, stack.ha_secret)
    finally:
        handle.shutdown()
        app.close()


def prefix() -> str:
    return f"test-ha:{secrets.token_hex(6)}:"
