"""One list of names per release profile serves SAML and OIDC (broker.mapping.profiles).

For an identity with everything, a policy allowing every scope releases exactly the profile's names
to SAML SPs and its claims to OIDC clients; each name comes with its own scope only; the FriendlyNames
are MPASSid's (data model v1.4, none where MPASSid sends none); the attribute map shipped for pysaml2
peers knows every name, so none is dropped at the service.
"""

from __future__ import annotations

import importlib.util

import pytest
from mapping_data import SALT, VANTAA

from broker.mapping import (
    CLAIMS_BY_SCOPE,
    PROFILES,
    SAML_FRIENDLY_NAMES,
    SCOPES,
    Ruleset,
    release_claims,
    release_saml_attributes,
)
from broker.registry.relying_parties import ReleasePolicy
from broker.settings import ROOT

UPSTREAM = {
    "urn:mpass.id:uid": ["MPASSOID.c6329e82913e265b3a79c11a043fdab8b06b1a9e"],
    "urn:oid:2.5.4.42": ["Matti"], "urn:oid:2.5.4.4": ["Mäkinen"], "urn:mpass.id:nickname": ["Matti"],
    "urn:oid:1.3.6.1.4.1.16161.1.1.27": ["1.2.246.562.24.10000000016"],
    "urn:mpass.id:role": ["1.2.246.562.10.67019405611;03083;9A;Oppilas;1;1.2.246.562.10.41253773158;"],
    "urn:mpass.id:classLevel": ["9"],
    "urn:mpass.id:learningMaterialsCharge": ["1;03083"],
}
SUBJECT = "MPASSOID.0123456789abcdef0123456789abcdef01234567"

#: MPASSid data model v1.4 (docs: ../shared/mpassid-data-model.md): Name -> FriendlyName (None: not sent).
MPASSID_FRIENDLY = {
    "urn:oid:2.5.4.42": "givenName", "urn:oid:2.5.4.4": "sn", "urn:mpass.id:nickname": "nickname",
    "urn:mpass.id:uid": "mpassUsername", "urn:oid:1.3.6.1.4.1.16161.1.1.27": "learnerId",
    "urn:mpass.id:schoolInfo": "mpassSchoolInfo", "urn:mpass.id:classLevel": "mpassClassLevel",
    "urn:mpass.id:learningMaterialsCharge": None, "urn:mpass.id:role": "mpassRole",
    "urn:mpass.id:role_v1.1": None, "urn:mpass.id:educationProviderInfo": "mpassEducationProviderInfo",
    "urn:mpass.id:originalIssuer": "originalIssuer",
}


@pytest.fixture(scope="module")
def identity():
    result = Ruleset.from_config({"preset": "mpassid-saml"}, tenant=VANTAA, idp_id="wilma").apply(
        UPSTREAM, upstream_subject=None, salt=SALT)
    assert not result.refused and result.identity["learning_materials_charges"]
    return result.identity


def _policy(profile: str, scopes=tuple(SCOPES)) -> ReleasePolicy:
    return ReleasePolicy(scopes=scopes, profile=profile, sector="s.example")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_name_of_the_profile_reaches_saml_sps(identity, profile):
    released = release_saml_attributes(identity, policy=_policy(profile), subject=SUBJECT)
    assert set(released) == {a.name for a in PROFILES[profile]}
    for attribute in PROFILES[profile]:
        assert released[attribute.name], attribute.name
        assert len(released[attribute.name]) == 1 or not attribute.single, attribute.name


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_same_names_reach_oidc_clients(identity, profile):
    claims = release_claims(identity, policy=_policy(profile), granted_scopes=None, subject=SUBJECT)
    expected = {a.claim for a in PROFILES[profile]} - {"sub"}   # the caller adds sub
    if profile == "mpassid":   # MPASSid's names, exactly, both ways
        assert set(claims) == expected
        for attribute in PROFILES[profile]:
            assert isinstance(claims[attribute.claim], str if attribute.single else list), attribute.claim
    else:   # the digione JSON claims carry each SAML attribute's content (and may carry more detail)
        assert expected <= set(claims)


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("scope", list(SCOPES))
def test_each_name_comes_with_its_own_scope_only(identity, profile, scope):
    released = release_saml_attributes(identity, policy=_policy(profile, (scope,)), subject=SUBJECT)
    assert set(released) == {a.name for a in PROFILES[profile] if a.scope == scope}
    claims = release_claims(identity, policy=_policy(profile, (scope,)), granted_scopes=None, subject=SUBJECT)
    assert set(claims) >= {a.claim for a in PROFILES[profile] if a.scope == scope} - {"sub"}
    if profile == "mpassid":
        assert set(claims) == {a.claim for a in PROFILES[profile] if a.scope == scope} - {"sub"}
    # A refresh narrowing the scope keeps exactly these claims (RFC 6749 §6): the two tables agree.
    assert set(claims) <= set(CLAIMS_BY_SCOPE[scope])


def test_friendly_names_are_mpassids():
    assert {a.name: a.friendly_name for a in PROFILES["mpassid"]} == MPASSID_FRIENDLY
    assert {n: SAML_FRIENDLY_NAMES.get(n) for n in MPASSID_FRIENDLY} == MPASSID_FRIENDLY


def test_the_shipped_attribute_map_knows_every_name_once():
    spec = importlib.util.spec_from_file_location("mpassid_map", ROOT / "attribute_maps" / "mpassid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = {a.name for profile in PROFILES.values() for a in profile}
    assert set(module.MAP["fro"]) == names
    assert len(set(module.MAP["fro"].values())) == len(names), "two names share a local name"
    assert {module.MAP["to"][local] for local in module.MAP["fro"].values()} == names
    assert module.MAP["fro"]["urn:mpass.id:learningMaterialsCharge"] == "mpassLearningMaterialsCharge"
