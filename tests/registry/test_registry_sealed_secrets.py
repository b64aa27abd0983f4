"""A client secret sealed by the console opens only in the city it was sealed for, under this
deployment's master secret: switched, tampered and foreign ones are refused with the field named."""

from __future__ import annotations

import pytest
from tenant_data import Site, oidc_idp, tenant

from broker.assemble import load_registry
from broker.registry.sealed_secrets import seal_secret
from broker.registry.tenants import TenantError
from broker.settings import Settings


@pytest.fixture
def site(tmp_path) -> Site:
    return Site(tmp_path)


def _load(site: Site, sealed: dict[str, str]):
    site.write_tenant(tenant("vantaa", oidc_idp(sealed)))
    return load_registry(Settings.from_env(site.env()))


def _master(site: Site) -> bytes:
    return Settings.from_env(site.env()).master_secret


def test_a_secret_sealed_for_the_city_opens(site):
    registry = _load(site, seal_secret(_master(site), "the-secret", tenant_id="vantaa"))
    assert registry.tenants.idps["vantaa/entra"].client_secret == "the-secret"


@pytest.mark.parametrize("forge", ["another city", "another deployment", "tampered", "garbage"])
def test_a_switched_or_forged_sealed_secret_is_refused(site, forge):
    master = _master(site)
    sealed = {
        "another city": seal_secret(master, "espoo-secret", tenant_id="espoo"),
        "another deployment": seal_secret(b"x" * 48, "the-secret", tenant_id="vantaa"),
        "tampered": {"encrypted": (lambda v: v[:-2] + ("A" if v[-2] != "A" else "B") + v[-1])(
            seal_secret(master, "the-secret", tenant_id="vantaa")["encrypted"])},
        "garbage": {"encrypted": "v1.not-base64!"},
    }[forge]
    with pytest.raises(TenantError) as refused:
        _load(site, sealed)
    assert any("vantaa.yaml: identity_providers[0].client_secret.encrypted: expected" in p
               for p in refused.value.problems), refused.value.problems
