"""Ruleset.from_config: presets, overrides, and errors that name file, path and expectation."""

from __future__ import annotations

import pytest
from mapping_data import SALT, VANTAA

from broker.mapping import PRESETS, RuleError, Ruleset

SOURCE = "tenants/vantaa.yaml"
PATH = "identity_providers[0].mapping"


def build(config):
    return Ruleset.from_config(config, tenant=VANTAA, idp_id="idp", source=SOURCE, path=PATH)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_compiles(preset):
    ruleset = build({"preset": preset})
    assert ruleset.preset == preset
    assert ruleset.rules["fields"]


def test_empty_config_maps_the_subject_only():
    for config in (None, {}):
        result = Ruleset.from_config(config, tenant=VANTAA, idp_id="idp").apply(
            {"given_name": ["X"]}, upstream_subject="s", salt=SALT)
        assert result.ok and set(result.identity) == {"user_id", "tenant", "idp", "roles", "schools",
                                                      "education_providers", "learning_materials_charges"}


@pytest.mark.parametrize("config, path, expected", [
    ("nope", PATH, "a mapping"),
    ({"preset": "okta"}, f"{PATH}.preset", "one of mpassid-saml, entra"),
    ({"rules": []}, f"{PATH}.rules", "one of preset, require, uid"),
    ({"user_id": {"from": "sub"}}, f"{PATH}.user_id", "always derived by the broker"),
    ({"fields": {"sub": {"from": "sub"}}}, f"{PATH}.fields.sub", "always derived by the broker"),
    ({"fields": {"shoe_size": {"from": "x"}}}, f"{PATH}.fields.shoe_size", "one of given_name"),
    ({"fields": {"given_name": "givenName"}}, f"{PATH}.fields.given_name", "a rule"),
    ({"fields": {"given_name": {}}}, f"{PATH}.fields.given_name.from", "an upstream attribute name"),
    ({"fields": {"given_name": {"from": ""}}}, f"{PATH}.fields.given_name.from", "an upstream attribute name"),
    ({"fields": {"schools": {"from": "x", "split": ""}}}, f"{PATH}.fields.schools.split", "a separator"),
    ({"fields": {"schools": [{"from": "x"}, {"from": "y", "match": "("}]}}, f"{PATH}.fields.schools[1].match",
     "a regular expression"),
    ({"fields": {"schools": {"from": "x", "lookup": {"Kaivoksela": "02134"}}}},
     f"{PATH}.fields.schools.lookup['Kaivoksela']", "a school code or OID of tenant vantaa"),
    ({"fields": {"class_level": {"from": "x", "lookup": {"ysi": 19}}}}, f"{PATH}.fields.class_level.lookup['ysi']",
     "a valid class_level value"),
    ({"roles": {"from": "x"}}, f"{PATH}.roles", "a list of role rules"),
    ({"roles": [{"from": "x"}, {"from": "x"}, {"from": "groups", "match": "(?P<role>[a-z"}]},
     f"{PATH}.roles[2].match", "a regular expression"),
    ({"roles": [{"from": "groups", "match": "(?P<shoe>x)"}]}, f"{PATH}.roles[0].match", "named groups among"),
    ({"roles": [{"from": "groups", "lookup": {"g1": "wizard"}}]}, f"{PATH}.roles[0].lookup['g1']", "a role"),
    ({"roles": [{"from": "groups", "lookup": {"g1": {"role": "teacher", "school": "02134"}}}]},
     f"{PATH}.roles[0].lookup['g1'].school", "a school code or OID of tenant vantaa"),
    ({"roles": [{"from": "groups", "lookup": {"g1": {"role": "teacher", "class": "9A"}}}]},
     f"{PATH}.roles[0].lookup['g1'].class", "one of role, school, group"),
    ({"roles": [{"from": "groups", "lookup": {"g1": {"school": "03083"}}}]},
     f"{PATH}.roles[0].lookup['g1'].role", "a role"),
    ({"roles": [{"from": "r", "format": "json"}]}, f"{PATH}.roles[0].format", "mpassid"),
    ({"roles": [{"from": "r", "format": "mpassid", "split": ";"}]}, f"{PATH}.roles[0].format", "no split"),
    ({"roles": [{"from": "r", "scope": "everywhere"}]}, f"{PATH}.roles[0].scope", "aligned"),
    ({"roles": [{"from": "r", "role": "wizard"}]}, f"{PATH}.roles[0].role", "a role"),
    ({"roles": [{"from": "r", "group": "9;A"}]}, f"{PATH}.roles[0].group", "a class or group"),
    ({"roles": [{"from": "r", "role_names": {"opet": "boss"}}]}, f"{PATH}.roles[0].role_names['opet']", "a role"),
    ({"roles": [{"from": "g", "match": "^(?P<school>\\d{5})-x$"}]}, f"{PATH}.roles[0].match",
     "a `role` group or a `role`"),
    ({"roles": [{"from": "g", "match": "^(?P<role>\\w+)$", "lookup": {"a": "teacher"}}]},
     f"{PATH}.roles[0].lookup", "no lookup with a `match`"),
    ({"roles": [{"id": "x", "disabled": True, "from": "y"}]}, f"{PATH}.roles[0].disabled", "`disabled: true`"),
    ({"preset": "entra", "roles": [{"id": "nope", "disabled": True}]}, f"{PATH}.roles[0].id",
     "the id of a preset rule to disable, one of entra-app-roles"),
    ({"roles": [{"id": "x", "disabled": True}]}, f"{PATH}.roles[0].id", "(the preset has none)"),
    ({"require": {"hd": []}}, f"{PATH}.require.hd", "an allowed value"),
    ({"uid": {"from": "oid", "split": ";"}}, f"{PATH}.uid.split", "one of from"),
    ({"defaults": {"schools": ["99999"]}}, f"{PATH}.defaults.schools[0]", "a school code or OID of tenant"),
    ({"defaults": {"roles": ["king"]}}, f"{PATH}.defaults.roles[0]", "a role"),
    ({"defaults": {"class_level": 11}}, f"{PATH}.defaults.class_level", "an integer 0-10"),
    ({"defaults": {"given_name": "X"}}, f"{PATH}.defaults.given_name", "one of schools, roles, class_level"),
])
def test_errors_name_source_path_and_expectation(config, path, expected):
    with pytest.raises(RuleError) as info:
        build(config)
    err = info.value
    assert err.source == SOURCE and err.path == path, str(err)
    assert expected in err.expected, str(err)
    assert str(err).startswith(f"{SOURCE}: {path}: expected ")


