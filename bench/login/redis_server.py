"""A private ``redis-server`` on a free loopback port, in its own directory, that can be restarted.

The soak test's Redis: never the shared one on 6379.  It persists the way a production Redis
with RDB snapshots does when it is restarted on purpose: :meth:`RedisServer.restart` sends
``SHUTDOWN SAVE`` (the whole dataset written to ``dump.rdb`` in :attr:`directory`), waits for
the process to exit, and starts a new one on the same port and directory, which loads the
snapshot before it answers.  No periodic snapshots (``--save ""``) and no AOF: the only
writes to disk are the ones the restart asks for, so the run's disk use is one snapshot.

The process is stopped by its own id (:meth:`stop`: ``SHUTDOWN NOSAVE``, then SIGKILL).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis


class RedisServer:
    def __init__(self, directory: Path, port: int):
        self.directory = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self._log = open(directory / "redis.log", "ab")  # noqa: SIM115 - closed by stop()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def start(self, timeout: float = 20.0) -> float:
        """Start the server (loading ``dump.rdb`` if there is one); seconds until it answers PING."""
        start = time.monotonic()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--protected-mode", "yes",
             "--daemonize", "no"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = start + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; "
                                   f"see {self.directory}/redis.log")
            try:
                with self.client() as rc:
                    if rc.ping():
                        return time.monotonic() - start
            except redis.BusyLoadingError:  # still loading the snapshot: not ready yet
                pass
            except redis.RedisError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout:.0f} s")

    def shutdown_saving(self, timeout: float = 20.0) -> None:
        """``SHUTDOWN SAVE``: write the snapshot, exit; returns once the process is gone."""
        assert self.process is not None
        try:
            with self.client() as rc:
                rc.execute_command("SHUTDOWN", "SAVE")
        except redis.ConnectionError:  # the server closes the connection as it exits: expected
            pass
        self.process.wait(timeout)
        if not (self.directory / "dump.rdb").exists():
            raise RuntimeError("SHUTDOWN SAVE left no dump.rdb")

    def shutdown_empty(self, timeout: float = 20.0) -> None:
        """``SHUTDOWN NOSAVE`` and no snapshot left: the next start is a Redis without persistence."""
        assert self.process is not None
        try:
            with self.client() as rc:
                rc.execute_command("SHUTDOWN", "NOSAVE")
        except redis.ConnectionError:
            pass
        self.process.wait(timeout)
        (self.directory / "dump.rdb").unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                with self.client() as rc:
                    rc.execute_command("SHUTDOWN", "NOSAVE")
            except redis.RedisError:
                pass
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
