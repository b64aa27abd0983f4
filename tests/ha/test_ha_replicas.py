"""The store against a real replica and a real primary/replica pair, without Sentinel (fast).

- A write refused as ``READONLY`` (the node is a replica: a demoted primary) did not run: it is
  sent again (up to the bound) and reported as a plain StoreError, never as an unknown outcome,
  and nothing is written.
- A durable batch is confirmed by ``WAIT``: with the replica in step it passes; with the
  replica connected but frozen (SIGSTOP) it is refused; with no replica at all (after a
  failover) it passes degraded, warns, and stops sending ``WAIT`` for a while.
"""

from __future__ import annotations

import logging
import signal

import pytest
from ha_broker import prefix
from ha_servers import MISSING, Servers, command_calls, replica_online, wait_for

from broker.demo.servers import free_port
from broker.store import StoreError, StoreOutcomeUnknown
from broker.store import confirm as confirm_module
from broker.store.redis import RedisStore

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture
def pair(tmp_path):
    servers = Servers(tmp_path)
    primary, replica = free_port(), free_port()
    servers.start(primary)
    servers.start(replica, "--replicaof", "127.0.0.1", str(primary))
    servers.primary, servers.replica = primary, replica
    try:
        wait_for("replica in step", lambda: replica_online(servers, primary))
        yield servers
    finally:
        servers.stop()


def _waits(servers: Servers, port: int) -> int:
    return command_calls(servers, port, "wait")[0]


def test_a_write_refused_readonly_did_not_run(pair):
    store = RedisStore.from_url(f"redis://127.0.0.1:{pair.replica}/0", prefix=prefix())
    for write in (lambda: store.add("replay", 1, 60), lambda: store.take("code"), lambda: store.incr("n", 60),
                  lambda: store.delete("a", "b")):
        with pytest.raises(StoreError) as caught:
            write()
        assert not isinstance(caught.value, StoreOutcomeUnknown), caught.value
        assert "READONLY" in str(caught.value) and "nothing was run" in str(caught.value)
    with pytest.raises(StoreError), store.batch():
        store.put("k", {"v": 1}, 60)
        store.set_add("s", "m", 60)
    assert pair.raw(pair.replica, "DBSIZE") == 0 and pair.raw(pair.primary, "DBSIZE") == 0
    assert store.get("nothing") is None   # reads are served by a replica as ever


def test_a_primary_demoted_mid_batch_keeps_no_reply_of_what_it_ran(pair):
    """A ``READONLY`` after other commands of one round trip ran (the primary was demoted between
    them: here by the batch itself) is not a redirection: what the node ran may be lost with its
    role, so an ``INCR`` that ran there is not reported as done (unlike beside an ``ASK``,
    tests/ha/test_ha_cluster_migration.py), and an idempotent read goes again with the write."""
    store = RedisStore.from_url(f"redis://127.0.0.1:{pair.primary}/0", prefix=prefix())
    counter, key = store._k("n"), store._k("k")   # noqa: SLF001 - the keys as stored
    with pytest.raises(StoreOutcomeUnknown, match=r"partly refused \(READONLY\) after other commands of it ran"):
        store._run(("INCR", counter), ("REPLICAOF", "127.0.0.1", free_port()),   # noqa: SLF001 - one round trip
                   ("SET", key, "1", "EX", 60))
    gets = command_calls(pair, pair.primary, "get")[0]
    with pytest.raises(StoreError, match=r"refused \(READONLY\), also when sent again 3 times; nothing was run"):
        store._run(("GET", key), ("SET", key, "1", "EX", 60))   # noqa: SLF001
    assert command_calls(pair, pair.primary, "get")[0] == gets + 4, "the GET went again with the refused SET"
    store.close()


def test_a_durable_batch_is_confirmed_by_the_replica(pair):
    store = RedisStore(RedisStore.from_url(f"redis://127.0.0.1:{pair.primary}/0").client, prefix=prefix(),
                       replicas=1, wait_ms=1500)   # generous: returns once acknowledged
    with store.batch(durable=True):
        store.put("grant", {"g": 1}, 60)
    assert _waits(pair, pair.primary) == 1
    assert pair.raw(pair.replica, "EXISTS", store._k("grant")) == 1   # noqa: SLF001 - the key as stored
    with store.batch():   # not durable: no WAIT
        store.put("other", 1, 60)
    assert _waits(pair, pair.primary) == 1


def test_a_replica_connected_but_behind_refuses_the_batch(pair):
    store = RedisStore(RedisStore.from_url(f"redis://127.0.0.1:{pair.primary}/0").client, prefix=prefix(),
                       replicas=1, wait_ms=200)
    frozen = pair.processes[pair.replica]
    frozen.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(StoreError, match="behind"), store.batch(durable=True):
            store.put("grant", {"g": 1}, 60)
    finally:
        frozen.send_signal(signal.SIGCONT)


def test_a_primary_without_replicas_confirms_degraded(pair, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, "broker.store")
    pair.kill(pair.replica)
    store = RedisStore(RedisStore.from_url(f"redis://127.0.0.1:{pair.primary}/0").client, prefix=prefix(),
                       replicas=1, wait_ms=100)
    wait_for("replica gone", lambda: b"connected_slaves:0" in pair.raw(pair.primary, "INFO", "replication"))
    monkeypatch.setattr(confirm_module, "RECHECK", 3600.0)   # within the window for the rest of the test
    for n in range(3):
        with store.batch(durable=True):
            store.put(f"grant{n}", {"g": n}, 60)
    assert _waits(pair, pair.primary) == 1, "after the first shortfall no WAIT is sent for a while"
    monkeypatch.setattr(confirm_module, "RECHECK", 0.0)   # the count is asked anew each time: still none
    for n in range(3):
        with store.batch(durable=True):
            store.put(f"again{n}", {"g": n}, 60)
    assert _waits(pair, pair.primary) == 1, "a primary without replicas is never made to WAIT in vain"
    assert [r.getMessage() for r in caplog.records if "degraded" in r.getMessage()] == [
        "store degraded: the primary has 0 of 1 replicas; logins are confirmed on 0 until more are back"]
