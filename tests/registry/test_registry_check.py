"""``broker check`` as a newcomer meets it: a fresh clone's demo tenants, then after the demo prepared its files.

The check runs through :func:`broker.registry.check.run_check` with an environment of its
own (every folder in ``tmp_path``), so nothing of the working tree is read or written.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from broker.demo.stack import DemoStack
from broker.deployment import ROOT
from broker.registry.check import plural, run_check


def _check(env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_check(env, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def fresh(tmp_path: Path) -> dict[str, str]:
    """The shipped tenant files, with none of the files ``make demo`` generates."""
    tenants = tmp_path / "tenants"
    shutil.copytree(ROOT / "tenants", tenants)
    (tmp_path / "metadata").mkdir()
    return {"BROKER_TENANTS_DIR": str(tenants), "BROKER_METADATA_DIR": str(tmp_path / "metadata"),
            "BROKER_DEMO_DIR": str(tmp_path / "demo"), "BROKER_VAR_DIR": str(tmp_path / "var")}


def test_a_fresh_clone_is_told_the_tenants_are_the_demo_cities_and_how_to_fix_it(fresh, tmp_path):
    code, out, err = _check(fresh)
    assert code == 1 and out == ""
    assert err.count("error: ") == 10, err
    assert "the shipped tenant files (tenants/*.yaml) are the demo cities" in err
    assert "`broker demo --prepare`" in err and "`make demo`" in err and "BROKER_TENANTS_DIR=" in err
    assert "10 problems in the tenant files" in err and "the broker will not start" in err
    # The check changes nothing: no master secret, no registry.
    assert not (tmp_path / "var").exists()


def test_other_problems_get_no_demo_hint(fresh, tmp_path):
    DemoStack(demo_dir=tmp_path / "demo", metadata_dir=tmp_path / "metadata", environ=fresh).prepare()
    tenants = Path(fresh["BROKER_TENANTS_DIR"])
    for path in tenants.glob("*.yaml"):
        if path.name != "vantaa.yaml":
            path.unlink()
    text = (tenants / "vantaa.yaml").read_text().replace("demo/vantaa-idp.xml", "elsewhere/vantaa-idp.xml")
    (tenants / "vantaa.yaml").write_text(text)
    code, _, err = _check(fresh)
    assert code == 1 and "elsewhere/vantaa-idp.xml not found" in err
    assert "demo cities" not in err and "1 problem in the tenant files" in err


def test_after_the_demo_prepared_its_files_the_counts_are_right_and_the_demo_registry_is_named(fresh, tmp_path):
    demo = DemoStack(demo_dir=tmp_path / "demo", metadata_dir=tmp_path / "metadata", environ=fresh)
    demo.prepare()
    code, out, err = _check(fresh)     # the default registry: the demo's services are not in it
    assert code == 0, err
    assert out.startswith("ok: 7 tenants, 10 identity providers, 0 OIDC clients, 0 SAML SPs (registrations from ")
    assert "The demo keeps its two services in a registry of its own" in err
    assert f"BROKER_REGISTRY_DIR={tmp_path / 'demo' / 'registry'} broker check" in err
    assert "no master secret yet" in err and not (tmp_path / "var" / "keys" / "master.secret").exists()

    code, out, err = _check({**fresh, "BROKER_REGISTRY_DIR": str(tmp_path / "demo" / "registry")})
    assert code == 0, err
    assert "7 tenants, 10 identity providers, 2 OIDC clients, 0 SAML SPs" in out
    assert "registry of its own" not in err


def test_a_database_password_is_never_printed(fresh, tmp_path):
    DemoStack(demo_dir=tmp_path / "demo", metadata_dir=tmp_path / "metadata", environ=fresh).prepare()
    code, out, _ = _check({**fresh, "BROKER_DATABASE_URL": "sqlite:///" + str(tmp_path / "r.sqlite3")})
    assert code == 0 and "r.sqlite3" in out
    from broker.registry.check import registry_location
    from broker.settings import Settings

    settings = Settings.from_env({**fresh, "BROKER_DATABASE_URL": "postgresql://broker:s3cret@db/registry"},
                                 create_master_secret=False)
    assert registry_location(settings) == "postgresql://broker:***@db/registry"


def test_counts_are_in_the_singular_for_one():
    assert plural(1, "OIDC client") == "1 OIDC client"
    assert plural(1, "tenant") == "1 tenant" and plural(2, "tenant") == "2 tenants"
    assert plural(0, "SAML SP") == "0 SAML SPs" and plural(1, "problem") == "1 problem"


def test_config_dump_on_a_fresh_clone_reports_as_the_check_does(fresh, tmp_path, monkeypatch, capsys):
    from broker.cli import main

    for name in [n for n in os.environ if n.startswith("BROKER_")]:
        monkeypatch.delenv(name)
    for name, value in fresh.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BROKER_SECRET", "config-dump-test-secret-0123456789abcdef")
    assert main(["config", "dump"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "the shipped tenant files (tenants/*.yaml) are the demo cities" in err
    assert "10 problems in the tenant files" in err
