"""OAuth 2.0 Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592).

Off by default (``dynamic_registration: true`` in broker.yaml, or
``BROKER_DYNAMIC_REGISTRATION=1``): then ``POST /register`` registers an OIDC client
and ``GET``/``PUT``/``DELETE /register/<client_id>`` read, replace and remove it.
This is a protocol adapter and nothing more: every registration is a service
owner's registration through :class:`~broker.admin.operations.AdminOperations`,
with the same validation, the same approval of release policies by a platform
admin, and the same log of refusals.

* **Initial access token** (RFC 7591 §3, "the authorization server MAY require an
  initial access token"): required.  It is an admin API token holding
  ``service_owner`` for exactly one client id (``broker admin token create --role
  service_owner --service <client_id> --expires 7d``): a platform admin decides who
  may register which client; the client id is the token's, never chosen by the
  request (RFC 7591 §3.2.1: the server issues it).
* **Registration access token** (RFC 7592 §3): returned once at registration, an
  API token holding ``service_owner`` for that client, valid a year; it reads,
  replaces and removes that registration and nothing else.
* A registration whose release policy needs approval answers ``201`` as RFC 7591
  §3.2.1 requires, with ``digione_status: "pending_approval"``: the client can sign
  no one in until a platform admin approves it.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, json, request

from broker.admin.errors import AdminError
from broker.admin.operations import AdminOperations
from broker.admin.principals import SERVICE_OWNER, Grant, Principal, service_key
from broker.logs import correlation_id

logger = logging.getLogger(__name__)

blueprint = Blueprint("dynamic_registration", __name__)

#: Registration access tokens live a year (the longest an admin token may).
REGISTRATION_TOKEN_LIFETIME = datetime.timedelta(days=366)
MAX_BODY = 64 * 1024
#: RFC 7591 §2 client metadata -> the broker's registration fields.
_RENAMED = {"client_name": "name"}
_PASSED = ("redirect_uris", "token_endpoint_auth_method", "jwks", "jwks_uri", "post_logout_redirect_uris",
           "id_token_signed_response_alg", "backchannel_logout_uri", "backchannel_logout_session_required",
           "frontchannel_logout_uri", "frontchannel_logout_session_required")
#: RFC 7591 §2 metadata the broker accepts only with the values it supports.
_GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
_IGNORED = frozenset({"client_uri", "logo_uri", "tos_uri", "policy_uri", "contacts", "software_id",
                      "software_version"})


def enabled(settings: Any) -> bool:
    return bool(getattr(settings, "dynamic_registration", False))


def _ops() -> AdminOperations:
    return AdminOperations.for_app(current_app)


def _error(status: int, error: str, description: str, *, bearer: bool = False) -> Response:
    """RFC 7591 §3.2.2 errors (and RFC 6750 §3 for a missing or bad token)."""
    body = {"error": error, "error_description": description, "correlation_id": correlation_id.get() or ""}
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    if bearer:
        response.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return response


def _principal() -> Principal | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return _ops().principal_for_token(token.strip()) if scheme.lower() == "bearer" else None


def _client_ids(principal: Principal) -> list[str]:
    return sorted(s for s in principal.services if service_key(s)[0] == "client")


def _registration(metadata: Any, client_id: str) -> dict[str, Any]:
    """The broker's registration fields for RFC 7591 client ``metadata``; raises ValueError naming the field."""
    if not isinstance(metadata, dict):
        raise ValueError("the body: a JSON object of client metadata (RFC 7591 §2)")
    if "client_id" in metadata and metadata["client_id"] != client_id:
        raise ValueError(f"client_id: '{client_id}', the client id the access token is for")
    data: dict[str, Any] = {"client_id": client_id}
    for key, value in metadata.items():
        if key in _RENAMED:
            data[_RENAMED[key]] = value
        elif key in _PASSED:
            data[key] = value
        elif key == "response_types":
            if value != ["code"]:
                raise ValueError('response_types: ["code"] (the authorization code flow only)')
        elif key == "grant_types":
            if not (isinstance(value, list) and "authorization_code" in value and set(value) <= _GRANT_TYPES):
                raise ValueError("grant_types: authorization_code, and refresh_token if wanted")
        elif key == "scope":
            if not isinstance(value, str) or "openid" not in value.split():
                raise ValueError("scope: space-separated scopes including openid")
            data.setdefault("policy", {})["scopes"] = value.split()
        elif key == "subject_type":     # OpenID Connect Dynamic Client Registration 1.0 §2
            if value not in ("pairwise", "public"):
                raise ValueError("subject_type: pairwise or public")
            data.setdefault("policy", {})["subject_type"] = value
        elif key == "application_type":
            if value not in ("web", "native"):
                raise ValueError("application_type: web or native")
        elif key == "digione_reasons":
            data["reasons"] = value
        elif key not in _IGNORED and key not in ("client_id", "client_secret", "client_id_issued_at",
                                                  "client_secret_expires_at", "registration_access_token",
                                                  "registration_client_uri", "digione_status"):
            raise ValueError(f"{key}: client metadata this broker knows (RFC 7591 §2)")
    data.setdefault("reasons", "asked through dynamic client registration (RFC 7591)")
    return data