def test_tenant_field_rule_replaces_the_preset_rule():
    ruleset = build({"preset": "entra", "fields": {"given_name": {"from": "nickname_claim"}}})
    result = ruleset.apply({"oid": ["o1"], "given_name": ["Preset"], "nickname_claim": ["Tenant"]},
                           upstream_subject=None, salt=SALT)
    assert result.identity["given_name"] == "Tenant"
    assert [t.rule for t in result.trace if t.field == "given_name"] == ["fields.given_name"]


def test_an_empty_rule_list_disables_a_preset_field():
    ruleset = build({"preset": "mpassid-saml", "fields": {"nickname": []}})
    result = ruleset.apply({"urn:mpass.id:uid": ["u"], "urn:mpass.id:nickname": ["Matti"]},
                           upstream_subject=None, salt=SALT)
    assert "nickname" not in result.identity


def test_tenant_role_rule_with_a_preset_id_replaces_it_and_others_extend():
    config = {"preset": "entra", "roles": [
        {"id": "entra-app-roles", "from": "roles", "lookup": {"Ope": "teacher"}, "scope": "every_school"},
        {"from": "groups", "lookup": {"g-03083": {"role": "learner", "school": "03083"}}},
    ]}
    ruleset = build(config)
    assert ruleset.rules["roles"] == ["roles[0] (entra-app-roles)", "roles[1]"]
    result = ruleset.apply({"oid": ["o"], "roles": ["Ope", "Teacher"], "groups": ["g-03083"]},
                           upstream_subject=None, salt=SALT)
    assert [(r["role"], r["school"]) for r in result.identity["roles"]] == [("learner", "03083"),
                                                                            ("teacher", "03083")]


def test_disabling_a_preset_rule():
    ruleset = build({"preset": "entra", "roles": [{"id": "entra-app-roles", "disabled": True}]})
    assert ruleset.rules["roles"] == []


def test_require_and_defaults_merge_with_the_preset():
    ruleset = build({"preset": "google", "require": {"hd": "edu.vantaa.fi"},
                     "defaults": {"schools": ["03083"], "roles": ["learner"], "class_level": 1}})
    result = ruleset.apply({"hd": ["edu.vantaa.fi"]}, upstream_subject="g-1", salt=SALT)
    assert result.identity["roles"] == [{"role": "learner", "code": 1, "school": "03083"}]
    assert result.identity["class_level"] == 1
    assert {t.source for t in result.trace if t.field.startswith(("roles", "schools"))} == {"default"}


def test_defaults_apply_only_when_no_rule_produced_a_value():
    ruleset = build({"preset": "wilma", "defaults": {"roles": ["learner"], "schools": ["03084"]}})
    result = ruleset.apply({"username": ["u"], "schoolIds": ["03083"], "roles": ["Opettaja"]},
                           upstream_subject=None, salt=SALT)
    assert [(r["role"], r["school"]) for r in result.identity["roles"]] == [("teacher", "03083")]


def test_field_list_rules_all_contribute_and_first_scalar_wins():
    ruleset = build({"fields": {
        "schools": [{"from": "a", "split": ","}, {"from": "b", "lookup": {"Myyrmäki": "03084"}}],
        "given_name": [{"from": "first"}, {"from": "second"}],
    }, "roles": [{"from": "r", "scope": "every_school"}]})
    result = ruleset.apply({"a": ["03083, 00651"], "b": ["myyrmäki", "Unknown"], "second": ["Toinen"],
                            "r": ["teacher"]}, upstream_subject="s", salt=SALT)
    assert [s["code"] for s in result.identity["schools"]] == ["03083", "00651", "03084"]
    assert result.identity["given_name"] == "Toinen"


def test_first_present_source_wins():
    ruleset = build({"preset": "mpassid-saml"})
    result = ruleset.apply({"urn:mpass.id:uid": ["u"],
                            "urn:mpass.id:role": ["1.2.246.562.10.67019405611;03083;9A;Oppilas;1;;"],
                            "urn:mpass.id:role_v1.1": ["Vantaa;03083;9A;Oppilas", "Vantaa;03084;9A;Opettaja"]},
                           upstream_subject=None, salt=SALT)
    assert [r["school"] for r in result.identity["roles"]] == ["03083"]


def test_the_examples_in_docs_compile():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "mapping.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
              if "mapping:" in b and "preset:" in b and "{...}" not in b]  # not the outline
    assert len(blocks) >= 4
    found = 0
    for block in blocks:
        doc = yaml.safe_load(block)
        stack = [doc]
        while stack:  # every `mapping:` value, wherever it sits in the example
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("mapping"), dict):
                    Ruleset.from_config(node["mapping"], tenant=VANTAA, idp_id="doc", source="docs/mapping.md")
                    found += 1
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    assert found >= 4
