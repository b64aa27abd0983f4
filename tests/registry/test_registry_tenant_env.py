"""Tenant files are untrusted (issue 8): ``${VAR}`` expands only allow-listed variables, and
``BROKER_*`` settings and secrets never, whatever the operator configures."""

from __future__ import annotations

import pytest
from tenant_data import SECRET, Site, oidc_idp, saml_idp, tenant

from broker.assemble import load_registry
from broker.registry.environment import DEMO_VARIABLES, TenantEnvironment
from broker.registry.tenants import TenantError, load_tenants
from broker.settings import Settings, SettingsError


@pytest.fixture
def site(tmp_path) -> Site:
    site = Site(tmp_path)
    site.write_metadata()
    return site


def _load(site: Site, environ: dict[str, str], **kwargs):
    return load_tenants(site.tenants, metadata_dir=site.metadata, root=site.root, environ=environ, **kwargs)


def _problems(site: Site, environ: dict[str, str], **kwargs) -> list[str]:
    with pytest.raises(TenantError) as error:
        _load(site, environ, **kwargs)
    return error.value.problems


def test_the_master_secret_cannot_be_put_on_the_discovery_page(site):
    """The attack: a city admin names the master secret as the city's name; /disco would show it."""
    site.write_tenant(tenant("lahti", saml_idp(), names={"fi": "${BROKER_SECRET}", "sv": "Lahtis", "en": "Lahti"}))
    settings = Settings.from_env(site.env())
    with pytest.raises(TenantError) as error:
        load_registry(settings)
    problems = error.value.problems
    assert any(p.endswith("tenants/lahti.yaml: names.fi: expected no ${BROKER_SECRET}: BROKER_* settings and "
                          "TENANT_SECRET_* secrets are never expanded in tenant files") for p in problems), problems
    assert not any(SECRET in p for p in problems)


@pytest.mark.parametrize("reference", ["${BROKER_SECRET}", "${BROKER_SECRET:-fallback}", "x${BROKER_SECRET_FILE}x",
                                       "${BROKER_REDIS_URL}", "${TENANT_SECRET_LAHTI_ENTRA}"])
def test_broker_settings_and_secrets_are_never_expanded(site, reference):
    site.write_tenant(tenant("lahti", saml_idp(), names={"fi": reference, "sv": "Lahtis", "en": "Lahti"}))
    environ = {"BROKER_SECRET": SECRET, "BROKER_SECRET_FILE": "/run/secrets/broker",
               "BROKER_REDIS_URL": "redis://:password@redis", "TENANT_SECRET_LAHTI_ENTRA": "s3cret"}
    problems = _problems(site, environ)
    variable = reference.split("${")[1].split("}")[0].split(":-")[0]
    assert any("lahti.yaml: names.fi: expected no ${" + variable + "}" in p for p in problems), problems
    assert not any(value in p for p in problems for value in environ.values())


def test_a_variable_not_on_the_list_is_an_error_naming_file_field_and_variable(site):
    site.write_tenant(tenant("lahti", saml_idp(), domains=["${HOME}"]))
    problems = _problems(site, {"HOME": "/root"})
    assert "tenants/lahti.yaml: domains[0]: expected only allow-listed environment variables (${HOME} is not on " \
           "the list: BROKER_DEMO_DIR, DEMO_ENTRA_URL; the operator adds names with tenant_env / BROKER_TENANT_ENV)" \
           in problems, problems
    assert not any("/root" in p for p in problems)


def test_the_demo_variables_are_allowed_by_default(site):
    site.write_tenant(tenant("lahti", oidc_idp({"env": "TENANT_SECRET_LAHTI_ENTRA"},
                                               issuer="${DEMO_ENTRA_URL:-http://localhost:8102}/lahti/v2.0")))
    loaded = _load(site, {"DEMO_ENTRA_URL": "http://localhost:9999", "TENANT_SECRET_LAHTI_ENTRA": "s"})
    assert loaded.idps["lahti/entra"].issuer == "http://localhost:9999/lahti/v2.0"
    assert DEMO_VARIABLES == {"DEMO_ENTRA_URL", "BROKER_DEMO_DIR"}


