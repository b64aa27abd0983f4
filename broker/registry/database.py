"""The registry's database: SQLAlchemy 2 engines and the Alembic migrations.

PostgreSQL in production, SQLite as the embedded default (``make demo``, one
machine).  :func:`open_database` makes the engine and brings the schema to the
newest migration, so a fresh database and an upgraded one are the same thing;
``broker registry migrate`` does only that step, for operators who migrate before
rolling out (docs/operations.md).

The tables (:data:`metadata`) are SQLAlchemy Core: the registry is read in whole
when a login path is built and written only by admin actions, so an ORM would add
nothing but cost.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

#: Immutable content, addressed by the SHA-256 of its canonical JSON.
blobs = sa.Table(
    "registry_blobs", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
)

#: One row per version: a change set that was staged, then perhaps activated.
versions = sa.Table(
    "registry_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    #: staged, pending_approval, activated or discarded
    sa.Column("status", sa.String(20), nullable=False),
    #: The head sequence the change set was made against (its "before" values).
    sa.Column("base_seq", sa.Integer, nullable=False),
    sa.Column("activated_seq", sa.Integer, nullable=True, unique=True),
    sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("activated_by", sa.String(200), nullable=True),
    #: For a rollback: the version whose state it restores.
    sa.Column("restores", sa.Integer, nullable=True),
    #: The validation report (JSON) shown to whoever activates it.
    sa.Column("report", sa.Text, nullable=True),
)

#: What one version changes: each object's content before and after (NULL: absent).
changes = sa.Table(
    "registry_changes", metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("registry_versions.id"), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("before_sha256", sa.String(64), sa.ForeignKey("registry_blobs.sha256"), nullable=True),
    sa.Column("after_sha256", sa.String(64), sa.ForeignKey("registry_blobs.sha256"), nullable=True),
)

#: The active state: every object's current content.
current = sa.Table(
    "registry_current", metadata,
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("registry_blobs.sha256"), nullable=False),
)

#: One row: the activation sequence and the active version.  Every activation moves
#: it, with a compare-and-set on ``seq``: two activations can never interleave.
head = sa.Table(
    "registry_head", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("version_id", sa.Integer, nullable=True),
)

#: Admin API tokens (migration 0002): only the SHA-256 of each token is kept (broker.admin.tokens).
admin_tokens = sa.Table(
    "admin_tokens", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    #: The grants, JSON: [{"role", "tenant"?, "service"?}] (broker.admin.principals).
    sa.Column("roles", sa.Text, nullable=False),
    sa.Column("note", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
)

#: Console users' grants (migration 0002): the broker's ``sub`` for its admin client -> grants JSON.
admin_grants = sa.Table(
    "admin_grants", metadata,
    sa.Column("subject", sa.String(200), primary_key=True),
    sa.Column("roles", sa.Text, nullable=False),
    sa.Column("note", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: The audit (migration 0003, broker.audit): append-only; rows leave only by retention.
#: One row per release to a service: names of what it received, never values.
audit_releases = sa.Table(
    "audit_releases", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("service", sa.String(1024), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("protocol", sa.String(8), nullable=False),
    #: JSON list of the released claim / SAML attribute names, sorted.
    sa.Column("released", sa.Text, nullable=False),
    sa.Column("subject_ref", sa.String(32), nullable=False),
    sa.Column("correlation_id", sa.String(64), nullable=True),
    sa.Index("ix_audit_releases_service_at", "service", "at"),
    sa.Index("ix_audit_releases_at", "at"),
)

#: The school codes of a release's identity, one row each: what "pupils of school Y" is asked by.
audit_release_schools = sa.Table(
    "audit_release_schools", metadata,
    sa.Column("release_id", sa.String(32), primary_key=True),
    sa.Column("school", sa.String(32), primary_key=True),
    sa.Column("service", sa.String(1024), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_audit_release_schools_school_service_at", "school", "service", "at"),
    sa.Index("ix_audit_release_schools_school_at", "school", "at"),
)

#: One row per admin change: who, when, what (action, tenant, documents, version).
audit_admin = sa.Table(
    "audit_admin", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=True),
    #: JSON list of "kind:key" the change touches.
    sa.Column("documents", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("correlation_id", sa.String(64), nullable=True),
    sa.Index("ix_audit_admin_at", "at"),
    sa.Index("ix_audit_admin_tenant_at", "tenant", "at"),
)

MIGRATIONS = Path(__file__).with_name("migrations")


def create_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets a busy timeout and WAL so readers never wait on a writer."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # SQLAlchemy's recipe for pysqlite: the driver issues no BEGIN of its own ...
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(connection):  # type: ignore[no-untyped-def]
            # ... and every transaction takes the write lock up front: a reader that later
            # writes would otherwise fail with "database is locked" instead of waiting.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic migration (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Workers and instances start together: one migrates, the others wait, then find nothing to do.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(4242001)"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def existing_state(url: str) -> dict[tuple[str, str], dict] | None:
    """The active objects of the database at ``url`` if it exists and has a version; never creates one."""
    import json

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return None
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("registry_current"):
                return None
            rows = conn.execute(sa.select(current.c.kind, current.c.key, blobs.c.content)
                                .join(blobs, blobs.c.sha256 == current.c.sha256))
            return {(r.kind, r.key): json.loads(r.content) for r in rows}
    except sa.exc.OperationalError:
        return None
    finally:
        engine.dispose()


def open_database(url: str, *, migrate_schema: bool = True) -> Engine:
    engine = create_engine(url)
    if migrate_schema:
        migrate(engine)
    return engine
