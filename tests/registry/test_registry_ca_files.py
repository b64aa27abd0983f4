"""``ca_file``: a city's own CA for its IdP is read only inside the operator's CA folder, and only
the city's own file (decision 8: tenant files are untrusted), through the loader `broker check` uses.

The CA files are real (certificates of a private CA, tests/security/private_ca.py); every
refusal names the file and the field, and never shows a file's content.
"""

from __future__ import annotations

import datetime

import pytest
from tenant_data import SECRET, Site, oidc_idp, saml_idp, tenant

from broker.registry.expiry import expiry_report
from broker.registry.tenants import TenantError, load_tenants
from broker.settings import Settings, SettingsError
from tests.security.private_ca import PrivateCa

PIN = "ab" * 32


@pytest.fixture(scope="module")
def ca() -> PrivateCa:
    return PrivateCa.create("Vantaa IdP CA")


@pytest.fixture
def site(tmp_path, ca) -> Site:
    site = Site(tmp_path)
    (site.root / "ca").mkdir()
    ca.write(site.root / "ca" / "vantaa" / "idp-ca.pem")
    ca.write(site.root / "ca" / "lahti-ca.pem")
    site.write_secret("vantaa-entra", "vantaa-client-secret")
    site.write_secret("lahti-entra", "lahti-client-secret")
    return site


def _idp(ca_file, **extra):
    return oidc_idp({"file": "secrets/vantaa-entra"}, ca_file=ca_file, **extra)


def _load(site: Site, *, ca_dir: bool = True):
    environ = {"BROKER_SECRETS_DIR": str(site.secrets), **({"BROKER_CA_DIR": str(site.root / "ca")} if ca_dir else {})}
    return load_tenants(site.tenants, metadata_dir=site.metadata, root=site.root, environ=environ)


def _problems(site: Site, **kwargs) -> list[str]:
    with pytest.raises(TenantError) as error:
        _load(site, **kwargs)
    return error.value.problems


@pytest.mark.parametrize("name", ["vantaa/idp-ca.pem", "{ca}/vantaa/idp-ca.pem"])
def test_the_citys_own_ca_file_is_read_and_kept_as_checked(site, ca, name):
    site.write_tenant(tenant("vantaa", _idp(name.format(ca=site.root / "ca"))))
    ca_file = _load(site).idps["vantaa/entra"].ca_file
    assert ca_file is not None and ca_file.relative == "vantaa/idp-ca.pem"
    assert ca_file.pem == ca.pem.decode() and ca_file.path == (site.root / "ca" / "vantaa" / "idp-ca.pem").resolve()


def test_no_ca_file_without_the_operators_folder(site):
    site.write_tenant(tenant("vantaa", _idp("vantaa/idp-ca.pem")))
    assert "tenants/vantaa.yaml: identity_providers[0].ca_file: expected no ca_file: the operator has set no CA " \
           "directory (ca_dir / BROKER_CA_DIR), so a city cannot name one" in _problems(site, ca_dir=False)


@pytest.mark.parametrize("name", ["/etc/ssl/certs/ca-certificates.crt", "../keys/master.secret",
                                  "vantaa/../../keys/master.secret", "{secrets}/vantaa-entra"])
def test_nothing_outside_the_ca_folder(site, name):
    (site.keys / "master.secret").write_text(SECRET)
    name = name.format(secrets=site.secrets)
    site.write_tenant(tenant("vantaa", _idp(name)))
    problems = _problems(site)
    assert any(p.startswith(f"tenants/vantaa.yaml: identity_providers[0].ca_file: expected a file inside the CA "
                            f"directory {site.root / 'ca'} ({name} is outside it;") for p in problems), problems
    assert not any(SECRET in p or "vantaa-client-secret" in p for p in problems)


def test_a_symlink_out_of_the_ca_folder_is_refused(site):
    (site.keys / "master.secret").write_text(SECRET)
    (site.root / "ca" / "vantaa-link.pem").symlink_to(site.keys / "master.secret")
    site.write_tenant(tenant("vantaa", _idp("vantaa-link.pem")))
    assert any("identity_providers[0].ca_file: expected a file inside the CA directory" in p for p in _problems(site))


@pytest.mark.parametrize("name,shown", [("lahti-ca.pem", "lahti-ca.pem"), ("vantaa/idp-ca.pem", "vantaa/idp-ca.pem")])
def test_another_citys_ca_file_is_refused(site, name, shown):
    """Lahti names Vantaa's CA (or Vantaa names Lahti's): each city trusts its own CA only."""
    city = "vantaa" if name.startswith("lahti") else "lahti"
    idp = oidc_idp({"file": f"secrets/{city}-entra"}, issuer=f"https://login.{city}.example/v2.0", ca_file=name)
    site.write_tenant(tenant(city, idp, code="398" if city == "lahti" else "092"))
    assert f"tenants/{city}.yaml: identity_providers[0].ca_file: expected a CA file of this city: {city}/<NAME>, " \
           f"{city}, {city}-<NAME> or <NAME>-{city} in the CA directory ({shown} is not {city}'s)" in _problems(site)


