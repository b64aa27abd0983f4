"""Server processes of the benchmark: started, awaited until they answer, stopped.

Each server is one gunicorn master (``broker serve`` or ``gunicorn satosa.wsgi:app``)
started by the benchmark; it is stopped by its own process id (SIGTERM, then SIGKILL
after a grace period), never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A gunicorn master the benchmark started, with its log file."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log: Path,
                 ready_url: str):
        self.name = name
        self.log = log
        self.ready_url = ready_url
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(log, "ab")  # noqa: SIM115 - open for the server's lifetime, closed by stop()
        self.process = subprocess.Popen(argv, env=env, cwd=str(cwd), stdout=self._log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, workers: int, timeout: float = 60.0) -> float:
        """Wait until the server answers and all workers are up; return the seconds it took."""
        from .procstat import descendants

        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; log: {self.log}\n"
                                   + self.tail())
            try:
                reply = requests.get(self.ready_url, timeout=5)
                if reply.status_code == 200 and len(descendants(self.pid)) - 1 >= workers:
                    return time.monotonic() - start
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; log: {self.log}\n" + self.tail())

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGTERM)  # the gunicorn master stops its workers
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
        self._log_file.close()
