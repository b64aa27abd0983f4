"""``login_hint_domains`` on an IdP: the domains whose ``login_hint=user@<domain>`` picks that IdP.

Validated by the loader `broker check` uses: e-mail domains only, each claimed by one city
(its ``domains`` or an IdP's ``login_hint_domains``) and within it by one IdP, so a city cannot
draw another city's people to its own IdP.  The login path reads one dictionary.
"""

from __future__ import annotations

import pytest
from tenant_data import Site, oidc_idp, saml_idp, tenant

from broker.registry.tenants import TenantError, load_tenants


@pytest.fixture
def site(tmp_path) -> Site:
    site = Site(tmp_path)
    site.write_metadata()
    site.write_metadata("lahti-idp.xml", (site.metadata / "vantaa-idp.xml").read_text()
                        .replace("/vantaa/idp", "/lahti/idp"))
    return site


def _entra(*domains: str, city: str = "vantaa") -> dict:
    return oidc_idp({"env": f"TENANT_SECRET_{city.upper()}_ENTRA"}, issuer=f"https://login.{city}.example/v2.0",
                    login_hint_domains=list(domains))


def _load(site: Site):
    return load_tenants(site.tenants, metadata_dir=site.metadata, root=site.root,
                        environ={"TENANT_SECRET_VANTAA_ENTRA": "v", "TENANT_SECRET_LAHTI_ENTRA": "l"})


def _problems(site: Site) -> list[str]:
    with pytest.raises(TenantError) as error:
        _load(site)
    return error.value.problems


def test_each_idp_gets_its_domains_and_the_city_the_rest(site):
    site.write_tenant(tenant("vantaa", saml_idp(login_hint_domains=["staff.vantaa.example"]),
                             _entra("EDU.Vantaa.example"), domains=["vantaa.example"]))
    tenants = _load(site)
    assert tenants.idps["vantaa/entra"].login_hint_domains == ("edu.vantaa.example",)
    city, idp = tenants.for_login_hint_domain("Edu.Vantaa.Example")
    assert city.id == "vantaa" and idp.key == "vantaa/entra"
    assert tenants.for_login_hint_domain("staff.vantaa.example")[1].key == "vantaa/koulu"
    city, idp = tenants.for_login_hint_domain("vantaa.example")
    assert city.id == "vantaa" and idp is None, "two IdPs: the city page asks which"
    assert tenants.for_login_hint_domain("elsewhere.example") == (None, None)


def test_a_citys_only_idp_is_picked_by_its_domains(site):
    site.write_tenant(tenant("vantaa", saml_idp(), domains=["vantaa.example"]))
    assert _load(site).for_login_hint_domain("vantaa.example")[1].key == "vantaa/koulu"


@pytest.mark.parametrize("value", ["pupil@edu.vantaa.example", "https://edu.vantaa.example", "edu vantaa", "", "fi"])
def test_only_domains(site, value):
    site.write_tenant(tenant("vantaa", _entra(value)))
    assert any(p.startswith("tenants/vantaa.yaml: identity_providers[0].login_hint_domains[0]: expected an e-mail "
                            "domain such as edu.vantaa.fi") for p in _problems(site))


def test_not_a_list(site):
    site.write_tenant(tenant("vantaa", {**_entra(), "login_hint_domains": "edu.vantaa.example"}))
    assert "tenants/vantaa.yaml: identity_providers[0].login_hint_domains: expected a list of e-mail domains (e.g. " \
           "[edu.vantaa.fi])" in _problems(site)


@pytest.mark.parametrize("where", ["domains", "idp"])
def test_a_city_cannot_claim_another_citys_domain_for_its_idp(site, where):
    """Lahti claims vantaa.example for its IdP: Vantaa's people would be sent to Lahti's IdP."""
    if where == "domains":
        site.write_tenant(tenant("vantaa", saml_idp(), domains=["vantaa.example"]))
    else:
        site.write_tenant(tenant("vantaa", _entra("vantaa.example")))
    site.write_tenant(tenant("lahti", saml_idp(file="lahti-idp.xml"), _entra("vantaa.example", city="lahti"),
                             code="398"))
    problems = _problems(site)
    assert "tenants/lahti.yaml: identity_providers[1].login_hint_domains: expected e-mail domains no other city " \
           "claims ('vantaa.example' is also in tenants/vantaa.yaml)" in problems, problems
    field = "domains" if where == "domains" else "identity_providers[0].login_hint_domains"
    assert f"tenants/vantaa.yaml: {field}: expected e-mail domains no other city claims ('vantaa.example' is also " \
           "in tenants/lahti.yaml)" in problems, problems


def test_two_idps_of_a_city_cannot_share_a_domain(site):
    site.write_tenant(tenant("vantaa", saml_idp(login_hint_domains=["edu.vantaa.example"]),
                             _entra("edu.vantaa.example")))
    problems = _problems(site)
    assert "tenants/vantaa.yaml: identity_providers[0].login_hint_domains: expected a domain no other IdP of the " \
           "city claims ('edu.vantaa.example' is also claimed by vantaa/entra)" in problems, problems


def test_a_domain_twice_in_one_list(site):
    site.write_tenant(tenant("vantaa", _entra("edu.vantaa.example", "EDU.vantaa.example")))
    assert "tenants/vantaa.yaml: identity_providers[0].login_hint_domains[1]: expected each domain once " \
           "('edu.vantaa.example' repeats)" in _problems(site)
