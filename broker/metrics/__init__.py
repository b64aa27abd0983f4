"""The broker's Prometheus metrics (docs/operations.md, "Metrics"; decision 16).

What other modules call: :func:`rate_limited`, :func:`logout_delivered`, :func:`store_error`.
The families and their bounded label sets are in :mod:`broker.metrics.families`; the login
path's hooks in :mod:`broker.metrics.login` and :mod:`broker.metrics.steps`; the scrape endpoint
in :mod:`broker.metrics.exposition`; the multiprocess set-up in :mod:`broker.metrics.multiprocess`.

This package does not import ``prometheus_client`` itself: ``prometheus_client`` chooses
multiprocess mode when first imported, and ``broker serve`` imports
:mod:`broker.metrics.multiprocess` to set ``PROMETHEUS_MULTIPROC_DIR`` before that happens.
"""

from __future__ import annotations


def rate_limited(kind: str) -> None:
    """Count one request refused by a rate limit: ``kind`` is ``"token"``, ``"client_auth"`` or ``"login_start"``."""
    from broker.metrics import families

    families.rate_limited(kind)


def logout_delivered(outcome: str) -> None:
    """Count one back-channel logout attempt's outcome (:mod:`broker.sessions.delivery`)."""
    from broker.metrics import families

    families.logout_delivered(outcome)


def store_error(operation: str) -> None:
    """Count one failed store call; ``operation`` is a command name (lower case) or ``"connect"``."""
    from broker.metrics import families

    families.store_error(operation)
