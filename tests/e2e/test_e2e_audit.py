"""The audit after real logins: pupils of one school sign in, through the demo city IdP, at two OIDC
services with different release policies and at a SAML SP; the broker keeps its state in the real
Redis (a prefix of its own).  The answer for the school is right (every service, the names it got,
the counts) and holds no personal value; with the database away the records wait in Redis and are
written once it is back; a city's admins see their schools only, through the real admin API and
console; ``broker audit releases`` prints the same answer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis
import requests
import sqlalchemy as sa
from agent import Person, forms, register_client
from authlib.integrations.requests_client import OAuth2Session
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string

from broker.audit import AuditLog
from broker.audit.buffer import BUFFER, CLAIMED
from broker.audit.storage import ReleaseQuery
from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports
from broker.pki import ensure_keypair
from broker.registry import database as db
from broker.registry.relying_parties import ReleasePolicy
from broker.settings import ROOT
from broker.store.redis import RedisStore

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REDIRECT = "https://audit.example.org/cb"
SP, ACS = "https://audit-sp.example.org/sp", "https://audit-sp.example.org/acs"
SCHOOL, OTHER_CITY_SCHOOL = "90921", "90491"   # Vantaa's demo school; one of Espoo's
POLICIES = {
    "audit-full": {"scopes": ["openid", "roles", "schools", "profile", "learner_id"], "profile": "digione"},
    "audit-minimal": {"scopes": ["openid", "roles"], "profile": "digione"},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prefix = f"test:audit:{uuid.uuid4().hex}:"
    store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    try:
        store.client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({exc.__class__.__name__})")
    root = tmp_path_factory.mktemp("audit-demo")
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", store=store, environ={},
                     ports=Ports(*(free_port() for _ in range(5))))
    demo.start()
    demo.app.audit_flusher.stop()   # the tests flush when they choose (the thread would within a second)
    yield demo
    demo.stop()
    cleanup = redis.Redis.from_url(REDIS_URL)
    keys = list(cleanup.scan_iter(match=prefix + "*", count=1000))
    if keys:
        cleanup.delete(*keys)
    cleanup.close()


@pytest.fixture(scope="module")
def secrets_by_client(stack):
    return {name: register_client(stack, client_id=name, redirect_uris=[REDIRECT], policy=policy)[1]
            for name, policy in POLICIES.items()}


@pytest.fixture(scope="module")
def saml_sp(stack, tmp_path_factory):
    key, cert = ensure_keypair(tmp_path_factory.mktemp("audit-sp"), "sp", common_name=SP)
    config = SPConfig().load({
        "entityid": SP, "key_file": str(key), "cert_file": str(cert),
        "attribute_map_dir": str(ROOT / "attribute_maps"),
        "metadata": {"inline": [requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text]},
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [(ACS, BINDING_HTTP_POST)]},
                           "want_assertions_signed": True, "allow_unsolicited": False}}})
    stack.app.registry_service.register_sp(create_metadata_string(None, config=config).decode(), name="audit-sp",
                                           by="test", policy=ReleasePolicy(scopes=("openid", "roles", "schools"),
                                                                           profile="mpassid"))
    stack.app.rebuild()
    return Saml2Client(config)


def oidc_login(stack, client_id, secret, username="pupil.vantaa"):
    """A real login (authorization code + PKCE, the demo SAML IdP upstream); the claims userinfo gives."""
    meta = requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()
    scope = " ".join(POLICIES[client_id]["scopes"])
    session = OAuth2Session(client_id, secret, scope=scope, redirect_uri=REDIRECT, code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce="n",
                                              idp_hint="vantaa/koulu")
    callback = Person.callback(Person().login(url, "vantaa", "koulu", username))
    session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    return session.get(meta["userinfo_endpoint"]).json()


def saml_login(stack, sp: Saml2Client, username="pupil.vantaa"):
    """A real SAML login at the SP; the attribute names and values and the NameID it received."""
    person = Person()
    request_id, info = sp.prepare_for_authenticate(entityid=f"{stack.broker_url}/saml2/idp/metadata",
                                                   binding=BINDING_HTTP_REDIRECT)
    response = person.get(dict(info["headers"])["Location"])
    response = person.sign_in(person.choose(response, "vantaa", "koulu"), username)
    form = next(f for f in forms(response) if "SAMLResponse" in f.fields)
    authn = sp.parse_authn_request_response(form.fields["SAMLResponse"], BINDING_HTTP_POST,
                                            outstanding={request_id: "/"})
    names = {a.name: [v.text for v in a.attribute_value] for s in authn.assertion.attribute_statement
             for a in s.attribute}
    return names, authn.name_id.text


def _values(claims) -> set[str]:
    """Every string value a service received (names, learner id, subject, role strings...)."""
    out: set[str] = set()
    stack = [claims]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item) >= 5:
            out.add(item)
    return out


def _dump(engine) -> str:
    with engine.connect() as conn:
        return json.dumps([[list(map(str, r)) for r in conn.execute(sa.select(t))]
                           for t in (db.audit_releases, db.audit_release_schools)])


@pytest.fixture(scope="module")
def logins(stack, secrets_by_client, saml_sp):
    """Two logins at audit-full, one at audit-minimal, one at the SAML SP; what each received."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    full = [oidc_login(stack, "audit-full", secrets_by_client["audit-full"]) for _ in range(2)]
    minimal = oidc_login(stack, "audit-minimal", secrets_by_client["audit-minimal"])
    attributes, name_id = saml_login(stack, saml_sp)
    buffered = sorted(m.decode() for m in stack.store.client.smembers(stack.store._k(BUFFER)))
    return {"since": since, "full": full, "minimal": minimal, "saml": (attributes, name_id), "buffered": buffered}


