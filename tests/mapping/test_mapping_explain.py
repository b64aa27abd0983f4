"""The simulator: reading samples (JSON claims, attribute maps, SAML XML) and explaining."""

from __future__ import annotations

import json

import pytest
from mapping_data import SALT, VANTAA, VANTAA_PROVIDER

from broker.mapping import InputError, Ruleset, explain, format_explanation, load_upstream
from broker.registry.relying_parties import ReleasePolicy

RESPONSE = f"""<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"
    ID="_r1" Version="2.0" IssueInstant="2026-01-12T06:02:11Z" Destination="https://login.digione.fi/saml2/acs">
  <saml:Issuer>https://wilma.vantaa.fi/idp</saml:Issuer>
  <samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
  <saml:Assertion ID="_a1" Version="2.0" IssueInstant="2026-01-12T06:02:11Z">
    <saml:Issuer>https://wilma.vantaa.fi/idp</saml:Issuer>
    <saml:Subject>
      <saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient">_9c1d0e7f</saml:NameID>
    </saml:Subject>
    <saml:AttributeStatement>
      <saml:Attribute Name="urn:mpass.id:uid" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">
        <saml:AttributeValue>MPASSOID.c6329e82913e265b3a79c11a043fdab8b06b1a9e</saml:AttributeValue>
      </saml:Attribute>
      <saml:Attribute Name="urn:oid:2.5.4.42" FriendlyName="givenName">
        <saml:AttributeValue>Maija</saml:AttributeValue>
      </saml:Attribute>
      <saml:Attribute Name="urn:oid:2.5.4.4" FriendlyName="sn">
        <saml:AttributeValue>Meikäläinen</saml:AttributeValue>
      </saml:Attribute>
      <saml:Attribute Name="urn:oid:1.3.6.1.4.1.16161.1.1.27">
        <saml:AttributeValue>1.2.246.562.24.10000000016</saml:AttributeValue>
      </saml:Attribute>
      <saml:Attribute Name="urn:mpass.id:role">
        <saml:AttributeValue>{VANTAA_PROVIDER};03083;7B;Oppilas;1;1.2.246.562.10.41253773158;</saml:AttributeValue>
        <saml:AttributeValue>{VANTAA_PROVIDER};02134;7B;Oppilas;1;;</saml:AttributeValue>
      </saml:Attribute>
    </saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>
""".encode()


def test_load_saml_response():
    attrs, subject = load_upstream(RESPONSE)
    assert subject == "_9c1d0e7f"
    assert attrs["urn:oid:2.5.4.42"] == ["Maija"]
    assert len(attrs["urn:mpass.id:role"]) == 2


def test_load_bare_assertion():
    start = RESPONSE.index(b"<saml:Assertion")
    end = RESPONSE.index(b"</saml:Assertion>") + len(b"</saml:Assertion>")
    assertion = RESPONSE[start:end].replace(
        b"<saml:Assertion ", b'<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ', 1)
    assert load_upstream(assertion) == load_upstream(RESPONSE)


def test_load_json_claims_and_attribute_map():
    claims = {"sub": "s-1", "tid": "t", "groups": ["g1", "g2"], "email_verified": True, "n": 5,
              "address": {"country": "FI"}, "nothing": None}
    attrs, subject = load_upstream(json.dumps(claims).encode())
    assert subject == "s-1"
    assert attrs == {"sub": ["s-1"], "tid": ["t"], "groups": ["g1", "g2"], "email_verified": ["true"], "n": ["5"]}
    amap = {"subject": "_x", "attributes": {"urn:oid:2.5.4.42": ["Maija"]}}
    assert load_upstream(json.dumps(amap).encode()) == ({"urn:oid:2.5.4.42": ["Maija"]}, "_x")
    assert load_upstream(b'\xef\xbb\xbf {"urn:mpass.id:uid": ["u"]}') == ({"urn:mpass.id:uid": ["u"]}, None)


