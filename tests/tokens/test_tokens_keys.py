"""The key ring: shared by instances, encrypted at rest, rotated with pre-publication and overlap."""

from __future__ import annotations

import json

import pytest
import requests
from tokens_env import MASTER_SECRET, make_env
from tokens_rp import code_flow

from broker.tokens.keys import RING_KEY, KeyRing, KeyRingError, RotationTooEarly
from digione_verify import TokenVerifier, UnknownKey


def kid_of(token: str) -> str:
    import base64

    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]


class CountingStore:
    """Wraps a store and counts reads (to show the request path never reads the ring)."""

    def __init__(self, store):
        self._store = store
        self.gets = 0

    def get(self, key):
        self.gets += 1
        return self._store.get(key)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_private_keys_are_encrypted_at_rest(store, clock):
    ring = KeyRing(store, MASTER_SECRET, clock=clock)
    ring.ensure()
    raw = json.dumps(store.get(RING_KEY))
    assert "PRIVATE" not in raw and '"d"' not in raw and '"p"' not in raw
    with pytest.raises(KeyRingError):
        KeyRing(store, "another-secret-of-enough-length", clock=clock).refresh()
    with pytest.raises(KeyRingError):
        KeyRing(store, "short")


def test_a_ciphertext_moved_to_another_key_does_not_decrypt(store, clock):
    ring = KeyRing(store, MASTER_SECRET, clock=clock)
    ring.ensure()
    doc = store.get(RING_KEY)
    active = [k for k in doc["keys"] if k["state"] == "active"]
    nxt = [k for k in doc["keys"] if k["state"] == "next" and k["alg"] == active[0]["alg"]][0]
    active[0]["enc"] = nxt["enc"]  # AAD binds each ciphertext to its kid and alg
    doc["version"] += 1
    store.put(RING_KEY, doc, 3600)
    with pytest.raises(KeyRingError):
        KeyRing(store, MASTER_SECRET, clock=clock).refresh()


def test_every_instance_sees_the_same_keys_without_a_store_read_per_request(store, clock):
    counting = CountingStore(store)
    first = KeyRing(counting, MASTER_SECRET, clock=clock, refresh_interval=30)
    second = KeyRing(store, MASTER_SECRET, clock=clock, refresh_interval=30)
    first.ensure()
    assert first.jwks() == second.jwks()
    assert first.signing_key().kid == second.signing_key().kid
    reads = counting.gets
    for _ in range(1000):
        first.signing_key().sign({"n": 1})
        first.public_key(second.signing_key().kid)
    assert counting.gets == reads  # nothing per request
    clock.advance(31)
    first.signing_key()
    assert counting.gets == reads + 1  # one read per refresh interval


def test_rotation_prepublishes_and_refuses_to_promote_too_early(store, clock):
    ring = KeyRing(store, MASTER_SECRET, clock=clock, prepublish=600, retention=900)
    ring.ensure()
    before = {k["kid"]: k for k in ring.describe()}
    nxt = {k["alg"]: k["kid"] for k in before.values() if k["state"] == "next"}
    published = {k["kid"] for k in ring.jwks()["keys"]}
    assert set(nxt.values()) <= published  # the next keys are in the JWKS before they sign
    with pytest.raises(KeyRingError, match="published for"):
        ring.rotate()
    clock.advance(600)
    after = {k["kid"]: k for k in ring.rotate()}
    for alg, kid in nxt.items():
        assert after[kid]["state"] == "active" and ring.signing_key(alg).kid == kid
    assert {k["state"] for k in after.values()} == {"active", "next", "retiring"}
    assert len(after) == 6  # per algorithm: retiring, active, next
    assert ring.rotate(force=True)  # an operator may force it (e.g. compromise)


