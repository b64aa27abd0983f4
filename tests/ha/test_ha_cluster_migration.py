"""A slot migrating between two primaries of a real cluster, with a login's keys half moved.

The slot is put in ``MIGRATING`` on its owner and ``IMPORTING`` on another primary, and some
of its keys are ``MIGRATE``d: commands on keys still on the source run there; those on keys
already moved (or not yet created) answer ``ASK``.  One round trip answered in part and
refused in part:

- succeeds, every reply in its place: only the refused commands go again, to the node named,
  after ``ASKING``; what ran on the source is not run again (each ``INCR`` counts 1, each
  ``GETDEL`` returns its value once, a ``DEL`` runs once);
- a durable batch's ``WAIT`` goes with the writes sent again, so they are confirmed on the
  target's replica too: with that replica frozen the batch is refused, although the source's
  replica confirmed the write that ran there;
- a multi-key read over a moved key and one not there at all cannot be served until the
  migration ends (``TRYAGAIN``): a StoreError saying nothing ran;
- once the migration ends (``SETSLOT ... NODE``), the source answers ``MOVED``: the batch goes
  to the new owner, and later batches go there directly.

Every wait here is bounded (``MIGRATE`` 5 s, socket timeouts 2 s, ``WAIT`` 1.5 s).
"""

from __future__ import annotations

import signal

import pytest
from ha_broker import cluster_store
from ha_servers import command_calls
from redis.crc import key_slot

from broker.store import StoreError
from broker.store.cluster import ClusterStore

TAG = "{mig}"


class _Migration:
    """The slot of :data:`TAG` moving from its owner (``source``) to another primary (``target``)."""

    def __init__(self, cluster_set, store: ClusterStore):
        self.servers = cluster_set
        self.slot = key_slot(store._k(TAG).encode())   # noqa: SLF001 - the key as stored
        self.source = cluster_set.primary_of(store._k(TAG))   # noqa: SLF001
        self.primaries = [p for p in cluster_set.processes
                          if b"role:master" in cluster_set.raw(p, "INFO", "replication")]
        self.target = next(p for p in self.primaries if p != self.source)
        self.ids = {p: cluster_set.raw(p, "CLUSTER", "MYID").decode() for p in self.primaries}

    def start(self) -> None:
        raw = self.servers.raw
        assert raw(self.target, "CLUSTER", "SETSLOT", self.slot, "IMPORTING", self.ids[self.source]) == b"OK"
        assert raw(self.source, "CLUSTER", "SETSLOT", self.slot, "MIGRATING", self.ids[self.target]) == b"OK"

    def move(self, *keys: str) -> None:
        assert self.servers.raw(self.source, "MIGRATE", "127.0.0.1", self.target, "", 0, 5000, "KEYS", *keys) == b"OK"

    def finish(self) -> None:
        """The rest of the slot's keys moved, then every primary told the target owns it (as redis-cli does)."""
        rest = self.servers.raw(self.source, "CLUSTER", "GETKEYSINSLOT", self.slot, 1000)
        if rest:
            self.move(*(k.decode() for k in rest))
        for port in [self.target, self.source, *(p for p in self.primaries if p not in (self.source, self.target))]:
            assert self.servers.raw(port, "CLUSTER", "SETSLOT", self.slot, "NODE", self.ids[self.target]) == b"OK"

    def holds(self, port: int, key: str) -> bool:
        """Whether ``key`` is on ``port`` (asked of the slot: ``EXISTS`` would be redirected)."""
        return key.encode() in self.servers.raw(port, "CLUSTER", "GETKEYSINSLOT", self.slot, 1000)


