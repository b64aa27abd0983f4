"""``broker audit …``: what services received, and who changed what, from the operator's shell.

    broker audit releases --school 90921 --since 2026-05-01 [--until 2026-05-31] [--service demo-service-a]
                          [--tenant vantaa] [--limit 1000] [--json]
    broker audit changes --since 2026-05-01 [--until DATE] [--tenant vantaa] [--json]
    broker audit purge                      delete records past audit_retention_days now

Whoever runs ``broker`` on the server holds the registry database: the shell sees every
tenant (the admin console limits a city's admins to their schools).  Records hold names of
claims and attributes and pseudonymous subject references, never values.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_commands(sub: Any) -> None:
    """Add the ``audit`` command group to the ``broker`` parser."""
    audit = sub.add_parser("audit", help="the audit: what services received, and admin changes")
    actions = audit.add_subparsers(metavar="ACTION")

    p = actions.add_parser("releases", help="what services received about people of one school, and when")
    p.add_argument("--school", required=True, help="the school code (e.g. 90921) the people belong to")
    p.add_argument("--since", required=True, help="from this date (2026-05-01, UTC midnight) or ISO 8601 time")
    p.add_argument("--until", default=None, help="up to this date, inclusive (2026-05-31), or ISO 8601 time "
                                                 "(exclusive); default: now")
    p.add_argument("--service", default=None, help="only this service: an OIDC client_id or a SAML SP entity id")
    p.add_argument("--tenant", default=None, help="only releases of identities from this tenant (e.g. vantaa)")
    p.add_argument("--limit", type=int, default=1000, help="at most this many releases listed (default 1000, "
                                                           "at most 10000); the summary counts them all")
    p.add_argument("--json", action="store_true", dest="as_json", help="print JSON")
    p.set_defaults(handler=_releases)

    p = actions.add_parser("changes", help="admin changes: who changed what, when")
    p.add_argument("--since", required=True, help="from this date (2026-05-01) or ISO 8601 time")
    p.add_argument("--until", default=None, help="up to this date, inclusive, or ISO 8601 time (exclusive)")
    p.add_argument("--tenant", default=None, help="only changes of this tenant's document")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    p.add_argument("--json", action="store_true", dest="as_json", help="print JSON")
    p.set_defaults(handler=_changes)

    p = actions.add_parser("purge", help="delete records older than audit_retention_days now (the flusher "
                                         "does it hourly)")
    p.set_defaults(handler=_purge)


def _log() -> Any:
    from broker.audit.storage import AuditLog
    from broker.registry.database import open_database
    from broker.settings import Settings

    return AuditLog(open_database(Settings.from_env().database_url))


def _range(args: argparse.Namespace) -> tuple[Any, Any]:
    from broker.audit.storage import parse_when

    return parse_when(args.since), parse_when(args.until, end_of_day=True) if args.until else None


def _releases(args: argparse.Namespace) -> int:
    from broker.audit.storage import MAX_ROWS, ReleaseQuery

    try:
        since, until = _range(args)
    except ValueError as exc:
        print(f"error: --since/--until: expected {exc}", file=sys.stderr)
        return 2
    if not 1 <= args.limit <= MAX_ROWS:
        print(f"error: --limit: expected 1 to {MAX_ROWS}", file=sys.stderr)
        return 2
    report = _log().report(ReleaseQuery(school=args.school, since=since, until=until, service=args.service,
                                        tenant=args.tenant, limit=args.limit))
    if args.as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    print(format_report(report))
    return 0


def format_report(report: dict[str, Any]) -> str:
    """The text form of :meth:`AuditLog.report`: the summary, then one line per release."""
    q = report["query"]
    scope = (f", service {q['service']}" if q["service"] else "") + (f", tenant {q['tenant']}" if q["tenant"] else "")
    lines = [f"Releases about people of school {q['school']} from {q['since']} to {q['until'] or 'now'}{scope}:"]
    if not report["summary"]:
        lines.append("  none")
    for row in report["summary"]:
        lines.append(f"  {row['service']} ({row['protocol']}): {row['releases']} release(s), {row['subjects']} "
                     f"person(s): {', '.join(row['released'])}")
    if report["releases"]:
        lines.append("")
        lines.append("time\tservice\tprotocol\ttenant\tsubject_ref\tcorrelation_id\treleased")
    for r in report["releases"]:
        lines.append(f"{r['time']}\t{r['service']}\t{r['protocol']}\t{r['tenant']}\t{r['subject_ref']}\t"
                     f"{r['correlation_id'] or '-'}\t{','.join(r['released'])}")
    if report["truncated"]:
        lines.append(f"(first {len(report['releases'])} listed; --limit lists more, --since/--until narrow)")
    return "\n".join(lines)


def _changes(args: argparse.Namespace) -> int:
    try:
        since, until = _range(args)
    except ValueError as exc:
        print(f"error: --since/--until: expected {exc}", file=sys.stderr)
        return 2
    changes = _log().admin_changes(since=since, until=until, tenant=args.tenant, limit=args.limit)
    if args.as_json:
        print(json.dumps(changes, indent=2, ensure_ascii=False))
        return 0
    for c in changes:
        print(f"{c['time']}\t{c['actor']}\t{c['action']}\tversion {c['version'] or '-'}\t"
              f"{','.join(c['documents'])}\t{c['correlation_id'] or '-'}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    import datetime as dt

    from broker.settings import Settings

    days = Settings.from_env().audit_retention_days
    before = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    log = _log()
    removed = total = log.purge(before)
    while removed:
        removed = log.purge(before)
        total += removed
    print(f"{total} record(s) older than {days} days deleted", file=sys.stderr)
    return 0
