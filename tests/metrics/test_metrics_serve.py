"""Metrics of a real `broker serve --workers 2` (uWSGI, multiprocess mode) after real logins.

Logins through the demo city's SAML IdP and its Entra ID (OIDC), each to code, token and
userinfo, move the counters and histograms by exactly what they did, whichever worker served
each request and whichever worker answers the scrape.  A passive request without a session, an
IdP's error answer and refused token requests are counted as failures with their reasons.
Bogus client ids, IdP hints, tenants and login hints never become label values.  /metrics answers
on the metrics port only: the public port says 404 whatever the Host header claims.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests
from agent import Person
from authlib.integrations.requests_client import OAuth2Session
from scrape import label_values, parse, scrape, value

from broker.app import open_registry
from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CLIENT = "metrics-rp"
REDIRECT = "https://metrics.example.org/cb"
WORKERS = 2
_READY = "WSGI app 0 (mountpoint='') ready"

pytestmark = pytest.mark.redis


class Served:
    def __init__(self, stack: DemoStack, url: str, port: int, metrics_port: int, secret: str, multiproc: Path):
        self.stack, self.url, self.port, self.metrics_port = stack, url, port, metrics_port
        self.secret, self.multiproc = secret, multiproc

    def scrape(self):
        return scrape(self.metrics_port)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    ports = Ports(*(free_port() for _ in range(5)))
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=ports, environ={})
    stack.prepare()
    _, secret, _ = open_registry(stack.settings()).register_client(
        {"client_id": CLIENT, "redirect_uris": [REDIRECT], "policy": {"scopes": ["openid", "roles"]}}, by="test")
    stack.start_idps()
    multiproc = root / "prometheus"
    multiproc.mkdir()
    (multiproc / "counter_1.db").write_bytes(b"stale: from an earlier run")   # serve empties the directory
    prefix = f"test-metrics:{secrets.token_hex(6)}:"
    metrics_port = free_port()
    env = {**os.environ, **stack.env(), "BROKER_REDIS_URL": REDIS_URL, "BROKER_REDIS_PREFIX": prefix,
           "BROKER_SECRET": secrets.token_urlsafe(32), "BROKER_LOG_LEVEL": "INFO",
           "BROKER_METRICS_PORT": str(metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    log = root / "broker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--workers", str(WORKERS),
                                    "--bind", f"127.0.0.1:{ports.broker}"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait_ready(process, f"http://127.0.0.1:{ports.broker}", log)
        yield Served(stack, stack.broker_url, ports.broker, metrics_port, secret, multiproc)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        stack.stop()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)


def _wait_ready(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"broker serve exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200 and \
                    log.read_text(errors="replace").count(_READY) >= WORKERS:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"broker serve not ready:\n{log.read_text(errors='replace')[-3000:]}")


def _oauth(served: Served) -> tuple[OAuth2Session, dict]:
    meta = requests.get(f"{served.url}/.well-known/openid-configuration", timeout=5).json()
    return OAuth2Session(CLIENT, served.secret, scope="openid roles", redirect_uri=REDIRECT,
                         code_challenge_method="S256"), meta


def _login(served: Served, hint: str, username: str) -> None:
    """A whole login through ``hint``'s IdP: authorize, the IdP, its answer, token, userinfo."""
    session, meta = _oauth(served)
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce="n",
                                              idp_hint=hint)
    person = Person()
    callback = Person.callback(person.sign_in(person.get(url), username))
    token = session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    info = requests.get(meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['access_token']}"},
                        timeout=5)
    assert info.status_code == 200 and info.json()["roles"]


