"""SAML metadata by URL is trusted only when signed with the pinned certificate."""

from __future__ import annotations

import pytest
import requests
from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor, sign_entity_descriptor
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from broker.demo.servers import serve_in_thread
from broker.pki import ensure_keypair, sha256_fingerprint
from broker.saml.metadata import MetadataRejected, MetadataUnavailable, pinned_metadata, verify_pinned
from broker.saml.pysaml2_crypto import InProcessSecurityContext, pysaml2_config_overrides
from broker.store import MemoryStore

ENTITY = "https://idp.city.example/idp"


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("md")
    key, cert = ensure_keypair(directory, "md", common_name=ENTITY)
    config = IdPConfig().load({
        "entityid": ENTITY, "key_file": str(key), "cert_file": str(cert),
        "service": {"idp": {"endpoints": {"single_sign_on_service": [
            ("https://idp.city.example/sso", BINDING_HTTP_REDIRECT)]}}}, **pysaml2_config_overrides()})
    # pysaml2 signs, with our in-process XML-DSig backend (no xmlsec1 program).
    _, xml = sign_entity_descriptor(entity_descriptor(config), None, InProcessSecurityContext.from_config(config),
                                    SIG_RSA_SHA256, DIGEST_SHA256)
    xml = xml.encode() if isinstance(xml, str) else xml
    attacker_key, attacker_cert = ensure_keypair(directory, "attacker", common_name=ENTITY)
    return xml, sha256_fingerprint(cert.read_bytes()), sha256_fingerprint(attacker_cert.read_bytes())


def test_signed_with_the_pinned_certificate_is_accepted(signed):
    xml, pin, _ = signed
    assert ENTITY in verify_pinned(xml, pin)


def test_other_pin_tampering_and_unsigned_are_rejected(signed):
    xml, pin, other_pin = signed
    with pytest.raises(MetadataRejected, match="pinned"):
        verify_pinned(xml, other_pin)
    with pytest.raises(MetadataRejected, match="signature"):
        verify_pinned(xml.replace(b"https://idp.city.example/sso", b"https://evil.example/sso"), pin)
    with pytest.raises(MetadataRejected):
        verify_pinned(b"<x/>", pin)


def test_fetched_over_http_cached_and_served_from_cache_when_the_host_is_down(signed):
    xml, pin, other_pin = signed

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/samlmetadata+xml")])
        return [xml]

    store = MemoryStore()
    server = serve_in_thread(app)
    url = f"{server.url}/metadata"
    try:
        assert ENTITY in pinned_metadata(url, pin, store=store, http=requests.Session())
        with pytest.raises(MetadataUnavailable):
            pinned_metadata(url, other_pin, store=MemoryStore(), http=requests.Session())
    finally:
        server.shutdown()
    assert ENTITY in pinned_metadata(url, pin, store=store, http=requests.Session(), timeout=1)
    with pytest.raises(MetadataUnavailable):
        pinned_metadata(url, pin, store=MemoryStore(), http=requests.Session(), timeout=1)