def test_a_refused_rotation_says_until_when_every_next_key_waits(store, clock):
    ring = KeyRing(store, MASTER_SECRET, clock=clock, prepublish=600)
    ring.ensure()
    clock.advance(500)
    es256_next = next(k["kid"] for k in ring.describe() if k["alg"] == "ES256" and k["state"] == "next")
    ring.remove(es256_next)   # a fresh ES256 next key: it waits longer than the RS256 one
    document = store.get(RING_KEY)
    with pytest.raises(RotationTooEarly) as refused:
        ring.rotate()
    assert [(alg, int(age)) for alg, _, age in refused.value.waiting] == [("RS256", 500), ("ES256", 0)]
    assert refused.value.ready_at == clock() + 600 and refused.value.prepublish == 600
    assert store.get(RING_KEY) == document   # nothing changed


def test_remove_withdraws_a_compromised_key_at_once(store, clock):
    ring = KeyRing(store, MASTER_SECRET, clock=clock)
    ring.ensure()
    victim = ring.signing_key("ES256").kid
    ring.remove(victim)
    assert victim not in {k["kid"] for k in ring.jwks()["keys"]}
    assert ring.signing_key("ES256").kid != victim and ring.public_key(victim) is None


def test_rotation_overlap_retirement_and_a_running_verifier(store, clock, server, tmp_path):
    """Tokens signed before a rotation verify during the overlap and fail after retirement;
    a running verifier learns new keys from the JWKS without a restart."""
    env = make_env(store, clock, server, tmp_path, lifetimes={"access_token": 900, "id_token": 900},
                   retention=1000, prepublish=300)
    verifier = TokenVerifier(env.issuer, "rp1", clock=clock)  # one long-running service
    _, first, _, _ = code_flow(env, "rp1")
    kid_a = kid_of(first["access_token"])
    assert verifier.verify(first["access_token"])

    clock.advance(300)
    env.keyring.rotate()  # A retires, B (pre-published) signs
    clock.advance(31)  # every instance has refreshed its ring
    _, second, _, _ = code_flow(env, "rp1")
    kid_b = kid_of(second["access_token"])
    assert kid_b != kid_a
    assert verifier.verify(second["access_token"])  # B was already in the cached JWKS
    assert verifier.verify(first["access_token"])  # overlap: A still published

    clock.advance(300)
    env.keyring.rotate()  # C, published after the verifier's fetch, now signs
    clock.advance(31)
    _, third, _, _ = code_flow(env, "rp1")
    assert kid_of(third["access_token"]) not in (kid_a, kid_b)
    assert verifier.verify(third["access_token"])  # unknown kid -> JWKS refreshed, no restart

    clock.advance(1332 - 662)  # t=1332: A retired at t=1300, and every ring has refreshed since
    assert kid_a not in {k["kid"] for k in requests.get(env.url("jwks"), timeout=5).json()["keys"]}
    with pytest.raises(UnknownKey):
        verifier.verify(first["access_token"])  # retired: the key is gone, not merely the token expired
    assert verifier.verify(third["access_token"])
    introspected = requests.post(env.url("introspect"), data={"token": first["access_token"]},
                                 auth=("rs", env.clients["rs"].secret), timeout=5).json()
    assert introspected == {"active": False}


def test_build_provider_checks_that_retention_covers_token_lifetimes(store, clock, server, tmp_path):
    with pytest.raises(ValueError, match="retention"):
        make_env(store, clock, server, tmp_path, lifetimes={"access_token": 3600}, retention=600)
    with pytest.raises(ValueError, match="prepublish"):
        make_env(store, clock, server, tmp_path, prepublish=60)


def test_a_flushed_store_gets_the_ring_back_from_a_running_instance(store, clock):
    ring = KeyRing(store, MASTER_SECRET, clock=clock)
    ring.ensure()
    kid = ring.signing_key().kid
    store.delete(RING_KEY)
    clock.advance(31)
    assert ring.signing_key().kid == kid  # restored, not regenerated
    assert KeyRing(store, MASTER_SECRET, clock=clock).signing_key().kid == kid
