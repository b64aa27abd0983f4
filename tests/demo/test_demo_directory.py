"""The demo directory: shapes that tenant files and mapping rules rely on, and its documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from broker.demo.directory import DEMO_DIRECTORY, build_directory, find_user

DOCS = Path(__file__).resolve().parents[2] / "docs" / "demo.md"


def test_seven_cities_with_their_real_municipality_codes():
    assert {city: entry["municipality_code"] for city, entry in DEMO_DIRECTORY.items()} == {
        "vantaa": "092", "espoo": "049", "tampere": "837", "turku": "853",
        "oulu": "564", "lahti": "398", "jyvaskyla": "179",
    }


def test_codes_and_oids_are_shaped_like_real_ones_and_unique():
    oid = re.compile(r"1\.2\.246\.562\.10\.\d{11}")
    codes, oids, guids = [], [], []
    for entry in DEMO_DIRECTORY.values():
        assert oid.fullmatch(entry["provider"]["oid"])
        assert len(entry["schools"]) == 2
        for school in entry["schools"]:
            assert re.fullmatch(r"\d{5}", school["code"]) and oid.fullmatch(school["oid"])
            assert set(school["names"]) == {"fi", "sv", "en"}
            codes.append(school["code"])
            oids.append(school["oid"])
        guids += [entry["entra_tenant_id"], *(g["id"] for g in entry["groups"])]
        for user in entry["users"]:
            guids.append(user["entra_object_id"])
            if user["role"] == "pupil":
                assert re.fullmatch(r"1\.2\.246\.562\.98\.\d{11}", user["learner_id"])
            assert set(user["groups"]) <= {g["id"] for g in entry["groups"]}
    for values in (codes, oids, guids):
        assert len(values) == len(set(values))


def test_identifiers_are_stable_across_builds():
    assert build_directory() == DEMO_DIRECTORY


def test_users_are_found_by_username_or_upn_in_their_city_only():
    assert find_user("vantaa", "Pupil.Vantaa ")["upn"] == "pupil@vantaa.example"
    assert find_user("vantaa", "teacher@vantaa.example")["username"] == "teacher.vantaa"
    assert find_user("espoo", "pupil.vantaa") is None


def test_the_docs_list_every_user_school_and_group():
    docs = DOCS.read_text(encoding="utf-8")
    for entry in DEMO_DIRECTORY.values():
        expected = [entry["entra_tenant_id"], entry["provider"]["oid"]]
        expected += [value for school in entry["schools"] for value in (school["code"], school["oid"])]
        expected += [value for user in entry["users"] for value in (user["username"], user["upn"])]
        expected += [group["id"] for group in entry["groups"]]
        missing = [value for value in expected if value not in docs]
        assert not missing, f"docs/demo.md does not mention {missing}"


def test_the_shipped_tenant_files_name_the_same_codes_oids_tenants_and_groups():
    """The tenants' demo IdPs only work if their files agree with the demo directory."""
    yaml = pytest.importorskip("yaml")
    tenants_dir = DOCS.parents[1] / "tenants"
    if not tenants_dir.is_dir():
        pytest.skip("no tenants/ folder")
    role_words = {"pupil": "learner", "teacher": "teacher", "principal": "principal"}
    for city, entry in DEMO_DIRECTORY.items():
        tenant = yaml.safe_load((tenants_dir / f"{city}.yaml").read_text(encoding="utf-8"))
        where = f"tenants/{city}.yaml"
        assert tenant["municipality_code"] == entry["municipality_code"], where
        assert tenant["education_provider"]["oid"] == entry["provider"]["oid"], where
        assert [(s["code"], s["oid"]) for s in tenant["schools"]] == [
            (s["code"], s["oid"]) for s in entry["schools"]], where
        for idp in tenant["identity_providers"]:
            if idp["type"] != "oidc":
                continue
            assert f"/{entry['entra_tenant_id']}/v2.0" in idp["issuer"], where
            lookups = {guid: (rule["school"], rule["role"])
                       for role in idp["mapping"]["roles"] for guid, rule in (role.get("lookup") or {}).items()}
            assert lookups == {g["id"]: (g["school"], role_words[g["role"]]) for g in entry["groups"]}, where
