"""The versioned registry on SQLite and on PostgreSQL: staging, atomic activation, conflicts, rollback, diffs."""

from __future__ import annotations

import threading

import pytest

from broker.registry.database import open_database
from broker.registry.versions import Conflict, Invalid, RegistryVersions, VersionError

A = ("tenant", "alpha")
B = ("tenant", "beta")
C = ("client", "rp")


@pytest.fixture
def versions(database_url):
    engine = open_database(database_url)
    yield RegistryVersions(engine)
    engine.dispose()


def _activate(versions, changes, **kwargs):
    return versions.activate(versions.stage(changes, by="test", **kwargs).id, by="test")


def test_an_empty_registry_has_no_active_version(versions):
    assert versions.head() == (0, None)
    assert versions.state().documents == {}


def test_activation_makes_the_change_the_active_state_and_records_who_when_why(versions):
    staged = versions.stage({A: {"n": 1}, C: {"c": 1}}, by="anna@vantaa", comment="first")
    assert staged.status == "staged" and versions.head() == (0, None), "staging changes nothing served"
    active = versions.activate(staged.id, by="ops")
    assert active.status == "activated" and active.activated_seq == 1 and active.activated_by == "ops"
    assert active.created_by == "anna@vantaa" and active.comment == "first"
    assert {t[:2]: t[2] for t in active.touches} == {A: "added", C: "added"}
    assert versions.head() == (1, active.id)
    assert versions.state().documents == {A: {"n": 1}, C: {"c": 1}}


def test_migrating_twice_is_harmless(database_url):
    open_database(database_url).dispose()
    engine = open_database(database_url)
    assert RegistryVersions(engine).head() == (0, None)
    engine.dispose()


def test_a_version_that_changes_nothing_is_refused(versions):
    _activate(versions, {A: {"n": 1}})
    with pytest.raises(VersionError, match="nothing to change"):
        versions.stage({A: {"n": 1}}, by="test")


def test_staged_versions_are_overlays_one_citys_change_does_not_ride_along(versions):
    _activate(versions, {A: {"n": 1}, B: {"n": 1}})
    alpha = versions.stage({A: {"n": 2}}, by="alpha-admin")
    beta = versions.stage({B: {"n": 2}}, by="beta-admin")
    versions.activate(beta.id, by="beta-admin")
    assert versions.state().documents == {A: {"n": 1}, B: {"n": 2}}, "alpha's staged change is not active"
    assert versions.documents(alpha.id) == {A: {"n": 2}, B: {"n": 2}}, "a staged version overlays today's state"
    versions.activate(alpha.id, by="alpha-admin")
    assert versions.state().documents == {A: {"n": 2}, B: {"n": 2}}


def test_a_version_staged_on_an_object_changed_since_is_a_conflict_and_changes_nothing(versions):
    _activate(versions, {A: {"n": 1}})
    first, second = versions.stage({A: {"n": 2}}, by="x"), versions.stage({A: {"n": 3}}, by="y")
    versions.activate(first.id, by="x")
    head = versions.head()
    with pytest.raises(Conflict, match="tenant:alpha"):
        versions.activate(second.id, by="y")
    assert versions.head() == head and versions.state().documents == {A: {"n": 2}}
    assert versions.version(second.id).status == "staged"


def test_a_version_that_fails_validation_is_not_activated(versions):
    _activate(versions, {A: {"n": 1}})
    bad = versions.stage({A: {"n": -1}}, by="x")

    def validate(documents):
        if documents[A]["n"] < 0:
            raise Invalid(["tenants/alpha.yaml: n: expected a positive number"])
        return {"ok": True}

    with pytest.raises(Invalid) as refused:
        versions.activate(bad.id, by="x", validate=validate)
    assert refused.value.problems == ["tenants/alpha.yaml: n: expected a positive number"]
    assert versions.state().documents == {A: {"n": 1}} and versions.head()[0] == 1
    good = versions.activate(versions.stage({A: {"n": 5}}, by="x").id, by="x", validate=validate)
    assert good.report == {"ok": True}


