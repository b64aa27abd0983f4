"""``legacy_crypto`` on a SAML IdP: weak algorithms only by an explicit, validated, per-IdP
opt-in that ``broker check`` (and start-up, through :func:`crypto_warnings`) warns about."""

from __future__ import annotations

import pytest
from tenant_data import Site, oidc_idp, saml_idp, tenant

from broker.registry.tenants import LEGACY_CRYPTO, TenantError, crypto_warnings, load_tenants


@pytest.fixture
def site(tmp_path) -> Site:
    site = Site(tmp_path)
    site.write_metadata()
    return site


def _load(site: Site):
    return load_tenants(site.tenants, metadata_dir=site.metadata, root=site.root,
                        environ={"TENANT_SECRET_VANTAA_ENTRA": "s"})


def test_default_is_none(site):
    site.write_tenant(tenant("vantaa", saml_idp()))
    tenants = _load(site)
    assert tenants.idps["vantaa/koulu"].legacy_crypto == frozenset()
    assert crypto_warnings(tenants) == []


def test_the_opt_in_is_exposed_and_warned_about(site):
    site.write_tenant(tenant("vantaa", oidc_idp({"env": "TENANT_SECRET_VANTAA_ENTRA"}),
                             saml_idp(legacy_crypto=["cbc", "sha1"])))
    tenants = _load(site)
    assert tenants.idps["vantaa/koulu"].legacy_crypto == frozenset({"sha1", "cbc"})
    assert crypto_warnings(tenants) == [(
        "tenants/vantaa.yaml: identity_providers[1].legacy_crypto: vantaa/koulu accepts weak cryptography: "
        "SHA-1 digests and rsa-sha1/ecdsa-sha1 signatures (sha1); AES-CBC and 3DES-CBC data encryption (cbc). "
        "Ask the IdP to move to RSA-OAEP, AES-GCM and SHA-256, then remove legacy_crypto")]


def test_the_allowed_items_are_exactly_three():
    assert set(LEGACY_CRYPTO) == {"sha1", "rsa-1_5", "cbc"}


@pytest.mark.parametrize("value", [["md5"], "sha1", [["sha1"]], ["SHA1"], {"sha1": True}, [1]])
def test_anything_else_is_a_tenant_error(site, value):
    site.write_tenant(tenant("vantaa", saml_idp(legacy_crypto=value)))
    with pytest.raises(TenantError) as error:
        _load(site)
    assert "tenants/vantaa.yaml: identity_providers[0].legacy_crypto: expected a list of weak algorithms the IdP " \
           "still needs, among sha1, rsa-1_5, cbc (or no legacy_crypto at all)" in error.value.problems


def test_not_on_an_oidc_idp(site):
    site.write_tenant(tenant("vantaa", oidc_idp({"env": "TENANT_SECRET_VANTAA_ENTRA"}, legacy_crypto=["sha1"])))
    with pytest.raises(TenantError) as error:
        _load(site)
    assert any(p.startswith("tenants/vantaa.yaml: identity_providers[0].legacy_crypto: expected one of the known keys")
               for p in error.value.problems)


def test_broker_check_prints_a_warning_per_idp_and_still_passes(site):
    site.write_metadata("espoo-idp.xml", site.metadata.joinpath("vantaa-idp.xml").read_text()
                        .replace("/vantaa/idp", "/espoo/idp"))
    site.write_tenant(tenant("vantaa", saml_idp(legacy_crypto=["rsa-1_5"])))
    site.write_tenant(tenant("espoo", saml_idp(file="espoo-idp.xml", legacy_crypto=["sha1", "rsa-1_5", "cbc"]),
                             code="049"))
    result = site.cli("check")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert any("espoo.yaml: identity_providers[0].legacy_crypto: espoo/koulu accepts weak cryptography: SHA-1" in w
               and "RSA PKCS#1 v1.5 key transport (rsa-1_5)" in w and "(cbc)" in w for w in warnings), warnings
    assert any("vantaa.yaml: identity_providers[0].legacy_crypto: vantaa/koulu accepts weak cryptography: "
               "RSA PKCS#1 v1.5 key transport (rsa-1_5)." in w for w in warnings), warnings
    assert "ok: 2 tenants, 2 identity providers" in result.stdout
