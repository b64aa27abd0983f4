"""``digione_verify``: what a platform service relies on, attacked from every side.

Real access tokens come from the live provider through an Authlib flow; the forged ones
are built with the standard library.  Tokens with unusual claims are signed with the
key ring's real key (that is the only way to get a valid signature on them).
"""

from __future__ import annotations

import base64
import json

import pytest
import requests
from tokens_forge import b64, forge, public_key_material
from tokens_rp import code_flow

from digione_verify import (
    BadSignature,
    ExpiredToken,
    InsufficientScope,
    KeySetUnavailable,
    MalformedToken,
    MissingClaim,
    MissingRole,
    NotYetValid,
    TokenVerifier,
    UnknownKey,
    UnsupportedAlgorithm,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
    require_token,
)


class CountingGet:
    """The default HTTP fetch, counting requests (to observe caching and rate limits)."""

    def __init__(self):
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return requests.get(url, timeout=5).content


@pytest.fixture
def issued(memory_env):
    """``(env, token_response)`` of one completed flow for rp1 with roles."""
    _, token, _, _ = code_flow(memory_env, "rp1", scope="openid roles")
    return memory_env, token


def verifier(env, audience="rp1", **kwargs) -> TokenVerifier:
    return TokenVerifier(env.issuer, audience, clock=env.clock, **kwargs)


def sign(env, claims: dict, *, typ: str = "at+jwt", alg: str | None = None) -> str:
    return env.keyring.signing_key(alg).sign(claims, typ=typ)


def valid_claims(env, **changes) -> dict:
    now = int(env.clock())
    claims = {"iss": env.issuer, "sub": "s", "aud": "rp1", "client_id": "rp1", "scope": "openid roles",
              "iat": now, "exp": now + 300, "jti": "j", "roles": ["teacher"]}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_a_real_access_token_verifies_from_the_discovery_url(issued):
    env, token = issued
    fetch = CountingGet()
    v = verifier(env, "https://api.example", http_get=fetch, required_scopes=("openid",))
    claims = v.verify(token["access_token"], scopes=("roles",), roles=("teacher",))
    assert claims["client_id"] == "rp1"
    assert fetch.urls == [env.issuer + "/.well-known/openid-configuration", env.url("jwks")]
    for _ in range(50):
        v.verify(token["access_token"])
    assert len(fetch.urls) == 2  # cached: no network per verification


def test_rp1_token_is_refused_at_rp2(issued):
    env, token = issued
    with pytest.raises(WrongAudience):
        verifier(env, "rp2").verify(token["access_token"])
    assert verifier(env, ("rp2", "rp1")).verify(token["access_token"])  # any of several audiences


def test_expired_and_not_yet_valid(issued):
    env, token = issued
    v = verifier(env, leeway=30)
    env.clock.advance(300 + 29)
    assert v.verify(token["access_token"])  # within leeway
    env.clock.advance(2)
    with pytest.raises(ExpiredToken):
        v.verify(token["access_token"])
    env.clock.advance(-331)
    with pytest.raises(NotYetValid):
        v.verify(sign(env, valid_claims(env, nbf=int(env.clock()) + 120)))
    with pytest.raises(NotYetValid):
        v.verify(sign(env, valid_claims(env, iat=int(env.clock()) + 120)))
    assert v.verify(sign(env, valid_claims(env, nbf=int(env.clock()) + 20)))  # skew tolerated


def test_id_token_is_not_an_access_token(issued):
    env, token = issued
    with pytest.raises(WrongTokenType):
        verifier(env).verify(token["id_token"])
    id_verifier = verifier(env, typ=None)  # the same kit verifies ID tokens when told to
    assert id_verifier.verify(token["id_token"])["nonce"]
    assert verifier(env).verify(sign(env, valid_claims(env), typ="application/at+jwt"))  # RFC 9068 §4


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_alg_none_and_hmac_keyed_with_the_public_key_are_refused(issued, alg):
    env, _ = issued
    kid, secrets_ = public_key_material(env, alg)
    v = verifier(env, allowed_algs=("ES256", "RS256"))
    claims = valid_claims(env)
    with pytest.raises(UnsupportedAlgorithm):
        v.verify(forge({"alg": "none", "kid": kid, "typ": "at+jwt"}, claims))
    for alg_name in ("HS256", "HS384", "HS512"):
        for secret in secrets_:
            with pytest.raises(UnsupportedAlgorithm):
                v.verify(forge({"alg": alg_name, "kid": kid, "typ": "at+jwt"}, claims, hmac_key=secret))
    with pytest.raises(ValueError):
        TokenVerifier(env.issuer, "rp1", allowed_algs=("HS256",))
    with pytest.raises(ValueError):
        TokenVerifier(env.issuer, "rp1", allowed_algs=("none",))


def test_alg_confusion_between_key_types_is_refused(issued):
    env, _ = issued
    ec_kid, _ = public_key_material(env, "ES256")
    real = sign(env, valid_claims(env), alg="RS256")
    header, payload, signature = real.split(".")
    relabelled = b64(json.dumps({"alg": "RS256", "kid": ec_kid, "typ": "at+jwt"}).encode())
    with pytest.raises(UnsupportedAlgorithm):
        verifier(env).verify(f"{relabelled}.{payload}.{signature}")


