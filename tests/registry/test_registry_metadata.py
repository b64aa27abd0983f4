"""SAML IdP metadata files (issue 8): one loader for ``broker check`` and start-up, refusing a
DOCTYPE, entities, files outside the metadata directory and anything pysaml2 would refuse,
and keeping the very text it checked for start-up."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from tenant_data import Site, entity_id, metadata_text, saml_idp, tenant

from broker.registry.metadata import MetadataError, load_idp_metadata
from broker.registry.tenants import TenantError, load_tenants
from broker.settings import ROOT

DTD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _variant(kind: str) -> str:
    """A metadata document an attacker (or a careless export) might supply."""
    xml = metadata_text()
    return {
        "doctype": DTD + '<!DOCTYPE md:EntityDescriptor>\n' + xml,
        "internal-entity": DTD + '<!DOCTYPE x [<!ENTITY city "Vantaa (demo)">]>\n'
                           + xml.replace("Vantaa (demo)", "&city;", 1),
        "billion-laughs": DTD + '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
                          + xml.replace("Vantaa (demo)", "&b;", 1),
        "external-entity": DTD + '<!DOCTYPE x [<!ENTITY pw SYSTEM "file:///etc/passwd">]>\n'
                           + xml.replace("Vantaa (demo)", "&pw;", 1),
        "external-subset": DTD + '<!DOCTYPE x SYSTEM "/dev/stdin">\n' + xml,
        "undefined-entity": xml.replace("Vantaa (demo)", "&city;", 1),
        "not-xml": "<md:EntityDescriptor",
        "sp-only": xml.replace("IDPSSODescriptor", "SPSSODescriptor"),
        "no-sso": xml.replace("SingleSignOnService", "ArtifactResolutionService"),
        # Whatever prefix the serializer gave xmldsig (other suites register namespaces with ElementTree).
        "bad-certificate": re.sub(r"(<(?:\w+:)?X509Certificate>)MII", r"\1AAAAMII", xml, count=1),
        "no-signing-key": xml.replace('use="signing"', 'use="encryption"'),
        "expired": xml.replace("entityID=", 'validUntil="2001-01-01T00:00:00Z" entityID=', 1),
        "not-saml2": xml.replace('protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"',
                                 'protocolSupportEnumeration="urn:oasis:names:tc:SAML:1.1:protocol"'),
        "duplicate-ids": xml.replace("<ns0:IDPSSODescriptor ", '<ns0:IDPSSODescriptor ID="x" ', 1)
                            .replace("<ns0:Organization>", '<ns0:Organization ID="x">', 1),
        "latin-1": xml.replace("Vantaa (demo)", "Vantaa (demö)", 1),
    }[kind]


REFUSALS = {
    "doctype": "SAML metadata without a DOCTYPE, DTD or entity declarations",
    "internal-entity": "SAML metadata without a DOCTYPE, DTD or entity declarations",
    "billion-laughs": "SAML metadata without a DOCTYPE, DTD or entity declarations",
    "external-entity": "SAML metadata without a DOCTYPE, DTD or entity declarations",
    "external-subset": "SAML metadata without a DOCTYPE, DTD or entity declarations",
    "undefined-entity": "well-formed SAML metadata without a DOCTYPE, DTD or entity declarations, with unique IDs "
                        "(not well-formed XML: Entity 'city' not defined",
    "not-xml": "well-formed SAML metadata",
    "sp-only": "SAML metadata with one IDPSSODescriptor (found 0)",
    "no-sso": "an IDPSSODescriptor with a SingleSignOnService",
    "bad-certificate": "signing certificates that parse as X.509 (KeyDescriptor 1:",
    "no-signing-key": "at least one signing certificate",
    "expired": "SAML metadata that has not expired",
    "not-saml2": "an IDPSSODescriptor pysaml2 keeps",
    "duplicate-ids": "well-formed SAML metadata without a DOCTYPE, DTD or entity declarations, with unique IDs "
                     "(duplicate ID attribute values",
}


@pytest.fixture
def site(tmp_path) -> Site:
    site = Site(tmp_path)
    site.write_metadata()
    site.write_tenant(tenant("vantaa", saml_idp()))
    return site


def _load(site: Site):
    return load_tenants(site.tenants, metadata_dir=site.metadata, root=site.root, environ={})


def test_the_validated_text_is_kept_for_start_up(site):
    idp = _load(site).idps["vantaa/koulu"]
    assert idp.entity_id == entity_id()
    assert idp.metadata.xml == (site.metadata / "vantaa-idp.xml").read_text()
    assert idp.metadata.file == (site.metadata / "vantaa-idp.xml").resolve()
    assert "xml" not in repr(idp.metadata).replace("vantaa-idp.xml", "")


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_refused_metadata_names_file_field_and_reason(site, kind):
    site.write_metadata(text=_variant(kind))
    with pytest.raises(TenantError) as error:
        _load(site)
    expected = f"tenants/vantaa.yaml: identity_providers[0].metadata.file: expected {REFUSALS[kind]}"
    assert any(p.startswith(expected) for p in error.value.problems), error.value.problems
    assert "root:" not in str(error.value)   # nothing of /etc/passwd


def test_metadata_must_be_utf_8(site):
    (site.metadata / "vantaa-idp.xml").write_bytes(_variant("latin-1").encode("latin-1"))
    with pytest.raises(MetadataError, match="encoded in UTF-8"):
        load_idp_metadata("vantaa-idp.xml", metadata_dir=site.metadata)


def test_the_entity_id_must_match_the_tenant_file(site):
    site.write_tenant(tenant("vantaa", saml_idp(entity_id="https://idp.vantaa.example/idp")))
    with pytest.raises(TenantError) as error:
        _load(site)
    assert f"tenants/vantaa.yaml: identity_providers[0].entity_id: expected the entityID in the metadata " \
           f"('{entity_id()}')" in error.value.problems


@pytest.mark.parametrize("name", ["/etc/passwd", "../keys/master.secret", "demo/../../keys/x.xml"])
def test_only_relative_paths_inside_the_metadata_directory(site, name):
    site.write_tenant(tenant("vantaa", saml_idp(file=name)))
    with pytest.raises(TenantError) as error:
        _load(site)
    assert "tenants/vantaa.yaml: identity_providers[0].metadata.file: expected a relative path under metadata/" \
        in error.value.problems


def test_a_symlink_out_of_the_metadata_directory_is_refused(site, tmp_path):
    outside = tmp_path / "elsewhere.xml"
    outside.write_text(metadata_text())
    (site.metadata / "vantaa-idp.xml").unlink()
    (site.metadata / "vantaa-idp.xml").symlink_to(outside)
    with pytest.raises(TenantError) as error:
        _load(site)
    assert any("identity_providers[0].metadata.file: expected a file inside the metadata directory" in p
               for p in error.value.problems), error.value.problems


def _check_with_stdin_open(site: Site, *args: str) -> tuple[int, str]:
    """``broker …`` with a stdin pipe that stays open (as under some process managers): a
    parser that opened the DOCTYPE's external subset ``/dev/stdin`` would wait forever."""
    log = site.root / "cli.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "broker", *args], env=site.env(), stdin=subprocess.PIPE,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 120
            while process.poll() is None:
                assert time.monotonic() < deadline, "the command hung reading stdin"
                time.sleep(0.05)
        finally:
            process.stdin.close()
            if process.poll() is None:
                process.kill()
                process.wait()
    return process.returncode, log.read_text()


@pytest.mark.parametrize("kind", ["doctype", "internal-entity", "external-subset"])
def test_broker_check_fails_on_a_doctype_with_a_clear_message(site, kind):
    site.write_metadata(text=_variant(kind))
    returncode, output = _check_with_stdin_open(site, "check")
    assert returncode == 1, output
    assert "identity_providers[0].metadata.file: expected SAML metadata without a DOCTYPE, DTD or entity " \
           "declarations" in output
    assert "1 problem in the tenant files" in output and "the broker will not start" in output


def test_start_up_refuses_what_check_refuses_with_the_same_message(site):
    site.write_metadata(text=_variant("internal-entity"))
    check = site.cli("check")
    serve = site.cli("serve")
    assert check.returncode == 1 and serve.returncode == 1
    line = next(line for line in check.stderr.splitlines() if "metadata.file" in line)
    assert line in serve.stderr and "will not start" in serve.stderr


def test_broker_check_passes_on_good_metadata(site):
    result = site.cli("check")
    assert result.returncode == 0, result.stderr
    assert "ok: 1 tenant, 1 identity provider," in result.stdout
