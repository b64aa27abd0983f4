"""The two stores behave the same and refuse what they must."""

from __future__ import annotations

import pytest

from broker.store import MemoryStore


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


def test_a_read_after_the_batchs_writes_sees_them_in_the_same_round_trip(store):
    """``get_after_writes``: the writes queued so far, then the read, in order; the batch goes on."""
    sent: list[int] = []
    if store.shared:
        run = store._run
        store._run = lambda *commands, **kw: sent.append(len(commands)) or run(*commands, **kw)
    store.put("w0", "before", 60)
    with store.batch():
        store.put("w1", {"n": 1}, 60)
        store.set_add("ws", "m", 60)
        assert store.get_after_writes("w1") == {"n": 1}, "the queued write is read back"
        assert store.get_after_writes("missing") is None
        store.put("w2", 2, 60)
    assert store.get_many("w1", "w2") == [{"n": 1}, 2] and store.set_members("ws") == {"m"}
    assert store.get_after_writes("w0") == "before", "outside a batch it is get"
    if store.shared:
        # put w0; [SET w1, SADD, EXPIRE, GET w1]; [GET missing]; [SET w2]; MGET; SMEMBERS; GET w0
        assert sent == [1, 4, 1, 1, 1, 1, 1]
