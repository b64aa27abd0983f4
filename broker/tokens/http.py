"""The provider's own request and response objects: no Flask, no SATOSA, no WSGI.

:class:`Request` carries what the protocol needs (method, path, headers, query and form
parameters, each possibly repeated); :class:`Response` is a status, headers and bytes.
Adapters (the SATOSA frontend, the test harness) translate to and from their framework.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson

#: Query or form parameters: each name with its values (a parameter may be repeated).
Params = Mapping[str, Sequence[str]]


@dataclasses.dataclass
class Request:
    """One HTTP request.  Header names are lower-case; parameter values are lists."""

    method: str
    path: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    query: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    form: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    #: The TCP peer (WSGI ``REMOTE_ADDR``): a per-source limit reads it with ``X-Forwarded-For``.
    remote_addr: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def params(self) -> Mapping[str, Sequence[str]]:
        """The request's parameters: the form body for POST, else the query (OIDC Core §3.1.2.1)."""
        return self.form if self.method == "POST" else self.query

    @classmethod
    def from_wsgi(cls, environ: Mapping[str, Any], *, path: str | None = None) -> Request:
        """Build a request from a WSGI environ (reads the body of form POSTs)."""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        method = environ.get("REQUEST_METHOD", "GET").upper()
        form: dict[str, list[str]] = {}
        if method == "POST" and "application/x-www-form-urlencoded" in headers.get("content-type", ""):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > 64 * 1024:
                length = 64 * 1024 + 1
            raw = environ["wsgi.input"].read(length)
            form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True) if len(raw) <= 64 * 1024 else {}
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        return cls(method, path if path is not None else environ.get("PATH_INFO", "/"), headers, query, form,
                   remote_addr=environ.get("REMOTE_ADDR"))


def first(params: Params, name: str) -> str | None:
    """The first value of parameter ``name``, or ``None`` when it is absent or empty."""
    values = params.get(name)
    return values[0] if values else None


@dataclasses.dataclass
class Response:
    """One HTTP response: an integer status, header pairs and the body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def location(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "location"), None)

    @property
    def content_type(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "content-type"), None)




def json_response(data: Any, *, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Response:
    return Response(status, [("Content-Type", "application/json"), *headers], orjson.dumps(data))


def redirect(url: str) -> Response:
    """A 302 that is neither cached nor leaks its URL through the Referer header."""
    return Response(302, [("Location", url), ("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"),
                          ("Content-Type", "text/plain; charset=utf-8")], b"")
