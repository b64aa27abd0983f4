"""Table-driven: realistic upstream payloads of each source shape, their canonical
identity, and what each release profile makes of it."""

from __future__ import annotations

import json

import pytest
from mapping_data import ESPOO, ESPOO_PROVIDER, SALT, VANTAA, VANTAA_PROVIDER

from broker.mapping import Ruleset, access_token_claims, release_claims, release_saml_attributes, subject_for
from broker.registry.relying_parties import ReleasePolicy

ENTRA_TID = "4a6b1c2d-0e1f-4a5b-9c8d-7e6f5a4b3c2d"
G_TEACHERS_KAIVOKSELA = "b7f3c8a2-1d4e-4f6a-9b2c-3e5d7f9a1b4c"
G_PRINCIPALS_KAIVOKSELA = "5e0a9d1c-77b2-4c31-8f0e-2a4d6c8e0f13"
G_LEARNERS_MYYRMAKI_7B = "c2d4e6f8-0a1b-4c3d-8e5f-6a7b8c9d0e1f"
G_ALL_STAFF = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"

CONFIGS = {
    "vantaa-entra": (VANTAA, {
        "preset": "entra",
        "require": {"tid": ENTRA_TID},
        "fields": {"learner_id": {"from": "extension_oppijanumero"}},
        "roles": [{
            "id": "entra-groups",
            "from": "groups",
            "lookup": {
                G_TEACHERS_KAIVOKSELA: {"role": "teacher", "school": "03083"},
                G_PRINCIPALS_KAIVOKSELA: {"role": "principal", "school": "03083"},
                G_LEARNERS_MYYRMAKI_7B: {"role": "learner", "school": "03084", "group": "7B"},
            },
        }],
    }),
    "espoo-google": (ESPOO, {
        "preset": "google",
        "require": {"hd": "edu.espoo.fi"},
        "roles": [
            {"id": "role-groups", "from": "groups",
             "match": r"^(?P<role>opettajat|oppilaat)-(?P<school>\d{5})@edu\.espoo\.fi$",
             "role_names": {"opettajat": "teacher", "oppilaat": "learner"}},
            {"id": "class-groups", "from": "groups",
             "match": r"^luokka-(?P<school>\d{5})-(?P<group>[0-9A-Za-z]+)@edu\.espoo\.fi$", "role": "learner"},
        ],
    }),
    "vantaa-adfs": (VANTAA, {
        "preset": "adfs",
        "fields": {"schools": {"from": "http://schemas.xmlsoap.org/claims/Group", "split": ";",
                               "match": r"^SG-Koulu-(\d{5})$"}},
    }),
    "vantaa-entra-saml": (VANTAA, {
        "preset": "entra",
        "require": {"http://schemas.microsoft.com/identity/claims/tenantid": ENTRA_TID},
        "roles": [{"id": "entra-groups", "from": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
                   "lookup": {G_TEACHERS_KAIVOKSELA: {"role": "teacher", "school": "03083"}}}],
    }),
    "vantaa-wilma-saml": (VANTAA, {"preset": "mpassid-saml"}),
    "vantaa-wilma": (VANTAA, {"preset": "wilma"}),
}

