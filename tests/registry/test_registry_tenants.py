"""Tenant files: the shipped seven load; every error names the file, the field and what was
expected; `broker check` prints them and exits non-zero; the broker refuses to start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tenant_data import active_registry

from broker.assemble import load_registry
from broker.demo.stack import DemoStack, Ports
from broker.registry.tenants import TenantError
from broker.settings import ROOT

CITIES = {"vantaa": "092", "espoo": "049", "tampere": "837", "turku": "853", "oulu": "564", "lahti": "398",
          "jyvaskyla": "179"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=Ports(), environ={})
    stack.prepare()
    return stack


def _tenants_copy(tmp_path: Path) -> Path:
    target = tmp_path / "tenants"
    shutil.copytree(ROOT / "tenants", target)
    return target


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


def _load(demo: DemoStack, tenants_dir: Path):
    return load_registry(demo.settings(tenants_dir=tenants_dir))


def test_the_seven_cities_load_with_their_municipality_codes(demo):
    registry = load_registry(demo.settings())
    assert {t.id: t.municipality_code for t in registry.tenants} == CITIES
    assert registry.tenants.by_id["vantaa"].names == {"fi": "Vantaa", "sv": "Vanda", "en": "Vantaa"}
    kinds = {idp.key: idp.type for idp in registry.tenants.idps.values()}
    assert kinds["vantaa/koulu"] == "saml" and kinds["vantaa/entra"] == "oidc"
    assert set(registry.rulesets) == set(kinds)


@pytest.mark.parametrize("change,expected", [
    (lambda d: d.update(municipality_code="92"), "tenants/vantaa.yaml: municipality_code: expected a 3-digit"),
    (lambda d: d["names"].pop("sv"), "tenants/vantaa.yaml: names: expected names in fi, sv and en"),
    (lambda d: d["schools"][0].update(code="x"), "tenants/vantaa.yaml: schools[0].code: expected a 5- or 6-digit"),
    (lambda d: d["identity_providers"][1].update(client_secret="hunter2"),
     "tenants/vantaa.yaml: identity_providers[1].client_secret: expected {env: VARIABLE} or {file: PATH}; "
     "a secret is never written in a tenant file"),
    (lambda d: d["identity_providers"][0].update(metadata={"file": "demo/nowhere.xml"}),
     "tenants/vantaa.yaml: identity_providers[0].metadata.file: expected an existing metadata file"),
    (lambda d: d["identity_providers"][0].update(metadata={"url": "http://idp.example/md"}),
     "tenants/vantaa.yaml: identity_providers[0].metadata.url: expected an https URL"),
    (lambda d: d["identity_providers"][1].update(type="cas"),
     "tenants/vantaa.yaml: identity_providers[1].type: expected 'saml' or 'oidc'"),
    (lambda d: d["identity_providers"][0]["mapping"].update(preset="nonesuch"),
     "tenants/vantaa.yaml: identity_providers[0].mapping: "),
    (lambda d: d.update(colour="blue"), "tenants/vantaa.yaml: colour: expected one of the known keys"),
])
def test_each_error_names_file_field_and_expectation(demo, tmp_path, change, expected):
    tenants = _tenants_copy(tmp_path)
    _edit(tenants / "vantaa.yaml", change)
    with pytest.raises(TenantError) as error:
        _load(demo, tenants)
    problems = [p.replace(str(tmp_path) + "/", "") for p in error.value.problems]
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_of_every_file_is_reported_and_nothing_is_half_loaded(demo, tmp_path):
    tenants = _tenants_copy(tmp_path)
    _edit(tenants / "espoo.yaml", lambda d: d.update(municipality_code="x"))
    _edit(tenants / "oulu.yaml", lambda d: d["education_provider"].update(oid="not-an-oid"))
    (tenants / "broken.yaml").write_text("id: [unclosed\n")
    with pytest.raises(TenantError) as error:
        _load(demo, tenants)
    text = "\n".join(error.value.problems)
    assert "tenants/espoo.yaml: municipality_code" in text.replace(str(tmp_path) + "/", "")
    assert "oulu.yaml: education_provider.oid" in text
    assert "broken.yaml: line" in text


def _cli(demo: DemoStack, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**demo.env(), "PATH": "/usr/bin:/bin", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "broker", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_broker_check_passes_and_fails_with_the_same_messages(demo, tmp_path):
    ok = _cli(demo, "check")
    assert ok.returncode == 0, ok.stderr
    assert "7 tenants" in ok.stdout
    tenants = _tenants_copy(tmp_path)
    _edit(tenants / "turku.yaml", lambda d: d.update(municipality_code="8530"))
    bad = _cli(demo, "check", env_extra={"BROKER_TENANTS_DIR": str(tenants)})
    assert bad.returncode == 1
    assert "turku.yaml: municipality_code: expected a 3-digit municipality code" in bad.stderr
    # Files are the GitOps form: importing them as a version is refused with the same message ...
    imported = _cli(demo, "registry", "import", env_extra={"BROKER_TENANTS_DIR": str(tenants)})
    assert imported.returncode == 1 and "nothing was activated" in imported.stderr
    assert "turku.yaml: municipality_code: expected a 3-digit municipality code" in imported.stderr
    # ... and a broker whose empty database would be seeded from them does not start.
    serve = _cli(demo, "serve", env_extra={"BROKER_TENANTS_DIR": str(tenants),
                                           "BROKER_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"})
    assert serve.returncode == 1 and "will not start" in serve.stderr


def test_serve_refuses_several_workers_on_the_in_memory_store(demo):
    result = _cli(demo, "serve", "--workers", "2")
    assert result.returncode == 2
    assert "BROKER_REDIS_URL" in result.stderr


def test_clients_add_prints_credentials_and_persists(demo):
    result = _cli(demo, "clients", "add", "--client-id", "cli-rp", "--redirect-uri", "https://cli.example/cb",
                  "--redirect-uri", "https://cli.example/cb2")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["client_id"] == "cli-rp" and len(out["client_secret"]) >= 32
    registry = active_registry(demo.settings())
    stored = registry.parties.client("cli-rp").to_dict()
    assert out["client_secret"] not in json.dumps(stored), "only the secret's hash is stored"
    assert registry.parties.client("cli-rp").check_secret(out["client_secret"])
    bad = _cli(demo, "clients", "add", "--client-id", "bad", "--redirect-uri", "http://evil.example/cb")
    assert bad.returncode == 1 and "redirect_uris[0]" in bad.stderr


def _sp_metadata(tmp_path, entity_id: str, acs: str):
    from saml2 import BINDING_HTTP_POST
    from saml2.config import SPConfig
    from saml2.metadata import create_metadata_string

    from broker.pki import ensure_keypair

    key, cert = ensure_keypair(tmp_path, "sp", common_name=entity_id)
    config = SPConfig().load({"entityid": entity_id, "key_file": str(key), "cert_file": str(cert),
                              "service": {"sp": {"endpoints": {"assertion_consumer_service": [
                                  (acs, BINDING_HTTP_POST)]}}}})
    metadata = tmp_path / "sp.xml"
    metadata.write_bytes(create_metadata_string(None, config=config))
    return metadata


def test_mapping_explain_cli_on_the_readme_example(demo, tmp_path):
    example = str(ROOT / "docs" / "examples" / "entra-pupil-claims.json")
    metadata = _sp_metadata(tmp_path, "https://explain-sp.example/sp", "https://explain-sp.example/acs")
    assert _cli(demo, "sps", "add", str(metadata), "--name", "explain-sp").returncode == 0
    text = _cli(demo, "mapping", "explain", "--tenant", "vantaa", "--idp", "entra", example)
    assert text.returncode == 0, text.stderr
    assert "role=learner, code=1, school=90921" in text.stdout
    assert "schools: \"99999\" — school code not in tenant vantaa's schools" in text.stdout
    as_json = json.loads(_cli(demo, "mapping", "explain", "--tenant", "vantaa", "--idp", "entra", example,
                              "--json").stdout)
    assert as_json["identity"]["learner_id"] == "1.2.246.562.98.09200000001"
    # every registered service, over the one protocol it uses (issue 11): clients claims, SPs attributes
    services = as_json["services"]
    assert {s["protocol"] for s in services} == {"oidc", "saml"}, services
    for service in services:
        shown = {"oidc_claims", "access_token_claims", "saml_attributes"} & set(service)
        assert shown == ({"oidc_claims", "access_token_claims"} if service["protocol"] == "oidc"
                         else {"saml_attributes"}), service
    for section in text.stdout.split("\nService ")[1:]:
        assert ("SAML attributes" in section) != ("OIDC claims" in section), section
    unknown = _cli(demo, "mapping", "explain", "--tenant", "vantaa", "--idp", "nope", example)
    assert unknown.returncode == 2 and "unknown IdP 'nope' in tenant 'vantaa'" in unknown.stderr


def test_sps_add_registers_a_saml_sp_and_refuses_what_is_not_one(demo, tmp_path):
    metadata = _sp_metadata(tmp_path, "https://cli-sp.example/sp", "https://cli-sp.example/acs")
    result = _cli(demo, "sps", "add", str(metadata), "--name", "cli-sp")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["entity_id"] == "https://cli-sp.example/sp"
    assert active_registry(demo.settings()).parties.sp_for_entity(
        "https://cli-sp.example/sp").policy.profile == "mpassid"
    (tmp_path / "idp.xml").write_text('<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
                                      'entityID="https://x"><md:IDPSSODescriptor/></md:EntityDescriptor>')
    bad = _cli(demo, "sps", "add", str(tmp_path / "idp.xml"))
    assert bad.returncode == 1 and "SPSSODescriptor" in bad.stderr


@pytest.mark.parametrize("server", ["uwsgi", "gunicorn"])
def test_serve_answers_and_its_access_log_never_holds_query_strings(demo, tmp_path, server):
    import time

    import requests

    from broker.demo.servers import free_port

    port, metrics_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    env = {**demo.env(), "PATH": "/usr/bin:/bin", "BROKER_SERVER": server, "BROKER_ACCESS_LOG": "1",
           "BROKER_PORT": str(port), "BROKER_BASE_URL": f"http://localhost:{port}",
           "BROKER_METRICS_PORT": str(metrics_port)}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--bind", f"127.0.0.1:{port}"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        reply = requests.get(f"http://127.0.0.1:{port}/authorize?code=SECRET-CODE-42&client_id=x", timeout=5)
        assert reply.status_code == 400
        # Both servers answer /metrics on the metrics port, and only there (tests/metrics: the details).
        scrape = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scrape.status_code == 200 and "digione_registry_version" in scrape.text
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 404
        time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=15)
    text = log.read_text()
    assert "/authorize" in text, text[-2000:]
    assert "SECRET-CODE-42" not in text
