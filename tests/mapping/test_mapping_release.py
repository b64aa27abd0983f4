"""Identifiers and release policy: pairwise subjects, scopes, sensitive data."""

from __future__ import annotations

import re

import pytest
from mapping_data import SALT, VANTAA

from broker.mapping import (
    DEFAULT_SCOPES,
    SCOPES,
    Ruleset,
    access_token_claims,
    release_claims,
    release_saml_attributes,
    released_scopes,
    stable_user_id,
    subject_for,
)
from broker.registry.relying_parties import ReleasePolicy

UPSTREAM = {
    "urn:mpass.id:uid": ["MPASSOID.c6329e82913e265b3a79c11a043fdab8b06b1a9e"],
    "urn:oid:2.5.4.42": ["Matti"], "urn:oid:2.5.4.4": ["Mäkinen"],
    "urn:oid:1.3.6.1.4.1.16161.1.1.27": ["1.2.246.562.24.10000000016"],
    "urn:mpass.id:role": ["1.2.246.562.10.67019405611;03083;9A;Oppilas;1;1.2.246.562.10.41253773158;"],
    "urn:mpass.id:classLevel": ["9"],
}


@pytest.fixture(scope="module")
def identity():
    return Ruleset.from_config({"preset": "mpassid-saml"}, tenant=VANTAA, idp_id="wilma").apply(
        UPSTREAM, upstream_subject=None, salt=SALT).identity


# -- identifiers -----------------------------------------------------------------------------

def test_user_id_is_stable_scoped_and_opaque():
    a = stable_user_id("vantaa", "wilma", "subject-1", SALT)
    assert a == stable_user_id("vantaa", "wilma", "subject-1", SALT)
    assert re.fullmatch(r"[0-9a-f]{64}", a)
    others = {stable_user_id("espoo", "wilma", "subject-1", SALT),
              stable_user_id("vantaa", "entra", "subject-1", SALT),
              stable_user_id("vantaa", "wilma", "subject-2", SALT),
              stable_user_id("vantaa", "wilma", "subject-1", b"x" * 16)}
    assert a not in others and len(others) == 4


def test_user_id_parts_cannot_be_shifted_across_boundaries():
    assert stable_user_id("vantaa", "wilmax", "y", SALT) != stable_user_id("vantaa", "wilma", "xy", SALT)
    assert stable_user_id("a", "b\x00c", "d", SALT) != stable_user_id("a", "b", "c\x00d", SALT)


@pytest.mark.parametrize("args", [("t", "i", "", SALT), ("t", "i", "s", b""), ("t", "i", "s", b"short"),
                                  ("t", "i", None, SALT)])
def test_user_id_refuses_bad_input(args):
    with pytest.raises(ValueError):
        stable_user_id(*args)


def test_pairwise_by_default_per_sector(identity):
    a = subject_for(identity, policy=ReleasePolicy(sector="a.example.fi"), salt=SALT)
    b = subject_for(identity, policy=ReleasePolicy(sector="b.example.fi"), salt=SALT)
    assert a != b and re.fullmatch(r"[0-9a-f]{40}", a)
    # the sector argument (Client.sector: registered sector, else redirect host) is used when given
    assert subject_for(identity, policy=ReleasePolicy(), salt=SALT, sector="a.example.fi") == a
    assert identity["user_id"] not in (a, b) and not identity["user_id"].startswith(a)


def test_pairwise_needs_a_sector(identity):
    with pytest.raises(ValueError, match="sector"):
        subject_for(identity, policy=ReleasePolicy(), salt=SALT)


def test_public_subject_is_the_same_for_every_service(identity):
    a = subject_for(identity, policy=ReleasePolicy(subject_type="public", sector="a.example.fi"), salt=SALT)
    b = subject_for(identity, policy=ReleasePolicy(subject_type="public", sector="b.example.fi"), salt=SALT)
    assert a == b
    assert a != subject_for(identity, policy=ReleasePolicy(sector="a.example.fi"), salt=SALT)


