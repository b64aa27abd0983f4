"""The sealed flow state and the two stores behave the same and refuse what they must."""

from __future__ import annotations

import os
import uuid

import pytest

from broker.proxy.state import StateCodec, StateError, StateExpired
from broker.store import MemoryStore
from broker.store.redis import RedisStore

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = b"s" * 40


def test_state_round_trip_and_every_flipped_byte_is_refused():
    codec = StateCodec(SECRET, name="digione_flow", max_age=60)
    sealed = codec.seal({"flow": {"req_id": "id-1"}})
    assert codec.open(sealed) == {"flow": {"req_id": "id-1"}}
    body = sealed[3:]
    for i in range(0, len(body), 7):
        flipped = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1:]
        with pytest.raises(StateError):
            codec.open("v1." + flipped)


def test_state_is_bound_to_its_cookie_name_key_and_age():
    codec = StateCodec(SECRET, name="digione_flow", max_age=60)
    sealed = codec.seal({"a": 1})
    with pytest.raises(StateError):
        StateCodec(SECRET, name="other", max_age=60).open(sealed)
    with pytest.raises(StateError):
        StateCodec(b"t" * 40, name="digione_flow", max_age=60).open(sealed)
    old = StateCodec(SECRET, name="digione_flow", max_age=60, clock=lambda: 1_000_000).seal({"a": 1})
    with pytest.raises(StateExpired):
        codec.open(old)
    for garbage in ("", "v1.", "v2.abc", "v1.!!!!", "v1." + "A" * 10):
        with pytest.raises(StateError):
            codec.open(garbage)


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = f"test:{uuid.uuid4().hex}:"
    store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    yield store
    keys = list(store.client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        store.client.delete(*keys)
    store.close()


def test_store_semantics(store):
    store.put("a", {"x": 1}, 60)
    assert store.get("a") == {"x": 1}
    assert store.add("a", {"x": 2}, 60) is False and store.get("a") == {"x": 1}
    assert store.add("b", [1, 2], 60) is True
    assert store.take("a") == {"x": 1} and store.take("a") is None and store.get("a") is None
    assert store.delete("b", "nothing") == 1
    store.set_add("s", "m1", 60)
    store.set_add("s", "m2", 60)
    store.set_remove("s", "m1")
    assert store.set_members("s") == {"m2"}
    assert [store.incr("n", 60) for _ in range(3)] == [1, 2, 3]
    assert store.ping()


def test_memory_store_expires():
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    store.put("a", 1, 10)
    now[0] = 9.9
    assert store.get("a") == 1
    now[0] = 10.0
    assert store.get("a") is None and store.add("a", 2, 10)


def test_batched_writes_land_together_or_not_at_all(store):
    with store.batch():
        store.put("b1", {"x": 1}, 60)
        store.set_add("bs", "m", 60)
        with store.batch():               # nested: sent with the outer batch
            store.put("b2", 2, 60)
    assert store.get_many("b1", "b2", "missing") == [{"x": 1}, 2, None]
    assert store.set_members("bs") == {"m"}
    with pytest.raises(RuntimeError), store.batch():
        store.put("b3", 3, 60)
        raise RuntimeError("abandon")
    if store.shared:
        assert store.get("b3") is None, "a batch that raised writes nothing"


@pytest.mark.parametrize("encoded", [
    "", "a=1", "a=1&b=", "a=1&a=2", "SAMLResponse=PHNhbWxw%2Bb%2F%3D%3D&RelayState=x+y",
    "x=%252B", "x=%%2B41", "x=%2b%2f%3d", "n%C3%A4me=v%C3%A4l+ue&&=e", "x=%zz", "x=%E2%82%AC%2B",
])
def test_parse_form_matches_the_standard_library(encoded):
    from urllib.parse import parse_qsl

    from broker.proxy.base import parse_form

    assert parse_form(encoded) == dict(parse_qsl(encoded, keep_blank_values=True))


def test_parse_form_matches_the_standard_library_on_any_input():
    from urllib.parse import parse_qsl

    from hypothesis import given, settings, strategies as st

    from broker.proxy.base import parse_form

    alphabet = st.sampled_from(list("ab=&+%2BFfD3dzZ09é/"))

    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet=alphabet, max_size=40))
    def check(encoded):
        assert parse_form(encoded) == dict(parse_qsl(encoded, keep_blank_values=True))

    check()
