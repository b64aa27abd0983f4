"""The OIDC frontend: endpoints, the typed service request it hands the login, errors, logout."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from satosa.internal import InternalData
from tokens_env import make_env
from tokens_forge import auth_params, get_authorize, redirected_error
from tokens_rp import code_flow

from broker.errors import ExpiredFlow
from broker.frontends.oidc import OIDCFrontend
from broker.login.context import LoginContext
from broker.login.flow import LoginFlow, ServiceRequest
from broker.login.seal import FlowSeal
from broker.store import MemoryStore


@pytest.fixture
def sat(clock, server, tmp_path):
    return make_env(MemoryStore(), clock, server, tmp_path, mode="satosa")


def test_endpoints_are_at_the_issuer_root(sat):
    endpoints = sat.satosa.endpoints
    paths = [".well-known/openid-configuration", "jwks", "authorize", "token", "userinfo", "introspect", "revoke",
             "end_session"]
    assert len(endpoints) == len(paths)
    for path in paths:
        assert sum(bool(re.search(regex, path)) for regex, _ in endpoints) == 1, path
    assert not any(re.search(regex, "x/token") or re.search(regex, "tokens") for regex, _ in endpoints)
    assert not any(re.search(regex, ".well-known/openid-configurationX") for regex, _ in endpoints)


def test_frontend_requires_a_provider_whose_issuer_is_base(sat):
    with pytest.raises(ValueError):
        OIDCFrontend(None, {"attributes": {}}, {"provider": sat.provider}, "https://other.example", "OIDC")
    with pytest.raises(ValueError):
        OIDCFrontend(None, {"attributes": {}}, {"provider": "not a provider"}, sat.issuer, "OIDC")


def test_authorize_hands_the_login_a_typed_service_request(sat):
    params = auth_params(sat, "rp1", prompt="login", max_age="0", login_hint="maija@koulu.example",
                         ui_locales="sv fi", acr_values="urn:digione:idp:vantaa/saml urn:test:loa2")
    get_authorize(sat, params)
    request = sat.satosa.requests[-1]
    assert isinstance(request, ServiceRequest) and request.protocol == "oidc" and request.frontend == "OIDC"
    assert (request.requester, request.prompt, request.max_age, request.login_hint, request.idp_hint,
            request.ui_locales) == ("rp1", ("login",), 0, "maija@koulu.example", "vantaa/saml", "sv fi")
    assert request.oidc.redirect_uri == sat.clients["rp1"].redirect_uri and request.oidc.state == "s-1"
    assert request.reauthenticate_upstream
    get_authorize(sat, auth_params(sat, "rp1", idp_hint="espoo", acr_values="urn:digione:idp:vantaa"))
    assert sat.satosa.requests[-1].idp_hint == "espoo"  # the parameter wins over acr_values


def test_the_service_request_survives_the_flow_cookie(sat):
    """What the login seals into the flow cookie comes back equal: nothing is lost between requests."""
    get_authorize(sat, auth_params(sat, "rp1", max_age="600", ui_locales="sv"))
    request = sat.satosa.requests[-1]
    flow = LoginFlow.begin(request)
    seal = FlowSeal(b"k" * 40, name="digione_flow", max_age=900)
    assert seal.open(seal.seal(flow)) == flow and flow.lang == "sv"
    assert request.reauthenticate_upstream and not request.force_login  # max_age: the IdP re-authenticates


@pytest.mark.parametrize("error,expected", [
    ("access_denied", "access_denied"), ("login_required", "login_required"),
    ("interaction_required", "interaction_required"), ("xmlsec1 exploded at line 3", "server_error"),
])
def test_login_errors_are_redirected_to_the_validated_uri(sat, error, expected):
    sat.login.identity = dict(sat.login.identity, fail=error)
    query = redirected_error(get_authorize(sat, auth_params(sat, "rp1")), sat.clients["rp1"].redirect_uri)
    assert query["error"] == expected and query["state"] == "s-1" and query["iss"] == sat.issuer
    assert "xmlsec1" not in query["error_description"]


def test_an_answer_without_a_flow_is_refused(sat):
    frontend = sat.satosa.frontend
    context = LoginContext()
    with pytest.raises(ExpiredFlow):
        frontend.handle_authn_response(context, InternalData(attributes={"user_id": "x"}))
    with pytest.raises(ExpiredFlow):
        frontend.deny(context, "access_denied", "no")


def test_end_session_hands_the_providers_decision_to_the_logout(sat):
    """RP-Initiated Logout 1.0: the frontend asks the provider, answers refusals itself and hands every
    decision to the broker's logout (here the harness's stand-in); it never ends a session on its own."""
    _, token, _, _ = code_flow(sat, "rp1")
    bye = "https://rp1.example/bye"
    decisions = sat.satosa.decisions
    response = requests.get(sat.url("end_session"), allow_redirects=False, timeout=5, params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": bye, "state": "st"})
    assert response.status_code == 302 and response.headers["Location"] == bye + "?state=st"
    assert decisions[-1].confirmed and decisions[-1].client_id == "rp1" and decisions[-1].sid == "sso-session-1"

    for params in ({"client_id": "rp1", "post_logout_redirect_uri": "https://evil.example/"},
                   {"id_token_hint": token["id_token"] + "x", "post_logout_redirect_uri": bye},
                   {"post_logout_redirect_uri": bye}):
        response = requests.get(sat.url("end_session"), params=params, allow_redirects=False, timeout=5)
        assert response.status_code == 200 and "Location" not in response.headers  # the confirmation page
        assert not decisions[-1].confirmed and decisions[-1].post_logout_redirect_uri is None
    seen = len(decisions)
    refused = requests.get(sat.url("end_session"), allow_redirects=False, timeout=5, params={
        "client_id": "rp2", "id_token_hint": token["id_token"], "post_logout_redirect_uri": bye})
    assert refused.status_code == 400 and "Location" not in refused.headers and len(decisions) == seen
    page = requests.get(sat.url("end_session"), params={"client_id": "rp1", "post_logout_redirect_uri": bye,
                                                       "ui_locales": "en"}, allow_redirects=False, timeout=5)
    assert page.status_code == 302 and decisions[-1].confirmed
    assert "Kirjaudutaanko ulos?" in requests.get(sat.url("end_session"), params={"ui_locales": "fi"}, timeout=5).text


def test_protocol_endpoints_never_open_the_flow(sat):
    _, token, _, _ = code_flow(sat, "rp1")
    context = LoginContext()
    context.path = "userinfo"
    context.request_method = "GET"
    context.http_headers = {"HTTP_AUTHORIZATION": "Bearer " + token["access_token"]}
    opened = []
    context.open_flow_with(lambda: opened.append(1))
    userinfo = next(spec for regex, spec in sat.satosa.endpoints if re.search(regex, "userinfo"))
    response = userinfo(context)
    assert response.status == "200 OK" and json.loads(response.message)["sub"]
    assert not opened and not context.flow_touched


def test_code_redirect_keeps_registered_query(clock, server, tmp_path):
    env = make_env(MemoryStore(), clock, server, tmp_path, mode="satosa")
    env.registry.add_client({"client_id": "q", "redirect_uris": ["https://q.example/cb?tenant=a"],
                             "token_endpoint_auth_method": "client_secret_basic"})
    params = dict(auth_params(env, "rp1"), client_id="q", redirect_uri="https://q.example/cb?tenant=a")
    location = get_authorize(env, params).headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["tenant"] == ["a"] and query["code"] and query["state"] == ["s-1"]
