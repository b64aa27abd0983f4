"""A thread's own connection to Redis: held for the thread's life, read with a bare hiredis reader.

redis-py's pool hands a connection out and takes it back around every command, and each
checkout and release runs its observability hooks and a readiness poll; its reply path
wraps hiredis in several layers of Python.  For the seven round trips of a login that was
about half of the store's CPU (docs/performance.md, "The store's wire").  So each thread
that talks to a pool checks one connection out once and keeps it (:class:`Line`), and the
round trip itself is one ``sendall`` and ``recv_into`` calls feeding a ``hiredis.Reader``.

What stays redis-py's: making the connection (address, Sentinel's primary lookup, TLS,
``AUTH``, ``SELECT``, the socket timeouts), and its error classes, which the store's resend
rules are written in (:func:`error_of`).

A request is served start to finish on one thread (uWSGI's green threads switch only
outside the application, gunicorn's sync workers not at all), and so is every background
thread's work, so a thread's line is never used by two round trips at once.
"""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Any

import hiredis
import redis
from redis._parsers.base import BaseParser

#: Bytes read per ``recv_into``; a login's largest reply (a session record) is a few KiB.
_CHUNK = 65536


def error_of(reply: hiredis.ReplyError) -> redis.RedisError:
    """An error reply as redis-py's exception for it (``READONLY`` → ``ReadOnlyError``, ``ASK`` → ``AskError``)."""
    return BaseParser.parse_error(str(reply))


class ReplyLost(redis.ConnectionError):
    """The server closed the connection, or sent bytes that are not RESP, before every reply arrived."""


class Line:
    """One thread's connection to one pool (module docstring).

    :meth:`ready` before anything is sent, then :meth:`exchange`; :meth:`drop` after a lost
    reply, so that a late one is never read as the answer to a later command.
    """

    __slots__ = ("pool", "connection", "_sock", "_reader", "_buffer", "_idle_since", "_check_after")

    def __init__(self, pool: redis.ConnectionPool):
        self.pool = pool   # held: its id names this line in Lines, and must not be reused while it lives
        self.connection = connection = pool.get_connection()   # connected (redis-py 5.3+)
        self._sock: Any = connection._sock   # noqa: SLF001 - the socket redis-py connected
        self._reader = hiredis.Reader()
        self._buffer = bytearray(_CHUNK)
        self._idle_since = time.monotonic()
        self._check_after = float(getattr(connection, "health_check_interval", 0) or 0)

    def ready(self) -> None:
        """Make sure nothing stale is on the connection before a command goes on it.

        A connection the server closed while it idled shows its FIN or RST, or stray bytes,
        to a zero-timeout poll; one idle longer than ``health_check_interval`` is PINGed
        (a half-open connection whose peer vanished).  Either is replaced; ``OSError`` or
        ``redis.RedisError`` if no new connection can be made.  Nothing of ours was on it.
        """
        sock = self.connection._sock   # noqa: SLF001 - the socket redis-py connected
        if sock is None or sock is not self._sock or self._stale(sock):
            self._reconnect()
        elif self._check_after and time.monotonic() - self._idle_since > self._check_after:
            try:
                if self.exchange(b"*1\r\n$4\r\nPING\r\n", 1) != [b"PONG"]:
                    raise ReplyLost("PING answered wrongly")
            except (redis.RedisError, OSError):
                self._reconnect()

    def _stale(self, sock: Any) -> bool:
        if self._reader.has_data():
            return True
        if getattr(sock, "pending", None) and sock.pending():   # TLS: bytes decrypted, not yet read
            return True
        try:
            return bool(select.select((sock,), (), (), 0)[0])
        except (OSError, ValueError):   # closed under us
            return True

    def _reconnect(self) -> None:
        self.connection.disconnect()
        self.connection.connect()
        self._sock = self.connection._sock   # noqa: SLF001
        self._reader = hiredis.Reader()
        self._idle_since = time.monotonic()

    def exchange(self, payload: bytes, count: int) -> list[Any]:
        """Send ``payload`` and read ``count`` replies; an error reply is a ``hiredis.ReplyError`` in the list.

        A timeout, a reset, an early EOF or bytes that are not RESP raise (``OSError``,
        :class:`ReplyLost`): the caller must :meth:`drop` the line.
        """
        sock, reader, buffer = self._sock, self._reader, self._buffer
        sock.sendall(payload)
        replies: list[Any] = []
        try:
            while len(replies) < count:
                reply = reader.gets()
                if reply is False:
                    received = sock.recv_into(buffer)
                    if not received:
                        raise ReplyLost("the server closed the connection")
                    reader.feed(buffer, 0, received)   # type: ignore[arg-type]  # any buffer (the stub says bytes)
                else:
                    replies.append(reply)
        except hiredis.ProtocolError as exc:
            raise ReplyLost(f"not RESP: {exc}") from None
        self._idle_since = time.monotonic()
        return replies

    def drop(self) -> None:
        """Close the connection (the next :meth:`ready` makes a new one): replies may be on their way."""
        self.connection.disconnect()
        self._sock = None


class Lines:
    """Each thread's :class:`Line` to each pool it has used (a cluster store has a pool per node)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def line(self, pool: redis.ConnectionPool) -> Line:
        """This thread's line to ``pool``; ``redis.RedisError`` if none can be checked out."""
        lines: dict[int, Line] | None = getattr(self._local, "lines", None)
        if lines is None or getattr(self._local, "pid", None) != os.getpid():   # a fork: the parent's are not ours
            lines = self._local.lines = {}
            self._local.pid = os.getpid()
        line = lines.get(id(pool))
        if line is None:
            line = lines[id(pool)] = Line(pool)
        return line