def test_a_batch_half_refused_by_ask_resends_only_the_refused_commands(cluster_set):
    store = cluster_store(cluster_set)
    names = ("here-n", "moved-n", "here-v", "here-w", "moved-v", "here-code", "moved-code", "new", "new-w")
    k = {name: store._k(TAG + name) for name in names}   # noqa: SLF001 - the keys as stored
    for name in ("here-n", "moved-n"):
        assert store.incr(TAG + name, 60) == 1
    for name in ("here-v", "here-w", "moved-v", "here-code", "moved-code"):
        store.put(TAG + name, name, 60)
    migration = _Migration(cluster_set, store)
    source, target = migration.source, migration.target
    migration.start()
    migration.move(k["moved-n"], k["moved-v"], k["moved-code"])
    assert migration.holds(target, k["moved-n"]) and not migration.holds(source, k["moved-n"])
    before = {(port, c): command_calls(cluster_set, port, c)
              for port in (source, target) for c in ("incr", "getdel", "set")}

    replies = store._run(   # noqa: SLF001 - one round trip mixing moved and unmoved keys, its replies by place
        ("INCR", k["here-n"]), ("INCR", k["moved-n"]), ("GET", k["moved-v"]), ("GET", k["here-v"]),
        ("GETDEL", k["here-code"]), ("GETDEL", k["moved-code"]), ("SET", k["new"], "1", "EX", 60, "NX"))
    assert replies == [2, 2, b'"moved-v"', b'"here-v"', b'"here-code"', b'"moved-code"', b"OK"]

    def ran(port: int, command: str) -> int:
        return command_calls(cluster_set, port, command)[0] - before[port, command][0]

    assert (ran(source, "incr"), ran(target, "incr")) == (1, 1), "each INCR ran once, where its key was"
    assert (ran(source, "getdel"), ran(target, "getdel")) == (1, 1)
    assert (ran(source, "set"), ran(target, "set")) == (0, 1), "a new key is made on the target"
    assert command_calls(cluster_set, source, "incr")[1] - before[source, "incr"][1] == 1, "one INCR was refused (ASK)"
    assert migration.holds(target, k["new"]) and not migration.holds(source, k["new"])
    assert not migration.holds(source, k["here-code"]) and not migration.holds(target, k["moved-code"])

    # The store's operations, one round trip each: an INCR that runs on the source beside a GET
    # answered on the target; a durable batch whose DEL runs on the source while its SET goes to
    # the target, followed there by the WAIT that confirms it on the target's replica.
    assert store.incr_and_get(TAG + "here-n", 60, TAG + "moved-v") == (3, "moved-v")
    waits = command_calls(cluster_set, target, "wait")[0]
    dels = {port: command_calls(cluster_set, port, "del")[0] for port in (source, target)}
    with store.batch(durable=True):
        store.put(TAG + "moved-v", "again", 60)
        store.delete(TAG + "here-v")
    assert command_calls(cluster_set, target, "wait")[0] == waits + 1, "the WAIT followed the write to the target"
    assert {port: command_calls(cluster_set, port, "del")[0] - dels[port] for port in (source, target)} == {source: 1,
                                                                                                    target: 0}
    assert not migration.holds(source, k["here-v"])
    # The target's replica frozen: the write sent to the target is not confirmed there, and the
    # source's WAIT (its own replica in step, confirming the write that ran there) does not stand in for it.
    impatient = ClusterStore.from_url(cluster_set.url(wait_ms=200), prefix=store._prefix)   # noqa: SLF001 - same keys
    replica = next(p for p in cluster_set.ports if f"master_port:{target}\r".encode()
                   in cluster_set.raw(p, "INFO", "replication"))
    cluster_set.processes[replica].send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(StoreError, match="behind"), impatient.batch(durable=True):
            impatient.put(TAG + "new-w", "unconfirmed", 60)   # not on the source: ASK
            impatient.put(TAG + "here-w", "confirmed", 60)
    finally:
        cluster_set.processes[replica].send_signal(signal.SIGCONT)
    assert migration.holds(source, k["here-w"]) and migration.holds(target, k["new-w"])
    impatient.close()
    # One multi-key command on a key moved and one not there at all: the target cannot serve it
    # until the migration ends (TRYAGAIN), and says so; nothing ran.
    with pytest.raises(StoreError, match=r"MGET refused \(TRYAGAIN\), also when sent again 3 times; nothing was run"):
        store.get_many(TAG + "moved-v", TAG + "here-v")

    migration.finish()
    refused = command_calls(cluster_set, source, "incr")[1]
    assert store.incr_and_get(TAG + "here-n", 60, TAG + "moved-v") == (4, "again")   # MOVED, then the target
    assert command_calls(cluster_set, source, "incr")[1] == refused + 1, "the source refused it (MOVED): it ran once"
    assert store.cluster.nodes_manager.get_node_from_slot(migration.slot).port == target, "the map was read anew"
    gets = command_calls(cluster_set, source, "get")
    assert store.get(TAG + "moved-v") == "again" and store.incr(TAG + "moved-n", 60) == 3
    assert command_calls(cluster_set, source, "get") == gets, "later batches go to the new owner directly"
    store.close()
