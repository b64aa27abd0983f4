"""Rate limits shared through the store: login starts per source, token requests per client,
failed client authentication per client and source (``docs/decisions/0018-rate-limits.md``).

:func:`for_settings` builds the deployment's :class:`~broker.ratelimit.limits.RateLimiter`;
the login path (:class:`broker.login.proxy.Proxy`) asks it at every login start and the OIDC
provider at its token, introspection and revocation endpoints.  Importing this package
imports only the settings' part (:mod:`broker.ratelimit.config`): :mod:`broker.settings` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.ratelimit.config import Limit, RateLimits, RateLimitSettingError

if TYPE_CHECKING:
    from broker.ratelimit.limits import RateLimiter
    from broker.settings import Settings
    from broker.store import Store

__all__ = ["Limit", "RateLimitSettingError", "RateLimits", "for_settings"]


def for_settings(settings: Settings, store: Store) -> RateLimiter:
    """The limiter of ``settings`` (its limits, trusted proxies and exempt networks) over ``store``."""
    from broker.derive import derive_key
    from broker.ratelimit.limits import RateLimiter
    from broker.ratelimit.source import Sources

    sources = Sources(derive_key(settings.master_secret, b"rate-limit-source"),
                      trusted_proxies=settings.trusted_proxies, exempt=settings.rate_limits.exempt)
    return RateLimiter(store, settings.rate_limits, sources)
