"""Each attack of issue 4, tried over HTTP against the live provider, and refused.

Forged tokens are built here with the standard library only (``hmac``, ``base64``,
``json``), never with the provider's code.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from authlib.common.security import generate_token
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey
from tokens_forge import (
    auth_params,
    b64,
    forge,
    get_authorize,
    introspect,
    public_key_material,
    redirected_error,
    token_request,
)
from tokens_rp import authorize, code_flow, session

from broker.tokens import access as access_module
from broker.tokens.grants import code_key
from digione_verify import verify_jws

# --------------------------------------------------------------------------- open redirect


EVIL = "https://evil.example/cb"


def assert_shown(response: requests.Response) -> None:
    """An error page for the person: 4xx, no Location, a correlation id, no stack trace."""
    assert 400 <= response.status_code < 500, response.status_code
    assert "Location" not in response.headers
    assert 'id="correlation-id"' in response.text and "Traceback" not in response.text
    assert "evil.example" not in response.text


@pytest.mark.parametrize("case", [
    "unknown client", "unregistered uri", "uri with extra path", "uri with added query", "uri trailing slash",
    "uri case changed", "missing uri", "repeated uri", "repeated uri, good last", "repeated client_id",
    "missing client_id",
])
def test_invalid_client_or_redirect_uri_is_shown_never_redirected(any_env, case):
    env = any_env
    good = env.clients["rp1"].redirect_uri
    params = auth_params(env, "rp1")
    # Everything else is wrong too: the redirect URI check must come first.
    params.update(response_type="token", code_challenge_method="plain", prompt="bogus")
    if case == "unknown client":
        params.update(client_id="nobody", redirect_uri=EVIL)
    elif case == "unregistered uri":
        params["redirect_uri"] = EVIL
    elif case == "uri with extra path":
        params["redirect_uri"] = good + "/../../evil"
    elif case == "uri with added query":
        params["redirect_uri"] = good + "?next=" + EVIL
    elif case == "uri trailing slash":
        params["redirect_uri"] = good + "/"
    elif case == "uri case changed":
        params["redirect_uri"] = good.upper()
    elif case == "missing uri":
        del params["redirect_uri"]
    elif case == "repeated uri":
        params["redirect_uri"] = [good, EVIL]
    elif case == "repeated uri, good last":
        params["redirect_uri"] = [EVIL, good]
    elif case == "repeated client_id":
        params["client_id"] = ["rp1", "rp2"]
    elif case == "missing client_id":
        del params["client_id"]
    assert_shown(get_authorize(env, params, headers={"Accept-Language": "sv"}))


def test_shown_error_is_localized_and_json_for_machines(memory_env):
    env = memory_env
    page = get_authorize(env, {"client_id": "nobody", "redirect_uri": EVIL, "ui_locales": "en"})
    assert page.status_code == 400 and "The service you came from is not registered." in page.text
    fi = get_authorize(env, {"client_id": "nobody", "redirect_uri": EVIL})
    assert "Palvelua, josta tulit, ei ole rekisteröity." in fi.text
    machine = get_authorize(env, {"client_id": "rp1", "redirect_uri": EVIL}, headers={"Accept": "application/json"})
    body = machine.json()
    assert machine.status_code == 400 and body["error"] == "invalid_request" and body["correlation_id"]


def test_other_errors_are_redirected_with_state_and_iss(any_env):
    env = any_env
    uri = env.clients["rp1"].redirect_uri
    cases = {
        "unsupported_response_type": {"response_type": "token"},
        "invalid_scope": {"scope": "profile"},
        "invalid_request": {"prompt": "none login"},
        "request_not_supported": {"request": forge({"alg": "none"}, {"iss": "rp1", "aud": env.issuer,
                                                                      "redirect_uri": EVIL})},
        "request_uri_not_supported": {"request_uri": EVIL},
    }
    for error, extra in cases.items():
        query = redirected_error(get_authorize(env, auth_params(env, "rp1", **extra)), uri)
        assert query["error"] == error and query["state"] == "s-1" and query["iss"] == env.issuer


# --------------------------------------------------------------------------- PKCE


def test_pkce_plain_and_missing_method_are_refused_not_500(any_env):
    env = any_env
    uri = env.clients["spa"].redirect_uri
    for extra in ({"code_challenge_method": "plain", "code_challenge": "x" * 50},
                  {"code_challenge_method": None, "code_challenge": "x" * 50},  # absent means plain
                  {"code_challenge": "tooshort"},
                  {"code_challenge": None, "code_challenge_method": "S256"}):
        query = redirected_error(get_authorize(env, auth_params(env, "spa", **extra)), uri)
        assert query["error"] == "invalid_request"


def test_public_client_must_use_pkce(env):
    query = redirected_error(get_authorize(env, auth_params(env, "spa", code_challenge=None,
                                                            code_challenge_method=None)),
                             env.clients["spa"].redirect_uri)
    assert query["error"] == "invalid_request" and "PKCE" in query["error_description"]


def _code(env, client_id: str, **extra) -> str:
    response = get_authorize(env, auth_params(env, client_id, **extra))
    return redirected_error(response, env.clients[client_id].redirect_uri)["code"]


def test_pkce_verifier_without_challenge_is_a_downgrade(env):
    code = _code(env, "rp1", code_challenge=None, code_challenge_method=None)
    response = token_request(env, "rp1", {"grant_type": "authorization_code", "code": code,
                                          "redirect_uri": env.clients["rp1"].redirect_uri,
                                          "code_verifier": "v" * 64})
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("verifier", ["w" * 64, None, "v" * 42, "v" * 63 + "!"])
def test_pkce_wrong_or_missing_verifier(env, verifier):
    code = _code(env, "spa")
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": env.clients["spa"].redirect_uri,
            "client_id": "spa"}
    if verifier is not None:
        data["code_verifier"] = verifier
    response = requests.post(env.url("token"), data=data, timeout=5)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


# --------------------------------------------------------------------------- codes


def test_code_replay_is_refused_and_revokes_its_tokens(any_env):
    env = any_env
    s = session(env, "rp1")
    verifier = generate_token(48)
    location, query = authorize(env, s, nonce="n", code_verifier=verifier)
    first = s.fetch_token(env.url("token"), authorization_response=location, code_verifier=verifier)
    assert introspect(env, first["access_token"])["active"] is True
    replay = token_request(env, "rp1", {"grant_type": "authorization_code", "code": query["code"],
                                        "redirect_uri": env.clients["rp1"].redirect_uri, "code_verifier": verifier})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert introspect(env, first["access_token"]) == {"active": False}
    assert introspect(env, first["refresh_token"]) == {"active": False}
    assert requests.get(env.url("userinfo"), headers={"Authorization": "Bearer " + first["access_token"]},
                        timeout=5).status_code == 401
    refresh = token_request(env, "rp1", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refresh.json()["error"] == "invalid_grant"


def test_code_cannot_be_redeemed_by_another_client(env):
    code = _code(env, "rp1", code_challenge=None, code_challenge_method=None)
    stolen = token_request(env, "rp2", {"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": env.clients["rp1"].redirect_uri})
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    # and the code is burnt for everyone
    late = token_request(env, "rp1", {"grant_type": "authorization_code", "code": code,
                                      "redirect_uri": env.clients["rp1"].redirect_uri})
    assert late.json()["error"] == "invalid_grant"


def test_code_redirect_uri_must_match(env):
    code = _code(env, "rp1", code_challenge=None, code_challenge_method=None)
    response = token_request(env, "rp1", {"grant_type": "authorization_code", "code": code,
                                          "redirect_uri": "https://rp1.example/other"})
    assert response.json()["error"] == "invalid_grant"


def test_code_expires(env):
    code = _code(env, "rp1", code_challenge=None, code_challenge_method=None)
    if env.store.shared:  # Redis expires on its own clock
        env.store.client.delete(env.store._k(code_key(code)))
    else:
        env.store._clock = lambda: time.monotonic() + 61
    response = token_request(env, "rp1", {"grant_type": "authorization_code", "code": code,
                                          "redirect_uri": env.clients["rp1"].redirect_uri})
    assert response.json()["error"] == "invalid_grant"


# --------------------------------------------------------------------------- refresh tokens


def test_refresh_token_of_another_client_is_refused_and_family_revoked(env):
    _, token, _, _ = code_flow(env, "rp1")
    stolen = token_request(env, "rp2", {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    assert introspect(env, token["access_token"]) == {"active": False}
    own = token_request(env, "rp1", {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert own.json()["error"] == "invalid_grant"


def test_public_client_refresh_token_is_bound_to_it(env):
    _, token, _, _ = code_flow(env, "spa")
    stolen = requests.post(env.url("token"), timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": "rp1"})
    assert stolen.status_code == 401  # rp1 is confidential: naming it without its secret fails first
    stolen = token_request(env, "rp2", {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert stolen.json()["error"] == "invalid_grant"


def test_refresh_token_reuse_revokes_the_whole_family(any_env):
    env = any_env
    s, token, _, _ = code_flow(env, "rp1")
    second = s.refresh_token(env.url("token"), refresh_token=token["refresh_token"])
    third = s.refresh_token(env.url("token"), refresh_token=second["refresh_token"])
    assert introspect(env, third["access_token"])["active"] is True
    reuse = token_request(env, "rp1", {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    for access in (token["access_token"], second["access_token"], third["access_token"]):
        assert introspect(env, access) == {"active": False}
    latest = token_request(env, "rp1", {"grant_type": "refresh_token", "refresh_token": third["refresh_token"]})
    assert latest.json()["error"] == "invalid_grant"


def test_refresh_family_has_an_absolute_lifetime(store, clock, server, tmp_path):
    from tokens_env import make_env

    env = make_env(store, clock, server, tmp_path, lifetimes={"refresh_token": 100, "refresh_family": 200})
    s, token, _, _ = code_flow(env, "rp1")
    clock.advance(150)
    second = s.refresh_token(env.url("token"))
    assert second["expires_in"] == 50  # the access token never outlives its grant
    if store.shared:
        store.client.delete(*store.client.keys(store._k("tok:grant:*")))  # Redis TTLs run on Redis's clock
    else:
        store._clock = lambda: time.monotonic() + 201
    late = token_request(env, "rp1", {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]})
    assert late.json()["error"] == "invalid_grant"


# --------------------------------------------------------------------------- forged JWTs


def _hint_claims(env, sub: str = "someone") -> dict:
    now = int(time.time())
    return {"iss": env.issuer, "sub": sub, "aud": "rp1", "iat": now, "exp": now + 300}


def test_id_token_hint_forgeries_are_refused(any_env):
    env = any_env
    uri = env.clients["rp1"].redirect_uri
    kid, secrets_ = public_key_material(env)
    ec_kid, ec_secrets = public_key_material(env, "ES256")
    forgeries = [forge({"alg": "none", "kid": kid}, _hint_claims(env)),
                 forge({"alg": "none"}, _hint_claims(env)),
                 *[forge({"alg": "HS256", "kid": kid, "typ": "JWT"}, _hint_claims(env), hmac_key=s) for s in secrets_],
                 *[forge({"alg": "HS256", "kid": ec_kid}, _hint_claims(env), hmac_key=s) for s in ec_secrets]]
    for forged in forgeries:
        query = redirected_error(get_authorize(env, auth_params(env, "rp1", id_token_hint=forged)), uri)
        assert query["error"] == "invalid_request" and "id_token_hint" in query["error_description"]


def test_genuine_id_token_hint_is_accepted_and_checked_against_the_user(env):
    _, token, _, _ = code_flow(env, "rp1")
    uri = env.clients["rp1"].redirect_uri
    ok = redirected_error(get_authorize(env, auth_params(env, "rp1", id_token_hint=token["id_token"], prompt="none")),
                          uri)
    assert "code" in ok
    # an ID token for rp1 is no hint for rp2 (aud)
    other = redirected_error(get_authorize(env, auth_params(env, "rp2", id_token_hint=token["id_token"])),
                             env.clients["rp2"].redirect_uri)
    assert other["error"] == "invalid_request"
    # an access token is no ID token
    access = redirected_error(get_authorize(env, auth_params(env, "rp1", id_token_hint=token["access_token"])), uri)
    assert access["error"] == "invalid_request"
    # prompt=none and the signed-in user is not the hinted one
    env.login.identity = dict(env.login.identity, user_id="somebody-else")
    switched = redirected_error(
        get_authorize(env, auth_params(env, "rp1", id_token_hint=token["id_token"], prompt="none")), uri)
    assert switched["error"] == "login_required"


def _assertion_form(assertion: str, client_id: str | None = None) -> dict:
    form = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion, "grant_type": "refresh_token", "refresh_token": "x"}
    if client_id:
        form["client_id"] = client_id
    return form


def test_client_assertion_forgeries_and_replays_are_refused(env):
    now = int(time.time())
    claims = {"iss": "pkjwt", "sub": "pkjwt", "aud": env.url("token"), "iat": now, "exp": now + 60, "jti": "j-1"}
    public = env.clients["pkjwt"].private_key.as_dict(private=False)
    from cryptography.hazmat.primitives.asymmetric import rsa

    pub = rsa.RSAPublicNumbers(int.from_bytes(base64.urlsafe_b64decode(public["e"] + "=="), "big"),
                               int.from_bytes(base64.urlsafe_b64decode(public["n"] + "=="), "big")).public_key()
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forgeries = {
        "alg none": forge({"alg": "none", "kid": "pkjwt-key"}, claims),
        "HS256 with the client's public key": forge({"alg": "HS256", "kid": "pkjwt-key"}, claims, hmac_key=pem),
        "HS256 with the JWK": forge({"alg": "HS256", "kid": "pkjwt-key"}, claims,
                                    hmac_key=json.dumps(public).encode()),
        "signed by another key": private_key_jwt_sign(ECKey.generate_key("P-256", {"kid": "pkjwt-key"}),
                                                      "pkjwt", env.url("token"), alg="ES256"),
    }
    for name, assertion in forgeries.items():
        response = requests.post(env.url("token"), data=_assertion_form(assertion), timeout=5)
        assert response.status_code == 401 and response.json()["error"] == "invalid_client", name

    key = env.clients["pkjwt"].private_key
    # authlib's default lifetime (3600 s) is exactly the longest accepted: issued at the provider's
    # frozen "now", not the wall clock, which has moved on since the clock was made.
    genuine = private_key_jwt_sign(key, "pkjwt", env.url("token"), alg="RS256", claims={"jti": "once"},
                                   issued_at=int(env.clock()))
    first = requests.post(env.url("token"), data=_assertion_form(genuine), timeout=5)
    assert first.json()["error"] == "invalid_grant"  # authenticated; the refresh token itself is bogus
    replay = requests.post(env.url("token"), data=_assertion_form(genuine), timeout=5)
    assert replay.status_code == 401 and "replay" in replay.json()["error_description"]

    base = {"iss": "pkjwt", "sub": "pkjwt", "aud": env.url("token"), "iat": now, "exp": now + 60}
    bad_claims = {
        "wrong aud": {"aud": "https://other.example/token"},
        "expired": {"exp": now - 120, "iat": now - 180},
        "lives too long": {"exp": now + 7200},
        "iss differs from sub": {"sub": "rp1"},
        "no jti": {"jti": None},
        "no exp": {"exp": None},
        "issued in the future": {"iat": now + 600, "exp": now + 660},
    }
    for name, changes in bad_claims.items():
        claims = {**base, "jti": generate_token(12), **changes}
        assertion = jwt.encode({"alg": "RS256", "kid": "pkjwt-key"},
                               {k: v for k, v in claims.items() if v is not None}, key)
        response = requests.post(env.url("token"), data=_assertion_form(assertion), timeout=5)
        assert response.status_code == 401 and response.json()["error"] == "invalid_client", name
    ok = jwt.encode({"alg": "RS256", "kid": "pkjwt-key"}, {**base, "jti": generate_token(12)}, key)
    assert requests.post(env.url("token"), data=_assertion_form(ok), timeout=5).json()["error"] == "invalid_grant"


def test_forged_access_tokens_are_inactive_and_refused(env):
    kid, secrets_ = public_key_material(env)
    now = int(time.time())
    claims = {"iss": env.issuer, "sub": "x", "aud": "rp1", "client_id": "rp1", "scope": "openid", "iat": now,
              "exp": now + 300, "jti": "forged", "gid": "forged"}
    for forged in [forge({"alg": "none", "kid": kid, "typ": "at+jwt"}, claims),
                   *[forge({"alg": "HS256", "kid": kid, "typ": "at+jwt"}, claims, hmac_key=s) for s in secrets_]]:
        assert introspect(env, forged) == {"active": False}
        response = requests.get(env.url("userinfo"), headers={"Authorization": "Bearer " + forged}, timeout=5)
        assert response.status_code == 401


def test_a_live_grants_token_altered_or_resigned_is_refused_and_the_issued_one_accepted(any_env, monkeypatch):
    """The issued token is known by its hash (broker.tokens.access): anything else has its signature checked."""
    env = any_env
    verified = []
    monkeypatch.setattr(access_module, "verify_jws", lambda *a: verified.append(1) or verify_jws(*a))
    s, token, _, _ = code_flow(env, "rp1")
    issued = token["access_token"]
    header_b64, payload_b64, signature_b64 = issued.split(".")
    header, claims = (json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
                      for part in (header_b64, payload_b64))
    kid, secrets_ = public_key_material(env, header["alg"])
    widened = {**claims, "scope": claims["scope"] + " admin", "sub": "someone-else"}
    altered = [
        forge({"alg": "none", "kid": kid, "typ": "at+jwt"}, claims),          # the live grant's jti and gid
        *[forge({"alg": "HS256", "kid": kid, "typ": "at+jwt"}, claims, hmac_key=k) for k in secrets_],
        f"{header_b64}.{base64.urlsafe_b64encode(json.dumps(widened).encode()).rstrip(b'=').decode()}."
        f"{signature_b64}",                                                  # the real signature, other claims
        f"{header_b64}.{payload_b64}.{signature_b64[:-2]}AA",                # the real claims, a broken signature
        issued + "=",                                                        # one byte more
    ]
    for forged in altered:
        assert introspect(env, forged) == {"active": False}
        response = requests.get(env.url("userinfo"), headers={"Authorization": "Bearer " + forged}, timeout=5)
        assert response.status_code == 401, forged[-20:]
    verified.clear()
    assert introspect(env, issued)["active"] is True
    assert requests.get(env.url("userinfo"), headers={"Authorization": "Bearer " + issued},
                        timeout=5).status_code == 200
    assert verified == []                     # known by its hash: no second ECDSA verification
    # A refreshed token is not the one the grant records: it is accepted by its signature.
    refreshed = s.refresh_token(env.url("token"), refresh_token=token["refresh_token"])["access_token"]
    assert requests.get(env.url("userinfo"), headers={"Authorization": "Bearer " + refreshed},
                        timeout=5).status_code == 200
    assert introspect(env, refreshed)["active"] is True
    assert len(verified) == 2


# --------------------------------------------------------------------------- client authentication


def test_client_authentication_failures(env):
    code_data = {"grant_type": "authorization_code", "code": "nope", "redirect_uri": "https://rp1.example/cb"}
    wrong = token_request(env, "rp1", code_data, secret="wrong")
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
    # rp1 registered client_secret_basic; client_secret_post is refused (OIDC Registration §2)
    post = requests.post(env.url("token"), timeout=5,
                         data={**code_data, "client_id": "rp1", "client_secret": env.clients["rp1"].secret})
    assert post.status_code == 401
    # two methods at once (RFC 6749 §2.3)
    both = requests.post(env.url("token"), auth=("rp1", env.clients["rp1"].secret), timeout=5,
                         data={**code_data, "client_secret": env.clients["rp1"].secret})
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    # a confidential client cannot pretend to be public
    public = requests.post(env.url("token"), data={**code_data, "client_id": "rp1"}, timeout=5)
    assert public.status_code == 401
    # nobody at all
    assert requests.post(env.url("token"), data=code_data, timeout=5).status_code == 401


def test_bad_input_never_causes_500(env):
    basic = {"Authorization": "Basic " + base64.b64encode(f"rp1:{env.clients['rp1'].secret}".encode()).decode()}
    cases = [
        ("post", "token", {}, {}),
        ("post", "token", {"grant_type": "password", "username": "u", "password": "p"}, basic),
        ("post", "token", {"grant_type": ["authorization_code", "refresh_token"]}, basic),
        ("post", "token", {"grant_type": "authorization_code", "code": ["a", "b"]}, basic),
        ("post", "token", {"grant_type": "authorization_code"}, {"Authorization": "Basic !!!"}),
        ("post", "token", {"grant_type": "authorization_code"}, {"Authorization": "Basic " + b64(b"nocolon")}),
        ("post", "token", {"grant_type": "authorization_code", "client_assertion": "a.b.c",
                           "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, {}),
        ("post", "token", {"client_assertion": "\u00e4" * 10, "client_assertion_type": "x"}, {}),
        ("post", "token", {"client_assertion": "x" * 20000,
                           "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, {}),
        ("get", "token", {}, {}),
        ("post", "introspect", {}, basic),
        ("post", "revoke", {"token": "x", "token_type_hint": "id_token"}, basic),
        ("get", "userinfo", {}, {"Authorization": "Bearer a.b.c"}),
        ("get", "userinfo", {}, {"Authorization": "Bearer " + "e30." * 2 + "AA"}),
        ("get", "userinfo", {}, {"Authorization": "Basic abc"}),
        ("post", "userinfo", {"access_token": ["a", "b"]}, {}),
    ]
    for method, endpoint, data, headers in cases:
        response = requests.request(method, env.url(endpoint), data=data, headers=headers, timeout=5)
        assert 400 <= response.status_code < 500, (endpoint, data, response.status_code, response.text[:200])
        assert response.json()["error"], (endpoint, data)
    for token in ("a.b.c", "....", "e30.e30.e30", "e30.e30.", "\u00e4", "x" * 20000):
        # RFC 7662 §2.2 / RFC 7009 §2.2: a token that is not valid is simply inactive / ignored
        answer = requests.post(env.url("introspect"), data={"token": token}, headers=basic, timeout=5)
        assert answer.status_code == 200 and answer.json() == {"active": False}
        assert requests.post(env.url("revoke"), data={"token": token}, headers=basic, timeout=5).status_code == 200
    weird_authorize = [{"client_id": "rp1", "redirect_uri": env.clients["rp1"].redirect_uri, "max_age": "-1"},
                       {"client_id": "rp1", "redirect_uri": env.clients["rp1"].redirect_uri, "max_age": "9" * 40},
                       {"client_id": "\u0000\n", "redirect_uri": "javascript:alert(1)"},
                       {"client_id": "rp1", "redirect_uri": env.clients["rp1"].redirect_uri, "id_token_hint": "x.y"},
                       {"client_id": "rp1", "redirect_uri": env.clients["rp1"].redirect_uri, "idp_hint": "../../x"},
                       {"client_id": "rp1", "redirect_uri": env.clients["rp1"].redirect_uri, "state": "s" * 5000}]
    for params in weird_authorize:
        response = get_authorize(env, params)
        assert response.status_code in (302, 400), (params, response.status_code)


def test_duplicate_parameters_are_refused(any_env):
    env = any_env
    params = auth_params(env, "rp1")
    params["scope"] = ["openid", "openid roles"]
    query = redirected_error(get_authorize(env, params), env.clients["rp1"].redirect_uri)
    assert query["error"] == "invalid_request"


# --------------------------------------------------------------------------- authentication age and SSO


def test_max_age_and_prompt_none(any_env):
    env = any_env
    uri = env.clients["rp1"].redirect_uri
    env.login.auth_time = time.time() - 3600  # the SSO session authenticated an hour ago
    old = redirected_error(get_authorize(env, auth_params(env, "rp1", max_age="60")), uri)
    assert old["error"] == "login_required" and old["state"] == "s-1"
    assert "code" in redirected_error(get_authorize(env, auth_params(env, "rp1", max_age="7200")), uri)
    env.login.sso = False
    none = redirected_error(get_authorize(env, auth_params(env, "rp1", prompt="none")), uri)
    assert none["error"] == "login_required" and none["state"] == "s-1" and none["iss"] == env.issuer
