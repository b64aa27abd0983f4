"""High-availability Redis set-ups the tests own (tests/ha/ha_servers.py) and a broker on each.

The demo city IdPs and one refresh-token client are shared by the module; every set of
Redis servers is the test's own, started on free loopback ports and always killed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ha_broker import CLIENT_ID  # noqa: E402
from ha_logins import REDIRECT  # noqa: E402
from ha_servers import MISSING, ClusterSet, SentinelSet  # noqa: E402

from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports


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


def _running(servers):
    """``servers`` started for one test, and always stopped after it."""
    if MISSING:
        pytest.skip(MISSING)
    try:
        yield servers.start_all()
    finally:
        servers.stop()


@pytest.fixture
def sentinel_set(tmp_path):
    yield from _running(SentinelSet(tmp_path / "sentinel"))


@pytest.fixture
def cluster_set(tmp_path):
    yield from _running(ClusterSet(tmp_path / "cluster"))
