"""The outermost WSGI layer: what every request and every response of the broker goes through.

:func:`guard` wraps the broker (``guard(app, max_body=..., guarded_cookies=...)``) and:

* gives every request a **correlation id** (16 hex characters) in
  ``environ["digione.correlation_id"]`` and in :data:`broker.logs.correlation_id`, so every
  log line written while the request is served carries it (the inner app reads it from
  ``environ`` instead of drawing its own);
* refuses, before the app sees them, **paths** that are not UTF-8 or contain control
  characters (``%0A``, ``%0D``, ``%00``, C1, U+2028/9: 400), and paths with ``.`` or ``..``
  segments, backslashes or a percent sign left after decoding (double encoding): 404;
* reads **bodies** itself, within ``body_timeout`` seconds: a ``Content-Length`` above
  ``max_body`` is answered 413 after the body is drained (read and discarded, up to
  ``drain_limit`` bytes within ``drain_timeout`` seconds) so that the client reads the
  answer instead of a reset; a chunked body is read up to the limit and refused the same
  way when larger (411 when the server cannot de-chunk); a body that does not arrive in
  time is answered 408.  The app gets ``wsgi.input`` as an in-memory stream of exactly
  ``CONTENT_LENGTH`` bytes;
* refuses a request whose ``Cookie`` header carries one of ``guarded_cookies`` twice (400):
  browsers send a host cookie and a cookie set for a parent domain under the same name,
  and letting "the last one win" swaps sessions;
* adds **security headers** to every response that lacks them: a CSP (for HTML
  :func:`broker.web.csp.policy` with ``script_hashes`` and ``form_action``; for everything
  else ``default-src 'none'``), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer``, and ``Cache-Control: no-store`` + ``Pragma: no-cache``
  unless the response sets its own ``Cache-Control`` (the discovery document and the JWKS
  do).  A response that sets its own ``Content-Security-Policy`` keeps it: that is how a
  page that posts elsewhere names its target (:func:`broker.web.csp.autopost_headers`);
* answers **500** (localized page or JSON with the correlation id) if the app raises, and
  logs one line with the exception's type and where it was raised, never the request;
* with ``access_log=True``, writes the access log: one JSON line per request on logger
  ``broker.access`` (method, path without the query, status, bytes, milliseconds, a keyed
  reference to the client address, correlation id), in place of the server's own request
  lines.  Addresses of pupils' homes and schools are personal data: the line carries
  ``client_ref`` (HMAC-SHA256 under ``client_key``, 16 hex characters: the same address gives
  the same reference, so one client's requests can be followed), never the address.

Refusals are rendered by :func:`broker.errors.render` (HTML or JSON by the ``Accept``
header) and logged by :func:`broker.errors.log` like every other refusal of the broker.
"""

from __future__ import annotations

import html
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from io import BytesIO
from typing import Any

from broker import errors, logs
from broker.errors import BrokerError, NotFound
from broker.web import csp

logger = logging.getLogger("broker.web")
access_logger = logging.getLogger("broker.access")

CORRELATION_ID = "digione.correlation_id"

#: The largest request body the broker accepts (a SAML response is ~10-30 KB).
MAX_BODY = 1 << 20
#: How much of a refused body is read and thrown away so the client sees the 413.
DRAIN_LIMIT = 8 << 20
DRAIN_TIMEOUT = 5.0
#: The longest a request body may take to arrive, from the first read.
BODY_TIMEOUT = 15.0
#: Seconds the application may take for one request; inside uWSGI the worker is then replaced.
REQUEST_TIME_LIMIT = 30

_CHUNK = 64 * 1024
# C0 controls, DEL, C1 controls and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_set_logvar: Callable[[str, str], None] | None
_set_user_harakiri: Callable[[int], None] | None
try:  # inside uWSGI: the request log variable and the per-request time limit
    import uwsgi as _uwsgi  # type: ignore[import-not-found]

    _set_logvar = getattr(_uwsgi, "set_logvar", None)
    _set_user_harakiri = getattr(_uwsgi, "set_user_harakiri", None)
except ImportError:
    _set_logvar = _set_user_harakiri = None

_HEADERS_DONE = object()


