"""Redis servers a test owns: a Sentinel set and a Cluster, on free loopback ports in a tmp dir.

Nothing here touches the shared Redis on 127.0.0.1:6379.  Every process is started with
``--save "" --appendonly no`` (nothing written but the configuration files Sentinel and
Cluster keep) and killed by :meth:`Servers.stop`, which the fixtures call in a finalizer.
"""

from __future__ import annotations

import pathlib
import shutil
import signal
import socket
import subprocess
import time

import redis

from broker.demo.servers import free_port

#: Why the HA tests skip, when they do: the binaries are missing on this machine (.ci/run installs them).
MISSING = (None if shutil.which("redis-server") and shutil.which("redis-cli")
           else "redis-server and redis-cli are not installed (Debian redis-server, redis-sentinel)")
SERVICE = "ha"


def wait_for(what: str, check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _free_port_with_bus() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise AssertionError("no free port pair for a cluster node")


def command_calls(servers: Servers, port: int, command: str) -> tuple[int, int]:
    """How many times ``port`` ran ``command`` (``INFO commandstats``), and how many it refused
    unrun (``rejected_calls``: a cluster's ``ASK`` and ``MOVED``, ``READONLY``)."""
    for line in servers.raw(port, "INFO", "commandstats").decode().splitlines():
        if line.startswith(f"cmdstat_{command.lower()}:"):
            fields = dict(part.split("=", 1) for part in line.split(":", 1)[1].split(","))
            return int(fields["calls"]), int(fields.get("rejected_calls", 0))
    return 0, 0


def replica_online(servers: Servers, primary: int) -> bool:
    """Whether ``primary`` has a replica in step (``state=online``: it acknowledges, so ``WAIT`` counts it)."""
    return b"state=online" in servers.raw(primary, "INFO", "replication")


class Servers:
    """The processes of one set; ``kill(port)`` SIGKILLs one, ``stop()`` all."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.processes: dict[int, subprocess.Popen] = {}

    def start(self, port: int, *args: str, config: str | None = None) -> None:
        directory = self.root / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        command = ["redis-server"]
        if config is not None:
            (directory / "redis.conf").write_text(config)
            command.append(str(directory / "redis.conf"))
        command += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
                    "--appendonly", "no", "--repl-diskless-sync-delay", "0", *args]
        log = open(directory / "log", "w")
        self.processes[port] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(f"redis on {port}", lambda: self.client(port).ping())

    @staticmethod
    def client(port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)

    @classmethod
    def raw(cls, port: int, *args: object):
        """One command's reply as Redis sent it (no redis-py parsing of INFO and the like)."""
        client = cls.client(port)
        connection = client.connection_pool.get_connection()
        try:
            connection.send_command(*args)
            return connection.read_response()
        finally:
            connection.disconnect()
            client.close()

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
        for process in self.processes.values():
            process.wait(timeout=10)
        self.processes.clear()


class SentinelSet(Servers):
    """One primary, one replica, three sentinels (quorum 2, down-after 1000 ms)."""

    def __init__(self, root: pathlib.Path):
        super().__init__(root)
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]

    def url(self, **query: object) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        options = "&".join(f"{k}={v}" for k, v in query.items())
        return f"redis+sentinel://{hosts}/{SERVICE}/0" + (f"?{options}" if options else "")

    def start_all(self) -> SentinelSet:
        self.start(self.primary)
        self.start(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        wait_for("replica in sync", lambda: replica_online(self, self.primary))
        config = (f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                  f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                  f"sentinel failover-timeout {SERVICE} 10000\n"
                  f"sentinel parallel-syncs {SERVICE} 1\n")
        for port in self.sentinels:
            self.start(port, "--sentinel", config=config)
        wait_for("sentinels know each other and the replica", self._known, timeout=30)
        return self

    def _known(self) -> bool:
        for port in self.sentinels:
            master = self.client(port).sentinel_master(SERVICE)
            if int(master["num-other-sentinels"]) < 2 or int(master["num-slaves"]) < 1:
                return False
        return True

    def master_port(self) -> int:
        """The primary the sentinels name now."""
        return int(self.client(self.sentinels[0]).sentinel_get_master_addr_by_name(SERVICE)[1])


class ClusterSet(Servers):
    """Three primaries, each with a replica (cluster-node-timeout 1000 ms)."""

    def __init__(self, root: pathlib.Path):
        super().__init__(root)
        self.ports = [_free_port_with_bus() for _ in range(6)]

    def url(self, **query: object) -> str:
        options = "&".join(f"{k}={v}" for k, v in query.items())
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])
        return f"redis+cluster://{hosts}" + (f"?{options}" if options else "")

    def start_all(self) -> ClusterSet:
        for port in self.ports:
            self.start(port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                       "--cluster-node-timeout", "1000")
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        wait_for("cluster state ok, every replica in sync", self._ok, timeout=30)
        return self

    def _ok(self) -> bool:
        for port in self.ports:
            if b"cluster_state:ok" not in self.raw(port, "CLUSTER", "INFO"):
                return False
            info = self.raw(port, "INFO", "replication")
            if b"role:slave" in info and b"master_link_status:up" not in info:
                return False
            if b"role:master" in info and b"state=online" not in info:
                return False
        return True

    def primary_of(self, key: str) -> int:
        """The port of the primary that holds ``key``'s slot now."""
        for port in self.processes:
            if b"role:master" in self.raw(port, "INFO", "replication"):
                slot = self.raw(port, "CLUSTER", "KEYSLOT", key)
                for start, end, primary, *_ in self.raw(port, "CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return int(primary[1])
        raise AssertionError(f"no primary holds {key!r}")