@pytest.mark.parametrize("data, message", [
    (b"", "expected JSON"),
    (b"hello", "expected JSON"),
    (b"[1, 2]", "a JSON object"),
    (b'{"attributes": {}, "subject": 5}', "subject"),
    (b"<a><b></a>", "not well-formed"),
    (b"<html/>", "expected a SAML 2.0 Response"),
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
     b'<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&lol2;</saml:Assertion>', "DOCTYPE"),
    (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "DOCTYPE"),
    (b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
     b'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:EncryptedAssertion/></samlp:Response>', "encrypted"),
])
def test_load_refuses_what_it_cannot_read(data, message):
    with pytest.raises(InputError, match=message):
        load_upstream(data)


def test_explain_says_what_happened_and_what_each_service_gets():
    ruleset = Ruleset.from_config({"preset": "mpassid-saml"}, tenant=VANTAA, idp_id="vantaa-wilma")
    attrs, subject = load_upstream(RESPONSE)
    services = [
        ("oppimateriaali", ReleasePolicy(scopes=("openid", "roles", "schools"), profile="mpassid",
                                         sector="oppimateriaali.example.fi"), "saml"),
        ("kirjasto", ReleasePolicy(sector="kirjasto.example.fi"), "oidc"),
        ("koe", ReleasePolicy(scopes=("openid", "roles", "learner_id", "learning_materials"), profile="mpassid"),
         "oidc"),
    ]
    out = explain(ruleset, attrs, subject=subject, salt=SALT, services=services)
    json.dumps(out)
    assert out["refused"] is None and out["tenant"] == "vantaa" and out["idp"] == "vantaa-wilma"
    assert out["identity"]["roles"] == [{"role": "learner", "code": 1, "school": "03083", "group": "7B"}]
    assert {"field": "roles", "rule": "preset mpassid-saml: roles[0] (mpassid-role)",
            "reason": "school_not_in_tenant", "value": f"{VANTAA_PROVIDER};02134;7B;Oppilas;1;;",
            "school": "02134", "why": "its school 02134: school code not in tenant vantaa's schools"} in out["drops"]
    assert {"field": "roles[0]", "rule": "preset mpassid-saml: roles[0] (mpassid-role)",
            "source": "urn:mpass.id:role"} in out["trace"]
    saml, oidc, mpassid_oidc = out["services"]
    assert [s["protocol"] for s in out["services"]] == ["saml", "oidc", "oidc"]
    # each service is shown only what its protocol carries
    assert "saml_attributes" in saml and not {"oidc_claims", "access_token_claims"} & set(saml)
    assert saml["saml_attributes"]["urn:mpass.id:uid"] == [saml["subject"]]
    assert "saml_attributes" not in oidc and "saml_attributes" not in mpassid_oidc
    assignment = {"role": "learner", "code": 1, "school": "03083", "group": "7B"}
    assert oidc["oidc_claims"] == {"sub": oidc["subject"], "roles": ["learner"], "role_assignments": [assignment]}
    assert oidc["access_token_claims"] == {"roles": ["learner"], "role_assignments": [assignment]}
    # the MPASSid profile's OIDC claims keep MPASSid's names; its access tokens carry the broker's roles
    claims = mpassid_oidc["oidc_claims"]
    assert claims["urn:oid:1.3.6.1.4.1.16161.1.1.27"] == "1.2.246.562.24.10000000016"
    assert claims["urn:mpass.id:role"][0].split(";")[1:5] == ["03083", "7B", "Oppilas", "1"]
    assert claims["urn:mpass.id:role_v1.1"] and "roles" not in claims and "role_assignments" not in claims
    assert mpassid_oidc["access_token_claims"] == {"roles": ["learner"], "role_assignments": [assignment]}
    assert len({saml["subject"], oidc["subject"], mpassid_oidc["subject"].removeprefix("MPASSOID.")}) == 3

    text = format_explanation(out)
    assert "learner" in text and "oppimateriaali" in text
    assert (f'  - roles: "{VANTAA_PROVIDER};02134;7B;Oppilas;1;;" — its school 02134: school code not in tenant '
            "vantaa's schools (rule preset mpassid-saml: roles[0] (mpassid-role))") in text
    assert "urn:mpass.id:role = " in text and "<- urn:mpass.id:role" in text
    sections = text.split("\nService ")[1:]
    assert sections[0].startswith("oppimateriaali (SAML service provider") and "OIDC claims" not in sections[0]
    assert sections[1].startswith("kirjasto (OIDC client") and "SAML attributes" not in sections[1]
    assert 'roles: ["learner"]' in sections[1] and "Access token claims" in sections[1]