class BadRequest(BrokerError):
    """What the browser sent cannot be read (path, length or body): nothing to do with signing in."""

    message_key = "error.bad_request"


class _Refusal(Exception):
    def __init__(self, error: BrokerError, *, drained: bool = True):
        super().__init__(error.detail)
        self.error = error
        self.drained = drained


def _bad_request(detail: str) -> _Refusal:
    return _Refusal(BadRequest(detail))


def check_path(path: str) -> None:
    """Raise :class:`_Refusal` unless ``path`` (WSGI ``PATH_INFO``, decoded, latin-1) is a plain path."""
    try:
        text = path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise _bad_request("path is not UTF-8") from None
    if _CONTROL.search(text):
        raise _bad_request("path contains a control character")
    if "\\" in text or "%" in text:
        raise _Refusal(NotFound("path contains a backslash or a percent sign after decoding"))
    if "/." in text and any(segment in (".", "..") for segment in text.split("/")):
        raise _Refusal(NotFound("path contains a dot segment"))


def duplicate_cookie(header: str, names: frozenset[str]) -> str | None:
    """The first of ``names`` that ``header`` (a ``Cookie`` value) carries more than once, else None."""
    if all(header.count(name + "=") < 2 for name in names):
        return None  # the usual case, at C speed: no name even appears twice
    seen: set[str] = set()
    for part in header.replace(",", ";").split(";"):  # a server may join repeated Cookie headers with ", "
        name = part.partition("=")[0].strip()
        if name in names:
            if name in seen:
                return name
            seen.add(name)
    return None