def test_the_answer_for_the_school_names_every_service_what_it_got_and_how_often(stack, logins):
    assert len(logins["buffered"]) == 4     # one record per delivery, waiting in Redis
    stack.app.audit_flusher.run_once()
    report = stack.app.registry_service.audit.report(ReleaseQuery(school=SCHOOL, since=logins["since"]))
    summary = {row["service"]: row for row in report["summary"]}
    assert set(summary) == {"audit-full", "audit-minimal", SP}
    full_names = sorted(set(logins["full"][0]))            # userinfo: sub and every released claim
    assert "learner_id" in full_names and "given_name" in full_names and "schools" in full_names
    assert summary["audit-full"]["released"] == full_names
    assert (summary["audit-full"]["releases"], summary["audit-full"]["subjects"]) == (2, 1)
    assert summary["audit-minimal"]["released"] == sorted(set(logins["minimal"])) == ["role_assignments", "roles",
                                                                                     "sub"]
    assert summary["audit-minimal"]["releases"] == 1
    attributes, _ = logins["saml"]
    assert summary[SP]["released"] == sorted({"NameID", *attributes}) and summary[SP]["protocol"] == "saml"
    assert "urn:oid:1.3.6.1.4.1.16161.1.1.27" not in summary[SP]["released"]   # no learner id in its policy
    assert len(report["releases"]) == 4 and not report["truncated"]
    refs = {r["subject_ref"] for r in report["releases"]}
    assert len(refs) == 1                                   # one pupil, one reference across services
    assert all(r["tenant"] == "vantaa" and SCHOOL in r["schools"] and r["correlation_id"]
               for r in report["releases"])
    assert stack.app.registry_service.audit.releases(ReleaseQuery(school=OTHER_CITY_SCHOOL,
                                                                  since=logins["since"])) == []


def test_no_record_holds_a_personal_value(stack, logins):
    stack.app.audit_flusher.run_once()
    attributes, name_id = logins["saml"]
    personal = set()
    for claims in (*logins["full"], logins["minimal"]):
        personal |= _values(claims)
    personal |= _values(attributes) | {name_id, "pupil.vantaa", "Aino Maria", "Virtanen"}
    personal -= {SCHOOL, "vantaa", "learner"}   # the school code and the tenant are the record's point
    assert any(v.startswith("1.2.246.562.98.") for v in personal)   # the learner id is among them
    stored = _dump(stack.app.registry_service.versions.engine) + json.dumps(logins["buffered"])
    leaked = sorted(v for v in personal if v in stored)
    assert not leaked, leaked
    refs = {r["subject_ref"] for r in stack.app.registry_service.audit.releases(
        ReleaseQuery(school=SCHOOL, since=logins["since"]))}
    assert not refs & {claims["sub"] for claims in logins["full"]} and name_id not in refs


