"""Stock SATOSA micro-services, configured in ``config/broker.yaml``, run in the login chain.

The broker is started with a configuration folder whose ``micro_services`` list names two
plugins from the ``satosa`` package itself, unmodified:

* ``attribute_authorization.AttributeAuthorization``: only teachers into ``teachers-rp``;
* ``attribute_modifications.FilterAttributeValues``: ``one-school-rp`` hears only of Espoo's
  first school.

Relying parties are Authlib clients; the people sign in at the demo city IdPs.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml
from agent import Person, register_client
from authlib.integrations.requests_client import OAuth2Session

from broker.demo.directory import DEMO_DIRECTORY
from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports
from broker.settings import ROOT

REDIRECT = "https://plugins.example.org/cb"
FIRST_SCHOOL = DEMO_DIRECTORY["espoo"]["schools"][0]["code"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugins")
    config = yaml.safe_load((ROOT / "config" / "broker.yaml").read_text())
    config["micro_services"] = [
        {"module": "satosa.micro_services.attribute_authorization.AttributeAuthorization", "name": "teachers-only",
         "config": {"force_attributes_presence_on_allow": True,
                    # SATOSA 8.6 looks rules up by requester first, then provider (its docstring says otherwise).
                    "attribute_allow": {"teachers-rp": {"": {"roles": ["^teacher$"]}}}}},
        {"module": "satosa.micro_services.attribute_modifications.FilterAttributeValues", "name": "one-school",
         "config": {"attribute_filters": {"": {"one-school-rp": {"schools": f"^{FIRST_SCHOOL}$"}}}}},
    ]
    (root / "config").mkdir()
    (root / "config" / "broker.yaml").write_text(yaml.safe_dump(config))
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata",
                     ports=Ports(*(free_port() for _ in range(5))), environ={"BROKER_CONFIG_DIR": str(root / "config")})
    demo.start()
    yield demo
    demo.stop()


@pytest.fixture(scope="module")
def clients(stack):
    policy = {"scopes": ["openid", "roles", "schools", "profile"], "profile": "digione"}
    return {name: register_client(stack, client_id=name, redirect_uris=[REDIRECT], policy=policy)[1]
            for name in ("teachers-rp", "one-school-rp")}


def _start(stack, client_id, secret):
    meta = requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()
    session = OAuth2Session(client_id, secret, scope="openid roles schools profile", redirect_uri=REDIRECT,
                            code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, state = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce="n",
                                                  idp_hint="espoo/koulu")
    return meta, session, verifier, url, state


def test_the_plugins_are_loaded_by_satosa_and_in_the_chain(stack):
    login = stack.app.proxy.login
    names = [type(s).__name__ for s in login.response_services]
    assert names == ["AttributeAuthorization", "FilterAttributeValues"]
    assert all(type(s).__module__.startswith("satosa.micro_services.") for s in login.response_services)


def test_attribute_authorization_lets_teachers_in(stack, clients):
    meta, session, verifier, url, _ = _start(stack, "teachers-rp", clients["teachers-rp"])
    callback = Person.callback(Person().login(url, "espoo", "koulu", "teacher.espoo"))
    token = session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    assert "teacher" in session.get(meta["userinfo_endpoint"]).json()["roles"]
    assert token["id_token"]


def test_attribute_authorization_turns_a_pupil_away_with_access_denied(stack, clients):
    _, _, _, url, state = _start(stack, "teachers-rp", clients["teachers-rp"])
    callback = Person.callback(Person().login(url, "espoo", "koulu", "pupil.espoo"))
    query = parse_qs(urlsplit(callback).query)
    assert callback.startswith(REDIRECT) and "code" not in query
    assert query["error"] == ["access_denied"] and query["state"] == [state]


def test_filter_attribute_values_narrows_what_the_service_hears(stack, clients):
    meta, session, verifier, url, _ = _start(stack, "one-school-rp", clients["one-school-rp"])
    callback = Person.callback(Person().login(url, "espoo", "koulu", "teacher.espoo"))
    session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    claims = session.get(meta["userinfo_endpoint"]).json()
    assert [s["code"] for s in claims["schools"]] == [FIRST_SCHOOL]
    assert {r.get("school") for r in claims["role_assignments"]} == {FIRST_SCHOOL}
    # The same teacher at a service without the filter hears of both schools (the session is not narrowed).
    meta, session, verifier, url, _ = _start(stack, "teachers-rp", clients["teachers-rp"])
    callback = Person.callback(Person().login(url, "espoo", "koulu", "teacher.espoo"))
    session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    assert len(session.get(meta["userinfo_endpoint"]).json()["schools"]) == 2