@pytest.mark.parametrize("service", [("kirjasto", ReleasePolicy(sector="k.fi")),
                                     ("kirjasto", ReleasePolicy(sector="k.fi"), "oauth"),
                                     ("kirjasto", ReleasePolicy(sector="k.fi"), None)])
def test_explain_needs_each_services_protocol(service):
    ruleset = Ruleset.from_config({"preset": "mpassid-saml"}, tenant=VANTAA, idp_id="vantaa-wilma")
    attrs, subject = load_upstream(RESPONSE)
    with pytest.raises(ValueError, match="protocol"):
        explain(ruleset, attrs, subject=subject, salt=SALT, services=[service])


def test_dropped_values_are_kept_only_when_asked_and_stay_out_of_the_log(caplog):
    import logging

    ruleset = Ruleset.from_config({"preset": "mpassid-saml"}, tenant=VANTAA, idp_id="vantaa-wilma")
    attrs, subject = load_upstream(RESPONSE)
    assert ruleset.apply(attrs, upstream_subject=subject, salt=SALT).dropped_values == []
    with caplog.at_level(logging.INFO, logger="broker.mapping"):
        kept = ruleset.apply(attrs, upstream_subject=subject, salt=SALT, keep_dropped_values=True)
    assert len(kept.dropped_values) == len(kept.drops) > 0
    assert (kept.drops[0].reason, kept.dropped_values[0]) == (
        "school_not_in_tenant", (f"{VANTAA_PROVIDER};02134;7B;Oppilas;1;;", "02134"))
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "school_not_in_tenant" in logged and "02134" not in logged


def test_explain_subjects_use_the_subject_salt():
    from broker.mapping import subject_for

    ruleset = Ruleset.from_config({"preset": "mpassid-saml"}, tenant=VANTAA, idp_id="vantaa-wilma")
    attrs, subject = load_upstream(RESPONSE)
    policy = ReleasePolicy(sector="kirjasto.example.fi")
    other_salt = b"pairwise-subject-salt-0123456789"
    out = explain(ruleset, attrs, subject=subject, salt=SALT, subject_salt=other_salt,
                  services=[("kirjasto", policy, "oidc")])
    identity = ruleset.apply(attrs, upstream_subject=subject, salt=SALT).identity
    assert out["services"][0]["subject"] == subject_for(identity, policy=policy, salt=other_salt)


def test_explain_refused():
    ruleset = Ruleset.from_config({"preset": "mpassid-saml"}, tenant=VANTAA, idp_id="vantaa-wilma")
    out = explain(ruleset, {"urn:oid:2.5.4.42": ["Maija"]}, subject="_t", salt=SALT,
                  services=[("kirjasto", ReleasePolicy(sector="k.fi"), "oidc")])
    assert out["refused"] == "no_user_id" and out["identity"] == {}
    assert "subject" not in out["services"][0]
    text = format_explanation(out)
    assert "REFUSED: no_user_id" in text and "receives nothing" in text


def test_the_package_is_pure():
    """No web framework, SATOSA, Redis or pysaml2 behind broker.mapping (lxml only
    when the simulator reads XML), and importing it does nothing else."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, broker.mapping as m; m.Ruleset.from_config({'preset': 'entra'}, "
            "tenant=m.TenantScope('t', '1.2.3'), idp_id='i'); "
            "bad = [k for k in sys.modules if k.split('.')[0] in ('flask', 'satosa', 'redis', 'saml2', 'lxml', "
            "'werkzeug', 'oic', 'cryptography')]; print(bad)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True,
                         env={"PYTHONPATH": str(root)})
    assert out.stdout.strip() == "[]"
