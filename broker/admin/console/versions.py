"""Versions: the history (who, when, why), one version's diff, and what can be done with it.

``GET /admin/versions`` lists the versions the person may see (optionally one city's),
newest first, 50 a page.  ``GET /admin/versions/<n>`` shows what it changes (a diff per
object) and, by its status: for a staged version the test link and Activate / Discard; for
one awaiting approval Approve (platform admins) or Withdraw; for an activated one the
rollbacks (undo it, or bring a city back to how it was after it).  ``GET /admin/approvals``
lists the registrations awaiting a platform admin.  Every action is a POST form that the
operations decide on.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue

from broker.admin.console import blueprint
from broker.admin.console.web import base, done, ops, principal, problem_list, render
from broker.admin.errors import AdminError, NotAvailable

PAGE = 50
_MAX_ID = 2**31 - 1


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name, "")
    return int(raw) if raw.isdigit() and 0 < int(raw) <= _MAX_ID else None


@blueprint.get("/versions")
def versions_page() -> ResponseReturnValue:
    p = principal()
    before = _int_arg("before")
    tenant = request.args.get("tenant") or None
    found = ops().versions(p, limit=PAGE, before=before)
    older = found[-1]["id"] if len(found) == PAGE else None
    if tenant:
        found = [v for v in found if any(t["kind"] == "tenant" and t["key"] == tenant for t in v["touches"])]
    return render("versions.html", versions=found, older=older, tenant=tenant, nav="versions",
                  title_key="versions.title")


@blueprint.get("/approvals")
def approvals_page() -> ResponseReturnValue:
    p = principal()
    pending = [v for v in ops().versions(p, limit=200) if v["status"] == "pending_approval"]
    return render("versions.html", versions=pending, older=None, tenant=None, nav="approvals",
                  title_key="approvals.title", approvals=True)


def _diff_lines(diff: str) -> list[tuple[str, str]]:
    out = []
    for line in diff.splitlines():
        kind = ("add" if line.startswith("+") and not line.startswith("+++") else
                "del" if line.startswith("-") and not line.startswith("---") else "")
        out.append((kind, line))
    return out


def _previous(p: Any, version: dict[str, Any], tenant_id: str) -> int | None:
    """The activated version whose state holds ``tenant_id`` as it was just before ``version``."""
    seq = version.get("activated_seq")
    if seq is None:
        return None
    candidates = [v for v in ops().versions(p, limit=200, before=None)
                  if v.get("activated_seq") is not None and v["activated_seq"] < seq
                  and any(t["kind"] == "tenant" and t["key"] == tenant_id for t in v["touches"])]
    return max(candidates, key=lambda v: v["activated_seq"])["id"] if candidates else None


def _version_context(version_id: int) -> dict[str, Any]:
    p = principal()
    operations = ops()
    me = operations.whoami(p)
    version = operations.version(p, version_id)
    link, link_problem = None, None
    if version["status"] in ("staged", "pending_approval"):
        try:
            link = operations.test_link(p, version_id)
        except NotAvailable:
            link_problem = "version.test_link_unavailable"
        except AdminError:
            link_problem = None
    tenants = [t["key"] for t in version["touches"] if t["kind"] == "tenant"]
    rollbacks = []
    if version["status"] == "activated":
        for tid in tenants:
            if me["platform_admin"] or me["tenants"].get(tid) == "admin":
                rollbacks.append({"tenant": tid, "previous": _previous(p, version, tid)})
    changes = [{**c, "lines": _diff_lines(c.get("diff") or "")} for c in version.get("changes") or []]
    return {"version": version, "changes": changes, "test_link": link, "link_problem": link_problem,
            "rollbacks": rollbacks, "me": me, "nav": "versions"}


@blueprint.get("/versions/<int:version_id>")
def version_page(version_id: int) -> ResponseReturnValue:
    return render("version.html", **_version_context(version_id))


def _act(version_id: int, action: str, call: Any) -> ResponseReturnValue:
    try:
        result = call()
    except AdminError as exc:
        if exc.status not in (400, 409, 422):
            raise
        problems = (problem_list(exc) if exc.status != 409 else [{"field": "", "text": exc.description}])
        return render("version.html", exc.status, problems=problems, **_version_context(version_id))
    new_id = result["version"]["id"] if isinstance(result, dict) and "version" in result else version_id
    return done(f"{base()}/admin/versions/{new_id}", action)


@blueprint.post("/versions/<int:version_id>/activate")
def version_activate(version_id: int) -> ResponseReturnValue:
    return _act(version_id, "activated", lambda: ops().activate(principal(), version_id))


@blueprint.post("/versions/<int:version_id>/approve")
def version_approve(version_id: int) -> ResponseReturnValue:
    return _act(version_id, "approved", lambda: ops().approve(principal(), version_id))


@blueprint.post("/versions/<int:version_id>/discard")
def version_discard(version_id: int) -> ResponseReturnValue:
    return _act(version_id, "discarded", lambda: ops().discard(principal(), version_id))


@blueprint.post("/versions/<int:version_id>/rollback")
def version_rollback(version_id: int) -> ResponseReturnValue:
    tenant_id = request.form.get("tenant_id") or None
    raw = request.form.get("to_version", "")
    to_version = int(raw) if raw.isdigit() and 0 < int(raw) <= _MAX_ID else None
    comment = request.form.get("comment", "")
    return _act(version_id, "rolled_back",
                lambda: ops().rollback(principal(), tenant_id, to_version, comment))
