"""Who sent a request: the source address a per-source limit counts, and its keyed name.

The source is the TCP peer (``REMOTE_ADDR``).  Only when that peer is one of the
operator's ``trusted_proxies`` is ``X-Forwarded-For`` read, from the right: each trusted
proxy appended the address it received the request from, so the rightmost address that
is not itself a trusted proxy is the client.  Everything left of it was written by the
client and is never believed: an untrusted peer cannot pick the key it is counted under.
So ``trusted_proxies`` lists the proxies only, never a network that clients sit in.

An entry is an address, bare (``203.0.113.7``, ``2001:db8::1``) or with the client's port
(``203.0.113.7:51234``, ``[2001:db8::1]:443``, or bracketed without one, ``[2001:db8::1]``):
Azure Application Gateway appends ``ip:port``, and nginx does when configured to send
``$remote_addr:$remote_port``.  The port is dropped (:func:`forwarded_address`): a client
picks a new one per connection, so it never becomes part of the source.  Anything else is
not an address, and the proxy that passed it on is counted instead.

The counted key is not the address itself:

* an IPv6 source is counted by its /64 (one subscriber's prefix; an attacker holds
  billions of addresses in it), an IPv4-mapped IPv6 address as the IPv4 address;
* the key is a keyed hash (BLAKE2b, key derived from the master secret): a pupil's
  address is personal data, and neither Redis nor a log line holds it, while every
  instance derives the same name for the same source.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence

from broker.ratelimit.config import Network

#: The most ``X-Forwarded-For`` entries read, from the right: more than any chain of proxies has.
MAX_HOPS = 16
#: A port after an address: ASCII digits only (``int()`` would also take ``+1``, ``1_0``, ``١``).
_PORT = re.compile(r"[0-9]{1,5}")


class Sources:
    """Turns a request's peer and ``X-Forwarded-For`` into the keyed name of its source."""

    def __init__(self, key: bytes, trusted_proxies: Sequence[Network] = (), exempt: Sequence[Network] = ()):
        self._key = key[:64]
        self._trusted = tuple(trusted_proxies)
        self._exempt = tuple(exempt)
        # Bounded caches: the addresses seen repeat (a school's NAT, the proxies).
        self._is_trusted = functools.lru_cache(maxsize=4096)(self._in_trusted)
        self._named = functools.lru_cache(maxsize=16384)(self._name)

    def address(self, remote_addr: str | None, forwarded_for: str | None) -> str:
        """The client's address as the broker believes it (module docstring); ``""`` if unknown."""
        peer = (remote_addr or "").strip()
        if not self._trusted or not forwarded_for or not self._is_trusted(peer):
            return peer
        # Only the last hops matter (ours appended them); a header of thousands is not walked.
        hops = forwarded_for.rsplit(",", MAX_HOPS)[-MAX_HOPS:]
        leftmost = peer
        for client in map(forwarded_address, reversed(hops)):
            if client is None:
                return peer   # a trusted proxy passed on garbage: count the proxy, never trust the text
            if not self._is_trusted(client):
                return client
            leftmost = client
        return leftmost   # every hop considered is ours: the leftmost of them is the client

    def of_environ(self, environ: Mapping[str, object]) -> str:
        """The source address of a WSGI request (``REMOTE_ADDR``, ``HTTP_X_FORWARDED_FOR``)."""
        remote, forwarded = environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR")
        return self.address(remote if isinstance(remote, str) else None,
                            forwarded if isinstance(forwarded, str) else None)

    def exempt(self, address: str) -> bool:
        """Whether ``address`` is in one of the networks never limited at login start."""
        if not self._exempt:
            return False
        parsed = _parse(address)
        return parsed is not None and any(parsed in network for network in self._exempt
                                          if network.version == parsed.version)

    def name(self, address: str) -> str:
        """The keyed name (16 hex digits) of ``address``'s source: for store keys and log lines."""
        return self._named(address)

    def _name(self, address: str) -> str:
        counted = address
        if ":" in address:
            parsed = _parse(address)
            if isinstance(parsed, ipaddress.IPv6Address):
                mapped = parsed.ipv4_mapped
                counted = str(mapped) if mapped is not None else \
                    str(ipaddress.IPv6Network((parsed, 64), strict=False).network_address)
        return hashlib.blake2b(counted.encode(), key=self._key, digest_size=8).hexdigest()

    def _in_trusted(self, address: str) -> bool:
        parsed = _parse(address)
        return parsed is not None and any(parsed in network for network in self._trusted
                                          if network.version == parsed.version)


def forwarded_address(entry: str) -> str | None:
    """The address an ``X-Forwarded-For`` entry names, without its port; ``None`` if it names none.

    Taken (surrounding blanks ignored): ``203.0.113.7``, ``203.0.113.7:51234``, ``2001:db8::1``,
    ``[2001:db8::1]`` and ``[2001:db8::1]:443``, the port 1 to 65535.  Refused: anything else,
    among it an IPv4 address in brackets, an empty or out-of-range port, an unbracketed IPv6
    address with a port (it cannot be told from an address) and a host name.  The address is
    returned as :mod:`ipaddress` writes it, so one client has one spelling.
    """
    entry = entry.strip()
    if entry.startswith("["):   # [v6] or [v6]:port (RFC 3986's IP-literal)
        inside, closed, rest = entry[1:].partition("]")
        if not closed or (rest and not (rest[0] == ":" and _port(rest[1:]))):
            return None
        parsed = _parse(inside)
        return str(parsed) if isinstance(parsed, ipaddress.IPv6Address) else None
    parsed = _parse(entry)
    if parsed is not None:
        return str(parsed)
    host, colon, port = entry.rpartition(":")   # v4:port; a v6 address has more than one colon
    parsed = _parse(host) if colon and _port(port) else None
    return str(parsed) if isinstance(parsed, ipaddress.IPv4Address) else None


def _port(text: str) -> bool:
    return _PORT.fullmatch(text) is not None and 0 < int(text) <= 65535


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None
