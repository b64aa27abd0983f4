"""Redis Sentinel: the primary is SIGKILLed in the middle of real logins.

Logins resume once the sentinels have promoted the replica, and no login that completed
(its tokens issued) is lost: each one's access token still answers at userinfo and
introspection and its refresh token still refreshes.  That holds because the grant is
confirmed on a replica (``WAIT``) before its tokens leave (ADR 0015).
"""

from __future__ import annotations

import requests
from ha_broker import Wakes, broker_on, prefix
from ha_logins import run_through_failover
from ha_servers import wait_for

from broker.registry.watch import RegistryWatcher, announcer
from broker.store import open_store
from broker.store.redis import RedisStore


def test_logins_survive_a_primary_killed_mid_run(ha_stack, sentinel_set):
    store = open_store(sentinel_set.url(wait_ms=1500), prefix=prefix())   # a loaded test machine: generous
    assert isinstance(store, RedisStore)
    old = sentinel_set.master_port()
    with broker_on(ha_stack, store) as (_, service):
        assert requests.get(f"{service.url}/readyz", timeout=5).status_code == 200
        ready_after_kill = []

        def kill() -> None:
            sentinel_set.kill(old)
            # Before the sentinels agree it is down (down-after 1000 ms), no primary can be reached.
            ready_after_kill.append(requests.get(f"{service.url}/readyz", timeout=5).json())

        run = run_through_failover(service, kill=kill, switched=lambda: sentinel_set.master_port() != old)
        assert run["switch_after_kill"] is not None, "the sentinels never promoted the replica"
        print(f"\nsentinel failover: switch {run['switch_after_kill']:.2f} s after the kill, first login "
              f"{run['resumed_after_switch'] or -1:.2f} s after the switch, {len(run['tokens'])} logins, "
              f"{len(run['failures'])} attempts refused")
        assert run["resumed_after_switch"] is not None and run["resumed_after_switch"] < 5.0, run["failures"]
        lost = {i: wrong for i, token in enumerate(run["tokens"]) if (wrong := service.still_valid(token))}
        assert not lost, lost
        assert ready_after_kill[0]["status"] == "store unavailable", ready_after_kill
        assert requests.get(f"{service.url}/readyz", timeout=5).status_code == 200
        assert sentinel_set.master_port() == sentinel_set.replica


def test_registry_notices_follow_the_new_primary(sentinel_set):
    """The watcher's pub/sub reconnects through the sentinels: a notice published on the new primary wakes it."""
    store = open_store(sentinel_set.url(), prefix=prefix())
    assert isinstance(store, RedisStore)
    watcher = RegistryWatcher(lambda: 1, lambda: 1, built=1, redis=store.client, prefix="test-ha:", interval=0.5)
    watcher._wake = wakes = Wakes()   # noqa: SLF001
    try:
        old = sentinel_set.master_port()
        watcher.start()
        wait_for("subscribed", lambda: sentinel_set.client(old).pubsub_numsub("test-ha:registry")[0][1])
        sentinel_set.kill(old)
        wait_for("the replica promoted", lambda: sentinel_set.master_port() == sentinel_set.replica)
        wait_for("subscribed on the new primary",
                 lambda: sentinel_set.client(sentinel_set.replica).pubsub_numsub("test-ha:registry")[0][1])
        assert not wakes.noticed.is_set()
        announcer(store.client, "test-ha:")(2)
        assert wakes.noticed.wait(10), "the notice did not reach the watcher"
    finally:
        watcher.stop()
        store.close()
