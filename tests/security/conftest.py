"""One demo stack for the package (in-memory store), plus a hostile OP tenant; a Redis pair on demand.

Everything is real and on sockets: the broker, the demo city IdPs, a hostile
OpenID Provider (its own tenant, from a temporary tenants folder that also holds
the seven shipped cities) and, for the replay tests, two broker instances sharing
one Redis.  Tests alter real protocol messages; nothing inside the broker is mocked.
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from pathlib import Path

import pytest
import requests

from broker.demo.servers import free_port, serve_in_thread
from broker.demo.stack import DemoStack, Ports
from broker.settings import ROOT

from . import hostile_op
from .flows import REDIRECT, RelyingParty
from .saml_forge import CityIdp

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _ports() -> Ports:
    return Ports(*(free_port() for _ in range(5)))


def _tenants_dir(root: Path, extra: dict[str, str]) -> Path:
    directory = root / "tenants"
    directory.mkdir()
    for path in sorted((ROOT / "tenants").glob("*.yaml")):
        shutil.copy(path, directory / path.name)
    for name, text in extra.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory


@pytest.fixture(scope="package")
def hostile():
    """The hostile OP, serving before the broker starts (the broker reads its discovery at build)."""
    op = hostile_op.HostileOp(client_secret=secrets.token_urlsafe(24))
    port = free_port()
    op.base_url = f"http://localhost:{port}"
    handle = serve_in_thread(op.app(), "127.0.0.1", port)
    yield op
    handle.shutdown()


@pytest.fixture(scope="package")
def stack(tmp_path_factory, hostile):
    """Broker (in-memory store), demo IdPs and services, and the hostile tenant.  One SAML response
    path (saml_response.process_response, ADR 0009), so one stack."""
    root = tmp_path_factory.mktemp("security")
    tenants = _tenants_dir(root, {hostile_op.TENANT: hostile_op.tenant_yaml(hostile.issuer)})
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=_ports(),
                     environ={"BROKER_TENANTS_DIR": str(tenants), "TENANT_SECRET_HOSTILE_OP": hostile.client_secret})
    demo.start()
    assert f"{hostile_op.TENANT}/{hostile_op.IDP}" in demo.app.registry.tenants.idps
    yield demo
    demo.stop()


def register_rp(stack: DemoStack, client_id: str = "security-rp") -> RelyingParty:
    client, secret, _ = stack.app.registry_service.register_client({
        "client_id": client_id, "redirect_uris": [REDIRECT],
        "policy": {"scopes": ["openid", "profile", "roles", "schools"], "profile": "digione"}}, by="test")
    stack.app.rebuild()
    return RelyingParty(stack.broker_url, client.client_id, secret)


@pytest.fixture(scope="package")
def rp(stack) -> RelyingParty:
    return register_rp(stack)


@pytest.fixture(scope="package")
def city_idps(stack):
    """``city -> CityIdp``, each holding the city's real signing key; built on first use."""
    sp_metadata = requests.get(f"{stack.broker_url}/saml2/sp/metadata", timeout=5).text
    cache: dict[str, CityIdp] = {}

    def get(city: str) -> CityIdp:
        if city not in cache:
            cache[city] = CityIdp(stack, city, sp_metadata)
        return cache[city]

    get.sp_metadata = sp_metadata
    return get


@pytest.fixture(scope="package")
def attacker_keys(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("attacker-keys")


# -- two broker instances on one Redis ---------------------------------------------------------


def _redis_store(prefix: str):
    from broker.store.redis import RedisStore

    store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    if not store.ping():
        pytest.skip(f"no Redis at {REDIS_URL}")
    return store


@pytest.fixture(scope="package")
def redis_pair(tmp_path_factory):
    """A demo stack whose broker keeps its state in Redis, and a second broker instance on the same
    Redis, settings and keys (as behind a load balancer: same base URL, another port)."""
    from broker.app import create_app

    prefix = f"digione-sectest-{uuid.uuid4().hex[:12]}:"
    root = tmp_path_factory.mktemp("security-redis")
    first = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=_ports(),
                      store=_redis_store(prefix), environ={})
    first.start()
    rp = register_rp(first)
    second_app = create_app(first.settings(), store=_redis_store(prefix))
    port = free_port()
    second = serve_in_thread(second_app, "127.0.0.1", port)
    sp_metadata = requests.get(f"{first.broker_url}/saml2/sp/metadata", timeout=5).text
    yield {"stack": first, "rp": rp, "second_url": f"http://localhost:{port}", "second_app": second_app,
           "turku": CityIdp(first, "turku", sp_metadata), "espoo": CityIdp(first, "espoo", sp_metadata)}
    second.shutdown()
    first.stop()
    client = first.store.client
    keys = list(client.scan_iter(match=prefix + "*", count=500))
    if keys:
        client.delete(*keys)