# (case id, config, upstream attributes, upstream subject, expected identity without ids)
CASES = [
    ("entra-teacher-groups-and-app-role", "vantaa-entra", {
        "aud": ["6c1f7a52-3b0e-4e8e-9d61-2f0c3a9b7e15"],
        "iss": [f"https://login.microsoftonline.com/{ENTRA_TID}/v2.0"],
        "tid": [ENTRA_TID],
        "oid": ["0b9c2d47-8e3f-4a1b-b6c5-d4e3f2a1b0c9"],
        "sub": ["kX2nV0o4bQ8m7sYcW1fJtLrHzPq9uE6aD3gN5iK0OyM"],
        "preferred_username": ["liisa.opettaja@edu.vantaa.fi"],
        "given_name": ["Liisa"], "family_name": ["Lehtonen"],
        "groups": [G_TEACHERS_KAIVOKSELA, G_ALL_STAFF, G_PRINCIPALS_KAIVOKSELA],
        "roles": ["Teacher"],
    }, "kX2nV0o4bQ8m7sYcW1fJtLrHzPq9uE6aD3gN5iK0OyM", {
        "given_name": "Liisa", "family_name": "Lehtonen",
        "roles": [{"role": "teacher", "code": 2, "school": "03083"},
                  {"role": "principal", "code": 6, "school": "03083"}],
        "schools": ["03083"], "education_providers": [VANTAA_PROVIDER], "learning_materials_charges": [],
    }),
    ("entra-learner-group-with-class", "vantaa-entra", {
        "tid": [ENTRA_TID], "oid": ["7f1e2d3c-4b5a-4968-8776-5a4b3c2d1e0f"],
        "given_name": ["Eetu"], "family_name": ["Korhonen"],
        "extension_oppijanumero": ["1.2.246.562.24.43697545811"],
        "groups": [G_LEARNERS_MYYRMAKI_7B], "roles": ["Student"],
    }, "pairwise-sub-eetu", {
        "given_name": "Eetu", "family_name": "Korhonen", "learner_id": "1.2.246.562.24.43697545811",
        "roles": [{"role": "learner", "code": 1, "school": "03084", "group": "7B"}],
        "schools": ["03084"], "education_providers": [VANTAA_PROVIDER], "learning_materials_charges": [],
    }),
    ("entra-saml-claim-uris", "vantaa-entra-saml", {
        "http://schemas.microsoft.com/identity/claims/tenantid": [ENTRA_TID],
        "http://schemas.microsoft.com/identity/claims/objectidentifier": ["0b9c2d47-8e3f-4a1b-b6c5-d4e3f2a1b0c9"],
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": ["Liisa"],
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname": ["Lehtonen"],
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": ["liisa.lehtonen@edu.vantaa.fi"],
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups": [G_ALL_STAFF, G_TEACHERS_KAIVOKSELA],
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/role": ["Opettaja"],
    }, "liisa.lehtonen@edu.vantaa.fi", {
        "given_name": "Liisa", "family_name": "Lehtonen",
        "roles": [{"role": "teacher", "code": 2, "school": "03083"}],
        "schools": ["03083"], "education_providers": [VANTAA_PROVIDER], "learning_materials_charges": [],
    }),
    ("google-hd-groups", "espoo-google", {
        "iss": ["https://accounts.google.com"], "sub": ["110248495921238986420"], "hd": ["edu.espoo.fi"],
        "email": ["aino.virtanen@edu.espoo.fi"], "email_verified": ["true"],
        "given_name": ["Aino"], "family_name": ["Virtanen"],
        "groups": ["oppilaat-02134@edu.espoo.fi", "luokka-02134-9C@edu.espoo.fi", "kuoro@edu.espoo.fi"],
    }, "110248495921238986420", {
        "given_name": "Aino", "family_name": "Virtanen",
        "roles": [{"role": "learner", "code": 1, "school": "02134", "group": "9C"}],
        "schools": ["02134"], "education_providers": [ESPOO_PROVIDER], "learning_materials_charges": [],
    }),
    ("adfs-claim-uris-joined-roles", "vantaa-adfs", {
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": ["Pekka"],
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname": ["Nieminen"],
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": ["pekka.nieminen@vantaa.fi"],
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/role": ["Rehtori;Opettaja"],
        "http://schemas.xmlsoap.org/claims/Group": ["SG-Koulu-03084;Domain Users;SG-Kaikki-Opettajat"],
    }, "S-1-5-21-3623811015-3361044348-30300820-1013", {
        "given_name": "Pekka", "family_name": "Nieminen",
        "roles": [{"role": "principal", "code": 6, "school": "03084"},
                  {"role": "teacher", "code": 2, "school": "03084"}],
        "schools": ["03084"], "education_providers": [VANTAA_PROVIDER], "learning_materials_charges": [],
    }),
    ("mpassid-saml-v1.4", "vantaa-wilma-saml", {
        "urn:mpass.id:uid": ["MPASSOID.c6329e82913e265b3a79c11a043fdab8b06b1a9e"],
        "urn:oid:2.5.4.42": ["Matti Juhani"], "urn:oid:2.5.4.4": ["Mäkinen"], "urn:mpass.id:nickname": ["Matti"],
        "urn:oid:1.3.6.1.4.1.16161.1.1.27": ["1.2.246.562.24.10000000016"],
        "urn:mpass.id:role": [f"{VANTAA_PROVIDER};03083;9A;Oppilas;1;1.2.246.562.10.41253773158;"],
        "urn:mpass.id:schoolInfo": ["03083;Kaivokselan koulu", "1.2.246.562.10.41253773158;Kaivokselan koulu"],
        "urn:mpass.id:classLevel": ["9"],
        "urn:mpass.id:educationProviderInfo": [f"{VANTAA_PROVIDER};Vantaan kaupunki"],
        "urn:mpass.id:learningMaterialsCharge": ["0;03083", "0;1.2.246.562.10.41253773158"],
    }, "_8f3a2c1e9b7d", {
        "given_name": "Matti Juhani", "family_name": "Mäkinen", "nickname": "Matti",
        "learner_id": "1.2.246.562.24.10000000016", "class_level": 9,
        "roles": [{"role": "learner", "code": 1, "school": "03083", "group": "9A"}],
        "schools": ["03083"], "education_providers": [VANTAA_PROVIDER],
        "learning_materials_charges": [{"school": "03083", "paid": False}],
    }),
    ("mpassid-saml-v1.1-only", "vantaa-wilma-saml", {
        "urn:mpass.id:uid": ["MPASSOID.0f4e1d2c3b4a59687766554433221100ffeeddcc"],
        "urn:oid:2.5.4.42": ["Sari"], "urn:oid:2.5.4.4": ["Salo"],
        "urn:mpass.id:role_v1.1": ["Vantaa;03084;;Opettaja", "Vantaa;03083;8B;Opettaja"],
        "urn:mpass.id:schoolInfo": ["03084;Myyrmäen koulu"],
    }, None, {
        "given_name": "Sari", "family_name": "Salo",
        "roles": [{"role": "teacher", "code": 2, "school": "03084"},
                  {"role": "teacher", "code": 2, "school": "03083", "group": "8B"}],
        "schools": ["03084", "03083"], "education_providers": [VANTAA_PROVIDER], "learning_materials_charges": [],
    }),
    ("wilma-semicolon-joined-parallel-lists", "vantaa-wilma", {
        "username": ["wilma-284756"], "firstName": ["Kaisa"], "surname": ["Laine"],
        "schoolIds": ["03083;03084"], "roles": ["Opettaja;Rehtori"], "groups": ["9A"],
        "learningMaterialsCharges": ["0;1"],
    }, None, {
        "given_name": "Kaisa", "family_name": "Laine",
        "roles": [{"role": "teacher", "code": 2, "school": "03083", "group": "9A"},
                  {"role": "principal", "code": 6, "school": "03084"}],
        "schools": ["03083", "03084"], "education_providers": [VANTAA_PROVIDER],
        "learning_materials_charges": [{"school": "03083", "paid": False}, {"school": "03084", "paid": True}],
    }),
    ("wilma-single-role-applies-to-every-school", "vantaa-wilma", {
        "username": ["wilma-99120"], "firstName": ["Onni"], "surname": ["Heikkinen"],
        "learnerId": ["1.2.246.562.24.99887766554"],
        "schoolIds": ["3083", "00651"], "roles": ["opiskelija"], "groupLevels": ["8"],
    }, None, {
        "given_name": "Onni", "family_name": "Heikkinen", "learner_id": "1.2.246.562.24.99887766554",
        "class_level": 8,
        "roles": [{"role": "learner", "code": 1, "school": "03083"}, {"role": "learner", "code": 1, "school": "00651"}],
        "schools": ["03083", "00651"], "education_providers": [VANTAA_PROVIDER], "learning_materials_charges": [],
    }),
]


