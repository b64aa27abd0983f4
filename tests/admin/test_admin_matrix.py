"""The isolation matrix: every admin API endpoint, called as every role that is not a platform admin,
against objects of another tenant or service, and against its own objects where its role is too weak.

The cases are generated from the route table (:data:`broker.admin.routes.ROUTES`): a route
without a case here fails :func:`test_every_route_has_a_case`.  Each call is a real HTTP
request through the broker (guard included) with a real bearer token and a body the route
accepts, so that the refusal is the permission check and nothing else.  Each must be
refused (404 for objects the role holds nothing of, 403 for what it sees but may not do),
with a JSON error carrying the response's correlation id, that id logged with the
principal's name, and the registry, every version, the tokens and the grants exactly as
before.  The list endpoints, which every role may call, must show nothing of the others.
"""

from __future__ import annotations

import json
import logging

import pytest
from admin_env import bearer, metadata_text, names, snapshot, sp_metadata, tenant
from werkzeug.test import Client

from broker.admin.principals import cli_principal
from broker.admin.routes import ROUTES

ROLES = ("vantaa_admin", "vantaa_viewer", "owner", "owner_new")
PIN = "ab" * 32
LISTS = {"whoami", "listTenants", "listVersions", "listServices"}


@pytest.fixture(scope="module")
def staged(ops, tokens):
    """Versions the matrix aims at: espoo's, svc-other's (awaiting approval), one touching vantaa and espoo,
    one of vantaa alone, and one awaiting approval of the owner's own svc-vantaa."""
    operator = cli_principal("test")
    espoo = ops.set_mapping(operator, "espoo", "koulu", {"preset": "mpassid-saml", "fields": {}}, "espoo change")
    versions = ops.registry_versions
    mixed = versions.stage({("tenant", "vantaa"): {**versions.state().documents[("tenant", "vantaa")],
                                                   "domains": ["mixed.example"]},
                            ("tenant", "espoo"): {**versions.state().documents[("tenant", "espoo")],
                                                  "domains": ["mixed2.example"]}}, by="test", comment="mixed")
    vantaa = ops.set_allowed_services(operator, "vantaa", {"default": ["svc-vantaa"]}, "vantaa alone")
    other = versions.stage({("client", "svc-other"): {**versions.state().documents[("client", "svc-other")],
                                                      "name": "changed"}}, by="test", status="pending_approval")
    mine = versions.stage({("client", "svc-vantaa"): {**versions.state().documents[("client", "svc-vantaa")],
                                                      "policy": {"scopes": ["openid", "roles", "profile"]}}},
                          by="test", status="pending_approval")
    subject = ops.subjects.assign("someone", cli_principal("t").grants, by="test")
    assert subject is not None
    token_id = ops.tokens.entries()[0].id
    return {"espoo": espoo["version"]["id"], "mixed": mixed.id, "vantaa": vantaa["version"]["id"],
            "other": other.id, "mine": mine.id, "token": token_id}


