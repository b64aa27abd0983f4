"""The rate limits' settings: three limits, the exempt networks and the trusted proxies.

Read once at start (:meth:`broker.settings.Settings.from_env`), from ``rate_limits:`` in
``config/broker.yaml`` and the environment, which wins::

    rate_limits:
      login_start: 12000/60         # login starts per source address, per 60 s
      token: 120000/60              # token requests per registered client, per 60 s
      client_auth_failures: 20/300  # wrong client secrets per client and source, per 300 s
      exempt: [192.0.2.0/28]        # sources never limited at login start (a city's known egress)
    trusted_proxies: [10.0.4.0/28]  # the load balancers whose X-Forwarded-For names the client

A limit is ``COUNT/SECONDS`` (``off`` or ``0`` turns it off).  The defaults and the reasons
for them: ``docs/decisions/0018-rate-limits.md``.  Nothing here imports the rest of the
broker: :mod:`broker.settings` imports it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RateLimitSettingError(ValueError):
    """A rate-limit setting is malformed; the message names it."""


@dataclasses.dataclass(frozen=True)
class Limit:
    """At most ``count`` events per fixed window of ``window`` seconds; ``count == 0``: no limit."""

    count: int
    window: int

    @property
    def enabled(self) -> bool:
        return self.count > 0

    @classmethod
    def parse(cls, raw: Any, name: str) -> Limit:
        """``"COUNT/SECONDS"`` (or ``{count: .., window: ..}``); ``off``, ``0``, ``false``: no limit."""
        if raw is False or raw is None or (isinstance(raw, (str, int)) and str(raw).strip().lower() in ("off", "0")):
            return cls(0, 1)
        if isinstance(raw, Mapping):
            count, window = raw.get("count"), raw.get("window")
        elif isinstance(raw, str) and "/" in raw:
            count, _, window = raw.partition("/")
        else:
            raise RateLimitSettingError(f"{name}: expected COUNT/SECONDS (e.g. 12000/60) or off, not {raw!r}")
        try:
            count, window = int(str(count).strip()), int(str(window).strip().rstrip("s"))
        except ValueError:
            raise RateLimitSettingError(f"{name}: expected COUNT/SECONDS with whole numbers, not {raw!r}") from None
        if count < 0 or not 1 <= window <= 86400:
            raise RateLimitSettingError(f"{name}: expected a count of 0 or more and a window of 1 to 86400 s")
        return cls(count, window)


def parse_networks(raw: Any, name: str) -> tuple[Network, ...]:
    """CIDR networks (or single addresses) from a list or a comma-separated string."""
    if raw is None or raw == "":
        return ()
    items: Iterable[Any] = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, Iterable):
        raise RateLimitSettingError(f"{name}: expected a list of networks")
    networks = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise RateLimitSettingError(f"{name}: {text!r} is not an address or a CIDR network") from None
    return tuple(networks)


@dataclasses.dataclass(frozen=True)
class RateLimits:
    """The limits every instance applies (the same settings on every instance)."""

    #: Login starts (``/authorize``, the SAML SSO endpoints) per source address.
    login_start: Limit = Limit(12000, 60)
    #: Token endpoint requests per registered, authenticated client.
    token: Limit = Limit(120000, 60)
    #: Wrong client secrets per registered client and source address; then that pair is locked.
    client_auth_failures: Limit = Limit(20, 300)
    #: Sources never limited at login start (a city's egress addresses, known and agreed).
    exempt: tuple[Network, ...] = ()

    @classmethod
    def from_config(cls, env: Mapping[str, str], conf: Any) -> RateLimits:
        """``rate_limits`` of broker.yaml (``conf``), each overridden by ``BROKER_RATE_LIMIT_<NAME>``."""
        if conf is None:
            conf = {}
        if not isinstance(conf, Mapping):
            raise RateLimitSettingError("rate_limits: expected a mapping")
        unknown = set(conf) - {"login_start", "token", "client_auth_failures", "exempt"}
        if unknown:
            raise RateLimitSettingError(f"rate_limits: unknown setting(s) {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for field in ("login_start", "token", "client_auth_failures"):
            variable = f"BROKER_RATE_LIMIT_{field.upper()}"
            raw = env.get(variable)
            if raw is not None:
                values[field] = Limit.parse(raw, variable)
            elif field in conf:
                values[field] = Limit.parse(conf[field], f"rate_limits.{field}")
        raw_exempt = env.get("BROKER_RATE_LIMIT_EXEMPT")
        values["exempt"] = parse_networks(raw_exempt if raw_exempt is not None else conf.get("exempt"),
                                          "BROKER_RATE_LIMIT_EXEMPT" if raw_exempt is not None
                                          else "rate_limits.exempt")
        return cls(**values)


def trusted_proxies(env: Mapping[str, str], conf: Any) -> tuple[Network, ...]:
    """``BROKER_TRUSTED_PROXIES`` (comma-separated), else ``trusted_proxies`` in broker.yaml.

    A network of every address (``0.0.0.0/0``, ``::/0``) is refused: it would believe the
    ``X-Forwarded-For`` of any client, which could then name the source it is counted as.
    """
    raw = env.get("BROKER_TRUSTED_PROXIES")
    name = "BROKER_TRUSTED_PROXIES" if raw is not None else "trusted_proxies"
    networks = parse_networks(raw if raw is not None else conf, name)
    everyone = [str(network) for network in networks if network.prefixlen == 0]
    if everyone:
        raise RateLimitSettingError(f"{name}: {', '.join(everyone)} would trust every client's X-Forwarded-For; "
                                    "list the load balancers' own addresses")
    return networks