def _delta(before, after, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def _steps(samples) -> dict[str, float]:
    return {step: value(samples, "digione_login_step_duration_seconds_count", step=step)
            for step in ("authorize", "upstream", "acs", "callback", "token", "userinfo")}


@pytest.mark.parametrize("hint,username,answer_step", [
    ("espoo/koulu", "teacher.espoo", "acs"),        # SAML upstream
    ("espoo/entra", "pupil.espoo", "callback"),     # OIDC upstream (the demo Entra ID)
])
def test_a_real_login_moves_each_counter_by_one(served, hint, username, answer_step):
    before = served.scrape()
    _login(served, hint, username)
    after = served.scrape()
    tenant, idp = hint.split("/")
    assert _delta(before, after, "digione_logins_started_total", service=CLIENT, protocol="oidc") == 1
    assert _delta(before, after, "digione_upstream_requests_total", tenant=tenant, idp=idp) == 1
    assert _delta(before, after, "digione_logins_completed_total", tenant=tenant, idp=idp, service=CLIENT,
                  sso="false") == 1
    assert _delta(before, after, "digione_logins_failed_total") == 0
    assert _delta(before, after, "digione_token_grants_total", grant_type="authorization_code",
                  outcome="granted") == 1
    steps_before, steps_after = _steps(before), _steps(after)
    moved = {step for step in steps_after if steps_after[step] != steps_before[step]}
    assert moved == {"authorize", "upstream", answer_step, "token", "userinfo"}
    assert all(steps_after[step] - steps_before[step] == 1 for step in moved)
    # The histogram's buckets are cumulative and end in +Inf = _count.
    inf = value(after, "digione_login_step_duration_seconds_bucket", step=answer_step, le="+Inf")
    assert inf == steps_after[answer_step]


def test_every_worker_counts_into_one_total(served):
    """Whichever worker answers a scrape, it reports every worker's counts (multiprocess files)."""
    before = value(served.scrape(), "digione_logins_completed_total")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:   # concurrent: both workers take requests
        list(pool.map(lambda args: _login(served, *args), [("espoo/koulu", "teacher.espoo"),
                                                           ("espoo/entra", "pupil.espoo")] * 3))
    totals = {value(served.scrape(), "digione_logins_completed_total") for _ in range(8)}
    assert totals == {before + 6}
    assert not (served.multiproc / "counter_1.db").exists(), "serve empties the directory at start"
    per_process = _completed_per_process(served.multiproc)
    assert sum(per_process.values()) == before + 6
    print(f"logins completed per process: {sorted(per_process.values())}")


def _completed_per_process(path: Path) -> dict[str, float]:
    """What each process's counter file holds of digione_logins_completed_total."""
    import json

    from prometheus_client.mmap_dict import MmapedDict

    counts: dict[str, float] = {}
    for file in path.glob("counter_*.db"):
        pid = file.stem.rsplit("_", 1)[1]
        for key, count, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(file)):
            if json.loads(key)[1] == "digione_logins_completed_total":
                counts[pid] = counts.get(pid, 0.0) + count
    return counts


def test_failures_are_counted_with_their_reasons(served):
    session, meta = _oauth(served)
    before = served.scrape()
    # A passive request without a broker session: login_required, back to the service.
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], nonce="n", prompt="none",
                                              code_verifier=secrets.token_urlsafe(48))
    assert "error=login_required" in Person().get(url).headers["Location"]
    # The city's Entra ID answers with an error (what its redirect carries): idp_error, an upstream error.
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], nonce="n", idp_hint="espoo/entra",
                                              code_verifier=secrets.token_urlsafe(48))
    person = Person(stop_at=("https://", served.stack.entra_url))
    upstream = person.get(url)
    location = urlsplit(upstream.headers["Location"])
    state = parse_qs(location.query)["state"][0]
    redirect_uri = parse_qs(location.query)["redirect_uri"][0]
    refused = person.get(f"{redirect_uri}?error=server_error&state={state}")
    assert refused.status_code == 502
    # Token requests the endpoint refuses.
    bad_code = requests.post(meta["token_endpoint"], data={"grant_type": "authorization_code", "code": "nope",
                                                           "redirect_uri": REDIRECT, "code_verifier": "x" * 43},
                             auth=(CLIENT, served.secret), timeout=5)
    assert bad_code.status_code == 400
    odd_grant = requests.post(meta["token_endpoint"], data={"grant_type": "urn:evil:" + secrets.token_hex(4)},
                              auth=(CLIENT, served.secret), timeout=5)
    assert odd_grant.status_code == 400
    after = served.scrape()
    assert _delta(before, after, "digione_logins_failed_total", tenant="none", idp="none", service=CLIENT,
                  reason="login_required") == 1
    assert _delta(before, after, "digione_logins_failed_total", tenant="espoo", idp="entra", service=CLIENT,
                  reason="idp_error") == 1
    assert _delta(before, after, "digione_upstream_errors_total", tenant="espoo", idp="entra", kind="error") == 1
    assert _delta(before, after, "digione_token_grants_total", grant_type="authorization_code",
                  outcome="invalid_grant") == 1
    assert _delta(before, after, "digione_token_grants_total", grant_type="other",
                  outcome="unsupported_grant_type") == 1