def test_rollback_restores_the_previous_state_as_a_new_version_and_can_itself_be_rolled_back(versions):
    v1 = _activate(versions, {A: {"n": 1}, C: {"c": 1}})
    v2 = _activate(versions, {A: {"n": 2}, C: None, B: {"n": 1}})
    back = versions.rollback(by="ops", comment="bad change")
    assert back.id > v2.id and back.restores == v1.id and back.status == "activated"
    assert versions.state().documents == {A: {"n": 1}, C: {"c": 1}}
    versions.rollback(by="ops")
    assert versions.state().documents == {A: {"n": 2}, B: {"n": 1}}
    versions.activate(v1.id, by="ops")   # activating an earlier version again restores it
    assert versions.state().documents == {A: {"n": 1}, C: {"c": 1}}
    assert versions.documents(v2.id) == {A: {"n": 2}, B: {"n": 1}}, "every activated state can be read back"


def test_diff_between_two_versions_names_each_object_and_its_contents(versions):
    v1 = _activate(versions, {A: {"n": 1}, C: {"c": 1}})
    v2 = _activate(versions, {A: {"n": 2}, C: None})
    diff = {(c.kind, c.key): (c.before, c.after, c.action) for c in versions.diff(v1.id, v2.id)}
    assert diff == {A: ({"n": 1}, {"n": 2}, "changed"), C: ({"c": 1}, None, "removed")}
    assert versions.diff(v2.id, v2.id) == []
    assert [(c.kind, c.key, c.before, c.after) for c in versions.changes(v2.id)] == [
        ("client", "rp", {"c": 1}, None), ("tenant", "alpha", {"n": 1}, {"n": 2})]


def test_discarded_and_unknown_versions_cannot_be_activated(versions):
    staged = versions.stage({A: {"n": 1}}, by="x")
    versions.discard(staged.id, by="x")
    with pytest.raises(VersionError, match="discarded"):
        versions.activate(staged.id, by="x")
    with pytest.raises(VersionError, match="no version 999"):
        versions.activate(999, by="x")
    with pytest.raises(VersionError):
        versions.discard(staged.id, by="x")


def test_malformed_changes_are_refused_before_anything_is_written(versions):
    for bad in ({("widget", "x"): {}}, {("tenant", ""): {}}, {("tenant", "x" * 201): {}},
                {A: {"blob": "x" * (2 * 1024 * 1024 + 1)}}):
        with pytest.raises(VersionError):
            versions.stage(bad, by="x")
    assert versions.versions() == []


def test_two_activations_racing_never_interleave(versions):
    _activate(versions, {A: {"n": 0}})
    staged = [versions.stage({("tenant", f"t{i}"): {"n": i}}, by=f"admin{i}") for i in range(6)]
    errors: list[Exception] = []

    def activate(version_id):
        try:
            versions.activate(version_id, by="x")
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            errors.append(exc)

    threads = [threading.Thread(target=activate, args=(v.id,)) for v in staged]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = sorted(versions.version(v.id).activated_seq for v in staged)
    assert seqs == list(range(2, 8)), "every activation got its own sequence number"
    assert len(versions.state().documents) == 7 and versions.head()[0] == 7


def test_two_cities_may_not_register_the_same_oidc_client_at_the_same_issuer(tmp_path):
    """Validation across tenants (entityIDs already are): one issuer + client id belongs to one IdP."""
    import tenant_data

    from broker.assemble import load_registry
    from broker.registry.tenants import TenantError
    from broker.settings import Settings

    site = tenant_data.Site(tmp_path)
    espoo, vantaa = site.write_secret("espoo-entra", "s1"), site.write_secret("vantaa-entra", "s2")
    site.write_tenant(tenant_data.tenant("espoo", tenant_data.oidc_idp({"file": str(espoo)}), code="049"))
    site.write_tenant(tenant_data.tenant("vantaa", tenant_data.oidc_idp({"file": str(vantaa)})))
    with pytest.raises(TenantError) as refused:
        load_registry(Settings.from_env(site.env()))
    assert any("identity_providers[entra].client_id: expected a client id not used by another IdP" in p
               for p in refused.value.problems)
    site.write_tenant(tenant_data.tenant("vantaa", tenant_data.oidc_idp({"file": str(vantaa)},
                                                                        client_id="another")))
    load_registry(Settings.from_env(site.env()))
