"""The metrics' parts in one process: bounded labels, store errors against a Redis that is not there,
logout deliveries to real HTTP endpoints, timeouts told from errors, the port router, the
multiprocess folder and the settings."""

from __future__ import annotations

import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import requests
from prometheus_client import REGISTRY

from broker import metrics
from broker.demo.servers import free_port
from broker.errors import IdpError
from broker.metrics.exposition import PortRouter, with_metrics
from broker.metrics.login import LoginMetrics
from broker.metrics.multiprocess import VARIABLE, prepare
from broker.metrics.steps import upstream_answer
from broker.server import metrics_bind
from broker.settings import Settings, SettingsError
from broker.store import MemoryStore, StoreError
from broker.store.redis import RedisStore


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_rate_limited_counts_the_three_kinds_and_nothing_else():
    before = {kind: sample("digione_rate_limited_total", kind=kind) for kind in ("token", "client_auth", "other")}
    metrics.rate_limited("token")
    metrics.rate_limited("client_auth")
    metrics.rate_limited("../../etc/passwd")
    assert sample("digione_rate_limited_total", kind="token") == before["token"] + 1
    assert sample("digione_rate_limited_total", kind="client_auth") == before["client_auth"] + 1
    assert sample("digione_rate_limited_total", kind="other") == before["other"] + 1
    assert sample("digione_rate_limited_total", kind="../../etc/passwd") == 0


def test_a_store_that_does_not_answer_is_counted_by_operation():
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", prefix="test-metrics-down:")
    before = sum(sample("digione_store_errors_total", operation=op) for op in ("connect", "get"))
    with pytest.raises(StoreError):
        store.get("anything")
    store.close()
    assert sum(sample("digione_store_errors_total", operation=op) for op in ("connect", "get")) == before + 1


class _Receiver(BaseHTTPRequestHandler):
    """A service's back-channel logout endpoint: /ok answers 200, /no 400, /busy 503."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        code = {"/ok": 200, "/no": 400}.get(self.path, 503)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_logout_deliveries_are_counted_by_outcome(receiver):
    from broker.sessions.delivery import BackchannelDelivery, Delivery

    delivery = BackchannelDelivery(MemoryStore(), http=requests.Session(), backoff=(60,))
    outcomes = ("delivered", "refused", "retrying")
    before = {o: sample("digione_logout_deliveries_total", outcome=o) for o in outcomes}
    queued = delivery.enqueue([Delivery(client_id="rp", url=f"{receiver}/{path}", logout_token="t")
                               for path in ("ok", "no", "busy")])
    result = delivery.deliver(queued, deadline=time.time() + 10)
    delivery.close()
    assert sorted(result.values()) == sorted(outcomes)
    assert {o: sample("digione_logout_deliveries_total", outcome=o) - before[o] for o in outcomes} == \
        dict.fromkeys(outcomes, 1)


def _silent_timeout() -> BaseException:
    """A real requests.Timeout: a loopback server that accepts and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        requests.get(f"http://127.0.0.1:{listener.getsockname()[1]}/token", timeout=0.2)
    except requests.Timeout as exc:
        return exc
    finally:
        listener.close()
    raise AssertionError("the silent server answered")


def test_an_idp_that_times_out_is_told_from_one_that_fails():
    login_metrics = LoginMetrics({"espoo/entra": object()})
    timeout = _silent_timeout()

    def silent(context):   # as broker.backends.oidc re-raises a requests error
        try:
            raise timeout
        except requests.RequestException as exc:
            raise IdpError(f"token endpoint unreachable: {exc.__class__.__name__}") from None

    def failing(context):
        raise IdpError("IdP returned error server_error")

    def cancelled(context):
        raise IdpError("IdP returned error access_denied", upstream_error="access_denied")

    flow = SimpleNamespace(upstream=SimpleNamespace(idp="espoo/entra"))
    context = SimpleNamespace(flow_if_loaded=flow)
    kinds = ("timeout", "error")
    before = {k: sample("digione_upstream_errors_total", tenant="espoo", idp="entra", kind=k) for k in kinds}
    for handler in (silent, failing, cancelled):
        with pytest.raises(IdpError):
            upstream_answer("callback", login_metrics)(handler)(context)
    after = {k: sample("digione_upstream_errors_total", tenant="espoo", idp="entra", kind=k) for k in kinds}
    assert {k: after[k] - before[k] for k in kinds} == {"timeout": 1, "error": 1}