def test_request_input_never_becomes_a_label_value(served):
    marker = "zz" + secrets.token_hex(6)
    session, meta = _oauth(served)
    authorize = meta["authorization_endpoint"]
    # An unknown client: refused before any login begins.
    assert requests.get(f"{authorize}?response_type=code&client_id={marker}&redirect_uri={REDIRECT}&scope=openid"
                        "&state=s&nonce=n", timeout=5, allow_redirects=False).status_code == 400
    # A known client naming an IdP, a tenant, a school and a login domain that do not exist.
    for extra in ({"idp_hint": f"{marker}/{marker}"}, {"idp_hint": f"school:{marker}"},
                  {"login_hint": f"someone@{marker}.example"}, {"idp_hint": marker}):
        url, _ = session.create_authorization_url(authorize, nonce="n", code_verifier=secrets.token_urlsafe(48),
                                                  **extra)
        assert Person().get(url).status_code < 500
    Person().get(f"{served.url}/disco?tenant={marker}&school={marker}&q={marker}")
    # A SAML ACS post with a made-up RelayState and a callback with a made-up state.
    requests.post(f"{served.url}/saml2/acs/post", data={"SAMLResponse": "PHg+", "RelayState": marker}, timeout=5)
    requests.get(f"{served.url}/oidc/espoo/entra/callback?state={marker}&code={marker}", timeout=5)
    text = requests.get(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10).text
    assert marker not in text
    samples = parse(text)
    tenants = {t.id for t in _tenants(served)}
    assert label_values(samples, "tenant") <= tenants | {"none", "unknown", "broker"}
    assert label_values(samples, "service") <= {CLIENT, "none", "unknown"} | _services(served)
    assert label_values(samples, "reason") <= _reasons()


def _tenants(served: Served):
    from broker.app import open_registry
    from broker.assemble import registry_of

    state = open_registry(served.stack.settings()).versions.state()
    return list(registry_of(served.stack.settings(), state.documents).tenants.by_id.values())


def _services(served: Served) -> set[str]:
    from broker.assemble import registry_of

    state = open_registry(served.stack.settings()).versions.state()
    parties = registry_of(served.stack.settings(), state.documents).parties
    return set(parties.clients) | {f"sp/{name}" for name in parties.sps}


def _reasons() -> set[str]:
    from broker.metrics.families import OTHER, REASONS

    return set(REASONS) | {OTHER}


def test_registry_gauges(served):
    samples = served.scrape()
    assert value(samples, "digione_registry_version") >= 1
    days = {(labels["tenant"], labels["idp"], labels["certificate"]): v
            for labels, v in samples["digione_certificate_expiry_days"]}
    assert days[("broker", "broker", "saml_sp")] > 30 and days[("broker", "broker", "saml_idp")] > 30
    assert any(tenant == "espoo" and idp == "koulu" for tenant, idp, _ in days), days


def test_metrics_are_on_the_metrics_port_only(served):
    public = requests.get(f"{served.url}/metrics", timeout=5)
    assert public.status_code == 404 and "digione_" not in public.text
    forged = requests.get(f"http://127.0.0.1:{served.port}/metrics", timeout=5,
                          headers={"Host": f"127.0.0.1:{served.metrics_port}"})
    assert forged.status_code == 404 and "digione_" not in forged.text
    metrics = f"http://127.0.0.1:{served.metrics_port}"
    assert requests.get(f"{metrics}/authorize", timeout=5).status_code == 404
    assert requests.get(f"{metrics}/readyz", timeout=5).status_code == 404
    assert requests.post(f"{metrics}/metrics", timeout=5).status_code == 405

