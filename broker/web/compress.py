"""Compressing a response body with gzip when the client accepts it (RFC 9110 §8.4.1, §12.5.3).

Only for bodies the broker renders itself and at least :data:`MINIMUM` bytes long.  A body
that carries a secret next to text the requester chose (the city page: a CSRF token beside
the echoed query) must mask the secret per response before it is compressed, or the
compressed length tells an attacker about it (BREACH); :mod:`broker.login.discovery` does.
"""

from __future__ import annotations

import gzip

#: Smaller bodies are sent as they are: gzip's header and trailer would outweigh the saving.
MINIMUM = 256
#: zlib's level: 5 compresses a city page of 300 tenants about as well as 9, in a fraction of the time.
LEVEL = 5


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: ``gzip`` (or ``x-gzip``, or ``*``) with a non-zero ``q``.

    A coding listed explicitly wins over ``*`` (RFC 9110 §12.5.3); no header means no compression.
    """
    explicit: float | None = None
    wildcard: float | None = None
    for part in (accept_encoding or "").split(","):
        coding, _, params = part.partition(";")
        coding = coding.strip().lower()
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        if coding in ("gzip", "x-gzip"):
            explicit = weight if explicit is None else max(explicit, weight)
        elif coding == "*":
            wildcard = weight
    chosen = explicit if explicit is not None else wildcard
    return chosen is not None and chosen > 0


def compress(body: bytes, accept_encoding: str | None) -> tuple[bytes, list[tuple[str, str]]]:
    """``(body, headers)``: gzip-compressed with ``Content-Encoding: gzip`` when accepted and worth it.

    ``Vary: Accept-Encoding`` is always among the headers, so that a cache keeps the two apart.
    """
    headers = [("Vary", "Accept-Encoding")]
    if len(body) < MINIMUM or not accepts_gzip(accept_encoding):
        return body, headers
    return gzip.compress(body, compresslevel=LEVEL, mtime=0), [*headers, ("Content-Encoding", "gzip")]
