"""What confirming a login's grant on a replica costs: a durable batch (``WAIT 1``) against a plain one.

Starts its own primary and replica on free loopback ports (tests/ha/ha_servers.py), sends the
token endpoint's batch (grant, refresh token, session grant record, session read) ``--n``
times each way and prints the median and 99th percentile round trip.

    .venv/bin/python bench/bench_store_wait.py --n 2000
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "ha"))
from ha_servers import Servers, replica_online, wait_for  # noqa: E402

from broker.demo.servers import free_port  # noqa: E402
from broker.store.redis import RedisStore  # noqa: E402


def _batch(store: RedisStore, n: int, durable: bool) -> None:
    tag = "0badcafe"
    with store.batch(durable=durable):
        store.put(f"tok:grant:{{{tag}}}{n}", {"c": "rp", "sub": "x" * 40, "s": ["openid", "roles"]}, 3600)
        store.put(f"tok:rt:{{{tag}}}{n}", {"gid": n, "c": "rp"}, 3600)
        store.set_add(f"sso:{{{tag}}}s:grants", str(n), 3600)
        store.get_after_writes(f"sso:{{{tag}}}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    servers = Servers(pathlib.Path(tempfile.mkdtemp(prefix="store-wait-")))
    primary, replica = free_port(), free_port()
    try:
        servers.start(primary)
        servers.start(replica, "--replicaof", "127.0.0.1", str(primary))
        wait_for("replica in step", lambda: replica_online(servers, primary))
        store = RedisStore(RedisStore.from_url(f"redis://127.0.0.1:{primary}/0").client, prefix="bench:",
                           replicas=1, wait_ms=1500)
        for durable in (False, True, False, True):   # twice each, interleaved (the first pair warms up)
            times = []
            for n in range(args.n):
                start = time.perf_counter()
                _batch(store, n, durable)
                times.append((time.perf_counter() - start) * 1e6)
            times.sort()
            print(f"{'WAIT 1' if durable else 'plain '}  median {statistics.median(times):7.1f} µs   "
                  f"p99 {times[int(len(times) * 0.99)]:7.1f} µs   (n={args.n})")
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
