"""Per-step latency, token grants and upstream errors, measured around the login path's endpoints.

:func:`instrument` wraps the handlers of one registry version's router (after it is built,
once per version): the services' authorization endpoints (OIDC ``/authorize``, SAML SSO),
the cities' answers (SAML ACS, OIDC callback), ``/token`` and ``/userinfo``.  Each wrapper
times its handler into :data:`~broker.metrics.STEP_SECONDS`; the token wrapper also counts
the grant by type and outcome; the answer wrappers count an :class:`~broker.errors.IdpError`
(a failed or silent IdP, not a person who cancelled) against the IdP the flow waits for.

Nothing here reads the request beyond ``grant_type``, mapped onto a fixed set; outcomes come
from the response the broker built.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from broker.errors import IdpError
from broker.metrics.families import (
    GRANT_TYPES,
    OTHER,
    STEP_SECONDS,
    TOKEN_GRANTS,
    TOKEN_OUTCOMES,
    UPSTREAM_ERRORS,
    Children,
    bounded,
)

Handler = Callable[[Any], Any]

_grants = Children(TOKEN_GRANTS)
_upstream_errors = Children(UPSTREAM_ERRORS)


def instrument(router: Any, frontends: Mapping[str, Any], backends: Mapping[str, Any], login_metrics: Any) -> None:
    """Time the login path's endpoints in ``router`` (a :class:`broker.login.router.Router`)."""
    from broker.frontends.saml import SSO_PATHS
    from broker.tokens.discovery import PATHS

    for frontend in frontends.values():
        provider = getattr(frontend, "provider", None)
        if provider is not None:   # the OIDC provider
            prefix = provider.base_path.strip("/")
            prefix = prefix + "/" if prefix else ""
            router.wrap(prefix + PATHS["authorize"].lstrip("/"), timed("authorize"))
            router.wrap(prefix + PATHS["token"].lstrip("/"), token_endpoint)
            router.wrap(prefix + PATHS["userinfo"].lstrip("/"), timed("userinfo"))
        else:                      # the SAML IdP
            for path in SSO_PATHS.values():
                router.wrap(path, timed("authorize"))
    for backend in backends.values():
        acs = getattr(backend, "acs_url", None)
        callback = getattr(backend, "redirect_uri", None)
        if isinstance(acs, str):
            router.wrap(urlsplit(acs).path.lstrip("/"), upstream_answer("acs", login_metrics))
        elif isinstance(callback, str):
            router.wrap(urlsplit(callback).path.lstrip("/"), upstream_answer("callback", login_metrics))


def timed(step: str) -> Callable[[Handler], Handler]:
    """A wrapper timing its handler as ``step``."""
    observe = STEP_SECONDS.labels(step).observe

    def wrapper(handler: Handler) -> Handler:
        def endpoint(context: Any) -> Any:
            start = time.perf_counter()
            try:
                return handler(context)
            finally:
                observe(time.perf_counter() - start)

        return endpoint

    return wrapper


def token_endpoint(handler: Handler) -> Handler:
    """``/token``: timed, and the grant counted by type and outcome."""
    observe = STEP_SECONDS.labels("token").observe

    def endpoint(context: Any) -> Any:
        start = time.perf_counter()
        response = None
        try:
            response = handler(context)
            return response
        finally:
            observe(time.perf_counter() - start)
            grant_type = bounded((context.request or {}).get("grant_type"), GRANT_TYPES)
            _grants(grant_type, _outcome(response)).inc()

    return endpoint


def _outcome(response: Any) -> str:
    """``granted``, the OAuth error code of the JSON answer (from a fixed set), or ``server_error``."""
    if response is None:
        return "server_error"
    status = str(getattr(response, "status", ""))
    if status.startswith("200"):
        return "granted"
    if status.startswith("429"):
        return "rate_limited"
    try:
        error = json.loads(response.message).get("error")
    except (TypeError, ValueError, AttributeError):
        return OTHER
    return bounded(error, TOKEN_OUTCOMES)


def upstream_answer(step: str, login_metrics: Any) -> Callable[[Handler], Handler]:
    """The SAML ACS or OIDC callback: timed (:func:`timed`), and an IdP's failure counted against the flow's IdP."""
    time_it = timed(step)

    def wrapper(handler: Handler) -> Handler:
        def counted(context: Any) -> Any:
            try:
                return handler(context)
            except IdpError as exc:
                if exc.upstream_error is None:   # the person cancelling is not the IdP failing
                    _count_upstream_error(context, login_metrics, exc)
                raise
            except requests.RequestException as exc:
                _count_upstream_error(context, login_metrics, exc)
                raise

        return time_it(counted)

    return wrapper


def _count_upstream_error(context: Any, login_metrics: Any, exc: BaseException) -> None:
    flow = context.flow_if_loaded
    tenant, idp = login_metrics.idp(flow.upstream.idp if flow is not None and flow.upstream is not None else None)
    # The backends re-raise a requests error as IdpError "from None": the original is still its __context__.
    timeout = isinstance(exc, requests.Timeout) or isinstance(exc.__context__, requests.Timeout)
    _upstream_errors(tenant, idp, "timeout" if timeout else "error").inc()
