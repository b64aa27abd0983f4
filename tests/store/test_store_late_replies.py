"""The Redis store against a real Redis behind a proxy that delays replies and drops connections.

A reply that comes later than the socket timeout does not mean the command did not run: it
ran, only its answer was late.  Such a command is resent only if running it twice is the
same as running it once; otherwise the caller gets a StoreError that says the outcome is
unknown, never a false "already there" (add) or a false "absent" (take).  A connection that
certainly carried nothing of ours (the server had closed it while it idled in the pool) is
replaced before anything is sent, for every command.
"""

from __future__ import annotations

import json
import time

import pytest
from store_proxy import TIMEOUT

from broker.store import StoreError
from broker.store.commands import pack as _pack

pytestmark = pytest.mark.redis

LATE = TIMEOUT * 2   # how long the proxy holds a reply: well past the client's socket timeout


def _k(store, key: str) -> str:
    return store._prefix + key


def _warm(store) -> None:
    """Open the store's pooled connection now, so that the next reply held is a command's own."""
    assert store.ping()


def test_add_after_a_late_reply_raises_instead_of_reporting_a_replay(store, proxy, direct):
    _warm(store)
    hold = proxy.hold_next_reply(LATE)
    started = time.monotonic()
    with pytest.raises(StoreError, match="outcome is unknown"):
        store.add("nonce", {"n": 1}, 60)
    assert time.monotonic() - started < LATE, "it gave up at the socket timeout, it did not wait or resend"
    assert hold.done.wait(2) and hold.client_gone, "the connection whose reply was late was discarded"
    packed = _pack(("SET", _k(store, "nonce"), '{"n":1}', "EX", 60, "NX"))
    assert proxy.sent(packed) == 1, "SET NX was sent once, never resent"
    assert json.loads(direct.get(_k(store, "nonce"))) == {"n": 1}, "the first send did run"
    # The caller may try again: the store now truthfully says the key exists.
    assert store.add("nonce", {"n": 2}, 60) is False
    assert store.get("nonce") == {"n": 1}


def test_take_after_a_late_reply_raises_and_never_returns_none_for_a_present_value(store, proxy, direct):
    store.put("code", {"c": "client"}, 60)
    hold = proxy.hold_next_reply(LATE)
    with pytest.raises(StoreError, match="outcome is unknown"):
        store.take("code")
    assert hold.done.wait(2) and hold.client_gone
    assert proxy.sent(_pack(("GETDEL", _k(store, "code")))) == 1, "GETDEL was sent once, never resent"
    assert direct.exists(_k(store, "code")) == 0, "the first GETDEL ran: the value is spent, not lost silently"


@pytest.mark.parametrize("operation", ["incr", "delete", "batch_with_delete"])
def test_other_non_idempotent_commands_after_a_late_reply_raise(store, proxy, direct, operation):
    store.put("x", 1, 60)
    _warm(store)
    proxy.hold_next_reply(LATE)
    with pytest.raises(StoreError, match="outcome is unknown"):
        if operation == "incr":
            store.incr("n", 60)
        elif operation == "delete":
            store.delete("x")
        else:
            with store.batch():
                store.put("y", 2, 60)
                store.delete("x")
    if operation == "incr":
        assert proxy.sent(_pack(("INCR", _k(store, "n")))) == 1
        assert store.incr("n", 60) == 2, "INCR ran exactly once"
    else:
        assert proxy.sent(_pack(("DEL", _k(store, "x")))) == 1
        assert direct.exists(_k(store, "x")) == 0


def test_an_idempotent_get_is_resent_and_succeeds(store, proxy):
    store.put("grant", {"g": 1}, 60)
    hold = proxy.hold_next_reply(LATE)
    started = time.monotonic()
    assert store.get("grant") == {"g": 1}
    elapsed = time.monotonic() - started
    assert TIMEOUT <= elapsed < LATE + 0.5, elapsed
    assert proxy.sent(_pack(("GET", _k(store, "grant")))) == 2, "sent, timed out, sent again on a fresh connection"
    assert hold.done.wait(2) and hold.client_gone


@pytest.mark.parametrize("operation", ["get_many", "set_members", "put", "set_add", "set_remove", "batch",
                                       "set_add_bounded"])
def test_every_idempotent_operation_is_resent_after_a_late_reply(store, proxy, direct, operation):
    store.put("a", "A", 60)
    store.set_add("s", "m1", 60)
    proxy.hold_next_reply(LATE)
    if operation == "get_many":
        assert store.get_many("a", "missing") == ["A", None]
    elif operation == "set_members":
        assert store.set_members("s") == {"m1"}
    elif operation == "put":
        store.put("a", "B", 60)
    elif operation == "set_add":
        store.set_add("s", "m2", 60)
    elif operation == "set_remove":
        store.set_remove("s", "m1")
    elif operation == "set_add_bounded":   # the audit's push, in the login's batch (broker.audit.buffer)
        with store.batch():
            store.put("a", "B", 60)
            store.set_add_bounded("s", "m2", limit=2, ttl=60, refused="n")
        assert direct.exists(_k(store, "n")) == 0, "resent, the member already there was not counted as refused"
    else:
        with store.batch():
            store.put("a", "B", 60)
            store.set_add("s", "m2", 60)
    assert direct.get(_k(store, "a")) == (b'"B"' if operation in ("put", "batch", "set_add_bounded") else b'"A"')
    expected = {"set_add": {b"m1", b"m2"}, "batch": {b"m1", b"m2"}, "set_remove": set(),
                "set_add_bounded": {b"m1", b"m2"}}.get(operation, {b"m1"})
    assert direct.smembers(_k(store, "s")) == expected