def _answer(status: int, client_id: str, result: dict[str, Any], *, token: str | None = None) -> Response:
    ops = _ops()
    registered = ops.registry_versions.documents(result["version"]["id"]).get(("client", client_id)) or {}
    body: dict[str, Any] = {
        "client_id": client_id, "client_id_issued_at": int(time.time()),
        "redirect_uris": registered.get("redirect_uris", []),
        "token_endpoint_auth_method": registered.get("token_endpoint_auth_method"),
        "client_name": registered.get("name", ""),
        "scope": " ".join((registered.get("policy") or {}).get("scopes", [])),
        "response_types": ["code"], "grant_types": ["authorization_code", "refresh_token"],
        "registration_client_uri": f"{ops.settings.base_url}/register/{client_id}",
        "digione_status": "active" if result["version"].get("status") == "activated" else
        result["version"].get("status"),
    }
    for key in _PASSED:
        if registered.get(key) not in (None, (), []) and key not in body:
            body[key] = registered[key]
    if result.get("client_secret"):
        body["client_secret"], body["client_secret_expires_at"] = result["client_secret"], 0
    if token:
        body["registration_access_token"] = token
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"   # RFC 7591 §3.2.1: it carries credentials
    response.headers["Pragma"] = "no-cache"
    return response


def _register(principal: Principal, client_id: str, metadata: Any) -> dict[str, Any]:
    """Stage (and, when no approval is needed, activate) the registration as its owner would."""
    ops = _ops()
    result = ops.register_client(principal, _registration(metadata, client_id),
                                 comment="dynamic client registration")
    if result["version"]["status"] == "staged":
        activated = ops.activate(principal, result["version"]["id"])
        result = {**result, "version": activated.get("version", activated)}
    return result


@blueprint.before_request
def _gate() -> Response | None:
    if not enabled(_ops().settings):
        return _error(404, "not_found", "dynamic client registration is not enabled on this broker")
    if request.content_length and request.content_length > MAX_BODY:
        return _error(413, "invalid_client_metadata", f"client metadata of at most {MAX_BODY // 1024} KiB")
    return None


@blueprint.post("")
def register() -> Response:
    """RFC 7591 §3.1: the client metadata, with an initial access token."""
    principal = _principal()
    if principal is None:
        return _error(401, "invalid_token", "an initial access token (Authorization: Bearer) is required",
                      bearer=True)
    owned = _client_ids(principal)
    if len(owned) != 1:
        return _error(403, "invalid_token", "the initial access token must be for exactly one client id",
                      bearer=True)
    client_id = owned[0]
    versions = _ops().registry_versions
    waiting = versions.versions(limit=5, touching=lambda kind, key: (kind, key) == ("client", client_id))
    if ("client", client_id) in versions.state().documents or \
            any(v.status in ("staged", "pending_approval") for v in waiting):
        return _error(400, "invalid_client_metadata", f"client {client_id} is registered (or awaits approval): "
                                                      f"manage it at /register/{client_id} with its registration "
                                                      "access token")
    try:
        result = _register(principal, client_id, request.get_json(silent=True))
    except ValueError as exc:
        return _error(400, "invalid_client_metadata", f"expected {exc}")
    except AdminError as exc:
        return _admin_error(exc)
    token, _ = _ops().tokens.create((Grant(SERVICE_OWNER, service=client_id),), lifetime=REGISTRATION_TOKEN_LIFETIME,
                                    by=principal.name, note=f"registration access token of {client_id} (RFC 7592)")
    logger.info("dynamic client registration correlation_id=%s principal=%s client_id=%s status=%s",
                correlation_id.get() or "-", principal.name, client_id, result["version"].get("status"))
    return _answer(201, client_id, result, token=token)


@blueprint.route("/<client_id>", methods=["GET", "PUT", "DELETE"])
def manage(client_id: str) -> Response:
    """RFC 7592 §2: read, replace or remove the registration, with its registration access token."""
    principal = _principal()
    # RFC 7592 §2: a token not for this client is answered as an invalid token, revealing nothing.
    if principal is None or client_id not in _client_ids(principal):
        return _error(401, "invalid_token", "the registration access token of this client is required",
                      bearer=True)
    ops = _ops()
    try:
        if request.method == "GET":
            current = ops.service(principal, client_id)
            if current["registered"] is None:
                return _error(401, "invalid_token", "this client is not registered", bearer=True)
            # What is in force (RFC 7592 §2.1), not a change still awaiting approval.
            return _answer(200, client_id, {"version": {"id": ops.registry_versions.head()[1], "status": "activated"}})
        if request.method == "PUT":
            metadata = request.get_json(silent=True)
            return _answer(200, client_id, _register(principal, client_id, metadata))
        removal = ops.remove_client(principal, client_id, comment="removed through RFC 7592")
        logger.info("dynamic client removed correlation_id=%s principal=%s client_id=%s version=%s",
                    correlation_id.get() or "-", principal.name, client_id, removal["version"]["id"])
        return Response(status=204)
    except ValueError as exc:
        return _error(400, "invalid_client_metadata", f"expected {exc}")
    except AdminError as exc:
        return _admin_error(exc)


def _admin_error(exc: AdminError) -> Response:
    if exc.status == 422:
        problems = "; ".join(f"{p['field']}: expected {p['expected']}" for p in exc.to_dict().get("problems", []))
        error = "invalid_redirect_uri" if "redirect_uri" in problems else "invalid_client_metadata"
        return _error(400, error, problems or exc.description)
    if exc.status == 400:
        return _error(400, "invalid_client_metadata", exc.description)
    return _error(exc.status, exc.code, exc.description)