def _compact(identity: dict) -> dict:
    """The identity with schools and providers reduced to their keys, for readable tables."""
    out = {k: v for k, v in identity.items() if k not in ("user_id", "tenant", "idp")}
    out["schools"] = [s["code"] for s in identity["schools"]]
    out["education_providers"] = [p["oid"] for p in identity["education_providers"]]
    return out


@pytest.mark.parametrize("case, config, upstream, subject, expected", CASES, ids=[c[0] for c in CASES])
def test_canonical_identity(case, config, upstream, subject, expected, identity_schema):
    tenant, mapping = CONFIGS[config]
    ruleset = Ruleset.from_config(mapping, tenant=tenant, idp_id=config, source=f"tenants/{tenant.tenant_id}.yaml")
    result = ruleset.apply(upstream, upstream_subject=subject, salt=SALT)
    assert result.refused is None, result.drops
    assert _compact(result.identity) == expected
    identity_schema.validate(result.identity)
    json.dumps(result.identity)  # JSON-serialisable as is
    assert result.identity["tenant"] == tenant.tenant_id and result.identity["idp"] == config
    # every value of the identity is explained by a rule
    traced = {t.field for t in result.trace}
    for key in ("roles", "schools", "education_providers", "learning_materials_charges"):
        assert {f"{key}[{i}]" for i in range(len(result.identity[key]))} <= traced
    for key in ("given_name", "family_name", "nickname", "learner_id", "class_level", "user_id"):
        assert (key in result.identity) == (key in traced)


EVERYTHING = ("openid", "roles", "schools", "education_providers", "profile", "learner_id", "class_level",
              "learning_materials")