class Guard:
    """The middleware object :func:`guard` returns (a WSGI application)."""

    #: Marks an application that is already guarded (:func:`protect` does not wrap it twice).
    digione_guarded = True

    def __init__(self, app: Callable, *, max_body: int = MAX_BODY, guarded_cookies: Iterable[str] = (),
                 drain_limit: int = DRAIN_LIMIT, drain_timeout: float = DRAIN_TIMEOUT,
                 body_timeout: float = BODY_TIMEOUT, script_hashes: Iterable[str] = (),
                 form_action: Iterable[str] = csp.DEFAULT_FORM_ACTION, autopost_compat: bool = False,
                 strict_transport_security: str | None = None, access_log: bool = False,
                 client_key: bytes | None = None, time_limit: int | None = None):
        self.app = app
        self.max_body = max_body
        self.drain_limit = max(drain_limit, max_body)
        self.drain_timeout = drain_timeout
        self.body_timeout = body_timeout
        self.guarded_cookies = frozenset(guarded_cookies)
        self.script_hashes = tuple(script_hashes)
        self.html_policy = csp.policy(form_action=form_action, script_src=self.script_hashes)
        self.autopost_compat = autopost_compat
        self.hsts = strict_transport_security
        self.access_log = access_log
        self.client_key = client_key
        self.time_limit = time_limit if _set_user_harakiri is not None else None

    def __getattr__(self, name: str) -> Any:
        # The wrapped application's attributes (``rebuild``, ``store``...) stay reachable.
        if name == "app":
            raise AttributeError(name)
        return getattr(self.app, name)

    # ------------------------------------------------------------------ the request

    def __call__(self, environ: dict, start_response):
        started = time.perf_counter()
        cid = os.urandom(8).hex()   # secrets.token_hex(8), without its three Python calls
        environ[CORRELATION_ID] = cid
        logs.correlation_id.set(cid)
        if _set_logvar is not None:
            _set_logvar("cid", cid)
        if self.time_limit and _set_user_harakiri is not None:  # time_limit is only set inside uWSGI
            # uWSGI's own --harakiri is armed when a connection is accepted, which in async mode
            # means a slow client: the limit is set on the application's time only.
            _set_user_harakiri(self.time_limit)
        response = _Response(self, environ, start_response)
        try:
            self._check(environ)
        except _Refusal as refusal:
            result = response.refuse(refusal)
        else:
            try:
                result = response.finish(self.app(environ, response.start_response))
            except Exception as exc:  # noqa: BLE001 - the last line of defence
                result = response.crash(exc)
        if self.time_limit and _set_user_harakiri is not None:
            _set_user_harakiri(0)
        if isinstance(result, list):
            if self.access_log:
                self._log_access(environ, response.status, sum(map(len, result)), started)
            logs.correlation_id.set(None)
            return result
        # An iterable: the id stays on the lines written while the server iterates.
        return _Closing(result, self, environ, response, started)

    def _log_access(self, environ: dict, status: str, size: int, started: float) -> None:
        """One line per request: method, path (never the query), status, size, time, client reference."""
        path = environ.get("PATH_INFO", "")[:300]
        code = int(status[:3]) if status[:3].isdigit() else 0
        address = environ.get("REMOTE_ADDR")
        # The same keyed reference login lines give a user (logs.user_reference), under a key of its own.
        client_ref = logs.user_reference(address, self.client_key) if address and self.client_key else None
        access_logger.info("%s %s %s", environ.get("REQUEST_METHOD", ""), path, code,
                           extra={"client_ref": client_ref, "method": environ.get("REQUEST_METHOD"),
                                  "path": path, "status": code, "bytes": size,
                                  "duration_ms": round((time.perf_counter() - started) * 1000, 2)})

    def _check(self, environ: dict) -> None:
        check_path(environ.get("PATH_INFO", ""))
        if self.guarded_cookies:
            header = environ.get("HTTP_COOKIE")
            if header:
                name = duplicate_cookie(header, self.guarded_cookies)
                if name is not None:
                    raise _bad_request(f"cookie {name} sent twice (a parent-domain cookie of the same name?)")
        self._body(environ)

    def _body(self, environ: dict) -> None:
        length_header = (environ.get("CONTENT_LENGTH") or "").strip()
        chunked = "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
        if not length_header and not chunked:
            environ["wsgi.input"] = BytesIO(b"")
            return
        stream = environ.get("wsgi.input")
        if length_header:
            if not length_header.isdigit() or len(length_header) > 18:
                raise _Refusal(BadRequest("malformed Content-Length"), drained=False)
            length = int(length_header)
            if length > self.max_body:
                drained = length <= self.drain_limit and self._drain(stream, length)
                raise _Refusal(BadRequest(f"body of {length} bytes exceeds {self.max_body}", status=413),
                               drained=drained)
            body = self._read(stream, length) if length else b""
        else:
            if not environ.get("wsgi.input_terminated"):
                # The server passes chunked bodies on without de-chunking them (uWSGI): refuse.
                raise _Refusal(BadRequest("chunked body without Content-Length", status=411), drained=False)
            body = self._read(stream, None)
            if len(body) > self.max_body:
                drained = self._drain(stream, self.drain_limit - len(body), until_eof=True)
                raise _Refusal(BadRequest(f"chunked body exceeds {self.max_body}", status=413), drained=drained)
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input"] = BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))

    def _read(self, stream, length: int | None) -> bytes:
        """``length`` bytes (or, chunked, up to ``max_body + 1``) within ``body_timeout`` seconds.

        Under ``broker serve`` (uWSGI) the server has the whole body already; elsewhere the
        deadline is checked between reads (each bounded by the server's own socket timeout).
        """
        deadline = time.monotonic() + self.body_timeout
        limit = length if length is not None else self.max_body + 1
        # A buffered socket file returns what has arrived with read1(): the deadline is then
        # checked as the body trickles in, not only after a whole chunk.
        read = getattr(stream, "read1", None) or stream.read
        parts: list[bytes] = []
        got = 0
        while got < limit:
            if time.monotonic() > deadline:
                raise _Refusal(BadRequest(f"body not received within {self.body_timeout:g} s", status=408),
                               drained=False)
            try:
                part = read(min(limit - got, _CHUNK))
            except (OSError, ValueError) as exc:  # the server's own read timeout, a reset...
                raise _Refusal(BadRequest(f"body read failed ({exc.__class__.__name__})", status=408),
                               drained=False) from None
            if not part:
                if length is None:
                    break
                raise _Refusal(BadRequest(f"body ended after {got} of {length} bytes"), drained=False)
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def _drain(self, stream, amount: int, *, until_eof: bool = False) -> bool:
        """Read and discard up to ``amount`` bytes within ``drain_timeout``; True if all were read."""
        if stream is None:
            return False
        deadline = time.monotonic() + self.drain_timeout
        left = amount
        try:
            while left > 0 and time.monotonic() < deadline:
                part = stream.read(min(_CHUNK, left))
                if not part:
                    return until_eof
                left -= len(part)
        except (OSError, ValueError):
            return False
        return left <= 0 and not until_eof

    # ------------------------------------------------------------------ response headers

    def secure_headers(self, headers: list[tuple[str, str]], body: list[bytes] | None = None) -> list[tuple[str, str]]:
        """``headers`` with the security headers the response does not set itself."""
        names = {name.lower() for name, _ in headers}
        content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
        added: list[tuple[str, str]] = []
        is_html = "html" in content_type.lower()
        if "content-security-policy" not in names:
            if not is_html:
                added.append(("Content-Security-Policy", csp.NON_HTML_POLICY))
            else:
                added.append(("Content-Security-Policy", self._html_policy(body)))
        if is_html and "x-frame-options" not in names:
            added.append(("X-Frame-Options", "DENY"))
        if "x-content-type-options" not in names:
            added.append(("X-Content-Type-Options", "nosniff"))
        if "referrer-policy" not in names:
            added.append(("Referrer-Policy", "no-referrer"))
        if "cache-control" not in names:
            added.append(("Cache-Control", "no-store"))
            if "pragma" not in names:
                added.append(("Pragma", "no-cache"))
        elif "pragma" not in names and any(name.lower() == "cache-control" and "no-store" in value
                                           for name, value in headers):
            added.append(("Pragma", "no-cache"))  # for HTTP/1.0 caches too
        if self.hsts and "strict-transport-security" not in names:
            added.append(("Strict-Transport-Security", self.hsts))
        return headers + added if added else headers

    def _html_policy(self, body: list[bytes] | None) -> str:
        if self.autopost_compat and body is not None:
            target = _pysaml2_autopost_target(body)
            if target is not None:
                return csp.autopost_policy(target)
        return self.html_policy


