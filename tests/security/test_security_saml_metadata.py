"""The broker's own SAML metadata (its IdP toward the services, its SP toward the cities) is signed
(SAML Metadata §3, an enveloped XML signature of the EntityDescriptor) with the entity's certificate
and served as ``application/samlmetadata+xml`` (ADR 0013).

Real consumers check it: the ``xmlsec1`` program through pysaml2's own backend, a pysaml2 SP that
fetches the metadata by URL with the broker's certificate configured (pysaml2's ``remote`` metadata),
and the broker's own pinned-metadata check (what one broker does with another's, by fingerprint).
Each accepts the document as served and refuses it altered: an endpoint moved, the signing key
swapped, the entityID changed, re-signed by another key, the signature removed.
"""

from __future__ import annotations

import pytest
import requests
from lxml import etree
from saml2 import BINDING_HTTP_POST
from saml2.config import SPConfig
from saml2.sigver import CryptoBackendXmlSec1, SignatureError, get_xmlsec_binary

from broker.demo.servers import serve_in_thread
from broker.pki import ensure_keypair, sha256_fingerprint
from broker.saml.metadata import MetadataRejected, verify_pinned
from broker.saml.xml_keys import private_key
from broker.saml.xml_signatures import sign

from .saml_sps import DS, MD

ENTITY_DESCRIPTOR = "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"
#: Each of the broker's entities: (metadata path, key pair name in the keys folder, its SSO/ACS element).
ENTITIES = {"idp": ("saml2/idp/metadata", "saml-idp", f"IDPSSODescriptor/{{{MD}}}SingleSignOnService"),
            "sp": ("saml2/sp/metadata", "saml-sp", f"SPSSODescriptor/{{{MD}}}AssertionConsumerService")}


@pytest.fixture(scope="module")
def attacker(tmp_path_factory):
    return ensure_keypair(tmp_path_factory.mktemp("metadata-attacker"), "attacker", common_name="attacker")


def _served(stack, entity: str) -> requests.Response:
    response = requests.get(f"{stack.broker_url}/{ENTITIES[entity][0]}", timeout=5)
    assert response.status_code == 200
    return response


def _certificate(stack, entity: str):
    return stack.settings().keys_dir / f"{ENTITIES[entity][1]}.crt"


def _b64(cert_path) -> str:
    return "".join(line for line in cert_path.read_text().splitlines() if not line.startswith("-----"))


def _moved_endpoint(root, stack, entity, attacker):
    root.find(f"{{{MD}}}{ENTITIES[entity][2]}").set("Location", "https://attacker.example/sso")


def _swapped_key(root, stack, entity, attacker):
    for cert in root.iterfind(f".//{{{MD}}}KeyDescriptor//{{{DS}}}X509Certificate"):
        cert.text = _b64(attacker.cert_path)


def _resigned(root, stack, entity, attacker):
    """The attacker's endpoint and key, signed with the attacker's key (its certificate in KeyInfo)."""
    _moved_endpoint(root, stack, entity, attacker)
    _swapped_key(root, stack, entity, attacker)
    root.find(f"{{{DS}}}Signature//{{{DS}}}X509Certificate").text = _b64(attacker.cert_path)
    signed = sign(etree.tostring(root), private_key(attacker.key_path), ENTITY_DESCRIPTOR, root.get("ID"))
    root[:] = list(etree.fromstring(signed.encode()))


def _unsigned(root, stack, entity, attacker):
    root.remove(root.find(f"{{{DS}}}Signature"))


def _renamed(root, stack, entity, attacker):
    root.set("entityID", "https://attacker.example/idp")


ALTERATIONS = {"an endpoint moved": _moved_endpoint, "the signing key swapped": _swapped_key,
               "the entityID changed": _renamed, "re-signed by another key": _resigned,
               "the signature removed": _unsigned}


def _altered(stack, entity: str, alteration: str, attacker) -> bytes:
    root = etree.fromstring(_served(stack, entity).content)
    ALTERATIONS[alteration](root, stack, entity, attacker)
    return etree.tostring(root)


