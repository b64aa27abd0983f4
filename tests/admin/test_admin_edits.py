"""Document edits the console and API make keep what they were not asked to change."""

from __future__ import annotations

from broker.admin.edits import with_metadata_url

PIN = "ab" * 32


def _tenant(metadata):
    return {"id": "vantaa", "identity_providers": [
        {"id": "koulu", "type": "saml", "names": {"fi": "K", "sv": "K", "en": "K"}, "entity_id": "https://idp.example",
         "metadata": metadata, "mapping": {"preset": "mpassid-saml"}}]}


def test_a_new_pin_for_a_metadata_url_keeps_the_citys_ca_file():
    before = _tenant({"url": "https://idp.example/md", "signing_cert_sha256": PIN, "ca_file": "vantaa-ca.pem"})
    after = with_metadata_url(before, "koulu", "https://idp.example/md", [PIN, "cd" * 32], None, None)
    assert after["identity_providers"][0]["metadata"] == {
        "url": "https://idp.example/md", "signing_cert_sha256": [PIN, "cd" * 32], "ca_file": "vantaa-ca.pem"}
    assert before["identity_providers"][0]["metadata"]["signing_cert_sha256"] == PIN, "the input is not changed"


def test_moving_from_a_file_to_a_url_takes_nothing_from_the_file_form():
    after = with_metadata_url(_tenant({"file": "vantaa-idp.xml"}), "koulu", "https://idp.example/md", PIN, None, None)
    assert after["identity_providers"][0]["metadata"] == {"url": "https://idp.example/md", "signing_cert_sha256": PIN}
