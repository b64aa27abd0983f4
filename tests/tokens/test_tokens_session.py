"""The broker session on the token side: codes redeemed only while it lasts, its grants revoked
at logout, a ``sid`` of its own for each client, and services learning of the revocation
through ``digione_verify``'s introspection check.

Authlib plays the relying parties over HTTP; :class:`Sessions` stands in for the broker's
sessions (the ``grant_hook`` the provider is built with, and the logout that revokes).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError as AuthlibOAuthError
from authlib.integrations.requests_client import OAuth2Session
from tokens_env import rebuild
from tokens_forge import introspect, token_request
from tokens_rp import authorize, code_flow, session, verify_id_token

import digione_verify as verify_module
from broker.store import StoreError
from broker.tokens.grants import grant_key
from digione_verify import (
    Introspection,
    IntrospectionUnavailable,
    RevokedToken,
    TokenVerifier,
    require_token,
)
from digione_verify.introspection import default_http_post

SESSION = "broker-session-1"  # the harness's broker session id


class Sessions:
    """The broker's sessions as the provider sees them: the grant hook, and logout."""

    def __init__(self):
        self.ended: set[str] = set()
        self.grants: dict[str, set[str]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.fail = False

    def hook(self, session_id: str, client_id: str, gid: str) -> bool:
        self.calls.append((session_id, client_id, gid))
        if self.fail:
            raise StoreError("sessions unavailable")
        self.grants.setdefault(session_id, set()).add(gid)  # recorded first, then the session checked
        return session_id not in self.ended

    def logout(self, provider, session_id: str) -> None:
        self.ended.add(session_id)
        provider.revoke_grants(self.grants.get(session_id, ()))


@pytest.fixture
def sessions(env, server) -> Sessions:
    sessions = Sessions()
    rebuild(env, server, grant_hook=sessions.hook)
    return sessions


def _code(env, client_id: str = "rp1"):
    s = session(env, client_id)
    verifier = "v" * 64
    location, _ = authorize(env, s, code_verifier=verifier, nonce="n")
    return s, location, verifier


def _code_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


def test_a_code_redeemed_after_its_session_ended_is_refused_and_creates_no_grant(env, sessions):
    s, location, verifier = _code(env)
    sessions.logout(env.provider, SESSION)  # the person signs out before the RP redeems the code
    with pytest.raises(AuthlibOAuthError) as refused:
        s.fetch_token(env.url("token"), authorization_response=location, code_verifier=verifier)
    assert refused.value.error == "invalid_grant" and refused.value.description == "the sign-in session has ended"
    ((session_id, client_id, gid),) = sessions.calls
    assert (session_id, client_id) == (SESSION, "rp1")
    assert env.store.get(grant_key(gid)) is None  # nothing left behind
    again = token_request(env, "rp1", {"grant_type": "authorization_code", "code": _code_of(location),
                                       "redirect_uri": env.clients["rp1"].redirect_uri, "code_verifier": verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # and it stays used


def test_the_hook_sees_each_grant_of_the_session_and_logout_revokes_them_all(env, sessions):
    s1, t1, _, _ = code_flow(env, "rp1", scope="openid profile roles")
    s2, t2, _, _ = code_flow(env, "post")
    assert [(c[0], c[1]) for c in sessions.calls] == [(SESSION, "rp1"), (SESSION, "post")]
    for s, token in ((s1, t1), (s2, t2)):
        assert introspect(env, token["access_token"])["active"] is True
        assert s.introspect_token(env.url("introspect"), token=token["refresh_token"]).json()["active"] is True
    assert s1.get(env.url("userinfo")).status_code == 200

    sessions.logout(env.provider, SESSION)

    for s, token in ((s1, t1), (s2, t2)):
        assert introspect(env, token["access_token"]) == {"active": False}
        assert s.introspect_token(env.url("introspect"), token=token["refresh_token"]).json() == {"active": False}
        userinfo = s.get(env.url("userinfo"))
        assert userinfo.status_code == 401 and 'error="invalid_token"' in userinfo.headers["WWW-Authenticate"]
        with pytest.raises(AuthlibOAuthError) as refused:
            s.refresh_token(env.url("token"))
        assert refused.value.error == "invalid_grant"
    own = OAuth2Session("rp1", env.clients["rp1"].secret)
    assert own.introspect_token(env.url("introspect"), token=t1["access_token"]).json() == {"active": False}


def test_revoke_grants_is_one_store_round_trip(env, sessions, monkeypatch):
    code_flow(env, "rp1")
    code_flow(env, "rp2")
    deletes: list[tuple[str, ...]] = []
    original = env.store.delete

    def counting(*keys):
        deletes.append(keys)
        return original(*keys)

    monkeypatch.setattr(env.store, "delete", counting)
    gids = sorted(sessions.grants[SESSION])
    env.provider.revoke_grants(iter(gids + gids[:1]))  # any iterable; a repeated gid is deleted once
    assert deletes == [tuple(grant_key(gid) for gid in gids)]
    env.provider.revoke_grants([])
    assert len(deletes) == 1  # nothing to revoke: no store call at all
    assert all(env.store.get(grant_key(gid)) is None for gid in gids)


def test_a_code_without_a_broker_session_is_not_checked(env, sessions):
    env.login.session = None
    _, token, _, _ = code_flow(env, "rp1")
    assert token["access_token"] and sessions.calls == []


def test_when_the_hook_fails_the_grant_is_taken_back_and_the_code_is_redeemable_again(env, sessions):
    sessions.fail = True
    _, location, verifier = _code(env)
    request = {"grant_type": "authorization_code", "code": _code_of(location),
               "redirect_uri": env.clients["rp1"].redirect_uri, "code_verifier": verifier}
    refused = token_request(env, "rp1", request)
    assert refused.status_code == 503 and refused.json()["error"] == "temporarily_unavailable"
    ((_, _, gid),) = sessions.calls
    assert env.store.get(grant_key(gid)) is None
    sessions.fail = False
    again = token_request(env, "rp1", request)   # a 503 says "try again": not a replay
    assert again.status_code == 200, again.text
    assert env.store.get(grant_key(gid)) is not None


def test_each_client_gets_its_own_sid_and_never_the_session_id(env, sessions):
    env.login.sids = {"rp1": "sid-of-rp1", "rp2": "sid-of-rp2"}
    s1, t1, n1, _ = code_flow(env, "rp1")
    s2, t2, n2, _ = code_flow(env, "rp2")
    id1 = verify_id_token(env, t1["id_token"], "rp1", nonce=n1, access_token=t1["access_token"])
    id2 = verify_id_token(env, t2["id_token"], "rp2", nonce=n2, access_token=t2["access_token"])
    assert id1["sid"] == "sid-of-rp1" and id2["sid"] == "sid-of-rp2"
    api = TokenVerifier(env.issuer, "https://api.example", clock=env.clock)
    assert api.verify(t1["access_token"])["sid"] == "sid-of-rp1"
    assert api.verify(t2["access_token"])["sid"] == "sid-of-rp2"
    refreshed = s1.refresh_token(env.url("token"))
    assert verify_id_token(env, refreshed["id_token"], "rp1")["sid"] == "sid-of-rp1"
    seen = json.dumps([id1, id2, api.verify(t1["access_token"]), introspect(env, t1["access_token"]),
                       introspect(env, t1["refresh_token"]), s1.get(env.url("userinfo")).json(),
                       verify_id_token(env, refreshed["id_token"], "rp1")])
    assert SESSION not in seen  # the broker session's own id never reaches a client


# ------------------------------------------------------------------------- services: digione_verify with introspection


class Posts:
    """digione_verify's default HTTP POST, counting the requests."""

    def __init__(self):
        self.urls: list[str] = []

    def __call__(self, url: str, body: bytes, headers) -> bytes:
        self.urls.append(url)
        return default_http_post(url, body, headers)


class Monotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_verify_with_introspection_raises_revoked_after_logout(env, sessions):
    _, token, _, _ = code_flow(env, "rp1", scope="openid roles")
    posts, clock = Posts(), Monotonic()
    check = Introspection(env.url("introspect"), "rs", env.clients["rs"].secret, cache_seconds=30,
                          http_post=posts, clock=clock)
    verifier = TokenVerifier(env.issuer, "https://api.example", clock=env.clock, introspection=check)
    assert verifier.verify(token["access_token"])["client_id"] == "rp1"
    assert verifier.verify(token["access_token"])
    assert posts.urls == [env.url("introspect")]  # the answer is reused for cache_seconds

    sessions.logout(env.provider, SESSION)
    assert verifier.verify(token["access_token"])  # still cached: a revocation takes up to cache_seconds
    clock.now += 31
    with pytest.raises(RevokedToken) as revoked:
        verifier.verify(token["access_token"])
    assert revoked.value.status == 401 and revoked.value.error == "invalid_token"
    assert len(posts.urls) == 2
    offline = TokenVerifier(env.issuer, "https://api.example", clock=env.clock)
    assert offline.verify(token["access_token"])  # without introspection: valid until it expires


def test_introspection_is_asked_only_about_tokens_that_pass_locally(env, sessions):
    _, token, _, _ = code_flow(env, "rp1")
    posts = Posts()
    check = Introspection(env.url("introspect"), "rs", env.clients["rs"].secret, http_post=posts)
    verifier = TokenVerifier(env.issuer, "https://api.example", clock=env.clock, introspection=check)
    for bad in (token["id_token"], token["access_token"][:-3] + "AAA", "x.y.z"):
        with pytest.raises(verify_module.InvalidToken):
            verifier.verify(bad)
    assert posts.urls == []


def test_introspection_failures_are_unavailable_not_invalid(env, sessions):
    _, token, _, _ = code_flow(env, "rp1")
    wrong = Introspection(env.url("introspect"), "rs", "not-the-secret", cache_seconds=0)
    verifier = TokenVerifier(env.issuer, "https://api.example", clock=env.clock, introspection=wrong)
    with pytest.raises(IntrospectionUnavailable):  # the broker answers 401 to bad credentials
        verifier.verify(token["access_token"])
    garbage = Introspection(env.url("introspect"), "rs", "x", http_post=lambda url, body, headers: b'{"ok":1}')
    with pytest.raises(IntrospectionUnavailable):
        TokenVerifier(env.issuer, "https://api.example", clock=env.clock,
                      introspection=garbage).verify(token["access_token"])
    with pytest.raises(ValueError):
        Introspection("http://broker.example/introspect", "rs", "x")  # credentials only over https
    with pytest.raises(ValueError):
        Introspection(env.url("introspect"), "rs", "")


def test_an_ordinary_client_learns_only_about_its_own_tokens(env, sessions):
    """RFC 7662 §2.2, §4: a service introspecting as a client that is neither the token's client,
    nor in its aud, nor a configured introspection client is told "inactive"."""
    _, token, _, _ = code_flow(env, "rp1")
    own = TokenVerifier(env.issuer, "rp1", clock=env.clock,
                        introspection=Introspection(env.url("introspect"), "rp1", env.clients["rp1"].secret))
    assert own.verify(token["access_token"])
    other = TokenVerifier(env.issuer, "rp1", clock=env.clock,
                          introspection=Introspection(env.url("introspect"), "rp2", env.clients["rp2"].secret))
    with pytest.raises(RevokedToken):
        other.verify(token["access_token"])


def test_require_token_answers_revoked_with_401_and_unavailable_with_503(env, sessions):
    from werkzeug.test import Client

    _, token, _, _ = code_flow(env, "rp1")

    def inner(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    good = TokenVerifier(env.issuer, "https://api.example", clock=env.clock,
                         introspection=Introspection(env.url("introspect"), "rs", env.clients["rs"].secret,
                                                     cache_seconds=0))
    app = Client(require_token(good)(inner))
    bearer = {"Authorization": "Bearer " + token["access_token"]}
    assert app.get("/", headers=bearer).status_code == 200
    sessions.logout(env.provider, SESSION)
    revoked = app.get("/", headers=bearer)
    assert revoked.status_code == 401 and 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]
    down = TokenVerifier(env.issuer, "https://api.example", clock=env.clock,
                         introspection=Introspection(env.url("introspect"), "rs", "x", cache_seconds=0,
                                                     http_post=lambda url, body, headers: requests.post(
                                                         "http://127.0.0.1:9/", timeout=1).content))
    assert Client(require_token(down)(inner)).get("/", headers=bearer).status_code == 503
