"""The broker's Prometheus metric families, and the counting functions :mod:`broker.metrics` exports.

Every metric is defined here, once (``digione_`` prefix, Prometheus naming: counters end in
``_total``, durations are seconds).  The login path's hooks live in :mod:`broker.metrics.login`
and :mod:`broker.metrics.steps`; the scrape endpoint, with the gauges computed when scraped
(registry version, days to expiry), in :mod:`broker.metrics.exposition`; the multiprocess set-up
of ``broker serve`` in :mod:`broker.metrics.multiprocess` (decision 16).

**Labels are bounded.**  A label value is either one of a fixed set named here (reasons, grant
types, outcomes, store operations, rate-limit kinds; anything else becomes ``"other"``) or an
identifier of the active registry (tenant, IdP, service), resolved by :mod:`broker.metrics.login`
(``"unknown"`` when the registry does not know it).  Nothing a request says reaches a label as is.

**Cheap.**  Labelled children are cached (:class:`Children`): a hook is a dictionary read and
one ``inc``/``observe`` on a memory-mapped float in multiprocess mode (about a microsecond).

Multiprocess mode is chosen by ``prometheus_client`` when it is first imported
(``PROMETHEUS_MULTIPROC_DIR``): ``broker serve`` sets it before anything imports this module,
which is why the package itself (``broker.metrics``) imports it only when first counting.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram, disable_created_metrics

# The classic text format writes each counter's creation time as a gauge of its own (``…_created``);
# multiprocess mode has none, so in one process they are off too: the same series either way.
disable_created_metrics()

#: The value of a registry label the active registry does not know.
UNKNOWN = "unknown"
#: The value of a registry label not known yet (a login that failed before an IdP was chosen).
NONE = "none"
#: The value of a fixed-set label outside its set.
OTHER = "other"

#: Why a login failed: the codes :func:`broker.logs.login_event` is given (broker.errors, the OAuth/SAML
#: errors a service hears, the access gate's ``not_allowed``).
REASONS = frozenset({
    "invalid_request", "unknown_idp", "invalid_client", "invalid_response", "replayed_response", "expired_flow",
    "idp_error", "no_user_id", "not_found", "temporarily_unavailable", "server_error", "access_denied",
    "login_required", "consent_required", "interaction_required", "account_selection_required", "service_not_allowed",
    "request_denied", "unauthorized_client", "invalid_scope", "unsupported_response_type", "rate_limited",
})
#: The grant types the token endpoint serves (others are refused as ``unsupported_grant_type``).
GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
#: Token endpoint outcomes: ``granted`` or an OAuth error code (RFC 6749 §5.2, RFC 6750).
TOKEN_OUTCOMES = frozenset({"granted", "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                            "unsupported_grant_type", "invalid_scope", "temporarily_unavailable", "server_error",
                            "rate_limited", "slow_down", "not_found"})
#: Back-channel logout outcomes (broker.sessions.delivery).
DELIVERY_OUTCOMES = frozenset({"delivered", "refused", "retrying", "dropped"})
#: Rate-limit refusals (the limits of docs/operations.md).
RATE_LIMIT_KINDS = frozenset({"token", "client_auth", "login_start"})
#: The steps of :data:`STEP_SECONDS`.
STEPS = ("authorize", "upstream", "acs", "callback", "token", "userinfo")

# Request steps take milliseconds, the time at a city's IdP (the person typing a password) seconds to minutes.
_STEP_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300)

LOGINS_STARTED = Counter("digione_logins_started_total", "Logins begun: a service's valid request (OIDC "
                         "authorize, SAML AuthnRequest)", ["service", "protocol"])
UPSTREAM_REQUESTS = Counter("digione_upstream_requests_total", "Logins sent to a city's IdP", ["tenant", "idp"])
LOGINS_COMPLETED = Counter("digione_logins_completed_total", "Logins answered to the service with a code or an "
                           "assertion (sso: from a broker session)", ["tenant", "idp", "service", "sso"])
LOGINS_FAILED = Counter("digione_logins_failed_total", "Logins that ended without a sign-in, by the refusal's code",
                        ["tenant", "idp", "service", "reason"])
STEP_SECONDS = Histogram("digione_login_step_duration_seconds", "Time per login step: the broker's handling of "
                         "authorize, acs (SAML), callback (OIDC), token and userinfo requests; upstream: from the "
                         "redirect to the city's IdP to its answer (whole seconds)", ["step"], buckets=_STEP_BUCKETS)
UPSTREAM_ERRORS = Counter("digione_upstream_errors_total", "A city's IdP failed: an error answer or an unreachable "
                          "endpoint (kind=error), or no answer in time (kind=timeout)", ["tenant", "idp", "kind"])
TOKEN_GRANTS = Counter("digione_token_grants_total", "Token endpoint requests by grant type and outcome",
                       ["grant_type", "outcome"])
LOGOUT_DELIVERIES = Counter("digione_logout_deliveries_total", "Back-channel logout delivery attempts by outcome",
                            ["outcome"])
STORE_ERRORS = Counter("digione_store_errors_total", "Store (Redis) calls that failed, by operation",
                       ["operation"])
RATE_LIMITED = Counter("digione_rate_limited_total", "Requests refused by a rate limit (429), by limit",
                       ["kind"])


class Children:
    """The labelled children of one metric, cached by their label values (bounded by the callers).

    ``metric.labels(...)`` validates and locks on every call; a cached child is one dictionary read.
    """

    __slots__ = ("_metric", "_cache")

    def __init__(self, metric: Any):
        self._metric = metric
        self._cache: dict[Any, Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._metric.labels(*values)
        return child


def bounded(value: Any, allowed: frozenset[str]) -> str:
    """``value`` if it is one of ``allowed``, else :data:`OTHER`."""
    return value if isinstance(value, str) and value in allowed else OTHER


_rate_limited = Children(RATE_LIMITED)
_deliveries = Children(LOGOUT_DELIVERIES)
_store_errors = Children(STORE_ERRORS)


def rate_limited(kind: str) -> None:
    """Count one request refused by a rate limit: ``kind`` is ``"token"``, ``"client_auth"`` or ``"login_start"``."""
    _rate_limited(bounded(kind, RATE_LIMIT_KINDS)).inc()


def logout_delivered(outcome: str) -> None:
    """Count one back-channel logout attempt's outcome (:mod:`broker.sessions.delivery`)."""
    _deliveries(bounded(outcome, DELIVERY_OUTCOMES)).inc()


#: Store operations, named after the first Redis command of a round trip.
STORE_OPERATIONS = frozenset({"get", "set", "del", "mget", "getdel", "incr", "incrby", "expire", "exists",
                              "evalsha", "eval", "zadd", "zrangebyscore", "zrem", "zpopmin", "hset", "hget",
                              "hgetall", "hdel", "sadd", "srem", "smembers", "publish", "ping", "pexpire",
                              "connect"})


def store_error(operation: str) -> None:
    """Count one failed store call; ``operation`` is a command name (lower case) or ``"connect"``."""
    _store_errors(bounded(operation, STORE_OPERATIONS)).inc()
