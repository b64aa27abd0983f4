"""Service owners: their services, registering an OIDC client or a SAML SP, and the status.

``GET /admin/services`` lists the services the person owns (a platform admin: all) and the
registrations waiting for approval.  ``/admin/services/clients/new`` and
``/admin/services/sps/new`` register (or, with ``?id=``, change) a service: for each claim set
(scope) asked, the owner says why the service needs it.  A new registration, or one that
asks for other claims, waits for a platform admin's approval; the page says so and shows a
new client secret once.  ``GET /admin/services/<id>`` shows one service and its versions.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue

from broker.admin.console import blueprint
from broker.admin.console.idps import MAX_UPLOAD
from broker.admin.console.web import ops, principal, problem_list, render
from broker.admin.errors import AdminError, BadRequest
from broker.mapping.release import SCOPES

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
CLIENT_FIELDS = {"client_id": "client_id", "name": "name", "redirect_uris": "redirect_uris",
                 "post_logout_redirect_uris": "post_logout_redirect_uris", "jwks_uri": "jwks_uri",
                 "token_endpoint_auth_method": "token_endpoint_auth_method", "jwks": "jwks_uri",
                 "backchannel_logout_uri": "backchannel_logout_uri",
                 "frontchannel_logout_uri": "frontchannel_logout_uri",
                 "policy": "scope-openid", "reasons": "scope-openid", "metadata_xml": "metadata_file",
                 "sp": "metadata_file", "metadata": "metadata_file", "comment": "comment"}


def _pending(p: Any) -> list[dict[str, Any]]:
    return [v for v in ops().versions(p, limit=200) if v["status"] == "pending_approval"
            and any(t["kind"] in ("client", "sp") for t in v["touches"])]


@blueprint.get("/services")
def services_page() -> ResponseReturnValue:
    p = principal()
    operations = ops()
    me = operations.whoami(p)
    services = [s for s in operations.services(p) if "document" in s]
    return render("services.html", services=services, pending=_pending(p), me=me, nav="services")


@blueprint.get("/services/<path:service_id>")
def service_page(service_id: str) -> ResponseReturnValue:
    info = ops().service(principal(), service_id)
    return render("service.html", info=info, nav="services")


def _lines(name: str) -> list[str]:
    return [line.strip() for line in request.form.get(name, "").splitlines() if line.strip()]


def _scopes_and_reasons() -> tuple[list[str], dict[str, str], dict[str, Any]]:
    scopes = [s for s in SCOPES if request.form.get(f"scope-{s}") or s == "openid"]
    reasons = {s: request.form.get(f"reason-{s}", "").strip() for s in scopes}
    errors: dict[str, Any] = {f"reason-{s}": "form.reason_missing" for s in scopes if not reasons[s]}
    return scopes, reasons, errors


def _refused(exc: AdminError) -> tuple[dict[str, Any], list[dict[str, str]], int]:
    if exc.status not in (400, 409, 422):
        raise exc
    if isinstance(exc, BadRequest):
        head = exc.field.split(".")[0]
        field = f"reason-{exc.field.split('.', 1)[1]}" if head == "reasons" and "." in exc.field else \
            CLIENT_FIELDS.get(head.split("[")[0], "")
        if field:
            return {field: {"expected": exc.expected}}, [], 400
    problems = problem_list(exc, {"redirect_uris": "redirect_uris", "metadata": "metadata_file",
                                  "post_logout": "post_logout_redirect_uris", "jwks": "jwks_uri"})
    if exc.status == 409:
        problems = [{"field": "", "text": exc.description}]
    return {}, problems, exc.status


@blueprint.route("/services/clients/new", methods=["GET", "POST"])
def client_form() -> ResponseReturnValue:
    p = principal()
    operations = ops()
    existing_id = request.values.get("id") or None
    existing: dict[str, Any] = {}
    if existing_id:
        existing = (operations.service(p, existing_id).get("registered") or {}).get("document") or {}
    policy = existing.get("policy") or {}
    values: dict[str, Any] = {
        "client_id": existing.get("client_id", existing_id or ""), "name": existing.get("name", ""),
        "redirect_uris": "\n".join(existing.get("redirect_uris") or []),
        "post_logout_redirect_uris": "\n".join(existing.get("post_logout_redirect_uris") or []),
        "token_endpoint_auth_method": existing.get("token_endpoint_auth_method", "client_secret_basic"),
        "jwks_uri": existing.get("jwks_uri") or "", "backchannel_logout_uri": existing.get("backchannel_logout_uri")
        or "", "frontchannel_logout_uri": existing.get("frontchannel_logout_uri") or "",
        "scopes": list(policy.get("scopes") or ["openid", "roles"]), "reasons": {},
        "profile": policy.get("profile", "digione"), "subject_type": policy.get("subject_type", "pairwise"),
        "comment": ""}
    errors: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    status = 200
    if request.method == "POST":
        form = request.form
        scopes, reasons, errors = _scopes_and_reasons()
        values.update({k: form.get(k, "").strip() for k in ("client_id", "name", "jwks_uri",
                                                             "backchannel_logout_uri", "frontchannel_logout_uri")})
        values.update({"redirect_uris": form.get("redirect_uris", ""),
                       "post_logout_redirect_uris": form.get("post_logout_redirect_uris", ""),
                       "token_endpoint_auth_method": form.get("token_endpoint_auth_method", "client_secret_basic"),
                       "scopes": scopes, "reasons": reasons, "profile": form.get("profile", "digione"),
                       "subject_type": form.get("subject_type", "pairwise"), "comment": form.get("comment", "")})
        if existing_id:
            values["client_id"] = existing_id
        for field in ("client_id", "redirect_uris"):
            if not str(values[field]).strip():
                errors[field] = "form.missing"
        data: dict[str, Any] = {
            "client_id": values["client_id"], "name": values["name"], "redirect_uris": _lines("redirect_uris"),
            "post_logout_redirect_uris": _lines("post_logout_redirect_uris"),
            "token_endpoint_auth_method": values["token_endpoint_auth_method"],
            "policy": {"scopes": scopes, "profile": values["profile"], "subject_type": values["subject_type"]},
            "reasons": reasons, "rotate_secret": bool(form.get("rotate_secret"))}
        for field in ("jwks_uri", "backchannel_logout_uri", "frontchannel_logout_uri"):
            if values[field]:
                data[field] = values[field]
        if not errors:
            try:
                result = operations.register_client(p, data, values["comment"])
            except AdminError as exc:
                errors, problems, status = _refused(exc)
            else:
                return render("registered.html", result=result, service_id=values["client_id"], nav="services")
        status = status if problems or not errors else 400
    return render("client_form.html", status, values=values, errors=errors, problems=problems, scopes=SCOPES,
                  methods=AUTH_METHODS, existing_id=existing_id, nav="services")


@blueprint.route("/services/sps/new", methods=["GET", "POST"])
def sp_form() -> ResponseReturnValue:
    p = principal()
    operations = ops()
    existing_id = request.values.get("id") or None
    existing: dict[str, Any] = {}
    if existing_id:
        existing = (operations.service(p, existing_id).get("registered") or {}).get("document") or {}
    policy = existing.get("policy") or {}
    values: dict[str, Any] = {"name": existing_id[3:] if existing_id and existing_id.startswith("sp/") else "",
                              "scopes": list(policy.get("scopes") or ["openid", "roles"]), "reasons": {},
                              "profile": policy.get("profile", "mpassid"), "comment": ""}
    errors: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    status = 200
    if request.method == "POST":
        form = request.form
        scopes, reasons, errors = _scopes_and_reasons()
        values.update({"name": form.get("name", "").strip() if not existing_id else values["name"],
                       "scopes": scopes, "reasons": reasons, "profile": form.get("profile", "mpassid"),
                       "comment": form.get("comment", "")})
        if not values["name"]:
            errors["name"] = "form.missing"
        xml = ""
        upload = request.files.get("metadata_file")
        if upload is None or not upload.filename:
            errors["metadata_file"] = "form.file_missing"
        else:
            raw = upload.read(MAX_UPLOAD + 1)
            try:
                xml = raw.decode("utf-8-sig") if len(raw) <= MAX_UPLOAD else ""
            except UnicodeDecodeError:
                errors["metadata_file"] = "form.file_not_text"
            if not xml.strip() and "metadata_file" not in errors:
                errors["metadata_file"] = "form.file_empty" if len(raw) <= MAX_UPLOAD else "form.file_too_large"
        if not errors:
            try:
                result = operations.register_sp(p, xml, values["name"], {"scopes": scopes,
                                                                          "profile": values["profile"]},
                                                reasons, values["comment"])
            except AdminError as exc:
                errors, problems, status = _refused(exc)
            else:
                return render("registered.html", result=result, service_id=f"sp/{values['name']}", nav="services")
        status = status if problems or not errors else 400
    return render("sp_form.html", status, values=values, errors=errors, problems=problems, scopes=SCOPES,
                  existing_id=existing_id, nav="services")
