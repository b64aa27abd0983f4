"""Tenant files are untrusted (issue 8): a client secret is read only from the secrets
directory, and only one of the city's own (file or ``TENANT_SECRET_<CITY>_…`` variable), so a
city admin cannot send another city's secret, or the broker's, to a token endpoint of theirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tenant_data import SECRET, Site, oidc_idp, tenant

from broker.assemble import load_registry
from broker.demo.stack import DemoStack, Ports
from broker.registry.environment import secret_file_owner, secret_variable_owner
from broker.registry.tenants import TenantError, load_tenants
from broker.settings import ROOT, Settings, SettingsError

ATTACKER = "https://evil.example/v2.0"   # the token endpoint the secret would be posted to


@pytest.fixture
def site(tmp_path) -> Site:
    site = Site(tmp_path)
    site.write_secret("entra-vantaa.secret", "vantaa-client-secret")
    site.write_tenant(tenant("vantaa", oidc_idp({"file": str(site.secrets / "entra-vantaa.secret")})))
    return site


def _load(site: Site, environ: dict[str, str] | None = None):
    return load_tenants(site.tenants, metadata_dir=site.metadata, root=site.root,
                        environ={"BROKER_SECRETS_DIR": str(site.secrets), **(environ or {})})


def _problems(site: Site, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(TenantError) as error:
        _load(site, environ)
    return error.value.problems


def test_a_city_reads_its_own_secret_file(site):
    assert _load(site).idps["vantaa/entra"].client_secret == "vantaa-client-secret"


def test_another_citys_secret_is_not_sent_to_the_attackers_token_endpoint(site):
    site.write_tenant(tenant("lahti", oidc_idp({"file": str(site.secrets / "entra-vantaa.secret")}, issuer=ATTACKER),
                             code="398"))
    problems = _problems(site)
    assert any(p.startswith("tenants/lahti.yaml: identity_providers[0].client_secret.file: expected a secret file "
                            "of this city: lahti/<NAME>, lahti, lahti-<NAME> or <NAME>-lahti in the secrets directory "
                            "(entra-vantaa.secret is not lahti's)") for p in problems), problems
    assert not any("vantaa-client-secret" in p for p in problems)


@pytest.mark.parametrize("target", ["master", "keys", "passwd"])
def test_no_file_outside_the_secrets_directory_absolute_or_relative(site, target):
    master = site.keys / "master.secret"
    master.write_text(SECRET)
    name = {"master": str(master), "keys": "keys/master.secret", "passwd": "/etc/passwd"}[target]
    site.write_tenant(tenant("lahti", oidc_idp({"file": name}, issuer=ATTACKER), code="398"))
    problems = _problems(site)
    assert any(p.startswith("tenants/lahti.yaml: identity_providers[0].client_secret.file: expected a file inside "
                            f"the secrets directory {site.secrets} ({name} is outside it;") for p in problems), problems
    assert not any(SECRET in p for p in problems)


@pytest.mark.parametrize("name", ["secrets/../keys/master.secret", "secrets/lahti/../../keys/master.secret"])
def test_dot_dot_is_refused(site, name):
    (site.keys / "master.secret").write_text(SECRET)
    site.write_tenant(tenant("lahti", oidc_idp({"file": name}, issuer=ATTACKER), code="398"))
    assert any("lahti.yaml: identity_providers[0].client_secret.file: expected a file inside the secrets directory"
               in p for p in _problems(site))


def test_a_symlink_out_of_the_secrets_directory_is_refused(site):
    master = site.keys / "master.secret"
    master.write_text(SECRET)
    (site.secrets / "lahti-entra").symlink_to(master)
    site.write_tenant(tenant("lahti", oidc_idp({"file": str(site.secrets / "lahti-entra")}, issuer=ATTACKER),
                             code="398"))
    problems = _problems(site)
    assert any("lahti.yaml: identity_providers[0].client_secret.file: expected a file inside the secrets directory"
               in p for p in problems), problems
    assert not any(SECRET in p for p in problems)


def test_symlinks_inside_the_directory_work_like_a_kubernetes_secret_volume(site):
    data = site.secrets / "..2026_12_01_10_00_00.000000001"
    data.mkdir()
    (data / "lahti-entra").write_text("lahti-secret")
    (site.secrets / "..data").symlink_to(data.name)
    (site.secrets / "lahti-entra").symlink_to("..data/lahti-entra")
    (site.secrets / "lahti").mkdir()
    (site.secrets / "lahti" / "google").write_text("lahti-google-secret")
    lahti = "https://login.example/lahti/v2.0"   # Lahti's own Entra tenant (vantaa's is the default issuer)
    site.write_tenant(tenant("lahti", oidc_idp({"file": str(site.secrets / "lahti-entra")}, issuer=lahti),
                             oidc_idp({"file": str(site.secrets / "lahti" / "google")}, issuer=lahti)
                             | {"id": "google"}, code="398"))
    loaded = _load(site)
    assert loaded.idps["lahti/entra"].client_secret == "lahti-secret"
    assert loaded.idps["lahti/google"].client_secret == "lahti-google-secret"


def test_relative_secret_paths_are_taken_from_the_broker_root(site):
    site.write_secret("vantaa/entra", "from-a-folder")
    site.write_tenant(tenant("vantaa", oidc_idp({"file": "secrets/vantaa/entra"})))
    assert _load(site).idps["vantaa/entra"].client_secret == "from-a-folder"


@pytest.mark.parametrize("variable,city,accepted", [
    ("TENANT_SECRET_LAHTI_ENTRA", "lahti", True),
    ("TENANT_SECRET_LAHTI", "lahti", True),
    ("TENANT_SECRET_VANTAA_ENTRA", "lahti", False),    # another city's
    ("BROKER_SECRET", "lahti", False),                 # the broker's
    ("HOME", "lahti", False),
    ("LAHTI_ENTRA_SECRET", "lahti", False),            # not a TENANT_SECRET_ name
    ("TENANT_SECRET_LAHTIX_ENTRA", "lahti", False),
])
def test_env_secrets_are_named_for_the_city(site, variable, city, accepted):
    environ = {variable: "the-value", "BROKER_SECRET": SECRET}
    site.write_tenant(tenant(city, oidc_idp({"env": variable}, issuer=ATTACKER), code="398"))
    if accepted:
        assert _load(site, environ).idps[f"{city}/entra"].client_secret == "the-value"
        return
    problems = _problems(site, environ)
    assert any(p.startswith(f"tenants/{city}.yaml: identity_providers[0].client_secret.env: expected a variable "
                            f"named for this city, TENANT_SECRET_{city.upper()}_<NAME> ({variable} is not one;")
               for p in problems), problems
    assert not any("the-value" in p or SECRET in p for p in problems)


def test_ownership_goes_to_the_longest_city_id():
    cities = ["ii", "ii-kunta", "kunta", "lahti", "vantaa"]
    assert secret_variable_owner("TENANT_SECRET_II_KUNTA_ENTRA", cities) == "ii-kunta"
    assert secret_variable_owner("TENANT_SECRET_II_ENTRA", cities) == "ii"
    assert secret_variable_owner("TENANT_SECRET_ESPOO", cities) is None
    assert secret_file_owner(Path("ii-kunta-entra"), cities) == "ii-kunta"
    assert secret_file_owner(Path("entra-ii-kunta.secret"), cities) == "ii-kunta"
    assert secret_file_owner(Path("ii-entra"), cities) == "ii"
    assert secret_file_owner(Path("lahti"), cities) == "lahti"
    assert secret_file_owner(Path("lahti/anything/deep"), cities) == "lahti"
    assert secret_file_owner(Path("vantaa/lahti-entra"), cities) == "vantaa"
    assert secret_file_owner(Path("shared-secret"), cities) is None
    assert secret_file_owner(Path("lahti-x-kunta"), ["lahti", "kunta"]) is None     # two cities claim it


def test_the_secrets_directory_setting_and_its_default(site, tmp_path):
    assert Settings.from_env(site.env()).secrets_dir == site.secrets
    demo = {k: v for k, v in site.env().items() if k != "BROKER_SECRETS_DIR"}
    assert Settings.from_env({**demo, "BROKER_DEMO_DIR": str(tmp_path / "demo")}).secrets_dir == \
        tmp_path / "demo" / "secrets"
    assert Settings.from_env(demo).secrets_dir == ROOT / "var" / "demo" / "secrets"
    config = tmp_path / "config"
    config.mkdir()
    (config / "broker.yaml").write_text(f"secrets_dir: {site.secrets / 'from-yaml'}\n")
    assert Settings.from_env({**demo, "BROKER_CONFIG_DIR": str(config)}).secrets_dir == site.secrets / "from-yaml"


@pytest.mark.parametrize("holds", ["keys", "registry", "secret_file"])
def test_a_secrets_directory_holding_the_brokers_own_secrets_is_refused(site, holds):
    env = site.env()
    if holds == "keys":
        env["BROKER_KEYS_DIR"] = str(site.secrets / "keys")
    elif holds == "registry":
        env["BROKER_SECRETS_DIR"] = str(site.root)
    else:
        (site.secrets / "broker").write_text(SECRET)
        env["BROKER_SECRET_FILE"] = str(site.secrets / "broker")
        del env["BROKER_SECRET"]
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)
    assert str(error.value).startswith("secrets_dir (BROKER_SECRETS_DIR): expected a folder for the cities' client "
                                       "secrets only")


def test_the_demo_works_with_the_default(tmp_path):
    """The shipped tenant files name ``${BROKER_DEMO_DIR:-var/demo}/secrets/entra-<city>.secret``."""
    stack = DemoStack(demo_dir=tmp_path / "demo", metadata_dir=tmp_path / "metadata", ports=Ports(), environ={})
    stack.prepare()
    registry = load_registry(stack.settings())
    secret = (tmp_path / "demo" / "secrets" / "entra-vantaa.secret").read_text().strip()
    assert registry.tenants.idps["vantaa/entra"].client_secret == secret


def test_a_secret_file_is_read_only_as_a_regular_file(site):
    os.mkfifo(site.secrets / "lahti-fifo")
    site.write_tenant(tenant("lahti", oidc_idp({"file": str(site.secrets / "lahti-fifo")}), code="398"))
    assert any("lahti.yaml: identity_providers[0].client_secret.file: expected a readable file" in p
               for p in _problems(site))
