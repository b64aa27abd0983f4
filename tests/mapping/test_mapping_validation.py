"""MPASSid's validation rules and tenant scoping, one rule per test."""

from __future__ import annotations

import logging

import pytest
from mapping_data import ESPOO, ESPOO_PROVIDER, SALT, VANTAA, VANTAA_PROVIDER

from broker.mapping import Drop, Ruleset, stable_user_id, subject_for
from broker.registry.relying_parties import ReleasePolicy

MPASSID = {"preset": "mpassid-saml"}
WILMA = {"preset": "wilma"}
UID = "MPASSOID.c6329e82913e265b3a79c11a043fdab8b06b1a9e"
KAIVOKSELA_OID = "1.2.246.562.10.41253773158"


def role(provider=VANTAA_PROVIDER, school="03083", group="9A", name="Oppilas", code="1", school_oid="", office=""):
    return f"{provider};{school};{group};{name};{code};{school_oid};{office}"


def apply(config, upstream, *, tenant=VANTAA, idp="wilma", subject=None):
    return Ruleset.from_config(config, tenant=tenant, idp_id=idp).apply(upstream, upstream_subject=subject,
                                                                       salt=SALT)


def reasons(result):
    return [(d.field, d.reason) for d in result.drops]


# -- uid -------------------------------------------------------------------------------------

def test_no_uid_refuses_and_releases_nothing():
    result = apply(MPASSID, {"urn:oid:2.5.4.42": ["Maija"], "urn:mpass.id:role": [role()]}, subject="_transient")
    assert result.refused == "no_user_id" and not result.ok
    assert result.identity == {} and result.trace == []
    assert reasons(result) == [("user_id", "no_user_id")]


@pytest.mark.parametrize("subject", [None, "", "   "])
def test_no_subject_refuses_when_the_subject_is_the_key(subject):
    result = apply({"preset": "google"}, {"given_name": ["Aino"]}, tenant=ESPOO, subject=subject)
    assert result.refused == "no_user_id"


def test_two_different_uids_refuse():
    result = apply(MPASSID, {"urn:mpass.id:uid": [UID, "MPASSOID.other"]})
    assert result.refused == "no_user_id"
    assert ("user_id", "multiple_values") in reasons(result)


def test_requirement_not_met_refuses():
    config = {"preset": "google", "require": {"hd": ["edu.espoo.fi", "espoo.fi"]}}
    ok = apply(config, {"hd": ["EDU.espoo.fi"]}, tenant=ESPOO, subject="1102")
    assert ok.ok
    for upstream in ({}, {"hd": ["gmail.com"]}, {"hd": []}):
        result = apply(config, upstream, tenant=ESPOO, subject="1102")
        assert result.refused == "requirement_not_met"
        assert result.identity == {}


# -- schools ---------------------------------------------------------------------------------

@pytest.mark.parametrize("school, reason", [("99999", "school_not_in_tenant"), ("03085", "school_inactive"),
                                            ("02134", "school_not_in_tenant")])
def test_unknown_inactive_or_foreign_school_drops_school_role_and_provider(school, reason):
    result = apply(MPASSID, {
        "urn:mpass.id:uid": [UID],
        "urn:mpass.id:role": [role(school=school)],
        "urn:mpass.id:schoolInfo": [f"{school};Koulu"],
        "urn:mpass.id:educationProviderInfo": [f"{VANTAA_PROVIDER};Vantaan kaupunki"],
    })
    assert result.ok
    identity = result.identity
    assert identity["schools"] == [] and identity["roles"] == [] and identity["education_providers"] == []
    assert ("schools", reason) in reasons(result) and ("roles", reason) in reasons(result)


def test_a_bad_school_does_not_take_the_good_one_with_it():
    result = apply(MPASSID, {
        "urn:mpass.id:uid": [UID],
        "urn:mpass.id:role": [role(school="03083"), role(school="99999", name="Opettaja", code="2")],
    })
    assert [(r["role"], r["school"]) for r in result.identity["roles"]] == [("learner", "03083")]
    assert [s["code"] for s in result.identity["schools"]] == ["03083"]
    assert [p["oid"] for p in result.identity["education_providers"]] == [VANTAA_PROVIDER]


def test_school_by_oid_and_by_code_is_one_school():
    result = apply(MPASSID, {
        "urn:mpass.id:uid": [UID],
        "urn:mpass.id:role": [role(school="", school_oid=KAIVOKSELA_OID)],
        "urn:mpass.id:schoolInfo": ["03083;Kaivokselan koulu", f"{KAIVOKSELA_OID};Kaivokselan koulu"],
    })
    assert result.identity["roles"] == [{"role": "learner", "code": 1, "school": "03083", "group": "9A"}]
    assert [s["code"] for s in result.identity["schools"]] == ["03083"]


