"""Tenant files are untrusted (issue 8): a backtracking ``match:`` no longer holds a worker and
what cannot run in linear time fails ``broker check``; a city cannot claim another's domain."""

from __future__ import annotations

import time

import pytest
from tenant_data import Site, saml_idp, tenant

from broker.assemble import load_registry
from broker.registry.tenants import TenantError, load_tenants
from broker.settings import Settings

EVIL = r"^(?P<role>(\w+\s?)*)$"


@pytest.fixture
def site(tmp_path) -> Site:
    site = Site(tmp_path)
    site.write_metadata()
    return site


def _with_rule(rule: dict) -> dict:
    return saml_idp(mapping={"preset": "mpassid-saml", "roles": [{"from": "groups", **rule}]})


def test_the_catastrophic_pattern_passes_check_and_costs_nothing_at_login(site):
    site.write_tenant(tenant("vantaa", _with_rule({"match": EVIL})))
    assert site.cli("check").returncode == 0
    ruleset = load_registry(Settings.from_env(site.env())).rulesets["vantaa/koulu"]
    started = time.perf_counter()
    ruleset.apply({"groups": ["a" * 88 + "!"] * 100, "urn:oid:1.3.6.1.4.1.16161.1.1.27": ["x"]},
                  upstream_subject="u", salt=b"s" * 32)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("pattern,reason", [
    (r"^(?P<role>\w+)-\1$", "without backreferences"),
    (r"^(?=.*opettaja)(?P<role>\w+)$", "without lookahead or lookbehind"),
    ("a" * 1001, "at most 1000 characters"),
])
def test_broker_check_refuses_what_cannot_run_in_linear_time(site, pattern, reason):
    site.write_tenant(tenant("vantaa", _with_rule({"match": pattern})))
    result = site.cli("check")
    assert result.returncode == 1
    assert "vantaa.yaml: identity_providers[0].mapping: roles[" in result.stderr and reason in result.stderr


def test_a_city_cannot_claim_another_citys_domain(site):
    site.write_tenant(tenant("vantaa", saml_idp(), domains=["vantaa.fi"]))
    site.write_metadata("lahti-idp.xml", (site.metadata / "vantaa-idp.xml").read_text()
                        .replace("/vantaa/idp", "/lahti/idp"))
    site.write_tenant(tenant("lahti", saml_idp(file="lahti-idp.xml"), code="398", domains=["lahti.fi", "VANTAA.fi"]))
    with pytest.raises(TenantError) as error:
        load_tenants(site.tenants, metadata_dir=site.metadata, root=site.root, environ={})
    assert "tenants/lahti.yaml: domains: expected e-mail domains no other city claims ('vantaa.fi' is also in " \
           "tenants/vantaa.yaml)" in error.value.problems
    assert "tenants/vantaa.yaml: domains: expected e-mail domains no other city claims ('vantaa.fi' is also in " \
           "tenants/lahti.yaml)" in error.value.problems
