"""``broker check`` validates the city page's texts (``site.yaml`` in the configuration folder)
as the build of the login path does: a text missing in one language fails, naming it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from broker.demo import saml_idp

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def site(tmp_path) -> dict[str, str]:
    saml_idp.write_idp_metadata("http://localhost:8101", "vantaa", tmp_path / "idp-keys",
                                tmp_path / "metadata" / "vantaa-idp.xml")
    (tmp_path / "tenants").mkdir()
    (tmp_path / "tenants" / "vantaa.yaml").write_text(yaml.safe_dump({
        "id": "vantaa", "names": {"fi": "Vantaa", "sv": "Vanda", "en": "Vantaa"}, "municipality_code": "092",
        "education_provider": {"oid": "1.2.246.562.10.90920000000",
                               "names": {"fi": "Vantaan kaupunki", "sv": "Vanda stad", "en": "City of Vantaa"}},
        "schools": [{"code": "90921", "oid": "1.2.246.562.10.90920000001",
                     "names": {"fi": "Tikkurilan demokoulu", "sv": "Dickursby demoskola", "en": "Tikkurila"}}],
        "identity_providers": [{"id": "koulu", "type": "saml", "names": {"fi": "K", "sv": "S", "en": "S"},
                                "metadata": {"file": "vantaa-idp.xml"}, "mapping": {"preset": "mpassid-saml"}}]}))
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "broker.yaml", tmp_path / "config" / "broker.yaml")
    return {"PATH": "/usr/bin:/bin", "BROKER_TENANTS_DIR": str(tmp_path / "tenants"),
            "BROKER_METADATA_DIR": str(tmp_path / "metadata"), "BROKER_CONFIG_DIR": str(tmp_path / "config"),
            "BROKER_KEYS_DIR": str(tmp_path / "keys"), "BROKER_REGISTRY_DIR": str(tmp_path / "registry"),
            "BROKER_VAR_DIR": str(tmp_path / "var"), "BROKER_SECRET": "s" * 48}


def _check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", "check"], env=env, capture_output=True, text=True,
                          timeout=120, check=False, cwd=ROOT)


def test_broker_check_passes_with_the_shipped_texts_and_fails_on_a_missing_one(site):
    assert _check(site).returncode == 0, "no site.yaml in the folder: the shipped one"
    texts = yaml.safe_load((ROOT / "config" / "site.yaml").read_text())
    del texts["pages"]["accessibility"]["title"]["sv"]
    (Path(site["BROKER_CONFIG_DIR"]) / "site.yaml").write_text(yaml.safe_dump(texts, allow_unicode=True))
    result = _check(site)
    assert result.returncode == 1
    assert "pages.accessibility.title: expected a text in each of fi, sv, en" in result.stderr
