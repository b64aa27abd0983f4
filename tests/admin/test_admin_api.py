"""The admin API's HTTP layer, through the whole broker (its guard included): authentication, input,
JSON errors with correlation ids, and the OpenAPI document against Flask's own URL map."""

from __future__ import annotations

import json
import logging
import re

import pytest
from admin_env import bearer, snapshot
from werkzeug.test import Client

from broker.admin.openapi import document
from broker.admin.routes import ROUTES


@pytest.fixture(scope="module")
def client(site):
    return Client(site.app)


def _error(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["correlation_id"] == response.headers["X-Correlation-ID"]
    assert re.fullmatch(r"[0-9a-f]{16}", body["correlation_id"])
    if code:
        assert body["error"] == code
    return body


def test_every_flask_route_is_in_the_openapi_document_and_every_documented_one_is_served(site):
    admin = site.app.admin
    served = set()
    for rule in admin.url_map.iter_rules():
        if rule.endpoint.startswith("admin_api."):
            path = re.sub(r"<(?:int:)?([a-z_]+)>", r"{\1}", rule.rule.removeprefix("/admin/api"))
            served |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method.upper(), path) for path, item in document()["paths"].items() for method in item}
    assert served == documented
    assert len(documented) == len(ROUTES)


def test_the_openapi_document_is_published_and_its_schemas_are_json_schema(client):
    from jsonschema import Draft202012Validator

    response = client.get("/admin/api/openapi.json")
    assert response.status_code == 200 and response.get_json() == json.loads(json.dumps(document()))
    assert response.get_json()["openapi"] == "3.1.0"
    for item in document()["paths"].values():
        for operation in item.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                Draft202012Validator.check_schema(body)
            for parameter in operation.get("parameters", []):
                Draft202012Validator.check_schema(parameter["schema"])


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"},
                                     {"Authorization": "Bearer dgadm_" + "A" * 43},
                                     {"Authorization": "Bearer not-a-token"},
                                     {"Cookie": "digione_admin=anything; session=x"}])
def test_without_a_valid_bearer_token_the_answer_is_401_and_nothing_is_read(client, headers):
    response = client.get("/admin/api/tenants", headers=headers)
    body = _error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "vantaa" not in json.dumps(body)


def test_a_cookie_never_stands_in_for_the_token(client, tokens):
    # the console's cookies are not the API's credentials: a browser cannot be made to call it (no CSRF)
    response = client.post("/admin/api/versions/1/activate", headers={"Cookie": f"token={tokens['platform']}"})
    _error(response, 401)


@pytest.mark.parametrize("data,content_type,status,field", [
    ("{}", "text/plain", 415, None),
    ("{}", "application/x-www-form-urlencoded", 415, None),
    ("{not json", "application/json", 400, "body"),
    ('{"mapping": NaN}', "application/json", 400, "body"),
    ("[]", "application/json", 400, "body"),
    ('{"mapping": {"a": "b\\u0000"}}', "application/json", 400, "mapping.a"),
    ('{"mapping": {"a": "\\ud800"}}', "application/json", 400, "mapping.a"),
    ('{"mapping": ' + "[" * 60 + "]" * 60 + "}", "application/json", 400, None),
    ('{"mapping": {}, "extra": 1}', "application/json", 400, "extra"),
    ('{"mapping": "entra"}', "application/json", 400, "mapping"),
    ('{"comment": "x"}', "application/json", 400, "mapping"),
    (b"\xff\xfe{}", "application/json", 400, "body"),
])
def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(site, client, tokens, data, content_type, status,
                                                                 field):
    before = snapshot(site.app)
    response = client.put("/admin/api/tenants/vantaa/idps/koulu/mapping", data=data, content_type=content_type,
                          headers=bearer(tokens["vantaa_admin"]))
    body = _error(response, status)
    if field:
        assert body["problems"][0]["field"] == field
    assert snapshot(site.app) == before