@pytest.mark.parametrize("content,expected", [
    ("key", "certificates only, but block 2 is a private key"),
    ("text", "PEM certificates (-----BEGIN CERTIFICATE-----)"),
    ("binary", "a PEM file (ASCII text) of CA certificates"),
    ("garbage", "PEM certificates that parse as X.509"),
    ("huge", "a CA file of at most 256 KiB"),
])
def test_only_certificates(site, ca, content, expected):
    from cryptography.hazmat.primitives import serialization

    key = ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    data = {"key": ca.pem + key, "text": b"not a certificate\n", "binary": b"\x30\x82\xff\xfe",
            "garbage": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "huge": ca.pem * 1000}[content]
    (site.root / "ca" / "vantaa-bad.pem").write_bytes(data)
    site.write_tenant(tenant("vantaa", _idp("vantaa-bad.pem")))
    problems = _problems(site)
    assert f"tenants/vantaa.yaml: identity_providers[0].ca_file: expected {expected}" + \
           ("" if content == "huge" else " (vantaa-bad.pem)") in problems, problems
    assert not any("PRIVATE KEY" in p for p in problems)


def test_a_ca_file_is_for_an_https_issuer(site):
    site.write_tenant(tenant("vantaa", _idp("vantaa/idp-ca.pem", issuer="http://localhost:8102/v2.0")))
    assert "tenants/vantaa.yaml: identity_providers[0].ca_file: expected an https issuer (a CA file is for TLS; " \
           "the issuer is http)" in _problems(site)


def test_metadata_by_url_takes_a_ca_file_by_the_same_rules(site):
    site.write_tenant(tenant("vantaa", saml_idp(entity_id="https://idp.vantaa.example/idp", metadata={
        "url": "https://idp.vantaa.example/metadata", "signing_cert_sha256": PIN, "ca_file": "vantaa/idp-ca.pem"})))
    assert _load(site).idps["vantaa/koulu"].metadata.ca_file.relative == "vantaa/idp-ca.pem"
    site.write_tenant(tenant("vantaa", saml_idp(entity_id="https://idp.vantaa.example/idp", metadata={
        "url": "https://idp.vantaa.example/metadata", "signing_cert_sha256": PIN, "ca_file": "lahti-ca.pem"})))
    assert any(p.startswith("tenants/vantaa.yaml: identity_providers[0].metadata.ca_file: expected a CA file of "
                            "this city") for p in _problems(site))


def test_a_misspelt_metadata_key_is_refused_not_ignored(site):
    site.write_tenant(tenant("vantaa", saml_idp(entity_id="https://idp.vantaa.example/idp", metadata={
        "url": "https://idp.vantaa.example/metadata", "signing_cert_sha256": PIN, "cafile": "vantaa/idp-ca.pem"})))
    assert "tenants/vantaa.yaml: identity_providers[0].metadata.cafile: expected one of the keys of metadata.url " \
           "(ca_file, signing_cert_sha256, url)" in _problems(site)


def test_the_ca_certificates_are_in_the_expiry_report(site):
    short = PrivateCa.create("Short-lived CA", days=5)
    short.write(site.root / "ca" / "vantaa" / "short.pem")
    site.write_tenant(tenant("vantaa", _idp("vantaa/short.pem")))
    (item,) = [i for i in expiry_report(_load(site)) if i.what == "TLS CA certificate"]
    assert item.idp == "vantaa/entra" and item.level == "critical"
    assert item.subject == "'Short-lived CA' (ca_file vantaa/short.pem)"
    assert item.not_after <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5)


@pytest.mark.parametrize("inside", ["keys", "registry", "secrets"])
def test_the_ca_folder_holds_no_secret_of_the_broker(site, inside):
    env = site.env(BROKER_CA_DIR=str(site.root))           # the parent of keys/, registry/ and secrets/
    env["BROKER_" + {"keys": "KEYS", "registry": "REGISTRY", "secrets": "SECRETS"}[inside] + "_DIR"] = \
        str(site.root / inside)
    with pytest.raises(SettingsError, match=r"ca_dir \(BROKER_CA_DIR\): expected a folder for the cities' CA "
                                            r"certificates only"):
        Settings.from_env(env)


def test_broker_check_names_the_field(site):
    site.write_tenant(tenant("lahti", oidc_idp({"file": "secrets/lahti-entra"}, ca_file="vantaa/idp-ca.pem"),
                             code="398"))
    result = site.cli("check", BROKER_CA_DIR=str(site.root / "ca"))
    assert result.returncode == 1
    assert "tenants/lahti.yaml: identity_providers[0].ca_file: expected a CA file of this city" in result.stderr
    assert "BEGIN CERTIFICATE" not in result.stderr