def test_mpassid_profile_subject_has_mpassid_uid_format(identity):
    sub = subject_for(identity, policy=ReleasePolicy(profile="mpassid", sector="x.fi"), salt=SALT)
    assert re.fullmatch(r"MPASSOID\.[0-9a-f]{40}", sub)
    # ... and is never the upstream's uid
    assert sub != UPSTREAM["urn:mpass.id:uid"][0]


# -- release ---------------------------------------------------------------------------------

def test_scopes_are_documented_claim_sets():
    assert SCOPES["openid"] == ("sub",)
    assert DEFAULT_SCOPES == ReleasePolicy().scopes == ("openid", "roles")
    assert set(SCOPES["profile"]) == {"given_name", "family_name", "nickname"}
    assert SCOPES["learner_id"] == ("learner_id",)


def test_default_policy_releases_roles_only(identity):
    policy = ReleasePolicy(sector="x.fi")
    assert set(release_claims(identity, policy=policy, granted_scopes=None)) == {"roles", "role_assignments"}
    assert set(release_saml_attributes(identity, policy=policy)) == {"urn:digione:role"}


@pytest.mark.parametrize("profile, learner_attr, learner_saml", [
    ("digione", "learner_id", "urn:digione:learnerId"),
    ("mpassid", "urn:oid:1.3.6.1.4.1.16161.1.1.27", "urn:oid:1.3.6.1.4.1.16161.1.1.27")])
def test_learner_id_only_with_its_scope_allowed_and_granted(identity, profile, learner_attr, learner_saml):
    everything = tuple(SCOPES)
    without = ReleasePolicy(scopes=tuple(s for s in everything if s != "learner_id"), profile=profile)
    with_ = ReleasePolicy(scopes=everything, profile=profile)
    # requested but not allowed
    assert learner_attr not in release_claims(identity, policy=without, granted_scopes=everything)
    assert learner_saml not in release_saml_attributes(identity, policy=without)
    # allowed but not requested
    assert learner_attr not in release_claims(identity, policy=with_, granted_scopes=("openid", "roles"))
    # allowed and requested
    assert learner_attr in release_claims(identity, policy=with_, granted_scopes=everything)
    assert learner_saml in release_saml_attributes(identity, policy=with_)


def test_names_are_opt_in(identity):
    policy = ReleasePolicy(scopes=("openid", "roles", "schools"), profile="mpassid")
    attrs = release_saml_attributes(identity, policy=policy)
    assert not {"urn:oid:2.5.4.42", "urn:oid:2.5.4.4", "urn:mpass.id:nickname"} & set(attrs)


def test_unknown_scopes_release_nothing(identity):
    policy = ReleasePolicy(scopes=("openid", "everything", "email"))
    assert released_scopes(policy, ["openid", "everything", "email"]) == ("openid",)
    assert release_claims(identity, policy=policy, granted_scopes=["everything", "email"]) == {}


def test_uid_attribute_needs_openid_scope(identity):
    policy = ReleasePolicy(scopes=("roles",), profile="mpassid")
    assert "urn:mpass.id:uid" not in release_saml_attributes(identity, policy=policy, subject="MPASSOID.x")
    policy = ReleasePolicy(scopes=("openid", "roles"), profile="mpassid")
    assert release_saml_attributes(identity, policy=policy, subject="MPASSOID.x")["urn:mpass.id:uid"] == ["MPASSOID.x"]


def test_release_returns_fresh_objects(identity):
    policy = ReleasePolicy(scopes=tuple(SCOPES))
    claims = release_claims(identity, policy=policy, granted_scopes=None)
    claims["roles"][0] = "principal"
    claims["role_assignments"][0]["role"] = "principal"
    claims["schools"][0]["code"] = "x"
    assert identity["roles"][0]["role"] == "learner" and identity["schools"][0]["code"] == "03083"
    access = access_token_claims(identity, policy=policy, granted_scopes=None)
    access["role_assignments"][0]["school"] = "x"
    assert identity["roles"][0]["school"] == "03083"


