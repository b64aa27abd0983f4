"""Property tests: whatever arrives, the provider answers with a 4xx or a valid result, never a 500.

Hypothesis generates parameter sets around the real parameter names (with repeats, empty
values, odd Unicode and near-miss values) and feeds them to the in-process provider.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokens_env import MASTER_SECRET
from tokens_harness import release, subject

from broker.errors import BrokerError
from broker.registry.relying_parties import RelyingParties
from broker.store import MemoryStore
from broker.tokens import KeyRing, build_provider
from broker.tokens.authorize import AuthorizationRequest
from broker.tokens.http import Request, Response
from digione_verify import InvalidToken, TokenVerifier

NAMES = ["client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
         "code_challenge_method", "prompt", "max_age", "login_hint", "ui_locales", "acr_values", "id_token_hint",
         "idp_hint", "request", "response_mode", "grant_type", "code", "code_verifier", "refresh_token", "token",
         "token_type_hint", "client_secret", "client_assertion", "client_assertion_type", "access_token"]
TEXT = st.one_of(
    st.sampled_from(["rp1", "https://rp1.example/cb", "code", "openid", "openid roles", "S256", "plain", "none",
                     "login", "0", "-1", "²", "authorization_code", "refresh_token", "e30.e30.", "a.b.c",
                     "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "urn:digione:idp:vantaa/saml", ""]),
    st.text(max_size=60),
)
PARAMS = st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=10)),
                         st.lists(TEXT, min_size=1, max_size=3), max_size=12)
HEADERS = st.dictionaries(st.sampled_from(["authorization", "content-type", "accept", "accept-language"]),
                          st.one_of(st.just("Basic " + base64.b64encode(b"rp1:secret").decode()),
                                    st.just("Bearer a.b.c"), st.text(max_size=40)), max_size=3)


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    store = MemoryStore()
    keyring = KeyRing(store, MASTER_SECRET)
    keyring.ensure()
    registry = RelyingParties()
    registry.add_client({"client_id": "rp1", "redirect_uris": ["https://rp1.example/cb"], "client_secret": "secret"})
    registry.add_client({"client_id": "spa", "redirect_uris": ["https://spa.example/cb"],
                         "token_endpoint_auth_method": "none"})
    return build_provider(issuer="https://login.test", store=store, clients=registry, keyring=keyring,
                          release=release, subject=subject)


QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@QUICK
@given(params=PARAMS, method=st.sampled_from(["GET", "POST", "PUT"]), headers=HEADERS)
def test_authorize_never_fails_with_a_server_error(provider, params, method, headers):
    request = Request(method, "/authorize", headers, params if method != "POST" else {}, params)
    result = provider.authorize(request)
    if isinstance(result, Response):
        assert result.status in (302, 400, 405)
        if result.status == 302:  # only ever to a registered URI
            assert result.location.startswith(("https://rp1.example/cb?", "https://spa.example/cb?"))
    else:
        assert isinstance(result, AuthorizationRequest)


@QUICK
@given(params=PARAMS, headers=HEADERS, endpoint=st.sampled_from(["/token", "/introspect", "/revoke", "/userinfo",
                                                                  "/jwks", "/.well-known/openid-configuration"]),
       method=st.sampled_from(["GET", "POST"]))
def test_endpoints_answer_bad_input_with_4xx(provider, params, headers, endpoint, method):
    response = provider.handle(Request(method, endpoint, headers, params if method == "GET" else {}, params))
    assert response.status < 500, response.body


@QUICK
@given(token=st.one_of(st.text(max_size=200), st.binary(max_size=200),
                       st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.text(max_size=40), st.text(max_size=40),
                                 st.text(max_size=40))))
def test_verify_raises_only_invalid_token(provider, token):
    verifier = TokenVerifier("https://login.test", "rp1",
                             http_get=lambda url: provider.keyring.jwks_json() if url.endswith("jwks")
                             else provider._discovery_json)
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_broker_error_is_the_only_refusal_type_of_validate(provider):
    from broker.tokens.authorize import validate

    with pytest.raises(BrokerError):
        validate({"client_id": ["nobody"]}, clients=provider.clients, scopes_supported=("openid",),
                 id_token_hint=lambda token, client_id: {})
