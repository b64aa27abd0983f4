"""Apache with mod_auth_openidc (Debian's libapache2-mod-auth-openidc) signs people in through
the broker with the set-up of docs/services.md, and hands the application the claims.

Apache runs the documented block on a loopback port; a demo teacher and a demo pupil sign in
at a city's SAML IdP; the CGI of the page prints what the application gets.  ``roles`` is a
flat list of role names, so mod_auth_openidc exposes it (``OIDC_CLAIM_roles``) and
``Require claim roles:teacher`` lets the teacher in and keeps the pupil out.
"""

from __future__ import annotations

import json
import secrets

import pytest
import requests
from agent import Person, register_client
from interop_apache import Apache, browser_session, missing, parse_dump
from interop_docs import snippet

from broker.demo.servers import free_port

pytestmark = pytest.mark.skipif(bool(missing("libapache2-mod-auth-openidc")),
                                reason=missing("libapache2-mod-auth-openidc") or "")


@pytest.fixture(scope="module")
def apache(stack):
    port = free_port()
    url = f"https://localhost:{port}"
    _, secret = register_client(stack, client_id="my-app", name="Apache mod_auth_openidc",
                                redirect_uris=[f"{url}/oidc/callback"],
                                policy={"scopes": ["openid", "roles", "schools", "profile"]})
    server = Apache(port=port, modules=("auth_openidc",), log_level="warn ssl:error auth_openidc:info",
                    service_conf=lambda root: snippet("mod_auth_openidc", {
                        "https://<broker>": stack.broker_url, "https://my-app.example": url,
                        "/usr/lib/cgi-bin/": f"{root}/cgi-bin/"}),
                    files={"cgi-bin/digione-whoami": snippet("whoami")},
                    environ={"DIGIONE_CLIENT_SECRET": secret or "",
                             "OIDC_CRYPTO_PASSPHRASE": secrets.token_urlsafe(32)})
    with server.running():
        yield server


def _person(apache: Apache) -> Person:
    session = browser_session(apache.ca_file)
    return Person(session, stop_at=())


def _sign_in(apache: Apache, path: str, tenant: str, username: str) -> requests.Response:
    return _person(apache).login(f"{apache.url}{path}", tenant, "koulu", username)


def test_teacher_gets_the_claims_and_passes_require_claim_roles(apache):
    response = _sign_in(apache, "/teachers/whoami", "turku", "teacher.turku")
    assert response.status_code == 200, (response.status_code, response.text[:500], apache.error_log())
    env = parse_dump(response.text)
    print(json.dumps(env, indent=1, ensure_ascii=False))
    assert env["OIDC_CLAIM_roles"] == "teacher"  # teacher in two schools: the name once
    assert env["OIDC_CLAIM_given_name"] == "Katja Helena"
    assert env["OIDC_CLAIM_family_name"] == "Saarinen"
    assert env["REMOTE_USER"] == env["OIDC_CLAIM_sub"] and env["OIDC_CLAIM_sub"] != "teacher.turku"
    assert 'for key "roles"' not in apache.error_log()  # no "unhandled in-array JSON object"
    # Lists of objects reach the application only as JSON, in the ID token's payload.
    assert env["OIDC_CLAIM_schools"] == "" and env["OIDC_CLAIM_role_assignments"] == ""
    payload = json.loads(env["OIDC_id_token_payload"])
    assert {s["code"] for s in payload["schools"]} == {"98531", "98532"}
    assert [(a["role"], a["school"]) for a in payload["role_assignments"]] == [("teacher", "98531"),
                                                                              ("teacher", "98532")]


def test_pupil_is_kept_out_of_the_teachers_pages_but_signs_in(apache):
    person = _person(apache)
    response = person.login(f"{apache.url}/whoami", "turku", "koulu", "pupil.turku")
    assert response.status_code == 200, (response.status_code, response.text[:500], apache.error_log())
    env = parse_dump(response.text)
    print(json.dumps(env, indent=1, ensure_ascii=False))
    assert env["OIDC_CLAIM_roles"] == "learner"
    refused = person.get(f"{apache.url}/teachers/whoami")
    assert refused.status_code == 401, refused.status_code  # Apache's answer to an authorization failure
