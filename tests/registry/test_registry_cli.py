"""`broker registry …` with the real command: import the files as a version, show and diff versions,
export one back, stage and activate, roll back; a bad import is refused with the field named and
changes nothing."""

from __future__ import annotations

import json

import yaml
from tenant_data import Site, saml_idp, tenant


def _site(tmp_path) -> Site:
    site = Site(tmp_path)
    site.write_metadata()
    site.write_tenant(tenant("vantaa", saml_idp()))
    return site


def _versions(site: Site) -> dict:
    result = site.cli("registry", "versions", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_files_seed_the_first_version_and_import_makes_the_next(tmp_path):
    site = _site(tmp_path)
    first = _versions(site)
    assert first["active"] == 1 and first["versions"][0]["created_by"] == "system"
    data = yaml.safe_load((site.tenants / "vantaa.yaml").read_text())
    data["names"]["en"] = "Vantaa city"
    site.write_tenant(data)
    imported = site.cli("registry", "import", "-m", "English name", "--by", "anna")
    assert imported.returncode == 0, imported.stderr
    assert "version 2 is active" in imported.stderr
    listed = _versions(site)
    assert listed["active"] == 2 and listed["versions"][0]["comment"] == "English name"
    assert listed["versions"][0]["created_by"] == "anna"
    diff = site.cli("registry", "diff", "1", "2")
    assert diff.returncode == 0 and "-  en: Vantaa\n" in diff.stdout and "+  en: Vantaa city\n" in diff.stdout
    show = site.cli("registry", "show", "2")
    assert "tenant/vantaa" in show.stdout and '"comment": "English name"' in show.stdout


def test_a_bad_import_is_refused_naming_the_field_and_the_active_version_stays(tmp_path):
    site = _site(tmp_path)
    _versions(site)
    data = yaml.safe_load((site.tenants / "vantaa.yaml").read_text())
    data["municipality_code"] = "92"
    site.write_tenant(data)
    refused = site.cli("registry", "import")
    assert refused.returncode == 1
    assert "vantaa.yaml: municipality_code: expected a 3-digit municipality code" in refused.stderr
    assert "nothing was activated" in refused.stderr
    assert _versions(site)["active"] == 1


def test_stage_then_activate_then_rollback_then_export(tmp_path):
    site = _site(tmp_path)
    unchanged = site.cli("registry", "import")
    assert unchanged.returncode == 0 and "nothing to import" in unchanged.stderr
    data = yaml.safe_load((site.tenants / "vantaa.yaml").read_text())
    data["domains"] = ["edu.vantaa.example"]
    site.write_tenant(data)
    staged = site.cli("registry", "import", "--stage")
    assert staged.returncode == 0 and "version 2 is staged" in staged.stderr, staged.stderr
    assert _versions(site)["active"] == 1
    assert site.cli("registry", "activate", "2").returncode == 0
    assert _versions(site)["active"] == 2
    back = site.cli("registry", "rollback", "-m", "undo")
    assert back.returncode == 0 and _versions(site)["active"] == 3
    out = tmp_path / "export"
    assert site.cli("registry", "export", str(out)).returncode == 0
    assert "domains" not in yaml.safe_load((out / "tenants" / "vantaa.yaml").read_text())
    assert site.cli("registry", "export", str(tmp_path / "v2"), "--version", "2").returncode == 0
    assert yaml.safe_load((tmp_path / "v2" / "tenants" / "vantaa.yaml").read_text())["domains"] == \
        ["edu.vantaa.example"]
    unknown = site.cli("registry", "activate", "99")
    assert unknown.returncode == 1 and "no version 99" in unknown.stderr


def test_registry_without_an_action_prints_its_help(tmp_path):
    result = _site(tmp_path).cli("registry")
    assert result.returncode == 0 and "import" in result.stdout and "rollback" in result.stdout


def test_a_refused_import_leaves_no_version_staged(tmp_path):
    site = _site(tmp_path)
    _versions(site)
    data = yaml.safe_load((site.tenants / "vantaa.yaml").read_text())
    data["municipality_code"] = "92"
    site.write_tenant(data)
    assert site.cli("registry", "import").returncode == 1
    statuses = [v["status"] for v in _versions(site)["versions"]]
    assert "staged" not in statuses and statuses[0] == "discarded"


def test_registering_the_same_sp_again_changes_nothing_and_says_so(tmp_path):
    from broker.deployment import ROOT

    site = _site(tmp_path)
    metadata = ROOT / "docs" / "examples" / "sp-metadata.xml"
    first = site.cli("sps", "add", str(metadata), "--name", "oppimateriaali")
    assert first.returncode == 0, first.stderr
    active = _versions(site)["active"]
    again = site.cli("sps", "add", str(metadata), "--name", "oppimateriaali")
    assert again.returncode == 0, again.stderr
    assert "already registered with this metadata and these settings: nothing changed" in again.stderr
    assert _versions(site)["active"] == active
    changed = site.cli("sps", "add", str(metadata), "--name", "oppimateriaali", "--scope", "openid",
                       "--scope", "schools")
    assert changed.returncode == 0 and _versions(site)["active"] == active + 1