def test_roles_are_role_names_and_assignments_say_where(claims_schema, access_token_schema):
    """``roles``: each role name once, in the order first held (what RP software reads);
    ``role_assignments``: one entry per canonical role, with school and group when known, and
    never the office OID.  Access tokens carry the same two claims in both profiles."""
    identity = {"user_id": "0" * 64, "tenant": "vantaa", "idp": "i", "schools": [], "education_providers": [],
                "learning_materials_charges": [],
                "roles": [{"role": "teacher", "code": 2, "school": "03083", "group": "9A",
                           "office_oid": "1.2.246.562.10.1"},
                          {"role": "principal", "code": 6, "school": "03084"},
                          {"role": "teacher", "code": 2, "school": "03084"},
                          {"role": "staff", "code": 3}]}
    expected = {"roles": ["teacher", "principal", "staff"],
                "role_assignments": [{"role": "teacher", "code": 2, "school": "03083", "group": "9A"},
                                     {"role": "principal", "code": 6, "school": "03084"},
                                     {"role": "teacher", "code": 2, "school": "03084"},
                                     {"role": "staff", "code": 3}]}
    digione = ReleasePolicy(sector="x.fi")
    claims = release_claims(identity, policy=digione, granted_scopes=("openid", "roles"))
    assert claims == expected
    claims_schema.validate({"sub": "s", **claims})
    for profile in ("digione", "mpassid"):
        policy = ReleasePolicy(profile=profile, sector="x.fi")
        access = access_token_claims(identity, policy=policy, granted_scopes=("openid", "roles"))
        assert access == expected
        access_token_schema.validate({"iss": "i", "sub": "s", "aud": ["a", "b"], "client_id": "c", "scope": "s",
                                      "iat": 1, "exp": 2, "jti": "j", **access})
        # without the roles scope (not granted, or not allowed) an access token carries no identity claims
        assert access_token_claims(identity, policy=policy, granted_scopes=("openid",)) == {}
        assert access_token_claims(identity, policy=ReleasePolicy(scopes=("openid", "schools"), profile=profile),
                                   granted_scopes=("openid", "roles", "schools")) == {}
    assert release_claims({**identity, "roles": []}, policy=digione, granted_scopes=None) == {
        "roles": [], "role_assignments": []}


def test_claims_schema_refuses_the_old_shape(claims_schema):
    """``roles`` as objects (the shape ``mod_auth_openidc`` could not read) is not the documented shape."""
    import jsonschema

    old = {"sub": "s", "roles": [{"role": "teacher", "code": 2, "school": "03083"}]}
    with pytest.raises(jsonschema.ValidationError):
        claims_schema.validate(old)
    with pytest.raises(jsonschema.ValidationError):  # names without where they are held
        claims_schema.validate({"sub": "s", "roles": ["teacher"]})


def test_role_without_school_in_mpassid_format():
    ruleset = Ruleset.from_config({"roles": [{"from": "r", "scope": "every_school"}]}, tenant=VANTAA, idp_id="g")
    identity = ruleset.apply({"r": ["Hallintohenkilö"]}, upstream_subject="s", salt=SALT).identity
    attrs = release_saml_attributes(identity, policy=ReleasePolicy(scopes=("roles", "education_providers"),
                                                                   profile="mpassid"))
    assert attrs["urn:mpass.id:role"] == ["1.2.246.562.10.67019405611;;;Hallintohenkilö;3;;"]
    assert attrs["urn:mpass.id:originalIssuer"] == ["1.2.246.562.10.67019405611"]


@pytest.mark.parametrize("profile", ["digione", "mpassid"])
def test_every_released_claim_is_named_by_its_scope(identity, profile):
    """A refresh that narrows the scope keeps only CLAIMS_BY_SCOPE of what remains: every claim a scope
    releases, in either profile, must be listed under it, or it would leak past (or be lost from) a narrowing."""
    from broker.mapping import CLAIMS_BY_SCOPE, SCOPES, release_claims

    for scope in SCOPES:
        policy = ReleasePolicy(scopes=("openid", scope), profile=profile)
        released = set(release_claims(identity, policy=policy, granted_scopes={"openid", scope}, subject="s"))
        allowed = set(CLAIMS_BY_SCOPE["openid"]) | set(CLAIMS_BY_SCOPE[scope])
        assert released <= allowed, (profile, scope, released - allowed)