def test_labels_of_what_the_registry_does_not_know():
    clients = {"known-rp": object()}
    sps = {"https://sp.example/metadata": SimpleNamespace(name="school-sp")}
    parties = SimpleNamespace(client=clients.get, sp_for_entity=sps.get)
    login_metrics = LoginMetrics({"espoo/koulu": object()}, SimpleNamespace(parties=parties))
    assert login_metrics.idp("espoo/koulu") == ("espoo", "koulu")
    assert login_metrics.idp("nowhere/koulu") == ("unknown", "unknown")
    assert login_metrics.idp(None) == ("none", "none")
    assert login_metrics.service("oidc", "known-rp") == "known-rp"
    assert login_metrics.service("oidc", "forged-rp") == "unknown"
    assert login_metrics.service("saml", "https://sp.example/metadata") == "sp/school-sp"
    assert login_metrics.service("saml", "https://forged.example/sp") == "unknown"
    assert LoginMetrics({}).service("oidc", "known-rp") == "unknown"


def _call(app, environ):
    statuses = []
    body = b"".join(app({"REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO(), **environ},
                        lambda status, headers: statuses.append(status)))
    return statuses[0], body


def test_the_port_router_goes_by_the_socket_not_by_headers():
    def broker(environ, start_response):
        start_response("404 Not Found", [])
        return [b"broker"]

    broker_app = SimpleNamespace(seq=3, registry=None, store=None, settings=None)
    router = with_metrics(broker, 9102, broker=broker_app)
    assert isinstance(router, PortRouter)
    assert _call(router, {"PATH_INFO": "/metrics", "SERVER_PORT": "8000", "HTTP_HOST": "x:9102"}) == \
        ("404 Not Found", b"broker")
    status, body = _call(router, {"PATH_INFO": "/metrics", "SERVER_PORT": "9102"})
    assert status == "200 OK" and b"digione_registry_version 3.0" in body
    # gunicorn on a UNIX socket would put the Host header's port in SERVER_PORT: the socket decides.
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        assert _call(router, {"PATH_INFO": "/metrics", "SERVER_PORT": "9102", "gunicorn.socket": listener})[1] == \
            b"broker"
    finally:
        listener.close()
    assert with_metrics(broker, 0) is broker


def test_the_multiprocess_folder_is_emptied_and_the_order_enforced(tmp_path):
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old")
    (folder / "keep.txt").write_text("not ours")
    env = {VARIABLE: str(folder)}
    assert prepare(env) == folder
    assert not (folder / "counter_123.db").exists() and (folder / "keep.txt").exists()
    # prometheus_client is imported in this process without the variable: too late to switch modes.
    with pytest.raises(RuntimeError, match="imported before"):
        prepare({})


def test_metrics_port_settings_and_binds(tmp_path):
    assert Settings.from_env({"BROKER_KEYS_DIR": str(tmp_path)}).metrics_port == 9102
    assert Settings.from_env({"BROKER_KEYS_DIR": str(tmp_path), "BROKER_METRICS_PORT": "0"}).metrics_port == 0
    for bad in ("http", "70000", "-1", "8000"):
        with pytest.raises(SettingsError, match="BROKER_METRICS_PORT"):
            Settings.from_env({"BROKER_KEYS_DIR": str(tmp_path), "BROKER_METRICS_PORT": bad, "BROKER_PORT": "8000"})
    assert metrics_bind("0.0.0.0:8000", 9102) == "0.0.0.0:9102"
    assert metrics_bind("[::1]:8000", 9102) == "[::1]:9102"
    with pytest.raises(ValueError, match="host:port"):
        metrics_bind("unix:/run/broker.sock", 9102)


def test_the_kubernetes_base_scrapes_the_metrics_port_without_credentials():
    import dataclasses
    from pathlib import Path

    import yaml

    base = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "base"
    (container,) = yaml.safe_load((base / "deployment.yaml").read_text())["spec"]["template"]["spec"]["containers"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    config = yaml.safe_load((base / "configmap.yaml").read_text())["data"]
    default = next(f.default for f in dataclasses.fields(Settings) if f.name == "metrics_port")
    assert port == int(config["BROKER_METRICS_PORT"]) == default == 9102
    (endpoint,) = yaml.safe_load((base / "servicemonitor.yaml").read_text())["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert not {"bearerTokenSecret", "authorization", "basicAuth", "oauth2"} & endpoint.keys()


def test_every_code_a_login_ends_with_is_a_reason():
    from broker import errors
    from broker.login.access import NOT_ALLOWED
    from broker.metrics.families import REASONS

    codes = {value.code for value in vars(errors).values()
             if isinstance(value, type) and issubclass(value, errors.BrokerError)}
    # The proxy's own refusals, the access gate's, and what an IdP's "the person did not sign in" passes on.
    codes |= {NOT_ALLOWED, "temporarily_unavailable", "server_error", "access_denied", "login_required",
              "consent_required", "interaction_required"}
    assert codes <= REASONS, sorted(codes - REASONS)
