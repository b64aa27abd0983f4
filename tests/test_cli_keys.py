"""``broker keys list`` and ``broker keys rotate`` run for real (:func:`broker.cli.main`) against
the real Redis, each test under a key prefix of its own that is deleted afterwards.

The ring is created the way a broker creates it when it starts (:meth:`KeyRing.ensure`);
a ring "created two hours ago" is one whose next keys have been published longer than the
pre-publication hour.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import redis

from broker.cli import main
from broker.store.redis import RedisStore
from broker.tokens.keys import LOCK_KEY, RING_KEY, KeyRing

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = "cli-keys-test-master-secret-0123456789abcdef"


@pytest.fixture
def shell(monkeypatch, tmp_path):
    """The environment of an operator's shell that has no BROKER_REDIS_URL."""
    for name in ("BROKER_REDIS_URL", "BROKER_REDIS_PREFIX", "BROKER_SECRET_FILE", "BROKER_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BROKER_SECRET", SECRET)
    monkeypatch.setenv("BROKER_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("BROKER_KEYS_DIR", str(tmp_path / "keys"))
    return monkeypatch


@pytest.fixture
def store(shell):
    """The brokers' Redis under a fresh prefix, which the shell is pointed at."""
    prefix = f"test:cli-keys:{uuid.uuid4().hex}:"
    store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    try:
        store.client.ping()
    except redis.RedisError as exc:
        store.close()
        pytest.skip(f"no Redis at {REDIS_URL} ({exc.__class__.__name__})")
    shell.setenv("BROKER_REDIS_URL", REDIS_URL)
    shell.setenv("BROKER_REDIS_PREFIX", prefix)
    yield store
    keys = list(store.client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        store.client.delete(*keys)
    store.close()


def brokers_ring(store, *, age: float = 0.0) -> KeyRing:
    """The ring as a broker creates it at start, ``age`` seconds ago."""
    ring = KeyRing(store, SECRET, clock=lambda: time.time() - age)
    ring.ensure()
    return ring


def states(store) -> dict[str, str]:
    return {k["kid"]: k["state"] for k in store.get(RING_KEY)["keys"]}


@pytest.mark.parametrize("action", ["list", "rotate"])
def test_without_redis_both_refuse_and_say_what_to_set(shell, capsys, action):
    assert main(["keys", action]) == 2
    out, err = capsys.readouterr()
    assert out == ""   # no throw-away keys listed as if they were the brokers'
    assert err.startswith(f"error: BROKER_REDIS_URL is not set, so there is no shared key ring to {action}")
    assert "Set BROKER_REDIS_URL" in err and "BROKER_SECRET" in err
    if action == "rotate":
        assert "changes nothing a running broker uses" in err


def test_list_prints_the_brokers_keys(store, capsys):
    ring = brokers_ring(store)
    assert main(["keys", "list"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == ring.describe()
    assert f"{store._prefix}{RING_KEY}" in err and ring.signing_key("ES256").kid in err


@pytest.mark.parametrize("action", ["list", "rotate"])
def test_a_missing_ring_is_not_created_and_the_prefix_is_named(store, capsys, action):
    assert main(["keys", action]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"no key ring {store._prefix}{RING_KEY} in {REDIS_URL}" in err and "BROKER_REDIS_PREFIX" in err
    assert store.get(RING_KEY) is None


@pytest.mark.parametrize("action", ["list", "rotate"])
def test_another_master_secret_is_refused_before_anything_is_written(store, shell, capsys, action):
    brokers_ring(store, age=7200)
    before = store.get(RING_KEY)
    shell.setenv("BROKER_SECRET", "another-secret-than-the-brokers-0123456789")
    assert main(["keys", action]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "master secret is not the brokers'" in err and "BROKER_SECRET" in err
    assert store.get(RING_KEY) == before


def test_rotating_too_early_says_when_it_will_succeed_and_what_force_costs(store, capsys):
    ring = brokers_ring(store, age=600)   # the next keys have been published for 10 minutes
    before = states(store)
    assert main(["keys", "rotate"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: nothing rotated: the next ES256 key (kid ")
    assert "has been published for 10 min" in err and "must be published in the JWKS for 1 h" in err
    assert "run `broker keys rotate` again from " in err
    assert "(in 49 min 5" in err or "(in 50 min" in err  # 3600 - 600 s, less the seconds the test took
    assert "`broker keys rotate --force`" in err and "fail to verify" in err
    assert states(store) == before and ring.refresh().version == 1


def test_a_rotation_says_which_key_signs_which_is_next_and_where(store, capsys):
    brokers_ring(store, age=7200)
    old = {k["alg"]: k for k in store.get(RING_KEY)["keys"] if k["state"] == "active"}
    promoted = {k["alg"]: k for k in store.get(RING_KEY)["keys"] if k["state"] == "next"}
    assert main(["keys", "rotate"]) == 0
    out, err = capsys.readouterr()
    after = json.loads(out)
    new_next = {k["alg"]: k["kid"] for k in after if k["state"] == "next"}
    assert err.startswith(f"rotated the key ring {store._prefix}{RING_KEY} in {REDIS_URL}:")
    for alg in ("ES256", "RS256"):
        assert states(store)[promoted[alg]["kid"]] == "active"
        assert f"{alg}: kid {promoted[alg]['kid']} signs new tokens now" in err
        assert f"kid {old[alg]['kid']} no longer signs and stays in the JWKS until" in err
        assert f"kid {new_next[alg]} is the new next key" in err
    assert "forced" not in err
    assert "The next rotation can run from " in err and "`broker keys list`" in err


def test_a_forced_rotation_says_what_it_risks(store, capsys):
    brokers_ring(store)
    promoted = {k["alg"]: k["kid"] for k in store.get(RING_KEY)["keys"] if k["state"] == "next"}
    assert main(["keys", "rotate", "--force"]) == 0
    _, err = capsys.readouterr()
    assert all(states(store)[kid] == "active" for kid in promoted.values())
    assert "forced: a key published for less than 1 h may now sign" in err and "fetch the JWKS again" in err


def test_a_rotation_while_another_is_in_progress_says_try_again(store, capsys):
    brokers_ring(store, age=7200)
    before = states(store)
    store.add(LOCK_KEY, {"pid": 1}, 60)
    assert main(["keys", "rotate"]) == 1
    _, err = capsys.readouterr()
    assert "nothing rotated: another process is changing the key ring" in err and "again in a minute" in err
    assert states(store) == before