def _map(config: str, upstream: dict, subject: str | None):
    tenant, mapping = CONFIGS[config]
    return Ruleset.from_config(mapping, tenant=tenant, idp_id=config).apply(
        upstream, upstream_subject=subject, salt=SALT).identity


MPASSID_CASE = next(c for c in CASES if c[0] == "mpassid-saml-v1.4")


def test_mpassid_profile_saml_release_is_exact():
    identity = _map(*MPASSID_CASE[1:4])
    policy = ReleasePolicy(scopes=EVERYTHING, profile="mpassid", sector="peda.example.fi")
    sub = subject_for(identity, policy=policy, salt=SALT)
    attrs = release_saml_attributes(identity, policy=policy, subject=sub)
    assert attrs == {
        "urn:mpass.id:uid": [sub],
        "urn:oid:2.5.4.42": ["Matti Juhani"],
        "urn:oid:2.5.4.4": ["Mäkinen"],
        "urn:mpass.id:nickname": ["Matti"],
        "urn:oid:1.3.6.1.4.1.16161.1.1.27": ["1.2.246.562.24.10000000016"],
        "urn:mpass.id:classLevel": ["9"],
        "urn:mpass.id:role": [f"{VANTAA_PROVIDER};03083;9A;Oppilas;1;1.2.246.562.10.41253773158;"],
        "urn:mpass.id:role_v1.1": ["Vantaan kaupunki;03083;9A;Oppilas"],
        "urn:mpass.id:schoolInfo": ["03083;Kaivokselan koulu", "1.2.246.562.10.41253773158;Kaivokselan koulu"],
        "urn:mpass.id:educationProviderInfo": [f"{VANTAA_PROVIDER};Vantaan kaupunki"],
        "urn:mpass.id:originalIssuer": [VANTAA_PROVIDER],
        "urn:mpass.id:learningMaterialsCharge": ["0;03083", "0;1.2.246.562.10.41253773158"],
    }
    assert sub.startswith("MPASSOID.") and len(sub) == len("MPASSOID.") + 40


def test_mpassid_profile_oidc_claims_use_mpassid_names():
    identity = _map(*MPASSID_CASE[1:4])
    policy = ReleasePolicy(scopes=EVERYTHING, profile="mpassid", sector="peda.example.fi")
    claims = release_claims(identity, policy=policy, granted_scopes=EVERYTHING)
    assert claims == {
        "given_name": "Matti Juhani",
        "family_name": "Mäkinen",
        "urn:mpass.id:nickname": "Matti",
        "urn:oid:1.3.6.1.4.1.16161.1.1.27": "1.2.246.562.24.10000000016",
        "urn:mpass.id:classLevel": "9",
        "urn:mpass.id:role": [f"{VANTAA_PROVIDER};03083;9A;Oppilas;1;1.2.246.562.10.41253773158;"],
        "urn:mpass.id:role_v1.1": ["Vantaan kaupunki;03083;9A;Oppilas"],
        "urn:mpass.id:schoolInfo": ["03083;Kaivokselan koulu", "1.2.246.562.10.41253773158;Kaivokselan koulu"],
        "urn:mpass.id:educationProviderInfo": [f"{VANTAA_PROVIDER};Vantaan kaupunki"],
        "urn:mpass.id:originalIssuer": VANTAA_PROVIDER,
        "urn:mpass.id:learningMaterialsCharge": ["0;03083", "0;1.2.246.562.10.41253773158"],
    }
    assert "sub" not in claims


def test_digione_profile_oidc_claims_are_documented_json(claims_schema):
    identity = _map(*MPASSID_CASE[1:4])
    policy = ReleasePolicy(scopes=EVERYTHING, profile="digione", sector="peda.example.fi")
    claims = release_claims(identity, policy=policy, granted_scopes=EVERYTHING)
    claims_schema.validate({"sub": "s", **claims})
    assert claims == {
        "given_name": "Matti Juhani", "family_name": "Mäkinen", "nickname": "Matti",
        "learner_id": "1.2.246.562.24.10000000016", "class_level": 9,
        "roles": ["learner"],
        "role_assignments": [{"role": "learner", "code": 1, "school": "03083", "group": "9A"}],
        "schools": [{"code": "03083", "oid": "1.2.246.562.10.41253773158",
                     "names": {"fi": "Kaivokselan koulu", "sv": "Kaivoksela skola", "en": "Kaivoksela School"}}],
        "education_providers": [{"oid": VANTAA_PROVIDER, "names": {"fi": "Vantaan kaupunki", "sv": "Vanda stad",
                                                                    "en": "City of Vantaa"}}],
        "learning_materials_charges": [{"school": "03083", "paid": False}],
    }


