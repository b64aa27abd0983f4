"""Who sent a request: the source address a per-source limit counts, and its keyed name.

The source is the TCP peer (``REMOTE_ADDR``).  Only when that peer is one of the
operator's ``trusted_proxies`` is ``X-Forwarded-For`` read, from the right: each trusted
proxy appended the address it received the request from, so the rightmost address that
is not itself a trusted proxy is the client.  Everything left of it was written by the
client and is never believed: an untrusted peer cannot pick the key it is counted under.
So ``trusted_proxies`` lists the proxies only, never a network that clients sit in.

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
from collections.abc import Mapping, Sequence

from broker.ratelimit.config import Network

#: The most ``X-Forwarded-For`` entries read, from the right: more than any chain of proxies has.
MAX_HOPS = 16


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
        hops = [hop.strip() for hop in forwarded_for.rsplit(",", MAX_HOPS)[-MAX_HOPS:]]
        for hop in reversed(hops):
            if not _valid(hop):
                return peer   # a trusted proxy passed on garbage: count the proxy, never trust the text
            if not self._is_trusted(hop):
                return hop
        return hops[0]   # every hop considered is ours: the leftmost of them is the client

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


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _valid(hop: str) -> bool:
    return _parse(hop) is not None
