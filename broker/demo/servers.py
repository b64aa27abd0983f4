"""Run WSGI apps on background threads: for the demo command and for tests."""

from __future__ import annotations

import dataclasses
import socket
import threading

from werkzeug.serving import BaseWSGIServer, make_server


@dataclasses.dataclass
class ServerHandle:
    """A running server: its base ``url`` and a way to stop it.

    Usable as a context manager that shuts the server down on exit.
    """

    url: str
    _server: BaseWSGIServer = dataclasses.field(repr=False)
    _thread: threading.Thread = dataclasses.field(repr=False)

    def shutdown(self) -> None:
        """Stop accepting requests, wait for the serving thread and close the socket."""
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Serve ``app`` with Werkzeug's threaded server on a daemon thread.

    ``port=0`` lets the OS pick a free port; the handle's ``url`` names the real one.
    The socket is bound before this returns, so the URL is usable at once.
    """
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=f"wsgi-{host}:{server.port}", daemon=True)
    thread.start()
    # A wildcard bind is reachable as localhost; keep URLs usable in a browser.
    url_host = "localhost" if host in ("", "0.0.0.0", "::") else host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    return ServerHandle(f"http://{url_host}:{server.port}", server, thread)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago.

    For when a URL must be known before its server starts (an IdP's metadata names
    its own URL); prefer ``serve_in_thread(app, port=0)`` when it need not be.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