def _xmlsec1(xml: bytes, cert) -> bool:
    """pysaml2's verification with the ``xmlsec1`` program, keyed by the broker's certificate only."""
    node_id = etree.fromstring(xml).get("ID")
    return CryptoBackendXmlSec1(get_xmlsec_binary()).validate_signature(
        xml.decode(), str(cert), "pem", node_name=ENTITY_DESCRIPTOR, node_id=node_id)


@pytest.mark.parametrize("entity", list(ENTITIES))
def test_metadata_is_signed_by_the_entity_and_served_as_samlmetadata_xml(stack, entity):
    response = _served(stack, entity)
    assert response.headers["Content-Type"] == "application/samlmetadata+xml"
    root = etree.fromstring(response.content)
    signature = root.find(f"{{{DS}}}Signature")
    assert signature is not None and root.index(signature) == 0
    reference = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
    assert reference.get("URI") == "#" + root.get("ID")
    assert signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod").get("Algorithm").endswith("rsa-sha256")
    # Signed with the key whose certificate the document publishes for signing (and KeyInfo carries).
    published = root.find(f".//{{{MD}}}KeyDescriptor[@use='signing']//{{{DS}}}X509Certificate").text
    assert "".join(published.split()) == _b64(_certificate(stack, entity))
    assert _xmlsec1(response.content, _certificate(stack, entity))
    fingerprint = sha256_fingerprint(_certificate(stack, entity).read_bytes())
    assert verify_pinned(response.content, fingerprint) == response.text


@pytest.mark.parametrize("alteration", list(ALTERATIONS))
@pytest.mark.parametrize("entity", list(ENTITIES))
def test_altered_metadata_fails_verification(stack, attacker, entity, alteration):
    xml = _altered(stack, entity, alteration, attacker)
    if alteration == "re-signed by another key":
        assert _xmlsec1(xml, attacker.cert_path), "the forgery is a valid signature, by the attacker's key"
    with pytest.raises(SignatureError):
        _xmlsec1(xml, _certificate(stack, entity))
    with pytest.raises(MetadataRejected, match="signature check failed|not signed|pinned"):
        verify_pinned(xml, sha256_fingerprint(_certificate(stack, entity).read_bytes()))


def _sp_fetching(url: str, cert, tmp_path) -> SPConfig:
    key, own = ensure_keypair(tmp_path, "fetcher", common_name="https://fetcher.sp.example/sp")
    return SPConfig().load({
        "entityid": "https://fetcher.sp.example/sp", "key_file": str(key), "cert_file": str(own),
        "metadata": {"remote": [{"url": url, "cert": str(cert)}]},
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [
            ("https://fetcher.sp.example/acs", BINDING_HTTP_POST)]}}},
    })


def test_a_pysaml2_sp_fetching_the_metadata_with_the_brokers_certificate_accepts_it(stack, tmp_path):
    config = _sp_fetching(f"{stack.broker_url}/saml2/idp/metadata", _certificate(stack, "idp"), tmp_path)
    idp = f"{stack.broker_url}/saml2/idp/metadata"
    assert config.metadata.single_sign_on_service(idp, "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect")


@pytest.mark.parametrize("alteration", ["an endpoint moved", "the signing key swapped", "re-signed by another key"])
def test_a_pysaml2_sp_fetching_altered_metadata_refuses_it(stack, attacker, tmp_path, alteration):
    """Served from another address (a man in the middle, a poisoned cache): pysaml2 loads it only if the
    broker's certificate verifies the signature.  (pysaml2 takes an unsigned document even with a
    certificate configured; the other two consumers above refuse that one.)"""
    xml = _altered(stack, "idp", alteration, attacker)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/samlmetadata+xml")])
        return [xml]

    with serve_in_thread(app, "127.0.0.1", 0) as server:
        with pytest.raises(SignatureError):
            _sp_fetching(f"{server.url}/metadata", _certificate(stack, "idp"), tmp_path)
