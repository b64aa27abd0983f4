"""``broker sps add --encrypt-assertions / --release-authenticating-authority``: the flags reach the
active registry, and asking for encryption with metadata that has no encryption key is refused with
the field and the reason, the active version unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from saml2 import BINDING_HTTP_POST
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string

from broker.app import open_registry
from broker.assemble import registry_of
from broker.demo.stack import DemoStack, Ports
from broker.pki import ensure_keypair
from broker.settings import ROOT


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("sps-cli")
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=Ports(), environ={})
    stack.prepare()
    return stack


def _cli(demo: DemoStack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", *args], env={**demo.env(), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def _metadata(tmp_path, name: str, *, encryption: bool):
    entity = f"https://{name}.example/sp"
    key, cert = ensure_keypair(tmp_path / name, "sp", common_name=entity)
    config = SPConfig().load({
        "entityid": entity, "key_file": str(key), "cert_file": str(cert),
        **({"encryption_keypairs": [{"key_file": str(key), "cert_file": str(cert)}]} if encryption else {}),
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [(f"{entity}/acs", BINDING_HTTP_POST)]}}}})
    path = tmp_path / f"{name}.xml"
    path.write_bytes(create_metadata_string(None, config=config))
    return entity, path


def _active(demo: DemoStack):
    return registry_of(demo.settings(), open_registry(demo.settings()).versions.state().documents)


def test_the_flags_reach_the_registry(demo, tmp_path):
    entity, path = _metadata(tmp_path, "cli-sealed", encryption=True)
    result = _cli(demo, "sps", "add", str(path), "--name", "cli-sealed", "--encrypt-assertions",
                  "--release-authenticating-authority")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["entity_id"] == entity
    sp = _active(demo).parties.sp_for_entity(entity)
    assert sp.encrypt_assertions and sp.release_authenticating_authority and sp.encryption is not None


def test_encryption_without_a_key_is_refused_with_the_reason(demo, tmp_path):
    entity, path = _metadata(tmp_path, "cli-keyless", encryption=False)
    result = _cli(demo, "sps", "add", str(path), "--name", "cli-keyless", "--encrypt-assertions")
    assert result.returncode == 1
    assert "policy.encrypt_assertions" in result.stderr and "publishes no encryption key" in result.stderr
    assert "Traceback" not in result.stderr
    assert _active(demo).parties.sp_for_entity(entity) is None
