"""Issue 10: slow clients cannot make the broker unavailable.

A real ``broker serve`` (uWSGI, two workers): more connections than workers trickle their
headers, or their bodies, a byte every half second; a normal client is answered within a
few seconds all the while, and connections that fall silent are closed by the server
within its bound.  Also: the master's ``SIGHUP`` replaces the workers and the broker keeps
answering (uWSGI re-executes the virtualenv's interpreter).
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import requests

from broker.server import SOCKET_TIMEOUT

TRICKLERS = 4          # two workers: more slow connections than workers
BYTE_EVERY = 0.5       # seconds
TRICKLE_FOR = 4.0      # seconds of trickling before they fall silent


class Trickler(threading.Thread):
    """One connection that sends ``data`` a byte at a time, then stays silent until closed."""

    def __init__(self, port: int, data: bytes):
        super().__init__(daemon=True)
        self.port = port
        self.data = data
        self.silent_at: float | None = None
        self.closed_at: float | None = None
        self.sent = 0
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def run(self) -> None:
        started = time.monotonic()
        try:
            for byte in self.data:
                if time.monotonic() - started > TRICKLE_FOR:
                    break
                self.sock.send(bytes([byte]))
                self.sent += 1
                time.sleep(BYTE_EVERY)
            self.silent_at = time.monotonic()
            self.sock.settimeout(SOCKET_TIMEOUT + 8)
            while self.sock.recv(65536):  # the server answers (400/408) or just closes
                pass
        except OSError:
            pass
        finally:
            self.closed_at = time.monotonic()
            self.sock.close()


def _normal_requests_while(tricklers: list[Trickler], url: str) -> list[float]:
    timings = []
    while any(t.silent_at is None for t in tricklers):
        started = time.monotonic()
        response = requests.get(url + "/healthz", timeout=10)
        assert response.status_code == 200
        timings.append(time.monotonic() - started)
        time.sleep(0.3)
    return timings


def _assert_closed_within_bound(tricklers: list[Trickler]) -> None:
    for trickler in tricklers:
        trickler.join(timeout=SOCKET_TIMEOUT + 10)
        assert trickler.closed_at is not None, "the server never closed the silent connection"
        silent_for = trickler.closed_at - trickler.silent_at
        assert silent_for <= SOCKET_TIMEOUT + 3, f"closed {silent_for:.1f} s after falling silent"


def test_trickled_headers_do_not_hold_the_workers(broker):
    tricklers = [Trickler(broker.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200)
                 for _ in range(TRICKLERS)]
    for trickler in tricklers:
        trickler.start()
    time.sleep(1.0)  # every trickler is connected and sending
    timings = _normal_requests_while(tricklers, broker.url)
    assert len(timings) >= 3 and max(timings) < 2.0, timings
    assert all(t.sent >= 4 for t in tricklers)  # they really were trickling meanwhile
    _assert_closed_within_bound(tricklers)


def test_trickled_bodies_do_not_hold_the_workers(broker):
    head = (b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 2000\r\n\r\n")
    tricklers = []
    for _ in range(TRICKLERS):
        trickler = Trickler(broker.port, b"grant_type=" + b"x" * 1989)
        trickler.sock.sendall(head)  # the headers at once, then the body a byte at a time
        tricklers.append(trickler)
    for trickler in tricklers:
        trickler.start()
    time.sleep(1.0)
    timings = _normal_requests_while(tricklers, broker.url)
    assert len(timings) >= 3 and max(timings) < 2.0, timings
    # a normal POST is answered too (the provider refuses the unknown client)
    token = requests.post(broker.url + "/token", data={"grant_type": "x"}, auth=("nobody", "x"), timeout=10)
    assert token.status_code == 401
    _assert_closed_within_bound(tricklers)


def test_sighup_replaces_the_workers_and_the_broker_keeps_answering(broker):
    before = set(broker.children())
    offset = broker.log_size()
    broker.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            if requests.get(broker.url + "/healthz", timeout=2).status_code == 200 and \
                    set(broker.children()) - before:
                break
        except requests.RequestException:
            pass
    assert broker.process.poll() is None, broker.log_since(offset)[-3000:]
    assert requests.get(broker.url + "/healthz", timeout=5).status_code == 200
    assert set(broker.children()) - before, "new workers"
    assert "ModuleNotFoundError" not in broker.log_since(offset)
