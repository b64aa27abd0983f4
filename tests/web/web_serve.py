"""Real servers for the web tests: ``broker serve`` as a subprocess, raw sockets, threaded WSGI servers."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@dataclass
class Broker:
    """A running ``broker serve``: its URL, its master process and its combined log."""

    url: str
    port: int
    process: subprocess.Popen
    log: Path
    prefix: str
    env: dict = field(repr=False, default_factory=dict)
    #: The port of ``/metrics`` (BROKER_METRICS_PORT), one of this broker's own.
    metrics_port: int = 0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_size(self) -> int:
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def wait_for_log(self, needle: str, offset: int = 0, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_since(offset)
            if needle in text:
                return text
            time.sleep(0.05)
        return self.log_since(offset)

    def children(self) -> list[int]:
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == self.process.pid:
                    out.append(int(entry))
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


#: The line each uWSGI worker writes once its application is loaded.
_UWSGI_READY = "WSGI app 0 (mountpoint='') ready"


def start_broker(root: Path, *, workers: int = 2, server: str = "uwsgi", access_log: bool = True,
                 extra_env: dict | None = None, timeout: float = 40.0) -> Broker:
    """``broker serve`` with the demo's environment (no demo IdPs needed) on a free port, on Redis."""
    port = free_port()
    metrics_port = free_port()
    ports = Ports(*(free_port() for _ in range(5)))
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=ports, environ={})
    stack.prepare()
    prefix = f"test-web:{secrets.token_hex(6)}:"
    env = {**os.environ, **stack.env(), "BROKER_PORT": str(port), "BROKER_BASE_URL": f"http://localhost:{port}",
           "BROKER_REDIS_URL": REDIS_URL, "BROKER_REDIS_PREFIX": prefix, "BROKER_SECRET": secrets.token_urlsafe(32),
           "BROKER_SERVER": server, "BROKER_ACCESS_LOG": "1" if access_log else "0", "BROKER_LOG_LEVEL": "INFO",
           "BROKER_METRICS_PORT": str(metrics_port), **(extra_env or {})}
    log = root / f"broker-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--bind", f"127.0.0.1:{port}",
                                    "--workers", str(workers)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=ROOT)
    broker = Broker(f"http://127.0.0.1:{port}", port, process, log, prefix, env, metrics_port=metrics_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"broker serve exited:\n{broker.log_text()[-3000:]}")
        try:
            # every worker answers: each builds its own application after the fork.  The
            # requests may all reach one worker, so under uWSGI every worker must also have
            # said it is ready (its line would otherwise land in a test's part of the log).
            if requests.get(f"{broker.url}/healthz", timeout=1).status_code == 200 and \
                    all(requests.get(f"{broker.url}/healthz", timeout=2).ok for _ in range(workers * 3)) and \
                    (server != "uwsgi" or broker.log_text().count(_UWSGI_READY) >= workers):
                return broker
        except requests.RequestException:
            pass
        time.sleep(0.2)
    broker.stop()
    raise AssertionError(f"broker serve not ready:\n{broker.log_text()[-3000:]}")


def cleanup_redis(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


def raw_request(port: int, data: bytes, *, timeout: float = 10.0, read_limit: int = 1 << 20) -> bytes:
    """Send ``data`` as is (no client normalises the path) and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        size = 0
        while size < read_limit:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` that is a JSON object (the broker's lines), parsed."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out