def test_the_operator_adds_variables_with_broker_tenant_env(site):
    site.write_tenant(tenant("lahti", oidc_idp({"env": "TENANT_SECRET_LAHTI_ENTRA"},
                                               issuer="${LAHTI_ENTRA_URL}/v2.0")))
    environ = {"LAHTI_ENTRA_URL": "https://login.microsoftonline.com/abc", "TENANT_SECRET_LAHTI_ENTRA": "s"}
    assert any("${LAHTI_ENTRA_URL} is not on the list" in p for p in _problems(site, environ))
    loaded = _load(site, {**environ, "BROKER_TENANT_ENV": "OTHER, LAHTI_ENTRA_URL"})
    assert loaded.idps["lahti/entra"].issuer == "https://login.microsoftonline.com/abc/v2.0"
    settings = Settings.from_env(site.env(**environ, BROKER_TENANT_ENV="LAHTI_ENTRA_URL"))
    assert "LAHTI_ENTRA_URL" in settings.tenant_env
    assert load_registry(settings).tenants.idps["lahti/entra"].issuer.startswith("https://login.microsoftonline")


def test_the_operator_adds_variables_in_broker_yaml(site, tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "broker.yaml").write_text("tenant_env: [LAHTI_ENTRA_URL]\n")
    site.write_tenant(tenant("lahti", oidc_idp({"env": "TENANT_SECRET_LAHTI_ENTRA"},
                                               issuer="${LAHTI_ENTRA_URL}/v2.0")))
    settings = Settings.from_env(site.env(BROKER_CONFIG_DIR=str(config), LAHTI_ENTRA_URL="https://idp.lahti.example",
                                          TENANT_SECRET_LAHTI_ENTRA="s"))
    assert settings.tenant_env == DEMO_VARIABLES | {"LAHTI_ENTRA_URL"}
    assert load_registry(settings).tenants.idps["lahti/entra"].issuer == "https://idp.lahti.example/v2.0"


@pytest.mark.parametrize("names_,message", [
    ("BROKER_SECRET", "BROKER_SECRET: BROKER_* variables are the broker's own settings and secrets"),
    ("DEMO_ENTRA_URL,BROKER_REDIS_URL", "BROKER_REDIS_URL: BROKER_* variables"),
    ("TENANT_SECRET_VANTAA_ENTRA", "TENANT_SECRET_* variables are client secrets"),
    ("not-a-name", "'not-a-name' is not an environment variable name"),
])
def test_refused_allow_list_entries_are_a_settings_error(site, tmp_path, names_, message):
    with pytest.raises(SettingsError) as error:
        Settings.from_env(site.env(BROKER_TENANT_ENV=names_))
    assert str(error.value).startswith("tenant_env (BROKER_TENANT_ENV): ") and message in str(error.value)
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "broker.yaml").write_text(f"tenant_env: [{names_}]\n")
    with pytest.raises(SettingsError):
        Settings.from_env(site.env(BROKER_CONFIG_DIR=str(config)))


def test_broker_check_refuses_the_misconfiguration_clearly(site):
    site.write_tenant(tenant("lahti", saml_idp()))
    result = site.cli("check", BROKER_TENANT_ENV="BROKER_SECRET")
    assert result.returncode == 2
    assert "error: tenant_env (BROKER_TENANT_ENV): BROKER_SECRET: BROKER_* variables" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_programmatic_allow_lists_cannot_open_broker_variables_either(site):
    site.write_tenant(tenant("lahti", saml_idp(), names={"fi": "${BROKER_SECRET}", "sv": "x", "en": "x"}))
    with pytest.raises(TenantError) as error:
        _load(site, {"BROKER_SECRET": SECRET}, allowed_env=["BROKER_SECRET"])
    assert "BROKER_SECRET" in str(error.value) and SECRET not in str(error.value)


def test_settings_environ_holds_only_what_tenant_files_may_read(site):
    settings = Settings.from_env(site.env(HOME="/root", DEMO_ENTRA_URL="http://x", TENANT_SECRET_LAHTI_A="s"))
    assert isinstance(settings.environ, TenantEnvironment)
    assert dict(settings.environ) == {"DEMO_ENTRA_URL": "http://x", "TENANT_SECRET_LAHTI_A": "s"}
    assert "BROKER_SECRET" not in settings.environ and SECRET not in repr(settings.environ)


def test_expansion_is_one_pass(site):
    """A value that itself looks like ``${…}`` is not expanded again."""
    site.write_tenant(tenant("lahti", saml_idp(), names={"fi": "${DEMO_ENTRA_URL}", "sv": "x", "en": "x"}))
    loaded = _load(site, {"DEMO_ENTRA_URL": "${BROKER_SECRET}", "BROKER_SECRET": SECRET})
    assert loaded.by_id["lahti"].names["fi"] == "${BROKER_SECRET}"
