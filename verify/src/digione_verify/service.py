"""Protecting a Flask view or a WSGI application: :func:`require_token` (RFC 6750 bearer tokens)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from digione_verify.errors import (
    Forbidden,
    IntrospectionUnavailable,
    InvalidToken,
    KeySetUnavailable,
    VerificationError,
)
from digione_verify.verifier import TokenVerifier, _as_tuple

__all__ = ["require_token"]

F = TypeVar("F", bound=Callable[..., Any])


def _bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1), else ``None``."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _challenge(error: VerificationError | None, scopes: tuple[str, ...]) -> tuple[int, str, bytes]:
    """Status, ``WWW-Authenticate`` value and JSON body for a refused request (RFC 6750 §3)."""
    if error is None:  # no token at all: RFC 6750 §3.1 says no error code
        return 401, 'Bearer realm="api"', b'{"error_description":"bearer token required"}'
    if isinstance(error, (KeySetUnavailable, IntrospectionUnavailable)):
        return 503, 'Bearer realm="api"', b'{"error":"temporarily_unavailable"}'
    assert isinstance(error, InvalidToken)
    reason = error.reason.replace('"', "'")
    header = f'Bearer realm="api", error="{error.error}", error_description="{reason}"'
    if isinstance(error, Forbidden) and scopes:
        header += f', scope="{" ".join(scopes)}"'
    body = json.dumps({"error": error.error, "error_description": error.reason}).encode()
    return error.status, header, body


def require_token(verifier: TokenVerifier, *, scopes: Iterable[str] = (), roles: Iterable[str] = (),
                  schools: Iterable[str] = ()) -> Callable[[F], F]:
    """Protect a Flask view or a whole WSGI application with bearer-token verification.

    ``scopes``, ``roles`` and ``schools`` are what :meth:`TokenVerifier.verify` checks
    besides the verifier's own requirements.  On a Flask view the claims are in
    ``flask.g.token_claims``; wrapped around a WSGI app
    (``app.wsgi_app = require_token(v)(app.wsgi_app)``) they are in
    ``environ["digione.token"]``.  A missing or invalid token gets 401 and a failed scope,
    role or school check 403, each with ``WWW-Authenticate: Bearer ...`` (RFC 6750 §3); keys
    that cannot be fetched give 503.  Only the ``Authorization`` header is read: tokens in
    the query string are refused (RFC 6750 §2.3 discourages them; they end up in logs).
    """
    needed_scopes, needed_roles, needed_schools = _as_tuple(scopes), _as_tuple(roles), _as_tuple(schools)

    def check(authorization: str | None) -> tuple[dict[str, Any] | None, VerificationError | None]:
        token = _bearer(authorization)
        if token is None:
            return None, None
        try:
            return verifier.verify(token, scopes=needed_scopes, roles=needed_roles, schools=needed_schools), None
        except VerificationError as exc:
            return None, exc

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if len(args) == 2 and isinstance(args[0], dict) and "REQUEST_METHOD" in args[0] and callable(args[1]):
                environ, start_response = args  # WSGI application
                claims, error = check(environ.get("HTTP_AUTHORIZATION"))
                if claims is None:
                    status, www, body = _challenge(error, needed_scopes)
                    start_response(f"{status} {_REASONS[status]}",
                                   [("Content-Type", "application/json"), ("WWW-Authenticate", www),
                                    ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
                    return [body]
                environ["digione.token"] = claims
                return fn(environ, start_response)
            import flask  # a Flask view; imported only when used

            claims, error = check(flask.request.headers.get("Authorization"))
            if claims is None:
                status, www, body = _challenge(error, needed_scopes)
                return flask.Response(body, status=status, mimetype="application/json",
                                      headers={"WWW-Authenticate": www, "Cache-Control": "no-store"})
            flask.g.token_claims = claims
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


_REASONS = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