def _cases(staged):
    """``{operation: (path params, body)}``: the foreign objects every role is aimed at."""
    espoo = tenant("espoo", "020")
    return {
        "whoami": ({}, None), "listTenants": ({}, None), "listVersions": ({}, None), "listServices": ({}, None),
        "getTenant": ({"tenant_id": "espoo"}, None),
        "stageTenant": ({"tenant_id": "espoo"}, {"document": {**espoo, "domains": ["x.example"]}}),
        "removeTenant": ({"tenant_id": "espoo"}, None),
        "uploadIdpMetadata": ({"tenant_id": "espoo", "idp_id": "uusi"},
                              {"xml": metadata_text("lahti"), "names": names("Uusi")}),
        "setIdpMetadataUrl": ({"tenant_id": "espoo", "idp_id": "koulu"},
                              {"url": "https://idp.example/metadata", "pins": [PIN], "entity_id": "https://e"}),
        "addOidcIdp": ({"tenant_id": "espoo", "idp_id": "entra"},
                       {"issuer": "https://login.example/v2.0", "client_id": "c", "client_secret": "s",
                        "names": names("Entra")}),
        "setMapping": ({"tenant_id": "espoo", "idp_id": "koulu"}, {"mapping": {"preset": "entra"}}),
        "explainMapping": ({"tenant_id": "espoo", "idp_id": "koulu"},
                           {"sample": json.dumps({"attributes": {"urn:mpass.id:uid": ["u1"]}})}),
        "setAllowedServices": ({"tenant_id": "espoo"}, {"allowed_services": {"default": []}}),
        "rollbackTenant": ({"tenant_id": "espoo"}, {"to_version": 1}),
        "getVersion": ({"version_id": staged["espoo"]}, None),
        "activateVersion": ({"version_id": staged["espoo"]}, None),
        "approveVersion": ({"version_id": staged["other"]}, None),
        "discardVersion": ({"version_id": staged["espoo"]}, None),
        "versionTestLink": ({"version_id": staged["espoo"]}, None),
        "rollbackRegistry": ({}, {"to_version": 1}),
        "getClient": ({"client_id": "svc-other"}, None),
        "getSp": ({"sp_name": "sp-other"}, None),
        "registerClient": ({}, {"client_id": "svc-other", "redirect_uris": ["https://svc-other.example.org/cb"],
                                "policy": {"scopes": ["openid", "roles", "profile"]}, "reasons": "sign in"}),
        "registerSp": ({}, {"metadata_xml": sp_metadata("sp-other"), "name": "sp-other",
                            "policy": {"scopes": ["openid", "roles", "profile"]}, "reasons": "sign in"}),
        "listTokens": ({}, None),
        "createToken": ({}, {"grants": [{"role": "platform_admin"}], "expires": "1d"}),
        "revokeToken": ({"token_id": staged["token"]}, None),
        "listGrants": ({}, None),
        "setGrants": ({"subject": "someone"}, {"grants": [{"role": "platform_admin"}]}),
        # Espoo's school (admin_env.tenant): the audit of another city's pupils.
        "auditReleases": ({"?": "school=90201&since=2020-01-01"}, None),
    }


#: Answers for foreign objects: 404 (the role holds nothing of them), 403 for platform-only actions.
FORBIDDEN = {"rollbackRegistry", "listTokens", "createToken", "revokeToken", "listGrants", "setGrants"}


def _call(client, route, params, body, token):
    path = "/admin/api" + route.path.format(**params) + (f"?{params['?']}" if "?" in params else "")
    kwargs = {"headers": bearer(token)}
    if body is not None:
        kwargs["json"] = body
    return client.open(path, method=route.method, **kwargs)


def _route(operation):
    return next(r for r in ROUTES if r.operation == operation)


def test_every_route_has_a_case(staged):
    assert set(_cases(staged)) == {r.operation for r in ROUTES if not r.public}


def _refused(site, caplog, route, params, body, token, principal, expected):
    before = snapshot(site.app)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="broker.admin"):
        response = _call(Client(site.app), route, params, body, token)
    assert response.status_code == expected, (route.operation, principal.name, response.get_data(as_text=True))
    answer = response.get_json()
    cid = response.headers["X-Correlation-ID"]
    assert answer["correlation_id"] == cid and answer["error"] in ("forbidden", "not_found")
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("admin refused")]
    assert any(f"correlation_id={cid}" in line and f"principal={principal.name}" in line for line in refusals), \
        refusals
    assert snapshot(site.app) == before, f"{route.operation} as {principal.name} changed something"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", sorted({r.operation for r in ROUTES if not r.public} - LISTS))
def test_foreign_objects_are_refused_and_nothing_changes(site, tokens, principals, staged, caplog, role, operation):
    params, body = _cases(staged)[operation]
    expected = 403 if operation in FORBIDDEN else 404
    _refused(site, caplog, _route(operation), params, body, tokens[role], principals[role], expected)


