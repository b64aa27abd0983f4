"""A redemption that fails after taking its code or refresh token puts them back: the retry succeeds.

The token endpoint takes the code or the refresh token first (single use), then writes what it
issues in one batch.  When that fails the answer is 503 ``temporarily_unavailable`` and the
client sends the request again.  Were the code or the token left spent, the retry would be taken
for a replay: a code replay revokes the login, a rotated refresh token found by its tombstone
revokes the family.  The failures replayed here: a batch Redis ran but answered ``WRONGTYPE`` for
(its other writes did run), and a key ring found tampered while the tokens are signed inside the
batch (on memory the batch's first writes ran, on Redis nothing was sent).  A ``WAIT`` falling
short on a real replica: tests/ha/test_ha_undo.py.  Below them, the store's primitives
(``take_with_ttl``, ``put_back``) on both stores.
"""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.common.security import generate_token
from tokens_env import make_env, rebuild
from tokens_forge import introspect, token_request
from tokens_rp import authorize, code_flow, session

from broker.store import MemoryStore, StoreError
from broker.tokens.grants import code_key
from broker.tokens.keys import RING_KEY

GRANTS = "test:grants"   # the test hook's record of a session's grants (a set, as the broker's sessions keep)


def _redeem_request(env, client_id: str = "rp1") -> dict:
    """A fresh code's token request, as the client sends it (and sends again after a 503)."""
    verifier = "v" * 64
    location, _ = authorize(env, session(env, client_id), code_verifier=verifier, nonce="n")
    return {"grant_type": "authorization_code", "code": parse_qs(urlsplit(location).query)["code"][0],
            "redirect_uri": env.clients[client_id].redirect_uri, "code_verifier": verifier}


def _unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"


