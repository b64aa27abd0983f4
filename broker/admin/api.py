"""The admin JSON API (``/admin/api``): the routes of :mod:`broker.admin.routes`, for bearer tokens.

Every route is registered from the one table in :mod:`broker.admin.routes` (which
:mod:`broker.admin.openapi` publishes at ``GET /admin/api/openapi.json``) and calls
one :class:`~broker.admin.operations.AdminOperations` method, where permissions are
checked.  This layer only:

* **authenticates**: ``Authorization: Bearer <token>`` (:mod:`broker.admin.tokens`)
  and nothing else.  Cookies are never read, so a browser cannot be made to call the
  API on someone's behalf (no CSRF exposure); the console has its own sign-in;
* **reads the input**: a request body only as ``application/json`` (else 415), of at
  most :data:`MAX_BODY` bytes (else 413), valid UTF-8 JSON without NaN, NUL or lone
  surrogates, matching the route's published schema (else 400 naming the field);
  query parameters by their published schemas (an unknown or repeated one is 400);
* **answers JSON**, errors as ``{"error", "description", "correlation_id",
  "problems"?}`` (RFC 6750 ``WWW-Authenticate`` on 401); every answer carries its
  correlation id in ``X-Correlation-ID``.  Unknown paths and methods
  under ``/admin/api`` are JSON 404 and 405 too.  Bad input is always a 4xx; a 500
  means a bug in the broker, and is logged with the correlation id.

Tokens never reach a log line: refusals name the principal (``token:<id>``) or ``-``.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from broker.admin import schema
from broker.admin.errors import AdminError, BadRequest, PayloadTooLarge, Unauthorized, UnsupportedMediaType
from broker.admin.operations import AdminOperations
from broker.admin.routes import QUERY, ROUTES, Route
from broker.logs import current_correlation_id

logger = logging.getLogger("broker.admin")

#: The largest request body the API reads (a metadata upload; the guard caps every request at 1 MiB too).
MAX_BODY = 1 << 20
PREFIX = "/admin/api"
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9._~+/=-]{1,500}) *\Z", re.IGNORECASE)
_INTEGER = re.compile(r"^[0-9]{1,10}\Z")

blueprint = Blueprint("admin_api", __name__)


def operations() -> AdminOperations:
    """The :class:`AdminOperations` of the current admin application (made at first use)."""
    return AdminOperations.for_app(current_app)


def correlation_id() -> str:
    return request.environ.get("digione.correlation_id") or current_correlation_id() or secrets.token_hex(8)


def flask_rule(path: str) -> str:
    """The Flask rule of an OpenAPI path template (``{version_id}`` is an integer)."""
    return re.sub(r"\{([a-z_]+)\}", lambda m: f"<int:{m.group(1)}>" if m.group(1) == "version_id"
                  else f"<{m.group(1)}>", path)


def _authenticate(ops: AdminOperations) -> Any:
    header = request.headers.get("Authorization", "")
    match = _BEARER.match(header)
    principal = ops.principal_for_token(match.group(1)) if match else None
    if principal is None:
        logger.warning("admin refused correlation_id=%s principal=- action=authenticate object=%s status=401 "
                       "reason=%s", correlation_id(), request.path[:200],
                       "no bearer token" if not header else "unknown, expired or revoked token")
        raise Unauthorized("a valid bearer token (Authorization: Bearer …): none was given, or it is unknown, "
                           "expired or revoked")
    return principal


def _query(route: Route) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in request.args:
        if name not in route.query or len(request.args.getlist(name)) > 1:
            known = ", ".join(route.query) or "none"
            raise BadRequest(name[:100], f"only the query parameters of this route, once each ({known})")
    for name in route.query:
        raw = request.args.get(name)
        if raw is None:
            continue
        kind = QUERY[name]["type"]
        if kind == "integer":
            if not _INTEGER.match(raw):
                raise BadRequest(name, QUERY[name]["description"])
            value: Any = int(raw)
        elif kind == "string":   # its maxLength is checked below; the operation checks its form
            value = raw
        else:
            if raw not in ("true", "false", "1", "0"):
                raise BadRequest(name, "true or false")
            value = raw in ("true", "1")
        schema.check(QUERY[name], value, name)
        found[name] = value
    return found


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _body(route: Route) -> Any:
    if route.body is None:
        return {}
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("a request body of type application/json")
    if (request.content_length or 0) > MAX_BODY:
        raise PayloadTooLarge(f"a request body of at most {MAX_BODY // 1024} KiB")
    data = request.get_data(cache=False)
    if len(data) > MAX_BODY:
        raise PayloadTooLarge(f"a request body of at most {MAX_BODY // 1024} KiB")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("body", "a JSON object in UTF-8 (no NaN or Infinity)") from None
    schema.clean(value)
    schema.check(route.body, value)
    return value


def _view(route: Route) -> Any:
    def view(**params: Any) -> Response:
        ops = operations()
        principal = None if route.public else _authenticate(ops)
        query = _query(route)
        body = _body(route)
        result = route.call(ops, principal, params, body, query)
        return _json(result, route.status)

    view.__name__ = route.operation
    view.__doc__ = route.summary
    return view


for _route in ROUTES:
    blueprint.add_url_rule(flask_rule(_route.path), endpoint=_route.operation, view_func=_view(_route),
                           methods=[_route.method])


def _json(data: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    # Every answer names its correlation id (errors in the body as well), for support to find it in the log.
    return Response(json.dumps(data, ensure_ascii=False, default=str), status=status,
                    headers={**(headers or {}), "X-Correlation-ID": correlation_id()}, mimetype="application/json")


def error_response(error: AdminError) -> Response:
    """The JSON answer of a refused call (see the module documentation)."""
    body = {**error.to_dict(), "correlation_id": correlation_id()}
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="digione-admin", error="invalid_token"'
    return _json(body, error.status, headers)


@blueprint.errorhandler(AdminError)
def _admin_error(error: AdminError) -> Response:
    if error.status != 401 and not getattr(error, "logged", False):
        logger.info("admin request refused correlation_id=%s path=%s status=%s error=%s", correlation_id(),
                    request.path[:200], error.status, error.code)
    return error_response(error)


@blueprint.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return json_http_error(exc)
    logger.error("admin API error correlation_id=%s path=%s exc_type=%s", correlation_id(), request.path[:200],
                 type(exc).__name__, exc_info=exc)
    return _json({"error": "server_error", "description": "the broker failed; the correlation id finds it in the log",
                  "correlation_id": correlation_id()}, 500)


def json_http_error(exc: HTTPException) -> Response:
    """A routing or protocol error (404, 405, 413 …) under ``/admin/api`` as the API's JSON error."""
    code = exc.code or 500
    name = re.sub(r"[^a-z]+", "_", (exc.name or "error").lower()).strip("_")
    headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
    return _json({"error": name, "description": exc.description or exc.name, "correlation_id": correlation_id()},
                 code, headers)


def _http_error(exc: HTTPException) -> Any:
    # Registered on the whole admin application: a path under /admin/api gets JSON, any other path
    # (the console's) the exception itself, which Flask renders as it would without this handler.
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        return json_http_error(exc)
    return exc


blueprint.record_once(lambda state: state.app.register_error_handler(HTTPException, _http_error))
