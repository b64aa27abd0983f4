"""``broker mapping explain`` from the shell: the shipped samples, named drops, unused inputs,
exit statuses and messages, and each service shown over its own protocol.

Every command runs as on a fresh clone: the demo's metadata, secrets and registry are empty
folders (``make demo`` has not run), since the simulator reads only schools and rules.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from broker.cli import main
from broker.mapping import PRESETS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
#: The commands docs/examples/README.md gives for its samples (its table is the pairing).
COMMANDS = re.findall(r"`broker mapping explain ([^`]+)`", (EXAMPLES / "README.md").read_text())

SP_METADATA = """<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    entityID="https://sp.explain.example/sp">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
        Location="https://sp.explain.example/acs" index="0"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"""


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """The broker's settings as on a fresh clone: nothing generated, nothing registered."""
    for name in ("metadata", "demo", "registry"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("BROKER_METADATA_DIR", str(tmp_path / "metadata"))
    monkeypatch.setenv("BROKER_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("BROKER_REGISTRY_DIR", str(tmp_path / "registry"))
    monkeypatch.delenv("BROKER_DATABASE_URL", raising=False)
    monkeypatch.chdir(ROOT)
    return tmp_path


def explain(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["mapping", "explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_samples_readme_covers_every_sample_and_every_preset():
    # sp-metadata.xml is a service's metadata for `broker sps add`, not an IdP's answer.
    samples = {p.name for p in EXAMPLES.iterdir() if p.name not in ("README.md", "sp-metadata.xml")}
    named = {shlex.split(c)[-1].removeprefix("docs/examples/") for c in COMMANDS}
    assert named == samples
    presets = {"mpassid-saml", "entra"} | {a.split()[1] for c in COMMANDS for a in re.findall(r"--preset \S+", c)}
    assert presets == set(PRESETS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_shipped_sample_maps_with_its_tenant(fresh_clone, capsys, command):
    code, out, err = explain(capsys, *shlex.split(command), "--json")
    assert code == 0, err
    explained = json.loads(out)
    assert explained["refused"] is None and explained["identity"]["user_id"]
    assert explained["identity"].get("given_name") and explained["identity"].get("family_name")
    assert not explained["drops"] or "entra-pupil" in command, explained["drops"]


def test_the_readme_example_names_each_dropped_value_and_each_unused_input(fresh_clone, capsys):
    code, out, err = explain(capsys, "--tenant", "vantaa", "--idp", "entra",
                             "docs/examples/entra-pupil-claims.json")
    assert code == 0, err
    assert ("  - schools: \"99999\" — school code not in tenant vantaa's schools (rule fields.schools)\n"
            in out)
    unused = out.split("Not used by any rule:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    # sub: Vantaa's Entra keys users by oid; roles: the app-role rule is disabled there
    assert unused == ["  - iss", "  - sub", "  - preferred_username", "  - roles",
                      '  - groups: "00000000-0000-0000-0000-000000000000" (no rule takes this value)']
    assert "No services are registered" in out
    code, out, _ = explain(capsys, "--tenant", "vantaa", "--idp", "entra", "--json",
                           "docs/examples/entra-pupil-claims.json")
    explained = json.loads(out)
    assert explained["drops"] == [{"field": "schools", "rule": "fields.schools", "reason": "school_not_in_tenant",
                                   "value": "99999", "why": "school code not in tenant vantaa's schools"}]
    assert explained["unused"] == {"names": ["iss", "sub", "preferred_username", "roles"],
                                   "values": {"groups": ["00000000-0000-0000-0000-000000000000"]}}


def test_the_readme_shows_what_the_command_prints(fresh_clone, capsys):
    readme = (ROOT / "README.md").read_text()
    command = "broker mapping explain --tenant vantaa --idp entra docs/examples/entra-pupil-claims.json"
    shown = readme.split(f"$ {command}\n", 1)[1].split("```", 1)[0]
    code, out, _ = explain(capsys, *shlex.split(command)[3:])
    assert code == 0
    assert re.sub(r"user_id: [0-9a-f]{64}", "user_id: 8a9f50bb…", out) == shown


def test_an_unknown_attribute_and_an_invalid_value_are_named(fresh_clone, capsys, tmp_path):
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps({"subject": "_x", "attributes": {
        "urn:mpass.id:uid": ["MPASSOID.1"], "urn:oid:2.5.4.42": ["Maija"],
        "urn:oid:1.3.6.1.4.1.16161.1.1.27": ["123456-789A"], "urn:example:favouriteColour": ["blue"]}}))
    code, out, err = explain(capsys, "--tenant", "vantaa", "--idp", "koulu", str(sample))
    assert code == 0, err
    assert ('  - learner_id: "123456-789A" — not a national learner id (1.2.246.562.24. or, for tests, '
            "1.2.246.562.98. and 11 digits) (rule preset mpassid-saml: fields.learner_id)") in out
    assert "Not used by any rule:\n  - urn:example:favouriteColour\n" in out


def test_a_refused_identity_exits_1_and_says_why(fresh_clone, capsys, tmp_path):
    claims = json.loads((EXAMPLES / "entra-pupil-claims.json").read_text())
    del claims["oid"]
    sample = tmp_path / "no-oid.json"
    sample.write_text(json.dumps(claims))
    code, out, _ = explain(capsys, "--tenant", "vantaa", "--idp", "entra", str(sample))
    assert code == 1
    why = "no user key: none of oid, http://schemas.microsoft.com/identity/claims/objectidentifier is in the input"
    assert f"REFUSED: no_user_id: {why}" in out
    assert f"  - user_id: {why}" in out and "(rule preset entra: uid)" in out
    claims["tid"] = "another-directory"
    sample.write_text(json.dumps(claims))
    code, out, _ = explain(capsys, "--tenant", "vantaa", "--idp", "entra", "--json", str(sample))
    assert code == 1
    assert json.loads(out)["drops"][0]["value"] == ["another-directory"]


def test_usage_errors_exit_2_and_say_what_would_work(fresh_clone, capsys, tmp_path):
    sample = "docs/examples/entra-pupil-claims.json"
    code, _, err = explain(capsys, "--tenant", "helsinki", "--idp", "entra", sample)
    assert code == 2
    assert ("unknown tenant 'helsinki': the tenants are espoo, jyvaskyla, lahti, oulu, tampere, turku, vantaa"
            in err)
    code, _, err = explain(capsys, "--tenant", "vantaa", "--idp", "nope", sample)
    assert code == 2
    assert "unknown IdP 'nope' in tenant 'vantaa': its IdPs are koulu (saml), entra (oidc)" in err
    code, _, err = explain(capsys, "--tenant", "vantaa", "--idp", "entra", str(tmp_path / "missing.json"))
    assert code == 2 and "No such file or directory" in err and "docs/examples/" in err
    (tmp_path / "bad.txt").write_text("not a response")
    code, _, err = explain(capsys, "--tenant", "vantaa", "--idp", "entra", str(tmp_path / "bad.txt"))
    assert code == 2 and "expected JSON claims" in err


def test_each_service_is_shown_only_its_protocol(fresh_clone, capsys):
    registry = fresh_clone / "registry"
    (registry / "clients").mkdir()
    (registry / "clients" / "explain-rp.json").write_text(json.dumps({
        "client_id": "explain-rp", "redirect_uris": ["https://rp.explain.example/cb"], "secret_sha256": "0" * 64,
        "policy": {"scopes": ["openid", "roles", "schools"], "profile": "digione"}}))
    (registry / "sps").mkdir()
    (registry / "sps" / "explain-sp.xml").write_text(SP_METADATA)
    args = ("--tenant", "vantaa", "--idp", "entra", "docs/examples/entra-pupil-claims.json")
    code, out, err = explain(capsys, *args)
    assert code == 0, err
    sections = {s.split(" ", 1)[0]: s for s in out.split("\nService ")[1:]}
    assert set(sections) == {"explain-rp", "https://sp.explain.example/sp"}
    rp, sp = sections["explain-rp"], sections["https://sp.explain.example/sp"]
    assert "(OIDC client" in rp and "OIDC claims" in rp and "SAML attributes" not in rp
    assert "(SAML service provider" in sp and "SAML attributes" in sp and "OIDC claims" not in sp
    assert "Access token claims" not in sp
    code, out, _ = explain(capsys, *args, "--json")
    for service in json.loads(out)["services"]:
        shown = {"oidc_claims", "access_token_claims", "saml_attributes"} & set(service)
        assert shown == ({"oidc_claims", "access_token_claims"} if service["protocol"] == "oidc"
                         else {"saml_attributes"}), service


def test_every_option_has_help():
    import argparse

    from broker.cli import _parser

    def action(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert sub.metavar == "ACTION" or name == "mapping"
        return sub.choices[name]

    mapping = action(_parser(), "mapping")
    explain_parser = action(mapping, "explain")
    options = {a.dest: a.help for a in explain_parser._actions if a.dest != "help"}
    assert set(options) == {"tenant", "idp", "preset", "as_json", "input"}
    assert all(options.values()), options