def test_tampering_and_malformed_tokens(issued):
    env, token = issued
    v = verifier(env)
    header, payload, signature = token["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["admin"]
    with pytest.raises(BadSignature):
        v.verify(f"{header}.{b64(json.dumps(claims).encode())}.{signature}")
    with pytest.raises(BadSignature):
        v.verify(f"{header}.{payload}.{signature[:-4]}AAAA")
    cases = ["", "abc", "a.b", "a.b.c.d", f"{header}.{payload}.{signature}=", f"{header}.{payload}!.{signature}",
             b64(b'{"alg":"ES256","alg":"none","kid":"k"}') + f".{payload}.{signature}",  # duplicate members
             b64(b'{"alg":"ES256","kid":"k","crit":["exp"]}') + f".{payload}.{signature}",
             b64(b'["ES256"]') + f".{payload}.{signature}", "x" * 20000]
    for bad in cases:
        with pytest.raises(MalformedToken):
            v.verify(bad)
    no_kid = b64(json.dumps({"alg": "ES256", "typ": "at+jwt"}).encode())
    with pytest.raises(MalformedToken):
        v.verify(f"{no_kid}.{payload}.{signature}")


def test_issuer_claims_scopes_and_roles(issued):
    env, _ = issued
    v = verifier(env, required_scopes=("openid",))
    with pytest.raises(WrongIssuer):
        v.verify(sign(env, valid_claims(env, iss="https://evil.example")))
    for missing in ("exp", "sub", "client_id", "jti", "iat"):
        with pytest.raises(MissingClaim):
            v.verify(sign(env, valid_claims(env, **{missing: None})))
    with pytest.raises(InsufficientScope) as scope_error:
        v.verify(sign(env, valid_claims(env, scope="openid")), scopes=("grades",))
    assert scope_error.value.status == 403 and scope_error.value.error == "insufficient_scope"
    with pytest.raises(MissingRole):
        v.verify(sign(env, valid_claims(env)), roles=("admin",))
    with pytest.raises(MissingClaim):
        v.verify(sign(env, valid_claims(env, exp="tomorrow")))


def test_unknown_kid_refreshes_the_jwks_at_most_every_30_seconds(issued):
    env, token = issued
    fetch = CountingGet()
    v = verifier(env, http_get=fetch)
    v.verify(token["access_token"])
    fetched = len(fetch.urls)
    forged = forge({"alg": "ES256", "kid": "unknown-kid", "typ": "at+jwt"}, valid_claims(env), hmac_key=b"x")
    for _ in range(20):
        with pytest.raises(UnknownKey):
            v.verify(forged)
    assert len(fetch.urls) == fetched  # just fetched: rate-limited, no refetch
    env.clock.advance(31)
    with pytest.raises(UnknownKey):
        v.verify(forged)
    with pytest.raises(UnknownKey):
        v.verify(forged)
    assert len(fetch.urls) == fetched + 1  # one refresh per 30 s, whatever the flood


def test_jwks_unavailable_is_not_an_invalid_token(issued):
    env, token = issued

    def down(url):
        raise OSError("connection refused")

    with pytest.raises(KeySetUnavailable):
        verifier(env, http_get=down).verify(token["access_token"])
    with pytest.raises(KeySetUnavailable):  # keys are only fetched over https (or from localhost)
        TokenVerifier("http://broker.example", "rp1").verify(token["access_token"])
    fetch = CountingGet()
    v = verifier(env, http_get=fetch)
    v.verify(token["access_token"])
    v.jwks._http_get = down  # the broker goes away after the first fetch
    env.clock.advance(301)  # the set is stale and its refresh fails: the keys already held stay in use
    assert v.verify(sign(env, valid_claims(env)))
    assert len(fetch.urls) == 2


def test_discovery_must_name_the_same_issuer(issued):
    env, token = issued

    def lying(url):
        if url.endswith("openid-configuration"):
            return json.dumps({"issuer": "https://evil.example", "jwks_uri": env.url("jwks")}).encode()
        return requests.get(url, timeout=5).content

    with pytest.raises(KeySetUnavailable):
        verifier(env, http_get=lying).verify(token["access_token"])


def test_require_token_for_flask_and_wsgi(issued):
    import flask
    from werkzeug.test import Client

    env, token = issued
    v = verifier(env)
    app = flask.Flask("svc")

    @app.get("/grades")
    @require_token(v, scopes=("roles",), roles=("teacher",))
    def grades():
        return {"sub": flask.g.token_claims["sub"]}

    @app.get("/admin")
    @require_token(v, roles=("admin",))
    def admin():
        return {}

    client = app.test_client()
    ok = client.get("/grades", headers={"Authorization": "Bearer " + token["access_token"]})
    assert ok.status_code == 200 and ok.json["sub"]
    none = client.get("/grades")
    assert none.status_code == 401 and none.headers["WWW-Authenticate"].startswith("Bearer")
    bad = client.get("/grades", headers={"Authorization": "Bearer " + token["id_token"]})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    forbidden = client.get("/admin", headers={"Authorization": "Bearer " + token["access_token"]})
    assert forbidden.status_code == 403 and 'error="insufficient_scope"' in forbidden.headers["WWW-Authenticate"]
    in_query = client.get("/grades?access_token=" + token["access_token"])
    assert in_query.status_code == 401

    def inner(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["digione.token"]["client_id"].encode()]

    wsgi = Client(require_token(v, scopes=("openid",))(inner))
    assert wsgi.get("/", headers={"Authorization": "Bearer " + token["access_token"]}).get_data() == b"rp1"
    assert wsgi.get("/").status_code == 401


def test_the_broker_has_one_verification_kit():
    """``broker.verify`` is gone: the broker and services use the one kit, ``digione_verify``."""
    import importlib.util

    assert importlib.util.find_spec("broker.verify") is None
