"""``broker admin …`` as an operator runs it, and migration 0002 on both databases."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sqlalchemy as sa
from admin_env import postgres_database

from broker.settings import ROOT


def _broker(tmp_path, *args):
    env = {"PATH": "/usr/bin:/bin", "BROKER_SECRET": "cli-test-secret-" + "z" * 40,
           "BROKER_VAR_DIR": str(tmp_path / "var"), "BROKER_DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite3'}"}
    return subprocess.run([sys.executable, "-m", "broker", "admin", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=False)


def test_tokens_and_grants_from_the_shell(tmp_path):
    made = _broker(tmp_path, "token", "create", "--role", "city_admin", "--tenant", "vantaa", "--expires", "30d",
                   "--note", "Vantaa CI")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    token = created["token"]
    assert created["grants"] == [{"role": "city_admin", "tenant": "vantaa"}] and "not shown again" in made.stderr
    listed = _broker(tmp_path, "token", "list", "--json")
    assert created["id"] in listed.stdout and token not in listed.stdout and token not in listed.stderr
    assert _broker(tmp_path, "token", "revoke", created["id"]).returncode == 0
    assert created["id"] not in _broker(tmp_path, "token", "list").stdout
    assert "revoked" in _broker(tmp_path, "token", "list", "--all").stdout
    assert _broker(tmp_path, "token", "revoke", "t-nope").returncode == 1
    bad = _broker(tmp_path, "token", "create", "--role", "city_admin", "--expires", "30d")
    assert bad.returncode == 1 and "tenant" in bad.stderr
    assert _broker(tmp_path, "token", "create", "--role", "platform_admin", "--expires", "400d").returncode == 1
    two = _broker(tmp_path, "token", "create", "--grant", "city_admin:vantaa", "--grant", "service_owner:sp/kirjasto")
    assert [g["role"] for g in json.loads(two.stdout)["grants"]] == ["city_admin", "service_owner"]

    given = _broker(tmp_path, "grant", "--subject", "sub-1", "--role", "platform_admin", "--note", "Maija")
    assert given.returncode == 0
    assert _broker(tmp_path, "grant", "--subject", "sub-1", "--grant", "city_viewer:espoo").returncode == 0
    grants = json.loads(_broker(tmp_path, "grants", "--json").stdout)
    assert grants[0]["subject"] == "sub-1" and grants[0]["note"] == "Maija" and len(grants[0]["grants"]) == 2
    removed = _broker(tmp_path, "grant", "--subject", "sub-1", "--role", "platform_admin", "--remove")
    assert removed.returncode == 0 and "city_viewer:espoo" in removed.stderr
    assert _broker(tmp_path, "grant", "--subject", "bad subject", "--role", "platform_admin").returncode == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0002_adds_and_removes_the_admin_tables(tmp_path, kind):
    from alembic import command
    from alembic.config import Config

    from broker.registry.database import MIGRATIONS, create_engine, migrate

    def run(url):
        engine = create_engine(url)
        migrate(engine)
        assert {"admin_tokens", "admin_grants"} <= set(sa.inspect(engine).get_table_names())
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        tables = set(sa.inspect(engine).get_table_names())
        assert "admin_tokens" not in tables and "registry_versions" in tables
        migrate(engine)
        assert "admin_grants" in set(sa.inspect(engine).get_table_names())
        engine.dispose()

    if kind == "sqlite":
        run(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    else:
        with postgres_database() as url:
            run(url)
