"""Issue 6: a JOSE header or payload nested thousands deep is an invalid token, never a 500.

Every place that parses a compact JWS gets tokens whose header or payload is JSON nested
5,000 deep (the issue's case, over the header size bound), 1,200 deep (within it, beyond
Python's recursion limit) and 40 deep with a valid shape otherwise, over HTTP against the
live provider (both adapters) and through :mod:`digione_verify` directly.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from tokens_forge import auth_params, b64, get_authorize

from broker.tokens.jws import SigningKey
from digione_verify import (
    MAX_JSON_DEPTH,
    MalformedToken,
    TokenVerifier,
    decode_json_object,
    parse_jws,
    require_token,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNATURE = b64(b"\x01" * 64)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_header_token(depth: int, **claims) -> str:
    header = '{"alg":"ES256","kid":"k1","typ":"at+jwt","x":' + nested(depth) + "}"
    payload = json.dumps({"iss": "x", "sub": "y", "exp": int(time.time()) + 60})
    return f"{b64(header.encode())}.{b64(payload.encode())}.{SIGNATURE}"


def deep_payload_token(depth: int, iss: str = "pkjwt") -> str:
    header = '{"alg":"RS256","kid":"pkjwt-key"}'
    claims = json.dumps({"iss": iss, "sub": iss, "aud": "x", "exp": int(time.time()) + 60, "jti": "j"})
    payload = claims[:-1] + ',"x":' + nested(depth) + "}"
    return f"{b64(header.encode())}.{b64(payload.encode())}.{SIGNATURE}"


DEEP = {
    "header 5000 deep": deep_header_token(5000),
    "header 1200 deep": deep_header_token(1200),
    "header 40 deep": deep_header_token(40),
    "payload 5000 deep": deep_payload_token(5000),
    "payload 1200 deep": deep_payload_token(1200),
}


def assert_json_4xx(response: requests.Response, error: str, name: str) -> None:
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:200])
    body = response.json()
    assert body["error"] == error, (name, body)
    assert len(body["correlation_id"]) == 16, name


# --------------------------------------------------------------------------- the kit


def _signed(key: SigningKey, payload: str) -> str:
    """A token whose (deep) payload really is signed by ``key``: a misbehaving issuer."""
    header = json.dumps({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}).encode()
    signing_input = f"{b64(header)}.{b64(payload.encode())}"
    return f"{signing_input}.{b64(key._signature(signing_input.encode()))}"


@pytest.fixture(scope="module")
def kit():
    """A verifier trusting one key, and the deep tokens (deep payloads really signed by that key)."""
    key = SigningKey.generate("ES256")
    jwks = json.dumps({"keys": [key.jwk]}).encode()
    verifier = TokenVerifier("https://login.example", "https://api.example", jwks_uri="https://login.example/jwks",
                             allowed_algs=("ES256",), http_get=lambda url: jwks)
    tokens = {name: token for name, token in DEEP.items() if name.startswith("header")}
    for depth in (5000, 1200):  # the payload is decoded only after the signature verifies
        tokens[f"signed payload {depth} deep"] = _signed(
            key, '{"iss":"https://login.example","aud":"https://api.example","x":' + nested(depth) + "}")
    return verifier, tokens


def test_the_verification_kit_refuses_deep_tokens_as_malformed(kit):
    verifier, tokens = kit
    for name, token in tokens.items():
        if name.startswith("header"):
            with pytest.raises(MalformedToken):
                parse_jws(token)
        with pytest.raises(MalformedToken) as refused:
            verifier.verify(token)
        assert refused.value.status == 401 and refused.value.error == "invalid_token", name


def test_a_deep_payload_is_malformed_and_a_shallow_one_is_not():
    with pytest.raises(MalformedToken, match="nests deeper"):
        decode_json_object(('{"a":' + nested(MAX_JSON_DEPTH + 1) + "}").encode(), "payload")
    with pytest.raises(MalformedToken):
        decode_json_object(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", "payload")
    ok = decode_json_object(('{"a":' + "[" * (MAX_JSON_DEPTH - 1) + "1" + "]" * (MAX_JSON_DEPTH - 1) + "}").encode(),
                            "payload")
    assert "a" in ok
    # brackets inside strings do not count
    assert decode_json_object(('{"a":"' + "[" * 300 + '"}').encode(), "payload") == {"a": "[" * 300}


def test_require_token_answers_401_json_to_deep_tokens(kit):
    verifier, tokens = kit
    app = require_token(verifier)(lambda environ, start_response: [b"never"])
    for name, token in tokens.items():
        seen = {}

        def start_response(status, headers, seen=seen):
            seen.update(status=status, headers=dict(headers))

        body = b"".join(app({"REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": f"Bearer {token}"}, start_response))
        assert seen["status"].startswith("401"), (name, seen["status"])
        assert json.loads(body)["error"] == "invalid_token" and seen["headers"]["WWW-Authenticate"], name


# --------------------------------------------------------------------------- the provider over HTTP


def test_deep_client_assertions_are_invalid_client(any_env):
    env = any_env
    for name, assertion in DEEP.items():
        form = {"grant_type": "refresh_token", "refresh_token": "x", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion}
        response = requests.post(env.url("token"), data=form, timeout=10)
        assert_json_4xx(response, "invalid_client", name)


def test_deep_bearer_tokens_at_userinfo_are_invalid_token(any_env):
    env = any_env
    for name, token in DEEP.items():
        response = requests.get(env.url("userinfo"), headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert_json_4xx(response, "invalid_token", name)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        posted = requests.post(env.url("userinfo"), data={"access_token": token}, timeout=10)
        assert_json_4xx(posted, "invalid_token", name)


def test_deep_tokens_at_introspection_and_revocation_are_inactive(any_env):
    env = any_env
    auth = ("rs", env.clients["rs"].secret)
    for name, token in DEEP.items():
        answer = requests.post(env.url("introspect"), data={"token": token}, auth=auth, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"active": False}, name  # RFC 7662 §2.2
        revoked = requests.post(env.url("revoke"), data={"token": token}, auth=auth, timeout=10)
        assert revoked.status_code == 200, name  # RFC 7009 §2.2


def test_deep_id_token_hints_at_authorize_are_refused_by_redirect(any_env):
    env = any_env
    uri = env.clients["rp1"].redirect_uri
    for name, token in DEEP.items():
        response = get_authorize(env, auth_params(env, "rp1", id_token_hint=token, prompt="none"))
        assert response.status_code == 302, (name, response.status_code, response.text[:200])
        location = response.headers["Location"]
        assert location.startswith(uri + "?"), name
        query = parse_qs(urlsplit(location).query)
        assert query["error"] == ["invalid_request"] and "code" not in query, (name, query)


def test_deep_id_token_hints_at_end_session_are_ignored(any_env):
    env = any_env
    bye = "https://rp1.example/bye"
    for name, token in DEEP.items():
        response = requests.get(env.url("end_session"), params={"id_token_hint": token,
                                                                "post_logout_redirect_uri": bye},
                                allow_redirects=False, timeout=10)
        # RP-Initiated Logout §4: a hint that does not validate means no redirection, a page instead
        assert response.status_code == 200, (name, response.status_code, response.text[:200])
        assert "Location" not in response.headers and "text/html" in response.headers["Content-Type"], name
