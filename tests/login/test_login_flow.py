"""The login flow: one typed object, sealed whole, replaced (never patched) when the IdP changes."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.login import plugins
from broker.login.context import parse_form
from broker.login.flow import FlowMismatch, LoginFlow, SamlRequest, ServiceRequest
from broker.login.seal import FlowSeal, SealError, SealExpired
from broker.tokens.authorize import AuthorizationRequest

SECRET = b"s" * 40


def _oidc_flow(now: float | None = None) -> LoginFlow:
    authz = AuthorizationRequest(client_id="rp", redirect_uri="https://rp.example/cb", scopes=("openid", "roles"),
                                 state="st", nonce="n", code_challenge="c" * 43, prompt=("login",), max_age=60)
    service = ServiceRequest(protocol="oidc", frontend="oidc", requester="rp", requester_name="RP",
                             prompt=("login",), max_age=60, idp_hint="vantaa", ui_locales="sv fi", oidc=authz)
    return LoginFlow.begin(service, now=now)


def _saml_flow() -> LoginFlow:
    request = SamlRequest(sp="https://sp.example/sp", request_id="_r1", acs_url="https://sp.example/acs",
                          binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", relay_state="rs",
                          is_passive=True, subject="pairwise-1", authn_context=("urn:mpass.id:authnsource:espoo",))
    service = ServiceRequest(protocol="saml", frontend="saml_idp", requester=request.sp, prompt=("none",),
                             saml=request)
    return LoginFlow.begin(service)


@pytest.mark.parametrize("make", [_oidc_flow, _saml_flow])
def test_a_flow_survives_its_cookie_whole(make):
    flow = make().to_idp("vantaa/koulu", "saml").upstream_sent(request_id="id-1", relay_state="rs-1")
    seal = FlowSeal(SECRET, name="digione_flow", max_age=10**9)
    assert seal.open(seal.seal(flow)) == flow


def test_every_flipped_byte_is_refused():
    seal = FlowSeal(SECRET, name="digione_flow", max_age=10**9)
    sealed = seal.seal(_oidc_flow())
    body = sealed[3:]
    for i in range(0, len(body), 7):
        flipped = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1:]
        with pytest.raises(SealError):
            seal.open("v1." + flipped)


def test_the_seal_is_bound_to_its_cookie_name_key_and_age():
    clock = [1_000_000.0]
    seal = FlowSeal(SECRET, name="digione_flow", max_age=60, clock=lambda: clock[0])
    flow = _oidc_flow(now=clock[0])
    sealed = seal.seal(flow)
    with pytest.raises(SealError):
        FlowSeal(SECRET, name="other", max_age=60, clock=lambda: clock[0]).open(sealed)
    with pytest.raises(SealError):
        FlowSeal(b"t" * 40, name="digione_flow", max_age=60, clock=lambda: clock[0]).open(sealed)
    for garbage in ("", "v1.", "v2.abc", "v1.!!!!", "v1." + "A" * 10, "v1." + "A" * 9000):
        with pytest.raises(SealError):
            seal.open(garbage)
    # Resealing a flow (a language change, another IdP) never makes it younger than it is.
    clock[0] += 50
    resealed = seal.seal(flow.in_language("fi"))
    clock[0] += 20
    with pytest.raises(SealExpired):
        seal.open(resealed)


def test_a_sealed_value_that_is_not_a_flow_is_refused():
    seal = FlowSeal(SECRET, name="digione_flow", max_age=60)
    with pytest.raises(SealError):
        seal.open(seal.seal_data({"req_id": "id-1"}))


def test_choosing_another_idp_replaces_the_whole_upstream_part():
    flow = _oidc_flow().to_idp("espoo/koulu", "saml").upstream_sent(request_id="id-espoo", relay_state="r")
    moved = flow.to_idp("vantaa/entra", "oidc_vantaa_entra")
    assert moved.upstream.idp == "vantaa/entra" and moved.upstream.request_id is None
    assert moved.upstream.relay_state is None and moved.service == flow.service and moved.id == flow.id
    # The SAML backend's answer no longer matches the flow.
    with pytest.raises(FlowMismatch):
        moved.waiting_for("saml")
    assert moved.waiting_for("oidc_vantaa_entra") is moved.upstream
    with pytest.raises(FlowMismatch):
        _oidc_flow().waiting_for("saml")
    with pytest.raises(FlowMismatch):
        _oidc_flow().upstream_sent(state="x")
    assert flow.upstream_done().upstream is None


def test_flows_are_immutable_and_a_service_request_carries_exactly_its_protocol():
    flow = _oidc_flow()
    with pytest.raises(dataclasses.FrozenInstanceError):
        flow.upstream = None  # type: ignore[misc]
    with pytest.raises(ValueError):
        ServiceRequest(protocol="saml", frontend="x", requester="rp", oidc=flow.service.oidc)
    assert flow.lang == "sv" and flow.service.reauthenticate_upstream and flow.service.force_login
    assert _saml_flow().service.passive


def test_the_micro_service_view_narrows_and_never_widens():
    identity = {"user_id": "u" * 64, "tenant": "espoo", "idp": "koulu", "given_name": "Aino", "learner_id": "1.2",
                "roles": [{"role": "teacher", "code": 2, "school": "00001", "group": "9A"},
                          {"role": "learner", "code": 1, "school": "00002"}],
                "schools": [{"code": "00001", "oid": "1.1", "names": {}}, {"code": "00002", "oid": "1.2", "names": {}}]}
    view = plugins.identity_view(identity)
    assert view["roles"] == ["teacher", "learner"] and view["schools"] == ["00001", "00002"]
    assert view["groups"] == ["9A"] and view["tenant"] == ["espoo"] and "user_id" not in view
    assert plugins.narrow(identity, view) == identity
    # A plugin filters schools and given_name away and tries to add a role and a new claim.
    view = {**view, "schools": ["00001"], "roles": ["teacher", "learner", "principal"], "email": ["x@y"]}
    del view["given_name"]
    del view["tenant"]
    narrowed = plugins.narrow(identity, view)
    assert "given_name" not in narrowed and "email" not in narrowed and narrowed["tenant"] == "espoo"
    assert [r["role"] for r in narrowed["roles"]] == ["teacher"] and len(narrowed["schools"]) == 1
    assert narrowed["user_id"] == identity["user_id"]


@pytest.mark.parametrize("encoded", [
    "", "a=1", "a=1&b=", "a=1&a=2", "SAMLResponse=PHNhbWxw%2Bb%2F%3D%3D&RelayState=x+y",
    "x=%252B", "x=%%2B41", "x=%2b%2f%3d", "n%C3%A4me=v%C3%A4l+ue&&=e", "x=%zz", "x=%E2%82%AC%2B",
])
def test_parse_form_matches_the_standard_library(encoded):
    assert parse_form(encoded) == dict(parse_qsl(encoded, keep_blank_values=True))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab=&+%2BFfD3dzZ09é/")), max_size=40))
def test_parse_form_matches_the_standard_library_on_any_input(encoded):
    assert parse_form(encoded) == dict(parse_qsl(encoded, keep_blank_values=True))
