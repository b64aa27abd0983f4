"""Expiry warnings: the IdPs' signing and encryption certificates (metadata files and by URL), the
metadata's validUntil and the broker's own SAML certificates, at 30, 14 and 7 days ahead; printed by
`broker check` (which still passes), logged once a day per item and level."""

from __future__ import annotations

import datetime
import logging
import time

import pytest
from lxml import etree
from tenant_data import Site, names, saml_idp, tenant

from broker.demo import saml_idp as demo_idp
from broker.pki import certificate_body, ensure_keypair
from broker.registry.expiry import (
    expiry_report,
    expiry_warnings,
    level_for,
    log_expiry_warnings,
    metadata_expiry,
    own_certificates_expiry,
)
from broker.registry.tenants import load_tenants

DAY = 86400
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.mark.parametrize("days,level", [
    (400, None), (30.01, None), (30, "notice"), (15, "notice"), (14, "warning"), (7.01, "warning"),
    (7, "critical"), (0.01, "critical"), (0, "expired"), (-3, "expired"),
])
def test_levels_at_30_14_and_7_days(days, level):
    assert level_for(days * DAY) == level


def _metadata(tmp_path, *, signing_days: int, encryption_days: int | None = None,
              valid_until_days: float | None = None) -> str:
    """The demo IdP's metadata for vantaa, signing with a certificate of ``signing_days``, and
    optionally an encryption certificate and a validUntil."""
    keys = tmp_path / "idp-keys"
    ensure_keypair(keys, "saml-idp-vantaa", common_name="vantaa signing", days=signing_days)
    root = etree.fromstring(demo_idp.metadata_xml("http://localhost:8101", "vantaa", keys).encode())
    idp = root.find(f"{{{MD}}}IDPSSODescriptor")
    if encryption_days is not None:
        _, cert = ensure_keypair(tmp_path / "enc", "enc", common_name="vantaa encryption", days=encryption_days)
        key = etree.SubElement(idp, f"{{{MD}}}KeyDescriptor", use="encryption")
        data = etree.SubElement(etree.SubElement(key, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
        etree.SubElement(data, f"{{{DS}}}X509Certificate").text = certificate_body(cert.read_text())
        idp.insert(0, key)
    if valid_until_days is not None:
        moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=valid_until_days)
        root.set("validUntil", moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return etree.tostring(root, encoding="unicode")


@pytest.fixture
def site(tmp_path) -> Site:
    site = Site(tmp_path / "site")
    site.write_metadata(text=_metadata(tmp_path, signing_days=10, encryption_days=20, valid_until_days=4.5))
    site.write_tenant(tenant("vantaa", saml_idp()))
    ensure_keypair(site.keys, "saml-sp", common_name="broker sp", days=3)
    ensure_keypair(site.keys, "saml-idp", common_name="broker idp")
    return site


def _tenants(site):
    return load_tenants(site.tenants, metadata_dir=site.metadata, root=site.root, environ={})


def test_the_report_lists_every_item_soonest_first_with_its_level(site):
    report = expiry_report(_tenants(site), keys_dir=site.keys)
    found = [(item.idp, item.what, item.days_left, item.level) for item in report]
    assert found == [
        (None, "the broker's SAML SP certificate (towards the cities' IdPs)", 2, "critical"),
        ("vantaa/koulu", "metadata validUntil", 4, "critical"),
        ("vantaa/koulu", "signing certificate", 9, "warning"),
        ("vantaa/koulu", "encryption certificate", 19, "notice"),
        (None, "the broker's SAML IdP certificate (towards SAML services)", 3649, None),
    ]
    signing = report[2]
    assert "'vantaa signing'" in signing.subject and "SHA-256" in signing.subject
    assert signing.not_after.tzinfo is not None and signing.seconds_left == pytest.approx(10 * DAY, abs=120)
    as_dict = signing.as_dict()
    assert as_dict["idp"] == "vantaa/koulu" and as_dict["level"] == "warning" and as_dict["days_left"] == 9
    assert as_dict["not_after"].endswith("Z")
    assert [item.level for item in expiry_warnings(_tenants(site), keys_dir=site.keys)] == \
        ["critical", "critical", "warning", "notice"]


def test_an_expired_certificate_and_a_certificate_used_for_both(tmp_path):
    text = _metadata(tmp_path, signing_days=1)
    text = text.replace('use="signing"', "")                       # a KeyDescriptor without use: both
    (item,) = metadata_expiry("x/y", text, now=time.time() + 2 * DAY)
    assert item.what == "signing and encryption certificate"
    assert item.level == "expired" and item.days_left == -2
    assert "expired on" in item.message() and "1 days ago" in item.message()


def test_metadata_by_url_is_reported_from_the_document_in_use(tmp_path):
    site = Site(tmp_path / "site")
    site.write_tenant(tenant("vantaa", {
        "id": "koulu", "type": "saml", "names": names("Koulu"), "entity_id": "http://localhost:8101/vantaa/idp",
        "metadata": {"url": "https://idp.vantaa.example/metadata", "signing_cert_sha256": "ab" * 32},
        "mapping": {"preset": "mpassid-saml"}}))
    tenants = _tenants(site)
    assert expiry_report(tenants) == [], "no document yet: nothing to say"
    remote = {"vantaa/koulu": _metadata(tmp_path, signing_days=5)}
    (item,) = expiry_warnings(tenants, remote=remote)
    assert (item.idp, item.what, item.level) == ("vantaa/koulu", "signing certificate", "critical")


def test_own_certificates_that_are_missing_are_not_generated(tmp_path):
    assert own_certificates_expiry(tmp_path / "keys") == []
    assert not (tmp_path / "keys").exists()


def test_logged_once_a_day_per_item_and_level_for_every_instance(site, make_store, caplog):
    caplog.set_level(logging.WARNING, logger="broker.registry.expiry")
    now = time.time()
    items = expiry_warnings(_tenants(site), keys_dir=site.keys, now=now)
    one, two = make_store(), make_store()
    assert len(log_expiry_warnings(items, store=one, now=now)) == 4
    assert log_expiry_warnings(items, store=two, now=now) == [], "another instance, the same day"
    lines = [r for r in caplog.records if r.name == "broker.registry.expiry"]
    assert len(lines) == 4 and lines[0].levelno == logging.WARNING
    assert "vantaa/koulu: signing certificate" in " ".join(r.getMessage() for r in lines)
    assert {r.days_left for r in lines} == {2, 4, 9, 19}
    later = expiry_warnings(_tenants(site), keys_dir=site.keys, now=now + 3 * DAY)   # some levels have changed
    assert {item.level for item in log_expiry_warnings(later, store=one, now=now + 3 * DAY)} == {"expired",
                                                                                                 "critical"}


def test_logged_once_a_day_in_the_process_without_a_store(site):
    now = time.time()
    items = expiry_warnings(_tenants(site), keys_dir=site.keys, now=now)
    assert len(log_expiry_warnings(items, now=now)) == 4
    assert log_expiry_warnings(items, now=now + 3600) == []
    assert len(log_expiry_warnings(items, now=now + DAY + 1)) == 4


def test_broker_check_prints_the_warnings_and_still_passes(site):
    result = site.cli("check")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning: expiry")]
    assert len(lines) == 4, result.stderr
    assert lines[0].startswith("warning: expiry (critical): broker: the broker's SAML SP certificate")
    assert "(in 2 days)" in lines[0]
    assert any(line.startswith("warning: expiry (warning): vantaa/koulu: signing certificate 'vantaa signing'")
               for line in lines)
    assert "ok: 1 tenant," in result.stdout
