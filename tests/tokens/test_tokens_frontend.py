"""The SATOSA frontend adapter: endpoints, decorations, state, backend errors, logout."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from satosa.context import Context
from satosa.exception import SATOSAAuthenticationError
from satosa.state import State
from tokens_env import make_env
from tokens_forge import auth_params, get_authorize, redirected_error
from tokens_rp import code_flow

from broker.store import MemoryStore
from broker.tokens.frontend import OIDCFrontend


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


def test_authorize_decorates_the_context_for_the_login_path(sat):
    params = auth_params(sat, "rp1", prompt="login", max_age="0", login_hint="maija@koulu.example",
                         ui_locales="sv fi", acr_values="urn:digione:idp:vantaa/saml urn:test:loa2")
    redirected_error(get_authorize(sat, params), sat.clients["rp1"].redirect_uri)
    authn = sat.login.seen[-1]
    assert authn == {"prompt": ["login"], "max_age": 0, "login_hint": "maija@koulu.example",
                     "idp_hint": "vantaa/saml", "acr_values": ["urn:digione:idp:vantaa/saml", "urn:test:loa2"],
                     "ui_locales": "sv fi", "client_id": "rp1", "id_token_hint_sub": None}
    get_authorize(sat, auth_params(sat, "rp1", idp_hint="espoo", acr_values="urn:digione:idp:vantaa"))
    assert sat.login.seen[-1]["idp_hint"] == "espoo"  # the parameter wins over acr_values


def test_authorization_state_is_json_and_force_authn_is_set():
    """Drive the endpoint with a bare SATOSA context and inspect what it leaves behind."""
    captured = {}

    def callback(context, internal):
        captured.update(state=dict(context.state), force=context.get_decoration(Context.KEY_FORCE_AUTHN),
                        requester=internal.requester, name=internal.requester_name)
        return "handed over"

    import tempfile
    from pathlib import Path

    from tokens_env import Clock, Server

    server = Server()
    try:
        env = make_env(MemoryStore(), Clock(), server, Path(tempfile.mkdtemp()))
        frontend = OIDCFrontend(callback, {"attributes": {}}, {"provider": env.provider}, env.issuer, "OIDC")
        forced = {}
        for name, extra in {"plain": {}, "login": {"prompt": "login"}, "max_age": {"max_age": "600"}}.items():
            context = Context()
            context.path = "authorize"
            context.request_method = "GET"
            context.qs_params = context.request = auth_params(env, "rp1", **extra)
            context.http_headers = {}
            context.state = State()
            assert frontend.authorization_endpoint(context) == "handed over"
            forced[name] = captured["force"]
    finally:
        server.close()
    assert forced == {"plain": None, "login": "true", "max_age": "true"} and captured["requester"] == "rp1"
    saved = captured["state"]["OIDC"]
    assert json.loads(json.dumps(saved)) == saved and saved["redirect_uri"] == "https://rp1.example/cb"


@pytest.mark.parametrize("message,error", [
    ("access_denied", "access_denied"), ("login_required: no SSO session", "login_required"),
    ("interaction_required", "interaction_required"), ("xmlsec1 exploded at line 3", "server_error"),
])
def test_backend_errors_are_redirected_to_the_validated_uri(sat, message, error):
    sat.login.identity = dict(sat.login.identity, fail=message)
    query = redirected_error(get_authorize(sat, auth_params(sat, "rp1")), sat.clients["rp1"].redirect_uri)
    assert query["error"] == error and query["state"] == "s-1" and query["iss"] == sat.issuer
    assert "xmlsec1" not in query["error_description"]


def test_backend_error_or_response_without_state_is_shown(sat):
    frontend = sat.satosa.frontend
    response = frontend.handle_backend_error(SATOSAAuthenticationError(State(), "access_denied"))
    assert response.status.startswith("400") and "correlation-id" in response.message
    context = Context()
    context.state = State()
    from satosa.internal import InternalData

    response = frontend.handle_authn_response(context, InternalData(attributes={"user_id": "x"}))
    assert response.status.startswith("400") and not any(k == "Location" for k, _ in response.headers)


def test_end_session_clears_the_sso_session_and_redirects_only_to_registered_uris(sat):
    ended = []
    sat.satosa.frontend.end_session_callback = lambda context: ended.append(context.get_decoration("digione.logout"))
    _, token, _, _ = code_flow(sat, "rp1")
    bye = "https://rp1.example/bye"
    response = requests.get(sat.url("end_session"), allow_redirects=False, timeout=5, params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": bye, "state": "st"})
    assert response.status_code == 302 and response.headers["Location"] == bye + "?state=st"
    assert ended[-1]["sid"] == "sso-session-1" and ended[-1]["client_id"] == "rp1" and ended[-1]["sub"]

    for params in ({"client_id": "rp1", "post_logout_redirect_uri": "https://evil.example/"},
                   {"client_id": "rp2", "id_token_hint": token["id_token"], "post_logout_redirect_uri": bye},
                   {"id_token_hint": token["id_token"] + "x", "post_logout_redirect_uri": bye},
                   {"post_logout_redirect_uri": bye}):
        response = requests.get(sat.url("end_session"), params=params, allow_redirects=False, timeout=5)
        assert response.status_code == 200 and "Location" not in response.headers
    assert len(ended) == 5  # the SSO session is ended in every case
    page = requests.get(sat.url("end_session"), params={"client_id": "rp1", "post_logout_redirect_uri": bye,
                                                       "ui_locales": "en"}, allow_redirects=False, timeout=5)
    assert page.status_code == 302
    assert requests.get(sat.url("end_session"), params={"ui_locales": "fi"}, timeout=5).text.count(
        "Olet kirjautunut ulos") >= 1


def test_protocol_endpoints_leave_satosa_state_alone(sat):
    _, token, _, _ = code_flow(sat, "rp1")
    context = Context()
    context.path = "userinfo"
    context.request_method = "GET"
    context.qs_params = context.request = {}
    context.http_headers = {"HTTP_AUTHORIZATION": "Bearer " + token["access_token"]}
    context.state = State()
    userinfo = next(spec for regex, spec in sat.satosa.endpoints if re.search(regex, "userinfo"))
    response = userinfo(context)
    assert response.status == "200 OK" and json.loads(response.message)["sub"]
    assert set(context.state) == {"SESSION_ID"}  # what State() starts with; nothing added


def test_code_redirect_keeps_registered_query(clock, server, tmp_path):
    env = make_env(MemoryStore(), clock, server, tmp_path, mode="satosa")
    env.registry.add_client({"client_id": "q", "redirect_uris": ["https://q.example/cb?tenant=a"],
                             "token_endpoint_auth_method": "client_secret_basic"})
    params = dict(auth_params(env, "rp1"), client_id="q", redirect_uri="https://q.example/cb?tenant=a")
    location = get_authorize(env, params).headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["tenant"] == ["a"] and query["code"] and query["state"] == ["s-1"]
