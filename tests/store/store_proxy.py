"""A TCP forwarder between a Redis client and a real Redis that can misbehave on request.

It forwards bytes both ways on 127.0.0.1 (an ephemeral port) and can be told to

* hold the server's next reply for a while and then deliver it late
  (:meth:`DelayingProxy.hold_next_reply`): the command has reached Redis and run, only its
  answer is late, which is what a slow network or a stalled Redis looks like to a client;
* drop every open connection while it is idle, with a FIN or a RST (:meth:`DelayingProxy.drop`):
  a pooled connection the server closed (idle ``timeout``, restart, failover);
* swallow everything on the open connections without closing them (:meth:`DelayingProxy.blackhole`):
  a half-open connection whose peer vanished without a word (a NAT or firewall forgot it).

It records every byte it forwarded to Redis, so a test can count how many times a command
really reached the server.  Two threads per connection, blocking sockets; sockets are closed
only by the thread that owns them, woken with ``shutdown`` so that no close races a ``recv``.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

#: The client's socket timeout in the store tests: a reply held longer than this is late.
TIMEOUT = 0.3


class Hold:
    """One held reply: set :attr:`done` once the late reply was (or could not be) delivered."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.done = threading.Event()
        self.client_gone = False   # the client had closed that connection before the reply arrived
        self.delivered = False     # the late bytes were written to the client's socket


class _Link:
    def __init__(self, proxy: DelayingProxy, client: socket.socket, server: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.blackholed = False
        self.rst = False
        self.client_closed = threading.Event()
        self.closed = threading.Event()
        self._up = threading.Thread(target=self._pump_up, daemon=True)
        self._down = threading.Thread(target=self._pump_down, daemon=True)
        self._up.start()
        self._down.start()

    def _pump_up(self) -> None:   # client -> Redis
        try:
            while data := self.client.recv(65536):
                if self.blackholed:
                    continue
                with self.proxy._lock:
                    self.proxy.forwarded += data
                self.server.sendall(data)
        except OSError:
            pass
        self.client_closed.set()
        try:
            self.server.shutdown(socket.SHUT_WR)   # Redis closes its side, the down pump ends
        except OSError:
            pass

    def _pump_down(self) -> None:   # Redis -> client
        try:
            while data := self.server.recv(65536):
                if self.blackholed:
                    continue
                hold = self.proxy._take_hold()
                if hold is None:
                    self.client.sendall(data)
                    continue
                time.sleep(hold.seconds)
                hold.client_gone = self.client_closed.is_set()
                try:
                    self.client.sendall(data)
                    hold.delivered = True
                except OSError:
                    pass
                hold.done.set()
        except OSError:
            pass
        try:
            # SHUT_RD wakes the up pump without sending anything, so that a close with
            # SO_LINGER 0 below is a pure RST; SHUT_RDWR sends the FIN at once.
            self.client.shutdown(socket.SHUT_RD if self.rst else socket.SHUT_RDWR)
        except OSError:
            pass
        self._up.join(2)
        self.client.close()
        self.server.close()
        self.closed.set()

    def drop(self, rst: bool) -> None:
        self.rst = rst
        if rst:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            try:
                self.client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class DelayingProxy:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.forwarded = bytearray()
        self.accepted = 0
        self._lock = threading.Lock()
        self._hold: Hold | None = None
        self._links: list[_Link] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closing = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._closing:
                client.close()
                return
            server = socket.create_connection(self.upstream, timeout=2)
            server.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._links.append(_Link(self, client, server))

    def _take_hold(self) -> Hold | None:
        with self._lock:
            hold, self._hold = self._hold, None
            return hold

    def _live(self) -> list[_Link]:
        with self._lock:
            self._links = [link for link in self._links if not link.closed.is_set()]
            return list(self._links)

    # -- what a test asks for ----------------------------------------------------------------

    def hold_next_reply(self, seconds: float) -> Hold:
        """Hold the next bytes Redis sends (on any connection) for ``seconds``, then deliver them."""
        hold = Hold(seconds)
        with self._lock:
            self._hold = hold
        return hold

    def drop(self, *, rst: bool = False, timeout: float = 2.0) -> int:
        """Close every open connection on both sides (FIN, or RST with ``rst``); return how many."""
        links = self._live()
        for link in links:
            link.drop(rst)
        for link in links:
            assert link.closed.wait(timeout), "the proxy did not close a connection"
        return len(links)

    def blackhole(self) -> int:
        """From now on, forward nothing on the open connections (new ones work); return how many."""
        links = self._live()
        for link in links:
            link.blackholed = True
        return len(links)

    def sent(self, packed: bytes) -> int:
        """How many times ``packed`` (a command in RESP) reached Redis."""
        with self._lock:
            return bytes(self.forwarded).count(packed)

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        self.drop()
