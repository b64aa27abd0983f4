"""Registry versions: every change is a new immutable version, activated atomically.

The registry holds *objects*, each a JSON document named by ``(kind, key)``:
``("tenant", "vantaa")`` (a tenant file's content), ``("client", "<client_id>")``
and ``("sp", "<name>")``.  A **version** is a change set: for each object it
touches, the content before and after (``None``: absent), who made it, when and
why.  Versions are staged against the active state and activated one at a time:

* **Staging** records each object's current content as its *before*.  A staged
  version is an overlay (the active state plus its changes), so one city's staged
  change never rides along with another's.
* **Activation** is one transaction: each changed object must still be as the
  version found it (else :class:`Conflict`: someone changed it since), the new
  state passes ``validate`` (the checks of ``broker check``), and the head row
  moves with a compare-and-set, so two activations never interleave.  Every
  instance watches the head (:mod:`broker.registry.watch`).
* **Rollback** restores the state right after an earlier activation, as a new
  version: history is never rewritten, and a rollback can itself be rolled back.

Contents are stored once per distinct value (``registry_blobs``, by SHA-256 of the
canonical JSON), so a version costs one row per object it changes.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from broker.registry import database as db

KINDS = ("tenant", "client", "sp")
#: Activations validated without holding the head before one validates holding it.
_OPTIMISTIC_ATTEMPTS = 2
#: No one object may be larger than this (a tenant with inline metadata fits many times over).
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024

Key = tuple[str, str]
Documents = dict[Key, dict[str, Any]]


class VersionError(ValueError):
    """The request names no such version, or the version cannot take this step."""


class NothingToChange(VersionError):
    """Every object is already as the change asks: no version is made."""


class Conflict(VersionError):
    """An object changed since the version was staged: stage the change again on the new state."""


class Invalid(VersionError):
    """The state the version would activate fails validation; ``problems`` lists why."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclasses.dataclass(frozen=True)
class Change:
    kind: str
    key: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def action(self) -> str:
        return "added" if self.before is None else "removed" if self.after is None else "changed"


