"""OAuth 2.0 / OpenID Connect error responses.

Two kinds of refusal exist at an OAuth endpoint:

* a JSON error (RFC 6749 §5.2; RFC 6750 §3 for bearer-protected resources; RFC 7662,
  RFC 7009) answered to the client directly, always 4xx for bad input, with a
  ``correlation_id`` that the log line carries too;
* at the authorization endpoint, an error *redirected* to the client's validated
  ``redirect_uri`` (RFC 6749 §4.1.2.1), or *shown* to the person when the client or the
  redirect URI cannot be trusted (never redirected: that would be an open redirect).

Both are :class:`broker.errors.BrokerError` subclasses so :func:`broker.errors.log`
writes them the same way as every other refusal in the broker.
"""

from __future__ import annotations

import json

from broker.errors import BrokerError, log, new_correlation_id
from broker.tokens.http import Response

#: Headers every response carrying tokens or token errors has (RFC 6749 §5.1).
NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


class OAuthError(BrokerError):
    """An OAuth error code with a description safe to show to the client.

    ``description`` must never contain a token, code, secret or personal data.
    """

    def __init__(self, error: str, description: str = "", *, status: int = 400,
                 www_authenticate: str | None = None):
        super().__init__(description or error, code=error, status=status)
        self.www_authenticate = www_authenticate


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str, *, basic: bool = False) -> OAuthError:
    """RFC 6749 §5.2: 401; with ``WWW-Authenticate`` matching the scheme the client used."""
    return OAuthError("invalid_client", description, status=401,
                      www_authenticate='Basic realm="digione", charset="UTF-8"' if basic else None)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_token(description: str) -> OAuthError:
    """RFC 6750 §3.1: 401 with a Bearer challenge naming the error."""
    safe = description.replace('"', "'")
    return OAuthError("invalid_token", description, status=401,
                      www_authenticate=f'Bearer realm="digione", error="invalid_token", error_description="{safe}"')


def json_error(error: OAuthError, **log_fields: str | None) -> Response:
    """Log ``error`` with a new correlation id and answer it as RFC 6749 §5.2 JSON."""
    cid = new_correlation_id()
    log(error, cid, **log_fields)
    body = json.dumps({"error": error.code, "error_description": error.detail or error.code,
                       "correlation_id": cid}).encode()
    headers = [("Content-Type", "application/json"), *NO_STORE]
    if error.www_authenticate:
        headers.append(("WWW-Authenticate", error.www_authenticate))
    headers.extend(error.headers)
    return Response(error.status, headers, body)