def _works(env, token: dict) -> None:
    """The tokens of a redemption work: the access token introspects, the refresh token refreshes."""
    assert introspect(env, token["access_token"])["active"] is True
    refreshed = token_request(env, "rp1", {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text


@contextlib.contextmanager
def _ring_tampered(env):
    """The key ring in the store made unreadable, and read again at the next signature; then restored."""
    doc = env.store.get(RING_KEY)
    env.store.put(RING_KEY, {**doc, "format": "tampered"}, 3600)
    env.clock.advance(31)   # past the ring's refresh interval (30 s)
    try:
        yield
    finally:
        env.store.put(RING_KEY, doc, 3600)


# -- a batch that Redis ran and refused in part ------------------------------------------------------

def _recording_hook(store):
    """A grant hook that records the grant in a set and reads after its writes, in the grant's batch
    (what the broker's sessions do, broker.sessions.store.SessionStore.add_grant)."""

    def hook(session_id: str, client_id: str, gid: str) -> bool:
        store.set_add(f"{GRANTS}:{session_id}", gid, 60)
        store.get_after_writes(f"test:session:{session_id}")
        return True

    return hook


@pytest.mark.parametrize("store", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
def test_a_code_whose_batch_redis_refused_in_part_is_redeemed_when_sent_again(env, server):
    rebuild(env, server, grant_hook=_recording_hook(env.store))
    request = _redeem_request(env)
    env.store.put(f"{GRANTS}:{env.login.session}", "planted: not a set", 60)   # SADD answers WRONGTYPE
    _unavailable(token_request(env, "rp1", request))   # the grant and its refresh token were written
    env.store.delete(f"{GRANTS}:{env.login.session}")
    again = token_request(env, "rp1", request)
    assert again.status_code == 200, again.text   # not "already used; its tokens are revoked"
    _works(env, again.json())
    replay = token_request(env, "rp1", request)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"   # and now it is used


# -- the key ring failing inside the batch -----------------------------------------------------------

def test_a_code_whose_signing_failed_is_redeemed_when_sent_again(env):
    request = _redeem_request(env)
    with _ring_tampered(env):
        _unavailable(token_request(env, "rp1", request))
    again = token_request(env, "rp1", request)
    assert again.status_code == 200, again.text
    _works(env, again.json())


def test_a_refresh_whose_signing_failed_succeeds_when_sent_again_and_the_family_lives(env):
    _, token, _, _ = code_flow(env, "rp1")
    refresh = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    with _ring_tampered(env):
        _unavailable(token_request(env, "rp1", refresh))
    again = token_request(env, "rp1", refresh)
    assert again.status_code == 200, again.text   # not "already used; the session is revoked"
    assert introspect(env, token["access_token"])["active"] is True, "the family was revoked"
    _works(env, again.json())
    reused = token_request(env, "rp1", refresh)   # the old token is now rotated for real
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


class _Vanishing(MemoryStore):
    """A store that becomes unreachable for batches once :attr:`gone` is set (mid-request)."""

    gone = False

    @contextlib.contextmanager
    def batch(self, *, durable: bool = False):
        if self.gone:
            raise StoreError("store unreachable")
        with super().batch(durable=durable):
            yield


def test_when_the_undo_fails_too_the_answer_is_503_and_a_warning_names_no_code(clock, server, tmp_path, caplog):
    store = _Vanishing()
    env = make_env(store, clock, server, tmp_path)

    def hook(session_id: str, client_id: str, gid: str) -> bool:
        store.gone = True
        raise StoreError("store unreachable")

    rebuild(env, server, grant_hook=hook)
    request = _redeem_request(env)
    caplog.set_level(logging.WARNING, "broker.tokens")
    _unavailable(token_request(env, "rp1", request))
    warnings = [r.getMessage() for r in caplog.records if r.name == "broker.tokens.grants"]
    assert warnings == ["could not undo a refused or failed redemption client_id=rp1"]
    assert request["code"] not in caplog.text


# -- the store's primitives ---------------------------------------------------------------------------

def test_take_with_ttl_returns_the_value_and_its_time_left(store):
    assert store.take_with_ttl("absent") is None
    store.put("k", {"v": 1}, 60)
    value, left = store.take_with_ttl("k")
    assert value == {"v": 1} and 58 < left <= 60
    assert store.get("k") is None


def test_put_back_restores_no_longer_than_asked_and_never_overwrites(store):
    store.put_back("k", {"v": 1}, 30.0)
    value, left = store.take_with_ttl("k")
    assert value == {"v": 1} and 28 < left <= 30
    store.put("k", {"v": "written since"}, 60)
    store.put_back("k", {"v": 1}, 30.0)   # a racing request's value stands
    assert store.get("k") == {"v": "written since"}
    store.put_back("spent", {"v": 1}, 0.0)   # nothing left: nothing to put back
    assert store.get("spent") is None


def test_put_back_joins_a_batch(store):
    store.put("written", 1, 60)
    with store.batch():
        store.delete("written")
        store.put_back("taken", {"v": 1}, 30.0)
    assert store.get_many("written", "taken") == [None, {"v": 1}]


def test_a_code_replayed_while_its_first_redemption_fails_stays_refused(env):
    """The replay leaves the code burnt: the failing redemption's put-back cannot bring it back."""
    s = session(env, "rp1")
    verifier = generate_token(48)
    _, query = authorize(env, s, nonce="n", code_verifier=verifier)
    redeem = {"grant_type": "authorization_code", "code": query["code"], "code_verifier": verifier,
              "redirect_uri": env.clients["rp1"].redirect_uri}
    key = code_key(query["code"])
    taken = env.store.take_with_ttl(key)        # a first redemption took the code, and its batch is failing...
    replay = token_request(env, "rp1", redeem)  # ...while someone else presents the same code
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    env.store.put_back(key, *taken)             # the failing redemption's undo
    retry = token_request(env, "rp1", redeem)   # and its client's retry
    assert retry.status_code == 400 and retry.json()["error"] == "invalid_grant"
    assert "already used" in retry.json()["error_description"]