def test_a_body_larger_than_the_limit_is_413(client, tokens):
    big = b'{"xml": "' + b"x" * (1 << 20) + b'"}'
    response = client.post("/admin/api/tenants/vantaa/idps/koulu/metadata", data=big, content_type="application/json",
                           headers={**bearer(tokens["vantaa_admin"]), "Accept": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("query,field", [("limit=abc", "limit"), ("limit=0", "limit"), ("limit=201", "limit"),
                                         ("before=-1", "before"), ("limit=5&limit=6", "limit"), ("x=1", "x")])
def test_bad_query_parameters_are_400(client, tokens, query, field):
    body = _error(client.get(f"/admin/api/versions?{query}", headers=bearer(tokens["platform"])), 400)
    assert body["problems"][0]["field"] == field


def test_unknown_paths_and_methods_are_json_too(client, tokens):
    _error(client.get("/admin/api/no-such-thing", headers=bearer(tokens["platform"])), 404)
    _error(client.get("/admin/api/versions/0", headers=bearer(tokens["platform"])), 404)
    _error(client.get(f"/admin/api/versions/{2**40}", headers=bearer(tokens["platform"])), 404)
    response = client.delete("/admin/api/versions", headers=bearer(tokens["platform"]))
    _error(response, 405)
    assert "GET" in response.headers["Allow"]


def test_a_staged_change_answers_201_with_the_version_report_and_diff(site, client, tokens):
    response = client.put("/admin/api/tenants/vantaa/allowed-services",
                          json={"allowed_services": {"default": ["svc-vantaa"]}, "comment": "only ours"},
                          headers=bearer(tokens["vantaa_admin"]))
    assert response.status_code == 201
    staged = response.get_json()
    assert staged["version"]["status"] == "staged" and staged["version"]["comment"] == "only ours"
    assert "+allowed_services:" in staged["diff"] and staged["report"]["valid"]
    version = staged["version"]["id"]
    listed = client.get("/admin/api/versions?limit=5", headers=bearer(tokens["vantaa_viewer"])).get_json()
    assert version in [v["id"] for v in listed]
    discarded = client.post(f"/admin/api/versions/{version}/discard", headers=bearer(tokens["vantaa_admin"]))
    assert discarded.status_code == 200 and discarded.get_json()["version"]["status"] == "discarded"
    _error(client.post(f"/admin/api/versions/{version}/activate", headers=bearer(tokens["vantaa_admin"])), 409,
           "conflict")


def test_validation_problems_are_422_with_field_and_expected(client, tokens):
    response = client.put("/admin/api/tenants/vantaa/idps/koulu/mapping", json={"mapping": {"preset": "nope"}},
                          headers=bearer(tokens["vantaa_admin"]))
    body = _error(response, 422, "invalid_registry")
    assert body["problems"][0]["field"].endswith("identity_providers[0].mapping: preset")
    assert "mpassid-saml" in body["problems"][0]["expected"]


def test_tokens_made_through_the_api_work_once_shown_and_die_when_revoked(client, tokens):
    made = client.post("/admin/api/tokens", json={"grants": [{"role": "city_viewer", "tenant": "espoo"}],
                                                  "expires": "1h", "note": "espoo dashboard"},
                       headers=bearer(tokens["platform"]))
    assert made.status_code == 201
    token, token_id = made.get_json()["token"], made.get_json()["id"]
    assert [t["id"] for t in client.get("/admin/api/tenants", headers=bearer(token)).get_json()] == ["espoo"]
    listed = client.get("/admin/api/tokens", headers=bearer(tokens["platform"])).get_data(as_text=True)
    assert token_id in listed and token not in listed
    assert client.delete(f"/admin/api/tokens/{token_id}", headers=bearer(tokens["platform"])).status_code == 200
    _error(client.get("/admin/api/tenants", headers=bearer(token)), 401)


def test_no_token_ever_reaches_the_log(client, tokens, caplog):
    with caplog.at_level(logging.DEBUG):
        client.get("/admin/api/whoami", headers=bearer(tokens["vantaa_admin"]))
        client.get("/admin/api/tenants/espoo", headers=bearer(tokens["vantaa_admin"]))
        client.get("/admin/api/tenants", headers={"Authorization": "Bearer dgadm_" + "B" * 43})
        client.post("/admin/api/tokens", json={"grants": [{"role": "platform_admin"}], "expires": "1h"},
                    headers=bearer(tokens["platform"]))
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "dgadm_" not in text and "admin refused" in text