def test_school_names_come_from_the_registry_not_upstream():
    result = apply(MPASSID, {"urn:mpass.id:uid": [UID], "urn:mpass.id:schoolInfo": ["03083;<script>Evil</script>"],
                             "urn:mpass.id:role": [role()]})
    assert result.identity["schools"][0]["names"]["fi"] == "Kaivokselan koulu"


def test_role_school_oid_must_match_its_school_code():
    result = apply(MPASSID, {"urn:mpass.id:uid": [UID],
                             "urn:mpass.id:role": [role(school="03083", school_oid="1.2.246.562.10.52251087186")]})
    assert result.identity["roles"] == [] and result.identity["schools"] == []
    assert ("roles", "school_oid_mismatch") in reasons(result)


# -- roles -----------------------------------------------------------------------------------

def test_unrecognised_role_drops_role_and_school():
    result = apply(MPASSID, {"urn:mpass.id:uid": [UID], "urn:mpass.id:schoolInfo": ["03083;Kaivokselan koulu"],
                             "urn:mpass.id:role": [role(name="Kummioppilas", code="9")]})
    assert result.identity["roles"] == [] and result.identity["schools"] == []
    assert reasons(result) == [("roles", "unrecognised_role"), ("schools", "unrecognised_role")]


def test_unrecognised_role_keeps_a_school_that_a_recognised_role_supports():
    result = apply(MPASSID, {"urn:mpass.id:uid": [UID],
                             "urn:mpass.id:role": [role(name="Kummi", code=""), role(name="Opettaja", code="2")]})
    assert [r["role"] for r in result.identity["roles"]] == ["teacher"]
    assert [s["code"] for s in result.identity["schools"]] == ["03083"]


@pytest.mark.parametrize("name, code, expected", [
    ("Oppilas", "1", "learner"), ("opiskelija", "", "learner"), ("Student", "", "learner"),
    ("oppija", "", "learner"), ("Opettaja", "2", "teacher"), ("Hallintohenkilö", "3", "staff"),
    ("Koulusihteeri", "4", "school_secretary"), ("Sijaisopettaja", "5", "substitute_teacher"),
    ("Rehtori", "6", "principal"), ("Whatever", "6", "principal"),
])
def test_role_names_and_codes(name, code, expected):
    result = apply(MPASSID, {"urn:mpass.id:uid": [UID], "urn:mpass.id:role": [role(name=name, code=code)]})
    assert [r["role"] for r in result.identity["roles"]] == [expected]


def test_role_from_another_provider_is_dropped():
    result = apply(MPASSID, {"urn:mpass.id:uid": [UID], "urn:mpass.id:role": [role(provider=ESPOO_PROVIDER)]})
    assert result.identity["roles"] == [] and result.identity["schools"] == []
    assert ("roles", "provider_not_in_tenant") in reasons(result)


def test_malformed_role_string_is_dropped():
    result = apply(MPASSID, {"urn:mpass.id:uid": [UID], "urn:mpass.id:role": ["Oppilas", "a;b"]})
    assert result.identity["roles"] == []
    assert reasons(result) == [("roles", "malformed_role")] * 2


def test_invalid_group_is_dropped_but_role_kept():
    result = apply(MPASSID, {"urn:mpass.id:uid": [UID], "urn:mpass.id:role": [role(group="x" * 65)]})
    assert result.identity["roles"] == [{"role": "learner", "code": 1, "school": "03083"}]
    assert ("roles.group", "invalid_group") in reasons(result)


# -- multi-value alignment -------------------------------------------------------------------

def wilma(**attrs):
    return {"username": ["wilma-1"], **{k: [v] if isinstance(v, str) else v for k, v in attrs.items()}}


def roles_of(result):
    return [(r["role"], r.get("school"), r.get("group")) for r in result.identity["roles"]]


def test_alignment_as_many_values_as_schools_pair_by_position():
    result = apply(WILMA, wilma(schoolIds="03083;03084", roles="Oppilas;Opettaja", groups="9A;Opet"))
    assert roles_of(result) == [("learner", "03083", "9A"), ("teacher", "03084", "Opet")]


def test_alignment_single_role_applies_to_all_schools():
    result = apply(WILMA, wilma(schoolIds="03083;03084", roles="Opettaja"))
    assert roles_of(result) == [("teacher", "03083", None), ("teacher", "03084", None)]


def test_alignment_single_class_attaches_to_the_first_school():
    result = apply(WILMA, wilma(schoolIds="03083;03084", roles="Oppilas", groups="7C"))
    assert roles_of(result) == [("learner", "03083", "7C"), ("learner", "03084", None)]


