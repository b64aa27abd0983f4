"""The audit page: what services received about people of one school, and when.

``GET /admin/audit?school=…&since=…&until=…&service=…`` — a form and, once a school and a
start are given, the answer of :meth:`AdminOperations.audit_releases` (which decides who
may ask about which school: platform admins any, a city's admins their tenant's schools):
per service, the names released, how many releases and people; then the releases, newest
last, 200 at most.  Names of claims and attributes only, never values; people only by
their pseudonymous audit reference.
"""

from __future__ import annotations

from flask import request
from flask.typing import ResponseReturnValue

from broker.admin.console import blueprint
from broker.admin.console.web import ops, principal, problem_list, render
from broker.admin.errors import BadRequest

FIELDS = ("school", "since", "until", "service")


@blueprint.get("/audit")
def audit_page() -> ResponseReturnValue:
    p = principal()
    values = {name: request.args.get(name, "")[:1024] for name in FIELDS}
    report, problems = None, []
    if values["school"] or values["since"]:
        try:
            report = ops().audit_releases(p, values["school"], values["since"], values["until"] or None,
                                          values["service"] or None, 200)
        except BadRequest as exc:
            problems = problem_list(exc, {name: name for name in FIELDS})
    return render("audit.html", 400 if problems else 200, values=values, report=report, problems=problems,
                  nav="audit", title_key="audit.title")