#: Own objects, a role too weak for the action: always 403.
OWN = {
    "vantaa_viewer": {
        "stageTenant": ({"tenant_id": "vantaa"}, {"document": {**tenant("vantaa", "010"), "domains": ["v.example"]}}),
        "removeTenant": ({"tenant_id": "vantaa"}, None),
        "uploadIdpMetadata": ({"tenant_id": "vantaa", "idp_id": "uusi"},
                              {"xml": "<EntityDescriptor/>", "names": names("Uusi")}),
        "setIdpMetadataUrl": ({"tenant_id": "vantaa", "idp_id": "koulu"},
                              {"url": "https://idp.example/metadata", "pins": PIN, "entity_id": "https://e"}),
        "addOidcIdp": ({"tenant_id": "vantaa", "idp_id": "entra"},
                       {"issuer": "https://login.example/v2.0", "client_id": "c", "client_secret": "s",
                        "names": names("Entra")}),
        "setMapping": ({"tenant_id": "vantaa", "idp_id": "koulu"}, {"mapping": {"preset": "entra"}}),
        "setAllowedServices": ({"tenant_id": "vantaa"}, {"allowed_services": None}),
        "rollbackTenant": ({"tenant_id": "vantaa"}, {"to_version": 1}),
        "activateVersion": ({"version_id": "vantaa"}, None),
        "discardVersion": ({"version_id": "vantaa"}, None),
        "versionTestLink": ({"version_id": "vantaa"}, None),
        "approveVersion": ({"version_id": "vantaa"}, None),
    },
    "vantaa_admin": {
        "removeTenant": ({"tenant_id": "vantaa"}, None),
        "approveVersion": ({"version_id": "vantaa"}, None),
        "activateVersion": ({"version_id": "mixed"}, None),
        "discardVersion": ({"version_id": "mixed"}, None),
        "versionTestLink": ({"version_id": "mixed"}, None),
        "activateVersion ": ({"version_id": 1}, None),   # activating an activated one again restores everything
    },
    "owner": {
        "approveVersion": ({"version_id": "mine"}, None),
        "activateVersion": ({"version_id": "mine"}, None),
        "versionTestLink": ({"version_id": "mine"}, None),
    },
}


@pytest.mark.parametrize("role,operation", [(role, op) for role, cases in OWN.items() for op in cases])
def test_own_objects_beyond_the_role_are_forbidden(site, tokens, principals, staged, caplog, role, operation):
    params, body = OWN[role][operation]
    params = {k: staged.get(v, v) if isinstance(v, str) and k == "version_id" else v for k, v in params.items()}
    _refused(site, caplog, _route(operation.strip()), params, body, tokens[role], principals[role], 403)


@pytest.mark.parametrize("role", ROLES)
def test_lists_show_nothing_of_the_others(site, tokens, principals, staged, role):
    client = Client(site.app)
    before = snapshot(site.app)
    get = {op: _call(client, _route(op), {}, None, tokens[role]) for op in LISTS}
    assert all(r.status_code == 200 for r in get.values())
    assert "espoo" not in {t["id"] for t in get["listTenants"].get_json()}
    for version in get["listVersions"].get_json():
        assert version["touches"] and all(principals[role].reads(t["kind"], t["key"]) for t in version["touches"])
        assert version["id"] not in (staged["espoo"], staged["other"])
    for service in get["listServices"].get_json():
        assert "document" not in service or principals[role].owns_service(service["id"])
    assert get["whoami"].get_json()["name"] == principals[role].name
    assert snapshot(site.app) == before


def test_a_mixed_version_shows_only_the_principals_part(site, tokens, staged):
    answer = Client(site.app).get(f"/admin/api/versions/{staged['mixed']}", headers=bearer(tokens["vantaa_admin"]))
    assert answer.status_code == 200
    body = answer.get_json()
    assert [c["key"] for c in body["changes"]] == ["vantaa"] and "espoo" not in json.dumps(body["changes"])
    assert [t["key"] for t in body["touches"]] == ["vantaa"]


def test_control_a_platform_admin_is_not_refused_the_same_calls(site, tokens, staged):
    """The bodies above are ones the routes accept: the same calls as a platform admin are not refused
    (run last: they change the registry).  addOidcIdp would fetch a discovery document from the
    network and is left to the OIDC tests, which serve one on localhost."""
    client = Client(site.app)
    cases = _cases(staged)
    order = sorted(set(cases) - {"addOidcIdp", "removeTenant", "revokeToken"}) + ["removeTenant", "revokeToken"]
    for operation in order:
        params, body = cases[operation]
        response = _call(client, _route(operation), params, body, tokens["platform"])
        assert response.status_code not in (400, 401, 403, 404, 415), (operation, response.get_data(as_text=True))
