"""The IdP selection pages: cities first, then a city's sign-in methods (fi/sv/en)."""

from broker.discovery.pages import DiscoveryPages

__all__ = ["DiscoveryPages"]