def test_with_the_database_away_records_wait_in_redis_and_are_written_once(stack, secrets_by_client, logins):
    flusher = stack.app.audit_flusher
    flusher.run_once()
    minimal = ReleaseQuery(school=SCHOOL, since=logins["since"], service="audit-minimal")
    before = {r["id"] for r in flusher.log.releases(minimal)}
    real = flusher.log
    flusher.log = AuditLog(sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/away"))
    try:
        oidc_login(stack, "audit-minimal", secrets_by_client["audit-minimal"])   # logins go on meanwhile
        oidc_login(stack, "audit-minimal", secrets_by_client["audit-minimal"])
        for _ in range(2):
            with pytest.raises(sa.exc.OperationalError):
                flusher.run_once()
        client = stack.store.client
        waiting = client.scard(stack.store._k(BUFFER)) + client.zcard(stack.store._k(CLAIMED))
        assert waiting == 2
    finally:
        flusher.log = real
    assert flusher.run_once() == 2
    assert flusher.run_once() == 0
    found = [r for r in real.releases(minimal) if r["id"] not in before]
    assert len(found) == 2 and len({r["id"] for r in found}) == 2


def _token(stack, grants):
    from broker.admin.operations import AdminOperations
    from broker.admin.principals import grants_from_json

    token, _ = AdminOperations(stack.app).tokens.create(grants_from_json(grants), lifetime=dt.timedelta(hours=1),
                                                        by="cli:test@host", note="audit test")
    return token


def _api(stack, token, **params):
    return requests.get(f"{stack.broker_url}/admin/api/audit/releases", params=params, timeout=10,
                        headers={"Authorization": f"Bearer {token}"})


def test_a_city_admin_sees_their_schools_only_and_other_cities_are_refused(stack, logins):
    stack.app.audit_flusher.run_once()
    since = logins["since"].isoformat()
    vantaa = _token(stack, [{"role": "city_admin", "tenant": "vantaa"}])
    espoo = _token(stack, [{"role": "city_admin", "tenant": "espoo"}])
    viewer = _token(stack, [{"role": "city_viewer", "tenant": "vantaa"}])
    platform = _token(stack, [{"role": "platform_admin"}])
    mine = _api(stack, vantaa, school=SCHOOL, since=since)
    assert mine.status_code == 200, mine.text
    assert {row["service"] for row in mine.json()["summary"]} >= {"audit-full", "audit-minimal", SP}
    assert mine.json()["query"]["tenant"] == "vantaa"
    # Another city's admin asking about Vantaa's school: as if it did not exist.
    other = _api(stack, espoo, school=SCHOOL, since=since)
    assert other.status_code == 404 and "audit-full" not in other.text
    assert _api(stack, vantaa, school=OTHER_CITY_SCHOOL, since=since).status_code == 404
    assert _api(stack, viewer, school=SCHOOL, since=since).status_code == 403
    # Switched or forged requests: a tenant parameter, a repeated school, malformed values.
    assert _api(stack, espoo, school=SCHOOL, since=since, tenant="espoo").status_code == 400
    repeated = requests.get(f"{stack.broker_url}/admin/api/audit/releases?school={OTHER_CITY_SCHOOL}"
                            f"&school={SCHOOL}&since=2020-01-01", headers={"Authorization": f"Bearer {espoo}"},
                            timeout=10)
    assert repeated.status_code == 400
    for bad in ({"school": "9092' OR 1=1", "since": since}, {"school": SCHOOL, "since": "yesterday"},
                {"school": SCHOOL, "since": since, "until": "2026-13-01"}, {"school": SCHOOL},
                {"school": SCHOOL, "since": since, "limit": "100000"}):
        answer = _api(stack, vantaa, **bad)
        assert answer.status_code == 400, (bad, answer.status_code, answer.text)
    assert _api(stack, "not-a-token", school=SCHOOL, since=since).status_code == 401
    assert _api(stack, platform, school=OTHER_CITY_SCHOOL, since=since).json()["summary"] == []


def test_the_console_page_shows_the_answer_to_a_city_admin_and_refuses_another_city(stack, logins):
    from werkzeug.test import Client

    stack.app.audit_flusher.run_once()
    since = logins["since"].strftime("%Y-%m-%d")

    def signed_in(token):
        browser = Client(stack.app)
        page = browser.get("/admin/signin").get_data(as_text=True)
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = browser.post("/admin/signin/token", data={"token": token, "next": "/admin/", "csrf": csrf})
        assert answer.status_code == 303
        return browser

    vantaa = signed_in(_token(stack, [{"role": "city_admin", "tenant": "vantaa"}]))
    page = vantaa.get(f"/admin/audit?school={SCHOOL}&since={since}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "audit-full" in html and "learner_id" in html and SP in html
    assert "Aino" not in html and "1.2.246.562.98." not in html
    assert vantaa.get("/admin/audit").status_code == 200          # the empty form
    assert vantaa.get(f"/admin/audit?school={SCHOOL}&since=never").status_code == 400
    espoo = signed_in(_token(stack, [{"role": "city_admin", "tenant": "espoo"}]))
    refused = espoo.get(f"/admin/audit?school={SCHOOL}&since={since}")
    assert refused.status_code == 404 and "audit-full" not in refused.get_data(as_text=True)


def test_admin_changes_are_recorded_with_who_and_what(stack, secrets_by_client, saml_sp):
    changes = stack.app.registry_service.audit.admin_changes(since=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    staged = [c for c in changes if c["documents"] == ["client:audit-full"]]
    assert {c["action"] for c in staged} >= {"stage", "activate"}
    assert all(c["actor"] == "test" and c["version"] for c in staged)
    assert any(c["documents"] == ["sp:audit-sp"] for c in changes)


def test_the_cli_prints_the_answer(stack, logins, capsys, monkeypatch):
    from broker.cli import main

    stack.app.audit_flusher.run_once()
    monkeypatch.setenv("BROKER_DATABASE_URL", stack.app.settings.database_url)
    day = logins["since"].strftime("%Y-%m-%d")
    assert main(["audit", "releases", "--school", SCHOOL, "--since", day, "--until", day,
                 "--service", "audit-full"]) == 0
    text = capsys.readouterr().out
    assert f"Releases about people of school {SCHOOL}" in text
    assert "audit-full (oidc): 2 release(s), 1 person(s): " in text and "learner_id" in text
    assert "audit-minimal" not in text
    assert main(["audit", "releases", "--school", SCHOOL, "--since", day, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert {row["service"] for row in answer["summary"]} == {"audit-full", "audit-minimal", SP}
    assert main(["audit", "releases", "--school", SCHOOL, "--since", "soon"]) == 2
    assert "--since/--until: expected a date" in capsys.readouterr().err
    assert main(["audit", "changes", "--since", "2020-01-01"]) == 0
    assert "client:audit-full" in capsys.readouterr().out


def _session_id(person: Person) -> str:
    from broker.sessions.model import session_id_of

    token = next(c.value for c in person.http.cookies if c.name.startswith("digione_sso"))
    return session_id_of(token)


def _plant(stack, key: str) -> None:
    """The session's key ``key`` made a string: the release's next write to it answers WRONGTYPE."""
    client = stack.store.client
    client.delete(stack.store._k(key))
    client.set(stack.store._k(key), "planted", ex=600)


def _buffered_for(stack, service: str) -> list[str]:
    members = (m.decode() for m in stack.store.client.smembers(stack.store._k(BUFFER)))
    return [m for m in members if json.loads(m)["svc"] == service]


def test_a_saml_release_whose_batch_redis_refuses_answers_503_and_leaves_no_record(stack, secrets_by_client,
                                                                                   saml_sp):
    """The SP is answered by SSO from a session whose service list Redis cannot add to: the release's
    batch runs but for that command, the broker answers 503 (no Response), and the record queued in
    the same batch is gone."""
    from broker.sessions.store import session_key

    stack.app.audit_flusher.run_once()
    person = Person()
    meta = requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()
    client = OAuth2Session("audit-minimal", secrets_by_client["audit-minimal"], scope="openid roles",
                           redirect_uri=REDIRECT, code_challenge_method="S256")
    url, _ = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=secrets.token_urlsafe(48),
                                             nonce="n", idp_hint="vantaa/koulu")
    Person.callback(person.login(url, "vantaa", "koulu", "pupil.vantaa"))   # the session now exists
    _plant(stack, session_key(_session_id(person), ":svcs"))
    request_id, info = saml_sp.prepare_for_authenticate(entityid=f"{stack.broker_url}/saml2/idp/metadata",
                                                        binding=BINDING_HTTP_REDIRECT)
    answer = person.get(dict(info["headers"])["Location"])
    assert answer.status_code == 503, answer.text[:500]
    assert "SAMLResponse" not in answer.text and "Traceback" not in answer.text
    assert _buffered_for(stack, SP) == []


def test_a_code_whose_grant_batch_redis_refuses_answers_503_and_leaves_no_record(stack, secrets_by_client):
    from broker.sessions.store import session_key

    stack.app.audit_flusher.run_once()
    person = Person()
    verifier = secrets.token_urlsafe(48)
    meta = requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()
    client = OAuth2Session("audit-minimal", secrets_by_client["audit-minimal"], scope="openid roles",
                           redirect_uri=REDIRECT, code_challenge_method="S256")
    url, _ = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce="n",
                                             idp_hint="vantaa/koulu")
    callback = Person.callback(person.login(url, "vantaa", "koulu", "pupil.vantaa"))
    _plant(stack, session_key(_session_id(person), ":grants"))   # the grant's batch adds to it
    code = dict(parse_qsl(urlsplit(callback).query))["code"]
    token = requests.post(meta["token_endpoint"], data={"grant_type": "authorization_code", "code": code,
                                                        "redirect_uri": REDIRECT, "code_verifier": verifier},
                          auth=("audit-minimal", secrets_by_client["audit-minimal"]), timeout=10)
    assert token.status_code == 503 and token.json()["error"] == "temporarily_unavailable", token.text
    assert _buffered_for(stack, "audit-minimal") == []