@pytest.mark.parametrize("attrs", [
    {"schoolIds": "03083;03084;00651", "roles": "Oppilas;Opettaja"},
    {"schoolIds": "03083;03084;00651", "roles": "Oppilas", "groups": "9A;9B"},
    {"schoolIds": "03083;03084", "roles": "Oppilas", "learningMaterialsCharges": "1"},
])
def test_alignment_any_other_combination_drops_the_multi_valued_attributes(attrs):
    result = apply(WILMA, wilma(**attrs))
    assert result.ok
    assert result.identity["roles"] == [] and result.identity["schools"] == []
    assert result.identity["learning_materials_charges"] == [] and result.identity["education_providers"] == []
    assert all(reason == "misaligned_multi_values" for _, reason in reasons(result))
    assert {field for field, _ in reasons(result)} >= {"schools"}


def test_alignment_unrecognised_parallel_role_drops_its_school_only():
    result = apply(WILMA, wilma(schoolIds="03083;03084", roles="Oppilas;Kummi"))
    assert roles_of(result) == [("learner", "03083", None)]
    assert [s["code"] for s in result.identity["schools"]] == ["03083"]
    assert ("schools", "unrecognised_role") in reasons(result)


def test_classes_without_schools_are_dropped():
    result = apply(WILMA, wilma(roles="Oppilas", groups="9A"))
    assert roles_of(result) == [("learner", None, None)]
    assert ("groups", "no_school_for_group") in reasons(result)


# -- tenant scoping --------------------------------------------------------------------------

def test_city_a_idp_asserting_city_b_school_is_dropped_and_logged(caplog):
    caplog.set_level(logging.INFO, logger="broker.mapping")
    upstream = {
        "urn:mpass.id:uid": [UID], "urn:oid:2.5.4.42": ["Salainen"],
        "urn:mpass.id:role": [role(provider=ESPOO_PROVIDER, school="02134", school_oid="1.2.246.562.10.16347564286")],
        "urn:mpass.id:schoolInfo": ["02134;Tapiolan koulu"],
        "urn:mpass.id:educationProviderInfo": [f"{ESPOO_PROVIDER};Espoon kaupunki"],
    }
    result = apply(MPASSID, upstream, tenant=VANTAA, idp="vantaa-wilma")
    assert result.identity["schools"] == [] and result.identity["roles"] == []
    assert result.identity["education_providers"] == []
    assert ("education_providers", "provider_not_in_tenant") in reasons(result)
    # the same payload is fine for the city it belongs to
    own = apply(MPASSID, upstream, tenant=ESPOO, idp="espoo-wilma")
    assert [s["code"] for s in own.identity["schools"]] == ["02134"]
    assert [p["oid"] for p in own.identity["education_providers"]] == [ESPOO_PROVIDER]
    # logged with tenant, IdP and rule, without the values
    logged = [r.getMessage() for r in caplog.records if r.name == "broker.mapping"]
    assert logged and all("tenant=vantaa idp=vantaa-wilma" in m for m in logged[:3])
    assert not any(v in m for m in logged for v in ("02134", "Salainen", UID, ESPOO_PROVIDER, "Tapiola"))


def test_drops_never_carry_values():
    upstream = {"urn:mpass.id:uid": [UID], "urn:mpass.id:role": ["evil;99999;9A;Hakkeri;7;;", "x"],
                "urn:oid:1.3.6.1.4.1.16161.1.1.27": ["123456-789A"], "urn:mpass.id:classLevel": ["13"]}
    result = apply(MPASSID, upstream)
    assert result.drops
    for drop in result.drops:
        assert isinstance(drop, Drop)
        assert not any(secret in " ".join(drop) for secret in ("99999", "Hakkeri", "123456-789A", "13", "evil"))


def test_same_subject_from_two_cities_is_two_users():
    upstream = {"urn:mpass.id:uid": [UID]}
    a = apply(MPASSID, upstream, tenant=VANTAA, idp="wilma").identity
    b = apply(MPASSID, upstream, tenant=ESPOO, idp="wilma").identity
    assert a["user_id"] != b["user_id"]
    policy = ReleasePolicy(sector="peda.example.fi")
    assert subject_for(a, policy=policy, salt=SALT) != subject_for(b, policy=policy, salt=SALT)
    public = ReleasePolicy(subject_type="public")
    assert subject_for(a, policy=public, salt=SALT) != subject_for(b, policy=public, salt=SALT)


def test_upstream_attribute_cannot_choose_the_user_id():
    # An IdP mapping some attribute to the user key still only feeds an HMAC.
    config = {"preset": "google", "uid": {"from": "sub"}}
    result = apply(config, {"sub": ["victim-user-id"]}, tenant=ESPOO, idp="google", subject="x")
    assert result.identity["user_id"] == stable_user_id("espoo", "google", "victim-user-id", SALT)
    assert "victim-user-id" not in str(result.identity)
    sub = subject_for(result.identity, policy=ReleasePolicy(subject_type="public"), salt=SALT)
    assert "victim" not in sub