@dataclasses.dataclass(frozen=True)
class Version:
    id: int
    created_at: datetime.datetime
    created_by: str
    comment: str
    status: str                       # staged, pending_approval, activated, discarded
    base_seq: int
    activated_seq: int | None
    activated_at: datetime.datetime | None
    activated_by: str | None
    restores: int | None
    report: dict[str, Any] | None
    #: ``(kind, key, action)`` of every object it changes.
    touches: tuple[tuple[str, str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("created_at", "activated_at"):
            data[name] = data[name].isoformat() if data[name] else None
        data["touches"] = [{"kind": k, "key": key, "action": a} for k, key, a in self.touches]
        return data


@dataclasses.dataclass(frozen=True)
class State:
    """The active registry: the head's sequence, the active version and every object."""

    seq: int
    version_id: int | None
    documents: Documents


def canonical(content: Mapping[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(content).encode()).hexdigest()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class RegistryVersions:
    """The versioned registry in one database (see the module documentation)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- reading ------------------------------------------------------------------------------

    def head(self) -> tuple[int, int | None]:
        """``(seq, active version)``: one primary-key read, polled by every instance."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.head.c.seq, db.head.c.version_id).where(db.head.c.id == 1)).one()
        return int(row.seq), row.version_id

    def state(self) -> State:
        with self.engine.connect() as conn:
            return self._state(conn)

    def _state(self, conn: Connection) -> State:
        row = conn.execute(sa.select(db.head.c.seq, db.head.c.version_id).where(db.head.c.id == 1)).one()
        rows = conn.execute(sa.select(db.current.c.kind, db.current.c.key, db.blobs.c.content)
                            .join(db.blobs, db.blobs.c.sha256 == db.current.c.sha256))
        return State(seq=int(row.seq), version_id=row.version_id,
                     documents={(r.kind, r.key): json.loads(r.content) for r in rows})

    def version(self, version_id: int) -> Version:
        with self.engine.connect() as conn:
            return self._version(conn, version_id)

    def _version(self, conn: Connection, version_id: int) -> Version:
        row = conn.execute(sa.select(db.versions).where(db.versions.c.id == version_id)).one_or_none()
        if row is None:
            raise VersionError(f"no version {version_id}")
        return self._to_version(conn, row)

    def _to_version(self, conn: Connection, row: Any) -> Version:
        touches = tuple(
            (c.kind, c.key, "added" if c.before_sha256 is None else "removed" if c.after_sha256 is None else "changed")
            for c in conn.execute(sa.select(db.changes).where(db.changes.c.version_id == row.id)
                                  .order_by(db.changes.c.kind, db.changes.c.key)))
        return Version(id=row.id, created_at=_utc(row.created_at), created_by=row.created_by, comment=row.comment,
                       status=row.status, base_seq=row.base_seq, activated_seq=row.activated_seq,
                       activated_at=_utc(row.activated_at) if row.activated_at else None,
                       activated_by=row.activated_by, restores=row.restores,
                       report=json.loads(row.report) if row.report else None, touches=touches)

    def versions(self, *, limit: int = 50, before: int | None = None,
                 touching: Callable[[str, str], bool] | None = None) -> list[Version]:
        """Newest first; ``touching(kind, key)`` keeps only versions that change a matching object."""
        with self.engine.connect() as conn:
            query = sa.select(db.versions).order_by(db.versions.c.id.desc())
            if before is not None:
                query = query.where(db.versions.c.id < before)
            found: list[Version] = []
            for row in conn.execute(query.limit(limit if touching is None else limit * 20)):
                version = self._to_version(conn, row)
                if touching is None or any(touching(k, key) for k, key, _ in version.touches):
                    found.append(version)
                if len(found) >= limit:
                    break
            return found

    def changes(self, version_id: int) -> list[Change]:
        """What ``version_id`` changes, each object's content before and after."""
        with self.engine.connect() as conn:
            self._version(conn, version_id)
            return self._changes(conn, version_id)

    @staticmethod
    def _changes(conn: Connection, version_id: int) -> list[Change]:
        before, after = db.blobs.alias("before_blob"), db.blobs.alias("after_blob")
        rows = conn.execute(
            sa.select(db.changes.c.kind, db.changes.c.key, before.c.content.label("before"),
                      after.c.content.label("after"))
            .outerjoin(before, before.c.sha256 == db.changes.c.before_sha256)
            .outerjoin(after, after.c.sha256 == db.changes.c.after_sha256)
            .where(db.changes.c.version_id == version_id)
            .order_by(db.changes.c.kind, db.changes.c.key))
        return [Change(r.kind, r.key, json.loads(r.before) if r.before else None,
                       json.loads(r.after) if r.after else None) for r in rows]

    def documents(self, version_id: int) -> Documents:
        """The whole registry as ``version_id`` makes it.

        A staged version: the active state with its changes laid over.  An activated one:
        the state right after its activation.
        """
        with self.engine.connect() as conn:
            return self._documents_in(conn, version_id)

    def _documents_in(self, conn: Connection, version_id: int) -> Documents:
        version = self._version(conn, version_id)
        if version.activated_seq is not None:
            return self._state_at(conn, version.activated_seq)
        documents = self._state(conn).documents
        for change in self._changes(conn, version_id):
            _apply(documents, change.kind, change.key, change.after)
        return documents

    def _state_at(self, conn: Connection, seq: int) -> Documents:
        """The state right after activation ``seq``: today's, with every later change undone."""
        documents = self._state(conn).documents
        later = conn.execute(
            sa.select(db.changes.c.kind, db.changes.c.key, db.blobs.c.content)
            .join(db.versions, db.versions.c.id == db.changes.c.version_id)
            .outerjoin(db.blobs, db.blobs.c.sha256 == db.changes.c.before_sha256)
            .where(db.versions.c.activated_seq > seq)
            .order_by(db.versions.c.activated_seq.desc()))
        for row in later:  # newest first: the earliest later change's "before" is applied last
            _apply(documents, row.kind, row.key, json.loads(row.content) if row.content else None)
        return documents

    def diff(self, a: int, b: int) -> list[Change]:
        """Every object that differs between versions ``a`` and ``b`` (as :meth:`documents` sees them)."""
        left, right = self.documents(a), self.documents(b)
        return [Change(kind, key, left.get((kind, key)), right.get((kind, key)))
                for kind, key in sorted(left.keys() | right.keys())
                if left.get((kind, key)) != right.get((kind, key))]

    # -- writing ------------------------------------------------------------------------------

    def stage(self, changes: Mapping[Key, dict[str, Any] | None], *, by: str, comment: str = "",
              status: str = "staged", restores: int | None = None) -> Version:
        """Record a new version changing ``changes`` (``None`` removes an object) against the active state.

        Objects already as asked are left out; a version that would change nothing is refused.
        """
        for kind, key in changes:
            if kind not in KINDS or not isinstance(key, str) or not 0 < len(key) <= 200:
                raise VersionError(f"{kind}:{key}: expected a kind among {', '.join(KINDS)} and a key of 1-200 "
                                   "characters")
        encoded = {k: canonical(v) if v is not None else None for k, v in changes.items()}
        for (kind, key), text in encoded.items():
            if text is not None and len(text.encode()) > MAX_DOCUMENT_BYTES:
                raise VersionError(f"{kind}:{key}: expected at most {MAX_DOCUMENT_BYTES // 1024} KiB")
        with self.engine.begin() as conn:
            seq = conn.execute(sa.select(db.head.c.seq).where(db.head.c.id == 1)).scalar_one()
            current = {(r.kind, r.key): r.sha256 for r in conn.execute(sa.select(db.current))}
            rows = []
            for (kind, key), text in encoded.items():
                after = hashlib.sha256(text.encode()).hexdigest() if text is not None else None
                before = current.get((kind, key))
                if after == before:
                    continue
                if text is not None and after is not None:
                    self._keep_blob(conn, after, text)
                rows.append({"kind": kind, "key": key, "before_sha256": before, "after_sha256": after})
            if not rows:
                raise NothingToChange("nothing to change: every object is already as asked")
            inserted = conn.execute(sa.insert(db.versions).values(
                created_at=_now(), created_by=by[:200], comment=comment, status=status, base_seq=seq,
                restores=restores)).inserted_primary_key
            assert inserted is not None
            version_id = int(inserted[0])
            conn.execute(sa.insert(db.changes), [{"version_id": version_id, **row} for row in rows])
            return self._version(conn, version_id)

    def activate(self, version_id: int, *, by: str,
                 validate: Callable[[Documents], dict[str, Any]] | None = None) -> Version:
        """Make a staged version the active state, atomically (see the module documentation).

        ``validate(documents)`` checks the whole resulting state and returns a report kept
        with the version; it raises :class:`Invalid` to refuse.  An already activated
        version is restored instead (:meth:`restore`).
        """
        version = self.version(version_id)
        if version.status == "activated":
            return self.restore(version_id, by=by, comment=f"activate version {version_id} again",
                                validate=validate)
        if version.status not in ("staged", "pending_approval"):
            raise VersionError(f"version {version_id} is {version.status}; only a staged version can be activated")
        for attempt in range(_OPTIMISTIC_ATTEMPTS + 1):
            under_lock = attempt == _OPTIMISTIC_ATTEMPTS
            report: dict[str, Any] = {}
            if not under_lock:
                with self.engine.connect() as conn:
                    seq = conn.execute(sa.select(db.head.c.seq).where(db.head.c.id == 1)).scalar_one()
                self._check_unchanged(version_id)
                report = validate(self.documents(version_id)) if validate else {}
            with self.engine.begin() as conn:
                locked = conn.execute(sa.select(db.head.c.seq).where(db.head.c.id == 1).with_for_update()).scalar_one()
                if under_lock:
                    # Activations kept landing while this one was validated: validate holding the head,
                    # so it cannot move again (other activations wait; logins never read the database).
                    seq = locked
                    self._apply_changes(conn, version_id, dry_run=True)
                    report = validate(self._documents_in(conn, version_id)) if validate else {}
                elif locked != seq:
                    continue  # another activation landed while validating: validate the new state
                status = conn.execute(sa.select(db.versions.c.status).where(db.versions.c.id == version_id)).scalar()
                if status not in ("staged", "pending_approval"):
                    raise VersionError(f"version {version_id} is {status}; only a staged version can be activated")
                self._apply_changes(conn, version_id)
                moved = conn.execute(sa.update(db.head).where(db.head.c.id == 1, db.head.c.seq == seq)
                                     .values(seq=seq + 1, version_id=version_id)).rowcount
                if moved != 1:
                    raise Conflict("another activation moved the head")
                conn.execute(sa.update(db.versions).where(db.versions.c.id == version_id).values(
                    status="activated", activated_seq=seq + 1, activated_at=_now(), activated_by=by[:200],
                    report=json.dumps(report, sort_keys=True)))
                return self._version(conn, version_id)
        raise AssertionError("unreachable: the last attempt holds the head")

    def _check_unchanged(self, version_id: int) -> None:
        with self.engine.connect() as conn:
            self._apply_changes(conn, version_id, dry_run=True)

    def _apply_changes(self, conn: Connection, version_id: int, *, dry_run: bool = False) -> None:
        current = {(r.kind, r.key): r.sha256 for r in conn.execute(sa.select(db.current))}
        rows = list(conn.execute(sa.select(db.changes).where(db.changes.c.version_id == version_id)))
        moved = [f"{r.kind}:{r.key}" for r in rows if current.get((r.kind, r.key)) != r.before_sha256]
        if moved:
            raise Conflict(f"changed since version {version_id} was staged: {', '.join(moved)}; stage the change "
                           "again on the active state")
        if dry_run:
            return
        for r in rows:
            where = (db.current.c.kind == r.kind) & (db.current.c.key == r.key)
            if r.after_sha256 is None:
                conn.execute(sa.delete(db.current).where(where))
            elif r.before_sha256 is None:
                conn.execute(sa.insert(db.current).values(kind=r.kind, key=r.key, sha256=r.after_sha256))
            else:
                conn.execute(sa.update(db.current).where(where).values(sha256=r.after_sha256))

    def restore(self, version_id: int, *, by: str, comment: str = "",
                validate: Callable[[Documents], dict[str, Any]] | None = None) -> Version:
        """Activate, as a new version, the state right after activated version ``version_id``."""
        version = self.version(version_id)
        if version.activated_seq is None:
            raise VersionError(f"version {version_id} was never activated; there is no state of it to restore")
        target = self.documents(version_id)
        now = self.state().documents
        changes: dict[Key, dict[str, Any] | None] = {k: target.get(k) for k in now.keys() | target.keys()
                                                    if now.get(k) != target.get(k)}
        staged = self.stage(changes, by=by, comment=comment or f"restore version {version_id}", restores=version_id)
        return self.activate(staged.id, by=by, validate=validate)

    def rollback(self, *, by: str, comment: str = "",
                 validate: Callable[[Documents], dict[str, Any]] | None = None) -> Version:
        """Restore the state before the active version's activation."""
        with self.engine.connect() as conn:
            seq = conn.execute(sa.select(db.head.c.seq).where(db.head.c.id == 1)).scalar_one()
            previous = conn.execute(sa.select(db.versions.c.id).where(db.versions.c.activated_seq == seq - 1)
                                    ).scalar_one_or_none()
        if previous is None:
            raise VersionError("there is no earlier activated version to roll back to")
        return self.restore(previous, by=by, comment=comment or f"roll back to version {previous}",
                            validate=validate)

    def discard(self, version_id: int, *, by: str) -> Version:
        with self.engine.begin() as conn:
            moved = conn.execute(sa.update(db.versions).where(
                db.versions.c.id == version_id, db.versions.c.status.in_(("staged", "pending_approval")))
                .values(status="discarded", activated_by=by[:200], activated_at=_now())).rowcount
            if not moved:
                raise VersionError(f"version {version_id} is not staged; only a staged version can be discarded")
            return self._version(conn, version_id)

    @staticmethod
    def _keep_blob(conn: Connection, sha: str, text: str) -> None:
        exists = conn.execute(sa.select(db.blobs.c.sha256).where(db.blobs.c.sha256 == sha)).first()
        if exists is None:
            insert: Any
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            conn.execute(insert(db.blobs).values(sha256=sha, content=text).on_conflict_do_nothing())


def _apply(documents: Documents, kind: str, key: str, content: dict[str, Any] | None) -> None:
    if content is None:
        documents.pop((kind, key), None)
    else:
        documents[(kind, key)] = content


def _utc(value: datetime.datetime) -> datetime.datetime:
    # SQLite hands back naive datetimes; every value written was UTC.
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