_AUTOPOST_MARK = b'<body onload="document.forms[0].submit()">'
_FORM_ACTION = re.compile(rb'<form action="([^"]*)" method="post">')


def _pysaml2_autopost_target(body: list[bytes]) -> str | None:
    """The form target of pysaml2's auto-POST page (``http_form_post_message``), if ``body`` is one."""
    if len(body) != 1 or not isinstance(body[0], bytes) or _AUTOPOST_MARK not in body[0]:
        return None
    actions = _FORM_ACTION.findall(body[0])
    if len(actions) != 1:
        return None
    return html.unescape(actions[0].decode("utf-8", "replace"))


class _Response:
    """One request's side of the guard: the app's headers completed when its body is known,
    refusals, crashes."""

    __slots__ = ("environ", "guard", "pending", "server_start_response", "server_write", "started", "status")

    def __init__(self, guard: Guard, environ: dict, start_response):
        self.guard = guard
        self.environ = environ
        self.server_start_response = start_response
        self.server_write: Callable | None = None
        self.pending: tuple[str, list, Any] | None = None
        self.started = False
        self.status = ""

    def start_response(self, status: str, headers: list, exc_info=None):
        if exc_info is not None and self.started:
            raise exc_info[1].with_traceback(exc_info[2])
        # Sent on when the body is known (pysaml2's auto-POST page names its target in it).
        # No Content-Length is added: a server that closes every connection without saying so
        # (uWSGI's, gunicorn's sync worker) would invite clients to reuse a closed connection.
        self.pending = (status, list(headers), exc_info)
        return self._write

    def _flush(self, body: list[bytes] | None = None) -> None:
        assert self.pending is not None, "flushed only while the app's start_response is pending"
        status, headers, exc_info = self.pending
        self.pending = None
        self.started = True
        self.status = status
        self.server_write = self.server_start_response(status, self.guard.secure_headers(headers, body), exc_info)

    def _write(self, data: bytes) -> None:  # the legacy write() callable
        if self.pending is not None:
            self._flush()
        if self.server_write is not None:
            self.server_write(data)

    def finish(self, result: Iterable[bytes]):
        if isinstance(result, list):
            if self.pending is not None:
                self._flush(result)
            return result
        return _Deferred(self, result)  # start_response may even come with the first part

    def refuse(self, refusal: _Refusal) -> list[bytes]:
        error = refusal.error
        cid = self.environ[CORRELATION_ID]
        errors.log(error, cid, endpoint="guard")
        if not refusal.drained:
            # Every server the broker runs on closes the connection after the answer.
            error.detail += " (body not drained)"
        return self._answer(error, cid, [])

    def crash(self, exc: Exception) -> list[bytes]:
        cid = self.environ[CORRELATION_ID]
        # Where it happened (file, line, function), never the exception's value or the source
        # lines: either could carry a request's data.
        frames = [f"{frame.filename}:{frame.lineno} in {frame.name}"
                  for frame in traceback.extract_tb(exc.__traceback__)][-20:]
        logger.error("unhandled error correlation_id=%s exc_type=%s", cid, type(exc).__name__,
                     extra={"exc_type": type(exc).__name__, "where": frames[-1] if frames else None,
                            "stack": frames})
        error = BrokerError("internal error", code="server_error", status=500, message_key="error.internal")
        return self._answer(error, cid, [], exc_info=sys.exc_info())

    def _answer(self, error: BrokerError, cid: str, extra: list, *, exc_info=None) -> list[bytes]:
        environ = self.environ
        lang = None
        query = environ.get("QUERY_STRING") or ""
        if "lang=" in query:
            match = re.search(r"(?:^|&)lang=(fi|sv|en)(?:&|$)", query)
            lang = match.group(1) if match else None
        status, content_type, body = errors.render(
            error, cid, lang=lang, accept_language=environ.get("HTTP_ACCEPT_LANGUAGE"),
            as_json=errors.wants_json(environ.get("HTTP_ACCEPT")))
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
        self.pending = None
        self.status = f"{status} {_REASONS.get(status, 'Error')}"
        headers = self.guard.secure_headers(headers)
        if not self.started:  # the usual case: the app raised before it started its response
            self.server_start_response(self.status, headers)
        else:  # PEP 3333: replace the headers the app set (they are not on the wire yet)
            try:
                self.server_start_response(self.status, headers, exc_info)
            except Exception:  # noqa: BLE001 - uWSGI raises here yet accepts headers set again
                self.server_start_response(self.status, headers)
        self.started = True
        return [body]


