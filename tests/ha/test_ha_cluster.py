"""Redis Cluster: three primaries with a replica each, on loopback, owned by the test.

- The store's operations route to the node owning each key; keys sent together must share a
  hash tag, and a batch spanning slots is refused (a programming error) before anything is sent.
- A stale slot map (a replica took over by ``CLUSTER FAILOVER``) answers ``MOVED``: not run,
  so even ``SET NX`` is sent again, to the new owner, and runs once.
- Real logins through a SIGKILLed primary: they resume once its replica is promoted, and every
  completed login's tokens still work (the grant was confirmed on the replica by ``WAIT``).
"""

from __future__ import annotations

import pytest
import requests
from ha_broker import Wakes, broker_on, cluster_store
from ha_logins import run_through_failover
from ha_servers import wait_for

from broker.store.cluster import ClusterStore
from broker.store.slots import CrossSlot


def _owner(cluster_set, store: ClusterStore, key: str) -> int:
    return cluster_set.primary_of(store._k(key))   # noqa: SLF001 - the key as stored


def test_operations_route_by_slot_and_cross_slot_batches_are_refused(cluster_set):
    store = cluster_store(cluster_set)
    keys = [f"k{n}" for n in range(12)]
    assert len({_owner(cluster_set, store, k) for k in keys}) == 3, "the keys spread over the three primaries"
    for n, key in enumerate(keys):
        store.put(key, {"n": n}, 60)
    assert [store.get(k) for k in keys] == [{"n": n} for n in range(12)]
    assert store.add("{t}a", 1, 60) and not store.add("{t}a", 2, 60)
    assert store.take("{t}a") == 1 and store.take("{t}a") is None
    assert store.incr("{t}n", 60) == 1 and store.incr("{t}n", 60) == 2
    store.set_add("{t}s", "m", 60)
    assert store.set_members("{t}s") == {"m"}
    store.zset_add("{t}z", "job", 1.0, 60)
    assert store.zset_claim("{t}z", max_score=2.0, count=5, new_score=10.0) == ["job"]
    with store.batch(durable=True):   # one tag: one slot, one round trip, confirmed on a replica
        store.put("{t}x", 1, 60)
        store.put("{t}y", 2, 60)
        assert store.get_after_writes("{t}x") == 1
        store.put("{t}w", 3, 60)
    assert store.get_many("{t}x", "{t}y", "{t}w") == [1, 2, 3]
    assert store.delete("{t}x", "{t}y") == 2

    with pytest.raises(CrossSlot), store.batch():
        store.put("{a}1", 1, 60)
        store.put("{b}1", 1, 60)
    assert store.get("{a}1") is None, "nothing of a refused batch was sent"
    with pytest.raises(CrossSlot):
        store.get_many("k0", "k1", "k2", "k3")
    with pytest.raises(CrossSlot):
        store.delete("k0", "k1", "k2", "k3")
    assert store.ping()
    store.close()


def test_a_stale_slot_map_answers_moved_and_the_write_runs_once(cluster_set):
    store = cluster_store(cluster_set)
    key = "{moved}replay"
    store.put("{moved}warm", 1, 60)   # the map is read; a connection to the owner is pooled
    owner = _owner(cluster_set, store, key)
    replica = next(p for p in cluster_set.ports if p != owner and
                   f"master_port:{owner}".encode() in cluster_set.raw(p, "INFO", "replication"))
    assert cluster_set.raw(replica, "CLUSTER", "FAILOVER") == b"OK"
    wait_for("the replica owns the slot", lambda: _owner(cluster_set, store, key) == replica)
    assert store.add(key, 1, 60) is True   # MOVED from the old owner (now a replica): sent again
    assert store.add(key, 2, 60) is False
    assert store.get(key) == 1
    store.close()


def test_logins_survive_a_primary_killed_mid_run(ha_stack, cluster_set):
    store = cluster_store(cluster_set)
    victim = cluster_set.ports[0]

    def switched() -> bool:
        live = next(p for p in cluster_set.processes)
        if b"cluster_state:ok" not in cluster_set.raw(live, "CLUSTER", "INFO"):
            return False
        return all(int(owner[1]) != victim for _start, _end, owner, *_ in cluster_set.raw(live, "CLUSTER", "SLOTS"))

    with broker_on(ha_stack, store) as (_, service):
        assert requests.get(f"{service.url}/readyz", timeout=5).status_code == 200
        run = run_through_failover(service, kill=lambda: cluster_set.kill(victim), switched=switched,
                                   before=6, after=6)
        assert run["switch_after_kill"] is not None, "the cluster never promoted the replica"
        print(f"\ncluster failover: switch {run['switch_after_kill']:.2f} s after the kill, first login "
              f"{run['resumed_after_switch'] or -1:.2f} s after the switch, {len(run['tokens'])} logins, "
              f"{len(run['failures'])} attempts refused")
        assert run["resumed_after_switch"] is not None and run["resumed_after_switch"] < 5.0, run["failures"]
        lost = {i: wrong for i, token in enumerate(run["tokens"]) if (wrong := service.still_valid(token))}
        assert not lost, lost
        assert requests.get(f"{service.url}/readyz", timeout=5).status_code == 200


def test_registry_notices_reach_watchers_through_the_cluster(cluster_set):
    """PUBLISH on any node reaches subscribers on every node (the cluster bus): the watcher wakes,
    also after the node its subscription was on is killed (it subscribes again elsewhere)."""
    from broker.registry.watch import RegistryWatcher, announcer

    store = cluster_store(cluster_set)
    watcher = RegistryWatcher(lambda: 1, lambda: 1, built=1, redis=store.client, prefix="test-ha:", interval=0.5)
    watcher._wake = wakes = Wakes()   # noqa: SLF001
    channel = "test-ha:registry"

    def subscribed() -> int:
        return sum(cluster_set.raw(p, "PUBSUB", "NUMSUB", channel)[1] for p in cluster_set.processes)

    try:
        watcher.start()
        wait_for("subscribed", subscribed)
        announcer(store.client, "test-ha:")(2)
        assert wakes.noticed.wait(10), "the notice did not reach the watcher"
        home = next(p for p in cluster_set.processes if cluster_set.raw(p, "PUBSUB", "NUMSUB", channel)[1])
        cluster_set.kill(home)
        wait_for("subscribed again on a node still up", subscribed, timeout=30)
        wakes.noticed.clear()
        announcer(store.client, "test-ha:")(3)
        assert wakes.noticed.wait(10), "the notice did not reach the watcher after its node was killed"
    finally:
        watcher.stop()
        store.close()
