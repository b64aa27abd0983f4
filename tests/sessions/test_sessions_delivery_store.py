"""The sorted-set primitives back-channel delivery queues on: the same in memory and in Redis."""

from __future__ import annotations

import threading

import pytest

from broker.store import MemoryStore, StoreOutcomeUnknown


def test_claim_takes_due_members_lowest_first_and_rescores_them(store):
    for member, score in [("c", 30.0), ("a", 10.0), ("b", 20.0), ("later", 100.0)]:
        store.zset_add("q", member, score, 60)
    assert store.zset_claim("q", max_score=25.0, count=10, new_score=200.0) == ["a", "b"]
    assert store.zset_claim("q", max_score=25.0, count=10, new_score=200.0) == []
    assert store.zset_claim("q", max_score=150.0, count=1, new_score=200.0) == ["c"]
    assert store.zset_claim("q", max_score=150.0, count=5, new_score=200.0) == ["later"]
    # the claimed ones are due again at their new score, in score then member order
    assert store.zset_claim("q", max_score=200.0, count=10, new_score=300.0) == ["a", "b", "c", "later"]


def test_add_rescores_remove_removes_and_ties_go_by_member(store):
    store.zset_add("q", "x", 50.0, 60)
    store.zset_add("q", "x", 5.0, 60)          # re-scored, not duplicated
    store.zset_add("q", "y", 5.0, 60)
    store.zset_add("q", "z", 7.5, 60)
    store.zset_remove("q", "z")
    store.zset_remove("q", "absent")
    store.zset_remove("no-such-set", "x")
    assert store.zset_claim("q", max_score=60.0, count=10, new_score=100.0) == ["x", "y"]
    assert store.zset_claim("missing", max_score=60.0, count=10, new_score=100.0) == []
    assert store.zset_claim("q", max_score=1000.0, count=0, new_score=100.0) == []


def test_a_new_score_still_due_is_not_claimed_twice_in_one_call(store):
    store.zset_add("q", "a", 1.0, 60)
    store.zset_add("q", "b", 2.0, 60)
    assert store.zset_claim("q", max_score=10.0, count=10, new_score=3.0) == ["a", "b"]
    assert store.zset_claim("q", max_score=10.0, count=10, new_score=3.0) == ["a", "b"]


def test_racing_claims_hand_each_member_to_one_claimer(store):
    for i in range(300):
        store.zset_add("q", f"m{i:03d}", float(i), 60)
    got: list[list[str]] = [[] for _ in range(6)]
    start = threading.Barrier(6)

    def claimer(mine: list[str]) -> None:
        start.wait()
        while batch := store.zset_claim("q", max_score=1000.0, count=7, new_score=5000.0):
            mine.extend(batch)

    threads = [threading.Thread(target=claimer, args=(mine,)) for mine in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    everything = [m for mine in got for m in mine]
    assert sorted(everything) == [f"m{i:03d}" for i in range(300)]   # each exactly once


def test_memory_heap_stays_bounded_under_rescoring():
    store = MemoryStore()
    for i in range(5000):
        store.zset_add("q", f"m{i % 10}", float(i), 60)
    zset = store._data["q"][1]
    assert len(zset.scores) == 10 and len(zset.heap) <= 2 * 10 + 64 + 1


def test_sorted_set_expires_with_its_ttl():
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    store.zset_add("q", "a", 1.0, 10)
    now[0] = 10.0
    assert store.zset_claim("q", max_score=5.0, count=1, new_score=9.0) == []


def test_redis_set_has_a_ttl_and_a_claim_is_never_sent_twice(redis_store):
    store = redis_store
    store.zset_add("q", "a", 1.0, 60)
    assert 0 < store.client.ttl(store._k("q")) <= 60
    assert store.client.zscore(store._k("q"), "a") == 1.0
    with store.batch():   # deferred with the batch, like the other writes
        store.zset_add("q", "b", 2.0, 60)
        store.zset_remove("q", "a")
        assert store.client.zscore(store._k("q"), "b") is None
    assert store.client.zrange(store._k("q"), 0, -1, withscores=True) == [(b"b", 2.0)]

    sent: list[bool] = []

    def lost(connection, payload, commands, answers):
        sent.append(answers.resendable())
        raise StoreOutcomeUnknown("reply lost")

    store._exchange = lost   # type: ignore[method-assign]
    with pytest.raises(StoreOutcomeUnknown):
        store.zset_claim("q", max_score=5.0, count=1, new_score=9.0)
    with pytest.raises(StoreOutcomeUnknown):
        store.zset_add("q", "c", 3.0, 60)
    assert sent == [False, False]
