"""RFC 7591 dynamic client registration and RFC 7592 client management against a running broker:
off by default; on, only an initial access token for one client id registers it, the release
policy waits for a platform admin, the registered client signs a pupil in (Authlib), its
registration access token reads, replaces and removes it and nothing else; forged, replayed and
malformed requests are refused with RFC 7591 errors."""

from __future__ import annotations

import datetime
import secrets

import pytest
import requests
from agent import Person
from authlib.integrations.requests_client import OAuth2Session

from broker.admin.operations import AdminOperations
from broker.admin.principals import CITY_ADMIN, PLATFORM_ADMIN, SERVICE_OWNER, Grant, Principal
from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports

REDIRECT = "https://dcr.example/cb"
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    root = tmp_path_factory.mktemp("dcr")
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata",
                     ports=Ports(*(free_port() for _ in range(5))), environ={})
    demo.prepare()
    demo.start_idps()
    demo.start_broker(dynamic_registration=True)
    yield demo
    demo.stop()


def _token(stack, *grants: Grant) -> str:
    token, _ = AdminOperations(stack.app).tokens.create(grants, lifetime=DAY, by="test")
    return token


def _register(stack, token: str | None, **metadata):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{stack.broker_url}/register", json={"redirect_uris": [REDIRECT], **metadata},
                         headers=headers, timeout=10)


def test_off_by_default(stack):
    response = requests.post(f"{stack.broker_url}/register", json={"redirect_uris": [REDIRECT]}, timeout=5)
    assert response.status_code == 404
    assert "registration_endpoint" not in requests.get(
        f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()


def test_registration_needs_an_initial_access_token_for_exactly_one_client(broker):
    meta = requests.get(f"{broker.broker_url}/.well-known/openid-configuration", timeout=5).json()
    assert meta["registration_endpoint"] == f"{broker.broker_url}/register"
    missing = _register(broker, None)
    assert missing.status_code == 401 and missing.json()["error"] == "invalid_token"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert _register(broker, "dgadm_" + "x" * 43).status_code == 401           # forged
    assert _register(broker, _token(broker, Grant(CITY_ADMIN, tenant="vantaa"))).status_code == 403
    two = _token(broker, Grant(SERVICE_OWNER, service="a-app"), Grant(SERVICE_OWNER, service="b-app"))
    assert _register(broker, two).status_code == 403
    chosen = _register(broker, _token(broker, Grant(SERVICE_OWNER, service="c-app")), client_id="other")
    assert chosen.status_code == 400 and chosen.json()["error"] == "invalid_client_metadata"
    assert ("client", "other") not in broker.app.registry_service.versions.state().documents


@pytest.mark.parametrize("metadata,error", [
    ({"redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://dcr.example/cb#fragment"]}, "invalid_redirect_uri"),
    ({"response_types": ["token"]}, "invalid_client_metadata"),
    ({"grant_types": ["client_credentials"]}, "invalid_client_metadata"),
    ({"scope": "roles"}, "invalid_client_metadata"),
    ({"sector_identifier_uri": "https://x.example/s.json"}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "tls_client_auth"}, "invalid_client_metadata"),
])
def test_malformed_metadata_is_refused_and_registers_nothing(broker, metadata, error):
    client_id = f"bad-{secrets.token_hex(3)}"
    response = _register(broker, _token(broker, Grant(SERVICE_OWNER, service=client_id)), **metadata)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error and response.json()["correlation_id"]
    assert ("client", client_id) not in broker.app.registry_service.versions.state().documents


def test_register_approve_sign_in_manage_and_remove(broker):
    initial = _token(broker, Grant(SERVICE_OWNER, service="dcr-app"))
    created = _register(broker, initial, client_name="Oppimateriaali", scope="openid roles",
                        token_endpoint_auth_method="client_secret_basic", application_type="web",
                        digione_reasons="to show each pupil their own materials")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["client_id"] == "dcr-app" and body["client_secret"] and body["registration_access_token"]
    assert body["registration_client_uri"] == f"{broker.broker_url}/register/dcr-app"
    assert body["digione_status"] == "pending_approval" and created.headers["Cache-Control"] == "no-store"
    assert ("client", "dcr-app") not in broker.app.registry_service.versions.state().documents
    assert _register(broker, initial).status_code == 400, "registered once: the same token cannot again"

    ops = AdminOperations(broker.app)
    pending = next(v for v in ops.registry_versions.versions() if v.status == "pending_approval")
    ops.approve(Principal("test:platform", (Grant(PLATFORM_ADMIN),)), pending.id)
    broker.app.rebuild()

    session = OAuth2Session("dcr-app", body["client_secret"], scope="openid roles", redirect_uri=REDIRECT,
                            code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(f"{broker.broker_url}/authorize", code_verifier=verifier,
                                              nonce="n", idp_hint="turku/koulu")
    person = Person()
    callback = Person.callback(person.sign_in(person.get(url), "teacher.turku"))
    token = session.fetch_token(f"{broker.broker_url}/token", authorization_response=callback,
                                code_verifier=verifier)
    assert token["id_token"]

    manage = f"{broker.broker_url}/register/dcr-app"
    auth = {"Authorization": f"Bearer {body['registration_access_token']}"}
    read = requests.get(manage, headers=auth, timeout=5)
    assert read.status_code == 200 and read.json()["redirect_uris"] == [REDIRECT]
    assert "client_secret" not in read.json()
    other = _token(broker, Grant(SERVICE_OWNER, service="someone-else"))
    for method in ("GET", "PUT", "DELETE"):
        refused = requests.request(method, manage, headers={"Authorization": f"Bearer {other}"}, json={}, timeout=5)
        assert refused.status_code == 401, "another client's token learns nothing"
    replaced = requests.put(manage, headers=auth, timeout=10, json={
        "redirect_uris": [REDIRECT, "https://dcr.example/cb2"], "client_name": "Oppimateriaali",
        "scope": "openid roles", "digione_reasons": "to show each pupil their own materials"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["digione_status"] == "active", "a URI change needs no approval"
    broker.app.rebuild()
    assert broker.app.registry.parties.client("dcr-app").redirect_uris == (REDIRECT, "https://dcr.example/cb2")
    assert requests.delete(manage, headers=auth, timeout=10).status_code == 204
    broker.app.rebuild()
    assert broker.app.registry.parties.client("dcr-app") is None
