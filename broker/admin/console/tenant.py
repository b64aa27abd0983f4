"""The home page, a city's overview and its allowed services (the checkbox table).

``GET /admin/`` lists what the person looks after: their cities (``operations.tenants``),
their services, and for platform admins the registrations awaiting approval.
``GET /admin/tenants/<id>`` shows one city: its sign-in methods (IdPs) with how their
metadata is kept, its schools, the versions waiting to be activated, and warnings.
``GET|POST /admin/tenants/<id>/services`` is the table of which services the city's schools
allow: one column for the whole city (its default) and one per school, which either follows
the city or makes its own choice.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue

from broker.admin.console import blueprint
from broker.admin.console.web import base, done, ops, principal, problem_list, render

#: How a column of the services table chooses: every service, exactly those ticked, or (a school) as the city.
MODES = ("all", "chosen", "city")


@blueprint.get("/")
def home() -> ResponseReturnValue:
    p = principal()
    operations = ops()
    me = operations.whoami(p)
    tenants = operations.tenants(p)
    owned = [s for s in operations.services(p) if s["id"] in me["services"]]
    pending = []
    if p.is_platform_admin:
        pending = [v for v in operations.versions(p, limit=100) if v["status"] == "pending_approval"]
    return render("home.html", me=me, tenants=tenants, owned=owned, pending=pending, nav="home")


@blueprint.get("/tenants/<tenant_id>")
def tenant_page(tenant_id: str) -> ResponseReturnValue:
    info = ops().tenant(principal(), tenant_id)
    return render("tenant.html", info=info, doc=info["document"], served=info.get("served") or {},
                  idps=_idps(info), nav="home")


def _idps(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The tenant's IdPs as stored, each with what the broker serves of it (``served``)."""
    served = {i["id"]: i for i in (info.get("served") or {}).get("identity_providers") or []}
    out = []
    for idp in info["document"].get("identity_providers") or []:
        if isinstance(idp, dict):
            out.append({**idp, "served": served.get(idp.get("id")), "how": _metadata_kind(idp)})
    return out


def _metadata_kind(idp: dict[str, Any]) -> str:
    metadata = idp.get("metadata")
    if idp.get("type") != "saml" or not isinstance(metadata, dict):
        return ""
    return "url" if "url" in metadata else "xml" if "xml" in metadata else "file" if "file" in metadata else ""


# -- allowed services --------------------------------------------------------------------------

def _schools(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in doc.get("schools") or [] if isinstance(s, dict) and isinstance(s.get("code"), str)]


def _table(doc: dict[str, Any]) -> dict[str, Any]:
    """The form's state from the document: each column's mode and ticked services."""
    allowed = doc.get("allowed_services")
    allowed = allowed if isinstance(allowed, dict) else {}
    default = allowed.get("default", "all")
    columns: dict[str, dict[str, Any]] = {"": {"mode": "all" if default in (None, "all") else "chosen",
                                               "ids": set(default) if isinstance(default, list) else set()}}
    chosen = allowed.get("schools") if isinstance(allowed.get("schools"), dict) else {}
    for school in _schools(doc):
        value = chosen.get(school["code"], "city") if chosen else "city"
        columns[school["code"]] = {"mode": "city" if value == "city" else "all" if value in (None, "all")
                                   else "chosen", "ids": set(value) if isinstance(value, list) else set()}
    return columns


def _from_form(doc: dict[str, Any], service_ids: list[str]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(allowed_services value or None for "every service everywhere", the form's state)``."""
    columns: dict[str, dict[str, Any]] = {}
    for code in ["", *[s["code"] for s in _schools(doc)]]:
        mode = request.form.get(f"mode-{code}" if code else "mode-city", "city" if code else "all")
        if mode not in MODES or (mode == "city" and not code):
            mode = "all"
        ticked = {sid for sid in service_ids if request.form.get(f"allow-{code or 'city'}-{sid}")}
        columns[code] = {"mode": mode, "ids": ticked}
    city = columns[""]
    value: dict[str, Any] = {"default": "all" if city["mode"] == "all" else sorted(city["ids"])}
    schools = {code: "all" if col["mode"] == "all" else sorted(col["ids"])
               for code, col in columns.items() if code and col["mode"] != "city"}
    if schools:
        value["schools"] = schools
    if value == {"default": "all"}:
        return None, columns
    return value, columns


@blueprint.route("/tenants/<tenant_id>/services", methods=["GET", "POST"])
def allowed_services(tenant_id: str) -> ResponseReturnValue:
    p = principal()
    operations = ops()
    info = operations.tenant(p, tenant_id)
    doc = info["document"]
    services = [s for s in operations.services(p) if s["id"] != "digione-admin"]
    columns = _table(doc)
    problems: list[dict[str, str]] = []
    status = 200
    if request.method == "POST":
        from broker.admin.errors import AdminError

        value, columns = _from_form(doc, [s["id"] for s in services])
        try:
            result = operations.set_allowed_services(p, tenant_id, value, request.form.get("comment", ""))
        except AdminError as exc:
            if exc.status not in (400, 422):
                raise
            problems, status = problem_list(exc, {"allowed_services": "services-table", "comment": "comment"}), \
                exc.status
        else:
            return done(f"{base()}/admin/versions/{result['version']['id']}", "staged")
    return render("services_allowed.html", status, info=info, doc=doc, services=services, columns=columns,
                  schools=_schools(doc), problems=problems, comment=request.form.get("comment", ""), nav="home")
