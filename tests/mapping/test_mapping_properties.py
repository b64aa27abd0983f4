"""Property-based: every parser and transform gives a result or its documented error
on any input, never another exception; whatever the upstream sends, the identity
is valid against the schema and the release functions work on it."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mapping_data import ESPOO_PROVIDER, SALT, VANTAA, VANTAA_PROVIDER

from broker.mapping import (
    SCOPES,
    InputError,
    RuleError,
    Ruleset,
    access_token_claims,
    load_upstream,
    parse_role_string,
    release_claims,
    release_saml_attributes,
    role_code,
    stable_user_id,
    subject_for,
)
from broker.mapping.model import OID, SCHOOL_CODE
from broker.mapping.roles import RoleString
from broker.mapping.transforms import MAX_VALUES, Lookup, Match, Split, TransformError, bounded
from broker.mapping.validate import (
    parse_charge,
    parse_class_level,
    parse_group,
    parse_learner_id,
    parse_name,
    parse_provider_ref,
    parse_school_ref,
)
from broker.registry.relying_parties import ReleasePolicy

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like what IdPs send, mixed with anything at all.
PIECES = st.sampled_from([";", "03083", "03084", "02134", "99999", "3083", "1.2.246.562.10.41253773158",
                          VANTAA_PROVIDER, ESPOO_PROVIDER, "1.2.246.562.24.10000000016", "Oppilas", "Opettaja",
                          "Rehtori", "1", "2", "7", "9A", "teacher", " ", "\x00", "é", "MPASSOID.x", ""])
TEXT = st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=12).map("".join))


# -- roles -----------------------------------------------------------------------------------

@SETTINGS
@given(TEXT)
def test_role_code_is_a_code_or_none(name):
    assert role_code(name) in (None, 1, 2, 3, 4, 5, 6)


@SETTINGS
@given(st.lists(TEXT, min_size=1, max_size=9).map(";".join))
def test_parse_role_string_is_total(value):
    parsed = parse_role_string(value)
    fields = value.count(";") + 1
    if parsed is None:
        assert fields not in (4, 5, 6, 7)
    else:
        assert isinstance(parsed, RoleString) and parsed.code in (None, 1, 2, 3, 4, 5, 6)
        assert parsed.version == ("1.1" if fields == 4 else "1.4")


# -- transforms ------------------------------------------------------------------------------

@SETTINGS
@given(st.one_of(st.text(max_size=10), st.integers(), st.none()), TEXT)
def test_split(sep, value):
    try:
        split = Split(sep)
    except TransformError:
        assert not (isinstance(sep, str) and 1 <= len(sep) <= 8)
        return
    parts = split(value)
    assert all(p and p == p.strip() and sep not in p for p in parts)


@SETTINGS
@given(st.text(max_size=30), TEXT)
def test_match_from_any_pattern(pattern, value):
    try:
        match = Match(pattern, allowed_groups=("role", "school", "group", "value"))
    except TransformError as exc:
        assert exc.key == "match"
        return
    got = match.extract(value)
    assert got is None or isinstance(got, str)
    parts = match.parts(value)
    assert parts is None or set(parts) <= {"role", "school", "group", "value"}


@SETTINGS
@given(st.dictionaries(st.one_of(st.text(max_size=10), st.integers(), st.booleans()), st.text(max_size=5),
                       max_size=5), TEXT)
def test_lookup(table, value):
    try:
        lookup = Lookup(table)
    except TransformError:
        return
    got = lookup.get(value)
    assert got is None or got in table.values()


@SETTINGS
@given(st.one_of(st.none(), st.text(), st.integers(),
                 st.lists(st.one_of(st.text(max_size=3000), st.integers(), st.none()), max_size=20)))
def test_bounded(values):
    got, skipped = bounded(values)
    assert all(isinstance(v, str) and v and v == v.strip() for v in got) and skipped >= 0
    assert len(got) <= MAX_VALUES


# -- field parsers ---------------------------------------------------------------------------

@SETTINGS
@given(TEXT)
def test_field_parsers_are_total_and_produce_schema_shapes(value):
    ref = parse_school_ref(value)
    assert ref is None or SCHOOL_CODE.match(ref) or OID.match(ref)
    provider = parse_provider_ref(value)
    assert provider is None or OID.match(provider)
    charge = parse_charge(value)
    assert charge is None or (isinstance(charge[0], bool) and (charge[1] is None or parse_school_ref(charge[1])))
    level = parse_class_level(value)
    assert level is None or 0 <= level <= 10
    learner = parse_learner_id(value)
    assert learner is None or re.fullmatch(r"1\.2\.246\.562\.(24|98)\.[0-9]{11}", learner)
    name = parse_name(value)
    assert name is None or (0 < len(name) <= 256 and not re.search(r"[\x00-\x1f\x7f]", name))
    group = parse_group(value)
    assert group is None or (";" not in group and 0 < len(group) <= 64)


# -- the simulator's input loader ------------------------------------------------------------

@SETTINGS
@given(st.binary(max_size=300))
def test_load_upstream_any_bytes(data):
    try:
        attrs, subject = load_upstream(data)
    except InputError:
        return
    assert all(isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
               for k, v in attrs.items())
    assert subject is None or isinstance(subject, str)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@SETTINGS
@given(JSON)
def test_load_upstream_any_json(value):
    try:
        attrs, subject = load_upstream(json.dumps(value).encode())
    except InputError:
        assert not isinstance(value, dict) or "subject" in value
        return
    assert isinstance(attrs, dict)


XML_PIECES = st.sampled_from([
    "<saml:Assertion xmlns:saml='urn:oasis:names:tc:SAML:2.0:assertion'>", "</saml:Assertion>",
    "<saml:AttributeStatement>", "</saml:AttributeStatement>", "<saml:Attribute Name='a'>", "<saml:Attribute>",
    "</saml:Attribute>", "<saml:AttributeValue>", "</saml:AttributeValue>", "<saml:Subject><saml:NameID>",
    "</saml:NameID></saml:Subject>", "x", "&amp;", "&e;", "<!DOCTYPE x>", "<![CDATA[y]]>", "<!-- c -->", "<?pi?>",
])


@SETTINGS
@given(st.lists(XML_PIECES, max_size=14))
def test_load_upstream_any_xmlish(pieces):
    try:
        attrs, _ = load_upstream("".join(pieces).encode())
    except InputError:
        return
    assert isinstance(attrs, dict)


# -- configuration ---------------------------------------------------------------------------

KEYS = st.sampled_from(["preset", "require", "uid", "fields", "roles", "defaults", "from", "split", "match",
                        "lookup", "id", "format", "role_names", "role", "school", "group", "scope", "disabled",
                        "given_name", "schools", "learner_id", "class_level", "groups", "education_providers",
                        "learning_materials_charges", "sub", "hd", "mpassid", "entra", "every_school"])
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2, 12), KEYS, PIECES, st.sampled_from(
    ["(", "^(?P<role>\\w+)-(?P<school>\\d{5})$", "(?P<value>\\d+)", "mpassid", "aligned", "teacher", "entra"]))
CONFIG = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=20)


@SETTINGS
@given(CONFIG)
def test_from_config_gives_a_ruleset_or_a_rule_error(config):
    try:
        ruleset = Ruleset.from_config(config, tenant=VANTAA, idp_id="x", source="t.yaml")
    except RuleError as exc:
        assert str(exc).startswith("t.yaml: ") and exc.expected
        return
    result = ruleset.apply({"sub": ["s"], "hd": ["03083"]}, upstream_subject="s", salt=SALT)
    assert result.refused in (None, "no_user_id", "requirement_not_met")


FIELD_NAMES = st.sampled_from(["given_name", "learner_id", "class_level", "schools", "groups", "education_providers",
                                "learning_materials_charges", "user_id"])
SOURCES = st.sampled_from(["g", "r", "sc", "other"])
OPTIONAL = {"split": LEAVES, "match": LEAVES, "lookup": st.dictionaries(PIECES, LEAVES | st.dictionaries(KEYS, LEAVES,
                                                                                                        max_size=3),
                                                                         max_size=3)}
FIELD_RULE = st.fixed_dictionaries({"from": SOURCES}, optional=OPTIONAL)
ROLE_RULE = st.fixed_dictionaries({"from": SOURCES}, optional={
    **OPTIONAL, "id": st.sampled_from(["entra-app-roles", "mpassid-role", "x"]), "disabled": LEAVES,
    "format": LEAVES, "role": LEAVES, "school": LEAVES, "group": LEAVES, "scope": LEAVES,
    "role_names": st.dictionaries(PIECES, LEAVES, max_size=2)})
SHAPED_CONFIG = st.fixed_dictionaries({}, optional={
    "preset": st.sampled_from(["mpassid-saml", "entra", "google", "adfs", "wilma", "x"]),
    "require": st.dictionaries(SOURCES, LEAVES | st.lists(PIECES, max_size=2), max_size=2),
    "uid": st.fixed_dictionaries({"from": SOURCES | LEAVES}),
    "fields": st.dictionaries(FIELD_NAMES, FIELD_RULE | st.lists(FIELD_RULE, max_size=2), max_size=3),
    "roles": st.lists(ROLE_RULE, max_size=3),
    "defaults": st.dictionaries(st.sampled_from(["schools", "roles", "class_level"]),
                                LEAVES | st.lists(LEAVES, max_size=2), max_size=2),
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SHAPED_CONFIG, st.dictionaries(SOURCES, st.lists(st.one_of(PIECES, TEXT), max_size=3), max_size=4))
def test_shaped_config_then_apply(identity_schema, config, upstream):
    try:
        ruleset = Ruleset.from_config(config, tenant=VANTAA, idp_id="x", source="t.yaml")
    except RuleError as exc:
        assert str(exc).startswith("t.yaml: mapping") and exc.expected
        return
    result = ruleset.apply(upstream, upstream_subject="s", salt=SALT)
    if result.ok:
        identity_schema.validate(result.identity)


# -- apply and release on anything -----------------------------------------------------------

RICH = {
    "fields": {
        "given_name": {"from": "gn"}, "family_name": {"from": "fn"}, "nickname": {"from": "nn"},
        "learner_id": {"from": "lid"}, "class_level": {"from": "cl"},
        "schools": [{"from": "sc", "split": ";"}, {"from": "g", "match": "^koulu-(\\d{5})$"}],
        "education_providers": {"from": "ep"}, "groups": {"from": "gr", "split": ";"},
        "learning_materials_charges": {"from": "lmc", "split": ","},
    },
    "roles": [
        {"from": "mr", "format": "mpassid"},
        {"from": "r", "split": ";"},
        {"from": "ar", "scope": "every_school"},
        {"from": "g", "match": "^(?P<role>\\w+)@(?P<school>\\d{5})(?:/(?P<group>\\w+))?$"},
        {"from": "g", "lookup": {"guid-1": {"role": "teacher", "school": "03083"}, "guid-2": "principal"}},
    ],
}
NAMES = st.sampled_from(["gn", "fn", "nn", "lid", "cl", "sc", "g", "ep", "gr", "lmc", "mr", "r", "ar", "other"])
# Plausible values (mostly valid, sometimes not), so that the properties also cover
# identities with roles, schools, classes and charges, not only refusals.
SCHOOL = st.sampled_from(["03083", "03084", "03085", "00651", "02134", "3083", "1.2.246.562.10.41253773158",
                          "1.2.246.562.10.52251087186", "99999", "x"])
ROLE = st.sampled_from(["Oppilas", "Opettaja", "Rehtori", "student", "teacher", "Kummi", "3", "", "9"])
GROUP = st.sampled_from(["9A", "7B", "", "x" * 70, "a;b"])
ROLE_STRING = st.one_of(
    st.tuples(st.sampled_from([VANTAA_PROVIDER, ESPOO_PROVIDER, "Vantaa", ""]), SCHOOL, GROUP, ROLE,
              st.sampled_from(["1", "2", "6", "", "8"]), st.sampled_from(["", "1.2.246.562.10.41253773158"]),
              st.sampled_from(["", "1.2.246.562.99.1", "bad"])).map(";".join),
    st.tuples(st.sampled_from(["Vantaa", VANTAA_PROVIDER]), SCHOOL, GROUP, ROLE).map(";".join))
PLAUSIBLE = {
    "gn": st.sampled_from(["Maija", "Matti", "", "\x00"]), "fn": st.sampled_from(["Mäkinen", "x" * 300]),
    "lid": st.sampled_from(["1.2.246.562.24.10000000016", "1.2.246.562.98.12345678901", "123"]),
    "cl": st.sampled_from(["0", "9", "10", "11", "-1"]),
    "sc": st.lists(SCHOOL, max_size=3).map(";".join), "g": st.one_of(
        SCHOOL.map("koulu-{}".format), st.tuples(ROLE, SCHOOL, GROUP).map(lambda t: f"{t[0]}@{t[1]}/{t[2]}"),
        st.sampled_from(["guid-1", "guid-2", "other"])),
    "ep": st.sampled_from([VANTAA_PROVIDER, ESPOO_PROVIDER + ";Espoo", "x"]),
    "gr": st.lists(GROUP, max_size=3).map(";".join),
    "lmc": st.lists(st.sampled_from(["0", "1", "1;03083", "0;02134", "2"]), max_size=3).map(",".join),
    "mr": ROLE_STRING, "r": st.lists(ROLE, max_size=3).map(";".join), "ar": ROLE,
    "other": st.sampled_from(["MPASSOID.1", "wilma-1", "MPASSOID.1", ""]),
}
UPSTREAM = st.dictionaries(NAMES, st.one_of(st.lists(TEXT, max_size=5), TEXT), max_size=10) | st.builds(
    dict, st.lists(st.sampled_from(sorted(PLAUSIBLE)), unique=True, max_size=len(PLAUSIBLE)).flatmap(
        lambda names: st.fixed_dictionaries({n: st.lists(PLAUSIBLE[n], min_size=1, max_size=3)
                                             for n in {*names, "other"}})))
RULESETS = [Ruleset.from_config(RICH, tenant=VANTAA, idp_id="rich")] + [
    Ruleset.from_config({"preset": p}, tenant=VANTAA, idp_id=p) for p in ("mpassid-saml", "wilma")]
EVERYTHING = tuple(SCOPES)


def _renamed(ruleset, upstream):
    """The sample with the preset's own attribute names, so presets see their attributes."""
    renamed = {"mpassid-saml": {"mr": "urn:mpass.id:role", "sc": "urn:mpass.id:schoolInfo", "gn": "urn:oid:2.5.4.42",
                                "ep": "urn:mpass.id:educationProviderInfo", "cl": "urn:mpass.id:classLevel",
                                "lmc": "urn:mpass.id:learningMaterialsCharge", "other": "urn:mpass.id:uid"},
               "wilma": {"sc": "schoolIds", "r": "roles", "gr": "groups", "lmc": "learningMaterialsCharges",
                         "cl": "groupLevels", "other": "username"}}.get(ruleset.preset, {})
    return {renamed.get(k, k): v for k, v in upstream.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(UPSTREAM, st.one_of(st.none(), st.just("subject-1"), TEXT), st.sampled_from(RULESETS))
def test_apply_and_release_on_any_upstream(identity_schema, claims_schema, access_token_schema, upstream, subject,
                                           ruleset):
    upstream = _renamed(ruleset, upstream)
    result = ruleset.apply(upstream, upstream_subject=subject, salt=SALT)
    if result.refused:
        assert result.identity == {}
        return
    identity_schema.validate(result.identity)
    uid = upstream.get("urn:mpass.id:uid") or upstream.get("username") or subject
    assert result.identity["user_id"] not in json.dumps(upstream)
    for school in result.identity["schools"]:
        assert VANTAA.school(school["code"]).active
    for profile in ("digione", "mpassid"):
        policy = ReleasePolicy(scopes=EVERYTHING, profile=profile, sector="svc.example.fi")
        sub = subject_for(result.identity, policy=policy, salt=SALT)
        claims = release_claims(result.identity, policy=policy, granted_scopes=EVERYTHING, subject=sub)
        json.dumps(claims)
        if profile == "digione":
            claims_schema.validate({"sub": sub, **claims})
        access = access_token_claims(result.identity, policy=policy, granted_scopes=EVERYTHING)
        access_token_schema.validate({"iss": "i", "sub": sub, "aud": "a", "client_id": "c", "scope": "openid",
                                      "iat": 1, "exp": 2, "jti": "j", **access})
        attrs = release_saml_attributes(result.identity, policy=policy, subject=sub)
        assert all(isinstance(v, str) for values in attrs.values() for v in values)
        assert uid is None or sub not in str(uid)


@SETTINGS
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=10))
def test_user_id_is_never_the_upstream_subject(subject, tenant, idp):
    assume(len(subject) > 3)
    uid = stable_user_id(tenant, idp, subject, SALT)
    assert subject not in uid and re.fullmatch(r"[0-9a-f]{64}", uid)
