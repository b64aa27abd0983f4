"""Fresh PostgreSQL databases for tests (importable by name: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import uuid

#: The test server (``BROKER_TEST_POSTGRES_URL``): CI starts one (.ci/run), never skipped.
POSTGRES_URL = os.environ.get("BROKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_database(prefix: str = "registry_test") -> str:
    """A new, empty database on the test server; its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_URL.rpartition('/')[0]}/{name}"


def drop_database(url: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
