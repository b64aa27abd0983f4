"""``metadata: {url, signing_cert_sha256}``: one pin, or a list of up to three for a rollover of the
city's metadata signing certificate; every refusal names the field (and the item)."""

from __future__ import annotations

import pytest
from tenant_data import Site, names, tenant

from broker.registry.tenants import TenantError, load_tenants

OLD = "ab" * 32
NEW = ":".join(["CD"] * 32)
SPARE = "ef" * 32
FIELD = "tenants/vantaa.yaml: identity_providers[0].metadata.signing_cert_sha256"


def _url_idp(pins) -> dict:
    return {"id": "koulu", "type": "saml", "names": names("Koulu"), "entity_id": "https://idp.vantaa.example/idp",
            "metadata": {"url": "https://idp.vantaa.example/metadata", "signing_cert_sha256": pins},
            "mapping": {"preset": "mpassid-saml"}}


def _load(tmp_path, pins):
    site = Site(tmp_path)
    site.write_tenant(tenant("vantaa", _url_idp(pins)))
    return load_tenants(site.tenants, metadata_dir=site.metadata, root=site.root, environ={})


@pytest.mark.parametrize("pins,expected", [
    (OLD, (OLD,)),
    ([OLD], (OLD,)),
    ([OLD, NEW], (OLD, "cd" * 32)),
    ([OLD, NEW, SPARE], (OLD, "cd" * 32, SPARE)),
])
def test_one_pin_or_a_list_of_up_to_three(tmp_path, pins, expected):
    source = _load(tmp_path, pins).idps["vantaa/koulu"].metadata
    assert source.signing_cert_sha256 == expected
    assert source.url == "https://idp.vantaa.example/metadata"


@pytest.mark.parametrize("pins,field,expected", [
    ("not-a-fingerprint", "", "the SHA-256 fingerprint of the metadata signing certificate"),
    (None, "", "the SHA-256 fingerprint of the metadata signing certificate (64 hex digits, ':' separators "
               "allowed), or a list of up to 3 of them"),
    ([], "", "the SHA-256 fingerprint"),
    ({"sha256": OLD}, "", "the SHA-256 fingerprint"),
    ([OLD, NEW, SPARE, "12" * 32], "", "at most 3 fingerprints (found 4)"),
    ([OLD, "abc"], "[1]", "the SHA-256 fingerprint of the metadata signing certificate"),
    ([OLD, 42], "[1]", "the SHA-256 fingerprint"),
    ([OLD, OLD.upper()], "[1]", "distinct fingerprints (this one is also item 0)"),
])
def test_refusals_name_the_field(tmp_path, pins, field, expected):
    with pytest.raises(TenantError) as error:
        _load(tmp_path, pins)
    wanted = f"{FIELD}{field}: expected {expected}"
    assert any(p.startswith(wanted) for p in error.value.problems), error.value.problems