def test_the_next_command_after_a_late_reply_reads_its_own_reply(store, proxy):
    store.put("a", "value of a", 60)
    store.put("b", "value of b", 60)
    hold = proxy.hold_next_reply(LATE)
    with pytest.raises(StoreError, match="outcome is unknown"):
        store.take("a")   # its late reply is the bulk string "value of a"
    assert hold.done.wait(2), "the late reply has come back by now"
    assert hold.client_gone, "and found its connection already closed by the client"
    assert store.get("b") == "value of b"
    assert store.get_many("b", "a") == ["value of b", None]
    assert store.incr("n", 60) == 1
    assert store.add("c", 3, 60) is True


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_a_stale_pooled_connection_is_replaced_for_every_command(store, proxy, direct, rst):
    _warm(store)
    operations = [
        ("put", lambda: store.put("k", {"v": 1}, 60), None),
        ("add new", lambda: store.add("once", 1, 60), True),
        ("add existing", lambda: store.add("once", 2, 60), False),
        ("get", lambda: store.get("k"), {"v": 1}),
        ("get_many", lambda: store.get_many("k", "once", "none"), [{"v": 1}, 1, None]),
        ("take", lambda: store.take("k"), {"v": 1}),
        ("take again", lambda: store.take("k"), None),
        ("delete", lambda: store.delete("once", "none"), 1),
        ("set_add", lambda: store.set_add("s", "m1", 60), None),
        ("set_add 2", lambda: store.set_add("s", "m2", 60), None),
        ("set_remove", lambda: store.set_remove("s", "m1"), None),
        ("set_members", lambda: store.set_members("s"), {"m2"}),
        ("incr", lambda: store.incr("n", 60), 1),
        ("incr 2", lambda: store.incr("n", 60), 2),
        ("ping", store.ping, True),
    ]
    for name, call, expected in operations:
        before = proxy.accepted
        assert proxy.drop(rst=rst) == 1, name
        assert call() == expected, name
        assert proxy.accepted == before + 1, f"{name}: one new connection replaced the stale one"
    proxy.drop(rst=rst)
    with store.batch():
        store.put("b1", 1, 60)
        store.delete("n")
        store.set_add("s", "m3", 60)
    assert store.get_many("b1", "n") == [1, None] and store.set_members("s") == {"m2", "m3"}
    for command in (("SET", _k(store, "once"), "1", "EX", 60, "NX"), ("GETDEL", _k(store, "k")),
                    ("INCR", _k(store, "n")), ("DEL", _k(store, "n"))):
        assert proxy.sent(_pack(command)) == (2 if command[0] in ("GETDEL", "INCR") else 1), command


def test_a_half_open_connection_idle_past_the_health_check_is_replaced_before_sending(make_store, proxy, direct):
    # The peer vanished without a FIN: nothing on the socket tells.  A connection idle longer than
    # health_check_interval is PINGed before anything of ours goes on it.
    store = make_store(health_check_interval=0.4)
    _warm(store)
    time.sleep(0.5)
    assert proxy.blackhole() == 1
    assert store.add("once", 1, 60) is True
    assert proxy.sent(_pack(("SET", _k(store, "once"), "1", "EX", 60, "NX"))) == 1


def test_a_half_open_connection_within_the_health_check_interval_is_not_guessed_about(store, proxy, direct):
    # Nothing proves the command did not reach Redis, so a non-idempotent one is not resent.
    _warm(store)
    proxy.blackhole()
    with pytest.raises(StoreError, match="outcome is unknown"):
        store.add("once", 1, 60)
    assert store.add("once", 1, 60) is True, "it had not run after all; the caller may try again"
    proxy.blackhole()
    assert store.get("once") == 1, "an idempotent read on a half-open connection is resent"


def test_redis_down_gives_store_error_and_ping_false(make_store):
    import socket

    with socket.socket() as sock:   # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = make_store(port=port)
    with pytest.raises(StoreError, match="nothing was sent"):
        store.add("x", 1, 60)
    assert store.ping() is False


def test_an_error_reply_keeps_the_connection_in_step(store, proxy, direct):
    direct.set(_k(store, "str"), "not a set")
    direct.set(_k(store, "v"), '"mine"')
    _warm(store)
    before = proxy.accepted
    with pytest.raises(StoreError, match="WRONGTYPE"):
        store._run(("SMEMBERS", _k(store, "str")), ("GET", _k(store, "v")))
    assert store.get("v") == "mine", "the GET's reply after the error reply was read, not left for the next"
    assert proxy.accepted == before, "an error reply is an answer: the connection stays in use"