def test_digione_profile_saml_attributes():
    identity = _map(*MPASSID_CASE[1:4])
    policy = ReleasePolicy(scopes=EVERYTHING, profile="digione", sector="peda.example.fi")
    attrs = release_saml_attributes(identity, policy=policy, subject="0123456789abcdef0123456789abcdef01234567")
    assert attrs == {
        "urn:digione:uid": ["0123456789abcdef0123456789abcdef01234567"],
        "urn:oid:2.5.4.42": ["Matti Juhani"],
        "urn:oid:2.5.4.4": ["Mäkinen"],
        "urn:digione:nickname": ["Matti"],
        "urn:digione:learnerId": ["1.2.246.562.24.10000000016"],
        "urn:digione:classLevel": ["9"],
        "urn:digione:role": ["learner;03083;9A"],
        "urn:digione:school": ["03083;1.2.246.562.10.41253773158;Kaivokselan koulu"],
        "urn:digione:educationProvider": [f"{VANTAA_PROVIDER};Vantaan kaupunki"],
        "urn:digione:learningMaterialsCharge": ["0;03083"],
    }


# What a service with the default policy (sub + roles) gets from each source, in each profile.
@pytest.mark.parametrize("case, config, upstream, subject, expected", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("profile", ["digione", "mpassid"])
def test_default_policy_releases_only_roles(case, config, upstream, subject, expected, profile, claims_schema,
                                            access_token_schema):
    identity = _map(config, upstream, subject)
    policy = ReleasePolicy(profile=profile, sector="service.example.fi")
    granted = ("openid", "roles", "profile", "learner_id")
    claims = release_claims(identity, policy=policy, granted_scopes=granted)
    attrs = release_saml_attributes(identity, policy=policy)
    # access tokens: the same role names and assignments in both profiles
    access = access_token_claims(identity, policy=policy, granted_scopes=granted)
    assert access == {"roles": list(dict.fromkeys(r["role"] for r in expected["roles"])),
                      "role_assignments": expected["roles"]}
    access_token_schema.validate({"iss": "i", "sub": "s", "aud": "a", "client_id": "c", "scope": "openid roles",
                                  "iat": 1, "exp": 2, "jti": "j", **access})
    if profile == "digione":
        assert claims == access
        claims_schema.validate({"sub": "s", **claims})
        assert set(attrs) == {"urn:digione:role"}
    else:
        assert set(claims) == set(attrs) == {"urn:mpass.id:role", "urn:mpass.id:role_v1.1"}
        provider = expected["education_providers"][0]
        for value, role in zip(claims["urn:mpass.id:role"], expected["roles"], strict=True):
            fields = value.split(";")
            assert len(fields) == 7
            assert fields[0] == provider and fields[1] == role["school"] and fields[4] == str(role["code"])
            assert fields[2] == role.get("group", "")


def test_entra_oid_is_the_key_in_oidc_and_saml_alike():
    """The same Entra user over OIDC and SAML (same directory, two IdP entries of one
    tenant) is keyed by the object id, not by the pairwise OIDC sub or the NameID."""
    oidc = _map("vantaa-entra", CASES[0][2], CASES[0][3])
    saml_case = next(c for c in CASES if c[0] == "entra-saml-claim-uris")
    saml = _map(*saml_case[1:4])
    from broker.mapping import stable_user_id
    assert oidc["user_id"] == stable_user_id("vantaa", "vantaa-entra", "0b9c2d47-8e3f-4a1b-b6c5-d4e3f2a1b0c9", SALT)
    assert saml["user_id"] == stable_user_id("vantaa", "vantaa-entra-saml", "0b9c2d47-8e3f-4a1b-b6c5-d4e3f2a1b0c9",
                                             SALT)


def test_entra_from_another_directory_is_refused():
    tenant, mapping = CONFIGS["vantaa-entra"]
    upstream = dict(CASES[0][2], tid=["f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f"])
    result = Ruleset.from_config(mapping, tenant=tenant, idp_id="vantaa-entra").apply(
        upstream, upstream_subject="x", salt=SALT)
    assert result.refused == "requirement_not_met" and result.identity == {}


def test_google_account_outside_the_workspace_is_refused():
    tenant, mapping = CONFIGS["espoo-google"]
    upstream = {"sub": ["1"], "email": ["someone@gmail.com"], "groups": ["opettajat-02134@edu.espoo.fi"]}
    result = Ruleset.from_config(mapping, tenant=tenant, idp_id="espoo-google").apply(
        upstream, upstream_subject="1", salt=SALT)
    assert result.refused == "requirement_not_met"
