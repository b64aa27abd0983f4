"""Redis behind Sentinel: the URL format and the client whose pool follows the primary.

``redis+sentinel://[user:password@]host:port[,host:port...]/<service_name>[/<db>][?options]``
(``rediss+sentinel://`` for TLS to the data nodes) names the sentinels and the service
(the ``sentinel monitor`` name).  The client is redis-py's ``Sentinel(...).master_for(service)``:
its pool asks the sentinels for the primary each time a connection is made, so a
connection dropped after a failover reconnects to the new primary.  ``user:password`` are
the data nodes' credentials; the sentinels are reached without them (``sentinel_password=``
in the query names theirs).

Options (the query string), all optional:

``replicas=<n>`` (default 1)
    How many replicas must hold a login's final write before its tokens are handed out
    (``WAIT n``, docs/decisions/0015-redis-high-availability.md); ``0`` turns it off.
``wait_ms=<ms>`` (default 500)
    How long that ``WAIT`` may take (at most 1500, inside the 2 s socket timeout); a write a
    connected replica has not acknowledged by then is answered 503.
``sentinel_password=<password>``
    The sentinels' own ``requirepass``.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from broker.store.confirm import check_wait_ms

SCHEMES = ("redis+sentinel", "rediss+sentinel")


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL (module docstring)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    replicas: int = 1
    wait_ms: int = 500
    sentinel_password: str | None = None


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise ValueError(f"sentinel URL: {name}= must be a whole number") from None
    if value < 0:
        raise ValueError(f"sentinel URL: {name}= must not be negative")
    return value


def parse(url: str) -> SentinelURL:
    """Parse a sentinel URL; ``ValueError`` saying what is wrong (never echoing a password)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"not a sentinel URL (scheme {parts.scheme!r}; expected one of {', '.join(SCHEMES)})")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if credentials:
        user, _, secret = credentials.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    sentinels = []
    for hostport in hosts.split(","):
        host, sep, port = hostport.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"sentinel URL: {hostport!r} is not host:port")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("sentinel URL: the path must be /<service_name>[/<db>]")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError("sentinel URL: the database must be a number")
    query = parse_qs(parts.query)
    return SentinelURL(
        sentinels=tuple(sentinels), service=unquote(path[0]), db=int(path[1]) if len(path) == 2 else 0,
        username=username, password=password, tls=parts.scheme == "rediss+sentinel",
        replicas=_int(query, "replicas", 1), wait_ms=check_wait_ms(_int(query, "wait_ms", 500)),
        sentinel_password=query["sentinel_password"][-1] if query.get("sentinel_password") else None)


def client(spec: SentinelURL, *, socket_timeout: float, connect_timeout: float,
           health_check_interval: int) -> redis.Redis:
    """A client whose connections go to the primary the sentinels name at connect time."""
    sentinel = Sentinel(list(spec.sentinels), socket_timeout=socket_timeout,
                        sentinel_kwargs={"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout,
                                         "password": spec.sentinel_password})
    return sentinel.master_for(spec.service, db=spec.db, username=spec.username, password=spec.password,
                               ssl=spec.tls, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout,
                               health_check_interval=health_check_interval)
