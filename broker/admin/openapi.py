"""The admin API's OpenAPI 3.1 document, generated from the route table (``GET /admin/api/openapi.json``).

:func:`document` describes every :class:`~broker.admin.routes.Route` of
:data:`~broker.admin.routes.ROUTES` and nothing else: path and query parameters with
their schemas, the request body schema the server enforces (:mod:`broker.admin.schema`),
the success status and every error the API answers, each as the one error shape
``{"error", "description", "correlation_id", "problems"?}``.  Nothing is written by
hand, so the document cannot drift from the server (tests/admin/test_admin_openapi.py
compares it with Flask's URL map).
"""

from __future__ import annotations

import functools
from typing import Any

from broker.admin.routes import PARAMETERS, QUERY, ROUTES, Route

ERROR = {
    "type": "object",
    "required": ["error", "description", "correlation_id"],
    "properties": {
        "error": {"type": "string", "description": "a machine-readable code (invalid_request, forbidden, …)"},
        "description": {"type": "string", "description": "what was expected"},
        "correlation_id": {"type": "string", "description": "names this request in the broker's log"},
        "problems": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"}, "expected": {"type": "string"}}}},
    },
}
_ERRORS = {
    400: "The input is malformed: problems name the field and what was expected",
    401: "No bearer token, or an unknown, expired or revoked one",
    403: "The caller may see the object but its roles do not allow this",
    404: "No such object, or one the caller holds no role for",
    405: "The method is not allowed on this path",
    409: "The object's state does not allow this (already activated, changed since staged)",
    413: "The request body is too large",
    415: "The request body is not application/json",
    422: "The change would make a registry that fails validation: problems list why",
    501: "Not available in this broker yet",
}
_SUCCESS = {200: "Done", 201: "A version was staged or activated"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _operation(route: Route) -> dict[str, Any]:
    parameters = [{"name": name, "in": "path", "required": True, "schema": PARAMETERS[name],
                   "description": PARAMETERS[name]["description"]} for name in route.params]
    parameters += [{"name": name, "in": "query", "required": False, "schema": QUERY[name],
                    "description": QUERY[name]["description"]} for name in route.query]
    responses: dict[str, Any] = {str(route.status): {
        "description": _SUCCESS[route.status],
        "content": {"application/json": {"schema": {"type": ["object", "array"]}}}}}
    codes = [404, 405] if route.public else [400, 401, 403, 404, 405, 409, 422, 501]
    if route.body is not None:
        codes += [413, 415]
    responses.update({str(code): _error(_ERRORS[code]) for code in sorted(codes)})
    operation: dict[str, Any] = {"operationId": route.operation, "summary": route.summary, "tags": [route.tag],
                                 "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body}}}
    if route.public:
        operation["security"] = []
    return operation


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin API (the same object every call: treat it as read-only)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "DigiOne Login admin API", "version": "1",
                 "description": "Self-service administration of the broker's registry: tenants (cities), their "
                                "identity providers, mapping rules and allowed services; services' registrations; "
                                "versions, activation and rollback; API tokens and console grants. Every change is a "
                                "version, validated before it is staged and again when activated. See docs/admin.md."},
        "servers": [{"url": "/admin/api"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an admin API token (broker admin token create)"}},
            "schemas": {"Error": ERROR},
        },
    }