class _Closing:
    """A response iterable whose ``close`` writes the access line and ends the correlation id."""

    def __init__(self, result: Iterable[bytes], guard: Guard, environ: dict, response: _Response, started: float):
        self.result = result
        self.guard = guard
        self.environ = environ
        self.response = response
        self.started = started
        self.size = 0

    def __iter__(self):
        for part in self.result:
            self.size += len(part)
            yield part

    def close(self):
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            if self.guard.access_log:
                self.guard._log_access(self.environ, self.response.status, self.size, self.started)
            logs.correlation_id.set(None)


class _Deferred:
    """An iterable response whose headers are sent with its first part."""

    def __init__(self, response: _Response, result: Iterable[bytes]):
        self.response = response
        self.result = result

    def __iter__(self):
        iterator = iter(self.result)
        first = next(iterator, _HEADERS_DONE)
        if self.response.pending is not None:
            self.response._flush(None if first is _HEADERS_DONE else [first])
        if first is not _HEADERS_DONE:
            yield first
        yield from iterator

    def close(self):
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


_REASONS = {400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 411: "Length Required",
            413: "Content Too Large", 500: "Internal Server Error"}


def guard(app: Callable, *, max_body: int = MAX_BODY, guarded_cookies: Iterable[str] = (), **options: Any) -> Guard:
    """Wrap ``app`` (see the module documentation); ``options`` are :class:`Guard`'s keywords."""
    return Guard(app, max_body=max_body, guarded_cookies=guarded_cookies, **options)


def protect(app: Callable, **options: Any) -> Callable:
    """``app`` guarded once: an application that is already a :class:`Guard` is returned as it is."""
    if getattr(app, "digione_guarded", False):
        return app
    return guard(app, **options)
