"""The audit tables (broker.registry.database, migration 0003): append, query, purge.

Append-only: there is no update here or anywhere.  Rows leave only by :meth:`AuditLog.purge`,
by age (``audit_retention_days``), in bounded batches.  Writes ignore ids already stored
(``INSERT … ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite), so the flusher may write a
record again after a crash without making a second row.

The question the audit answers, "what did service X receive about pupils of school Y, and
when", is one index range: ``audit_release_schools (school, service, at)`` (or
``(school, at)`` across services), joined to the release by its key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from broker.audit.records import AdminChange, Release
from broker.registry.database import audit_admin, audit_release_schools, audit_releases

logger = logging.getLogger("broker.audit")

#: The most rows one query returns (the CLI's --limit and the console's page stay below it).
MAX_ROWS = 10_000


def _insert_ignoring_known(connection: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    name = connection.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        connection.execute(pg_insert(table).on_conflict_do_nothing(), rows)
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        connection.execute(sqlite_insert(table).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - the registry runs on PostgreSQL or SQLite only
        raise RuntimeError(f"the audit needs PostgreSQL or SQLite, not {name}")


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite gives naive datetimes back: every time stored here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class ReleaseQuery:
    """Which releases: of ``school`` from ``since`` (inclusive) to ``until`` (exclusive)."""

    school: str
    since: dt.datetime
    until: dt.datetime | None = None
    service: str | None = None
    tenant: str | None = None
    limit: int = 1000

    def where(self) -> list[Any]:
        s, r = audit_release_schools.c, audit_releases.c
        conditions = [s.school == self.school, s.at >= self.since]
        if self.until is not None:
            conditions.append(s.at < self.until)
        if self.service is not None:
            conditions.append(s.service == self.service)
        if self.tenant is not None:
            conditions.append(r.tenant == self.tenant)
        return conditions


def parse_when(text: str, *, end_of_day: bool = False) -> dt.datetime:
    """A time a query is asked with: ``2026-05-04`` (midnight UTC; with ``end_of_day``, the next
    midnight, so that an ``until`` date includes its day) or ISO 8601 with a time (UTC if no offset).

    Raises ValueError with what was expected.
    """
    if not isinstance(text, str) or not 8 <= len(text) <= 40:
        raise ValueError("a date (2026-05-04) or a time (2026-05-04T08:00:00+03:00)")
    try:
        if len(text) == 10:
            day = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
            return day + dt.timedelta(days=1) if end_of_day else day
        when = dt.datetime.fromisoformat(text)
        return when.astimezone(dt.UTC) if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):   # OverflowError: the year 1 or 9999 moved past the calendar's ends
        raise ValueError("a date (2026-05-04) or a time (2026-05-04T08:00:00+03:00)") from None


class AuditLog:
    """The audit tables of the registry database ``engine``."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- appending ---------------------------------------------------------------------------------

    def write_releases(self, releases: Sequence[Release]) -> None:
        """Store ``releases`` (ids already stored are left as they are), in one transaction."""
        rows = [{"id": r.id, "at": r.at, "service": r.service, "tenant": r.tenant, "protocol": r.protocol,
                 "released": json.dumps(list(r.released)), "subject_ref": r.subject_ref,
                 "correlation_id": r.correlation_id} for r in releases]
        schools = [{"release_id": r.id, "school": code, "service": r.service, "at": r.at}
                   for r in releases for code in r.schools]
        with self.engine.begin() as connection:
            _insert_ignoring_known(connection, audit_releases, rows)
            _insert_ignoring_known(connection, audit_release_schools, schools)

    def admin_change(self, actor: str, action: str, documents: Sequence[str], *, version: int | None = None) -> None:
        """Record an admin change made just now (the correlation id is the current request's).

        Written at once: the change itself was just written to this same database.  Should
        the database fail between the two, the change stands (its version keeps who and when)
        and an ERROR line names the missing record; the record never undoes the change.
        """
        from broker.logs import current_correlation_id

        change = AdminChange.now(actor=actor, action=action, documents=documents, version=version,
                                 correlation_id=current_correlation_id())
        try:
            self.write_admin(change)
        except Exception as exc:  # noqa: BLE001 - see above
            logger.error("audit record of an admin change not written action=%s version=%s actor=%s (%s)",
                         action, version, actor, exc.__class__.__name__)

    def write_admin(self, change: AdminChange) -> None:
        with self.engine.begin() as connection:
            _insert_ignoring_known(connection, audit_admin, [{
                "id": change.id, "at": change.at, "actor": change.actor, "action": change.action,
                "tenant": change.tenant, "documents": json.dumps(list(change.documents)),
                "version": change.version, "correlation_id": change.correlation_id}])

    # -- reading -----------------------------------------------------------------------------------

    def releases(self, query: ReleaseQuery) -> list[dict[str, Any]]:
        """The releases ``query`` selects, oldest first, each with all its school codes."""
        s, r = audit_release_schools.c, audit_releases.c
        limit = max(1, min(query.limit, MAX_ROWS))
        statement = (sa.select(r.id, r.at, r.service, r.tenant, r.protocol, r.released, r.subject_ref,
                               r.correlation_id)
                     .select_from(audit_release_schools.join(audit_releases, r.id == s.release_id))
                     .where(*query.where()).order_by(s.at, s.release_id).limit(limit))
        with self.engine.connect() as connection:
            rows = connection.execute(statement).all()
            schools: dict[str, list[str]] = {}
            ids = [row.id for row in rows]
            for start in range(0, len(ids), 500):
                for rid, code in connection.execute(
                        sa.select(s.release_id, s.school).where(s.release_id.in_(ids[start:start + 500]))):
                    schools.setdefault(rid, []).append(code)
        return [{"id": row.id, "time": _aware(row.at).isoformat(timespec="seconds"), "service": row.service,
                 "tenant": row.tenant, "protocol": row.protocol, "schools": sorted(schools.get(row.id, [])),
                 "released": json.loads(row.released), "subject_ref": row.subject_ref,
                 "correlation_id": row.correlation_id} for row in rows]

    def summary(self, query: ReleaseQuery) -> list[dict[str, Any]]:
        """Per service and set of released names: how many releases and distinct subjects (whole range)."""
        s, r = audit_release_schools.c, audit_releases.c
        statement = (sa.select(s.service, r.protocol, r.released, sa.func.count().label("releases"),
                               sa.func.count(sa.distinct(r.subject_ref)).label("subjects"))
                     .select_from(audit_release_schools.join(audit_releases, r.id == s.release_id))
                     .where(*query.where()).group_by(s.service, r.protocol, r.released)
                     .order_by(s.service, r.released))
        with self.engine.connect() as connection:
            return [{"service": row.service, "protocol": row.protocol, "released": json.loads(row.released),
                     "releases": row.releases, "subjects": row.subjects}
                    for row in connection.execute(statement)]

    def report(self, query: ReleaseQuery) -> dict[str, Any]:
        """The answer to ``query``: its summary over the whole range and the releases (up to its limit)."""
        releases = self.releases(query)
        summary = self.summary(query)
        return {"query": {"school": query.school, "since": query.since.isoformat(),
                          "until": query.until.isoformat() if query.until else None, "service": query.service,
                          "tenant": query.tenant},
                "summary": summary, "releases": releases,
                "truncated": len(releases) < sum(row["releases"] for row in summary)}

    def admin_changes(self, *, since: dt.datetime, until: dt.datetime | None = None, tenant: str | None = None,
                      limit: int = 1000) -> list[dict[str, Any]]:
        """Admin changes from ``since`` to ``until``, oldest first (of one ``tenant`` when given)."""
        a = audit_admin.c
        conditions = [a.at >= since]
        if until is not None:
            conditions.append(a.at < until)
        if tenant is not None:
            conditions.append(a.tenant == tenant)
        statement = sa.select(audit_admin).where(*conditions).order_by(a.at, a.id).limit(max(1, min(limit, MAX_ROWS)))
        with self.engine.connect() as connection:
            return [{"id": row.id, "time": _aware(row.at).isoformat(timespec="seconds"), "actor": row.actor,
                     "action": row.action, "tenant": row.tenant, "documents": json.loads(row.documents),
                     "version": row.version, "correlation_id": row.correlation_id}
                    for row in connection.execute(statement)]

    # -- retention ---------------------------------------------------------------------------------

    def purge(self, before: dt.datetime, *, batch: int = 1000, max_batches: int = 20) -> int:
        """Delete records older than ``before``, ``batch`` releases (or admin changes) per transaction,
        at most ``max_batches`` transactions per call; return how many records went."""
        removed = 0
        r, s, a = audit_releases.c, audit_release_schools.c, audit_admin.c
        for _ in range(max_batches):
            with self.engine.begin() as connection:
                ids = list(connection.execute(
                    sa.select(r.id).where(r.at < before).order_by(r.at).limit(batch)).scalars())
                if ids:
                    connection.execute(sa.delete(audit_release_schools).where(s.release_id.in_(ids)))
                    connection.execute(sa.delete(audit_releases).where(r.id.in_(ids)))
                admin_ids = list(connection.execute(
                    sa.select(a.id).where(a.at < before).order_by(a.at).limit(batch)).scalars())
                if admin_ids:
                    connection.execute(sa.delete(audit_admin).where(a.id.in_(admin_ids)))
            removed += len(ids) + len(admin_ids)
            if len(ids) < batch and len(admin_ids) < batch:
                break
        return removed
