"""Which of the Redis store's round trips may be sent again after a missing reply (no Redis needed)."""

from __future__ import annotations

import pytest
import redis

from broker.store import StoreError, StoreOutcomeUnknown
from broker.store.commands import idempotent as _idempotent
from broker.store.redis import RedisStore


@pytest.mark.parametrize(("command", "expected"), [
    (("GET", "k"), True),
    (("MGET", "a", "b"), True),
    (("SMEMBERS", "s"), True),
    (("EXISTS", "k"), True),
    (("PING",), True),
    (("SET", "k", "v", "EX", 60), True),
    ((b"set", "k", "v", b"ex", 60), True),
    (("SADD", "s", "m"), True),
    (("SREM", "s", "m"), True),
    (("EXPIRE", "k", 60), True),
    (("SET", "k", "v", "EX", 60, "NX"), False),
    (("SET", "k", "v", "EX", 60, "GET"), False),
    (("SET", "k", "v", "KEEPTTL"), False),
    (("GETDEL", "k"), False),
    (("INCR", "k"), False),
    (("DEL", "k"), False),
    (("EXPIRE", "k", 60, "NX"), False),
    (("LPUSH", "l", "x"), False),
    (("EVAL", "return 1", 0), False),
])
def test_idempotent_commands(command, expected):
    assert _idempotent(command) is expected


class _Recording(RedisStore):
    def __init__(self):
        super().__init__(redis.Redis(), prefix="p:")
        self.calls: list[tuple[tuple, bool]] = []

    def _exchange(self, line, payload, commands, answers):
        self.calls.append((commands, answers.resendable()))
        replies = {"MGET": lambda c: [None] * (len(c) - 1), "DEL": lambda c: 0, "INCR": lambda c: 1}
        return [replies.get(c[0], lambda c: None)(c) for c in commands]


@pytest.fixture
def store(monkeypatch):
    store = _Recording()
    monkeypatch.setattr(store._lines, "line", lambda pool: None)   # nothing is sent: _exchange records
    return store


@pytest.mark.parametrize(("operation", "resendable"), [
    (lambda s: s.get("k"), True),
    (lambda s: s.get_many("a", "b"), True),
    (lambda s: s.set_members("s"), True),
    (lambda s: s.ping(), True),
    (lambda s: s.put("k", 1, 60), True),
    (lambda s: s.set_add("s", "m", 60), True),
    (lambda s: s.set_remove("s", "m"), True),
    (lambda s: s.set_add_bounded("s", "m", limit=10, ttl=60, refused="n"), True),
    (lambda s: s.add("k", 1, 60), False),
    (lambda s: s.take("k"), False),
    (lambda s: s.incr("k", 60), False),
    (lambda s: s.delete("k"), False),
], ids=["get", "get_many", "set_members", "ping", "put", "set_add", "set_remove", "set_add_bounded", "add", "take",
        "incr", "delete"])
def test_each_operation_is_classified(store, operation, resendable):
    operation(store)
    assert [r for _, r in store.calls] == [resendable]


def test_a_batch_is_resendable_only_if_every_command_in_it_is(store):
    with store.batch():
        store.put("a", 1, 60)
        store.set_add("s", "m", 60)
        store.set_remove("s", "n")
    with store.batch():
        store.put("a", 1, 60)
        store.delete("b")
    assert [(len(commands), r) for commands, r in store.calls] == [(4, True), (2, False)]


def test_outcome_unknown_is_a_store_error():
    assert issubclass(StoreOutcomeUnknown, StoreError)
