"""XML signatures on their own (:mod:`broker.saml.xml_signatures`): each SAML/XML-DSig rule, one test each.

The documents here are signed with libxmlsec1 directly (``attacks.sign_raw``),
so they are cryptographically valid and fail only the rule under test: the
verifier must refuse them without relying on pysaml2's own pre-checks.
"""

from __future__ import annotations

import copy

import pytest
import xmlsec
from lxml import etree
from saml2.sigver import SignatureError, XmlsecError

from broker.saml import xml_keys, xml_signatures
from broker.saml.pysaml2_crypto import CryptoBackendXmlSecInProcess, configure_signatures

if __package__:
    from .xmlsig_helpers import attacks
    from .xmlsig_helpers.peers import make_keypair, make_peers
else:  # tests/saml is not a package: pytest put it on sys.path
    from xmlsig_helpers import attacks
    from xmlsig_helpers.peers import make_keypair, make_peers

SAMLP, SAML, DS = attacks.SAMLP, attacks.SAML, attacks.DS
ASSERTION = f"{SAML}:Assertion"
RESPONSE = f"{SAMLP}:Response"


def document(assertion_id: str = "a-1", response_id: str = "r-1", subject: str = "alice", extra: str = "") -> str:
    return (
        f'<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{response_id}" Version="2.0" '
        f'IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://idp.example.org</saml:Issuer>'
        f'<saml:Assertion ID="{assertion_id}" Version="2.0" IssueInstant="2026-01-01T00:00:00Z">'
        f'<saml:Issuer>https://idp.example.org</saml:Issuer><saml:Subject><saml:NameID>{subject}</saml:NameID>'
        f'</saml:Subject>{extra}</saml:Assertion></samlp:Response>'
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    return {name: make_keypair(directory, name) for name in ("idp", "attacker", "sp")}


@pytest.fixture(scope="module")
def idp_key(keys):
    return xml_keys.certificate_key(keys["idp"].cert_pem)


def signed(keys, xml: str | None = None, **options) -> str:
    options.setdefault("signed_id", "a-1")
    return attacks.sign_raw(xml or document(), keys["idp"].key_pem, cert_base64=keys["idp"].cert_base64, **options)


def crypto_valid(xml: str, cert_pem: bytes, holder_id: str = "a-1") -> bool:
    """Whether libxmlsec1 alone, with every ID registered and no policy, accepts the signature."""
    root = attacks.parse(xml)
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(cert_pem, xmlsec.KeyFormat.CERT_PEM)
    for element in root.iter():
        if element.get("ID") is not None:
            ctx.register_id(element, "ID")
    holder = root.xpath("//*[@ID=$id]", id=holder_id)[0]
    try:
        ctx.verify(next(holder.iter(f"{{{DS}}}Signature")))
    except xmlsec.Error:
        return False
    return True


def refused(xml: str, key, node_name: str = ASSERTION, node_id: str | None = "a-1", match: str = "") -> None:
    with pytest.raises(XmlsecError, match=match):
        xml_signatures.verify_signature(xml, key, node_name, node_id)


# -- what verifies -------------------------------------------------------------------------


def test_enveloped_signature_verifies_and_names_the_node(keys, idp_key):
    node = xml_signatures.verify_signature(signed(keys), idp_key, ASSERTION, "a-1")
    assert node.tag == f"{{{SAML}}}Assertion" and node.get("ID") == "a-1"


def test_backend_accepts_certificate_files_pem_and_der(keys, tmp_path):
    backend = CryptoBackendXmlSecInProcess()
    der = tmp_path / "idp.der"
    der.write_bytes(x509_der(keys["idp"].cert_pem))
    xml = signed(keys)
    assert backend.validate_signature(xml, keys["idp"].cert_file, "pem", ASSERTION, "a-1") is True
    assert backend.validate_signature(xml, keys["idp"].cert_pem, "pem", ASSERTION, "a-1") is True
    assert backend.validate_signature(xml, str(der), "der", ASSERTION, "a-1") is True


def x509_der(pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def test_empty_reference_uri_signs_the_document_element(keys, idp_key):
    """XML-DSig §4.4.3.2: URI="" is the whole document — fine when the signed node is the root."""
    xml = signed(keys, signed_id="r-1", reference_uri="")
    assert xml_signatures.verify_signature(xml, idp_key, RESPONSE, "r-1").get("ID") == "r-1"
    assert xml_signatures.verify_signature(xml, idp_key, RESPONSE, None).get("ID") == "r-1"


def test_key_info_is_never_read(keys, idp_key):
    """The key comes from metadata; an embedded certificate neither helps nor hurts."""
    xml = attacks.replace_key_info_certificates(signed(keys), keys["attacker"].cert_base64)
    assert xml_signatures.verify_signature(xml, idp_key, ASSERTION, "a-1") is not None
    refused(xml, xml_keys.certificate_key(keys["attacker"].cert_pem), match="verification failed")


def test_signature_by_another_key_is_refused_even_with_its_certificate_embedded(keys, idp_key):
    forged = attacks.sign_raw(document(subject="mallory"), keys["attacker"].key_pem, signed_id="a-1",
                              cert_base64=keys["attacker"].cert_base64)
    refused(forged, idp_key, match="verification failed")


def test_tampered_content_is_refused(keys, idp_key):
    refused(signed(keys).replace(">alice<", ">mallory<"), idp_key, match="verification failed")


def test_comments_do_not_split_what_is_signed(keys, idp_key):
    """Exclusive c14n drops comments: "ali<!---->ce" is the signed "alice" (CVE-2017-11427 class)."""
    xml = signed(keys).replace(">alice<", ">ali<!-- x -->ce<")
    assert xml_signatures.verify_signature(xml, idp_key, ASSERTION, "a-1") is not None


# -- SAML Core §5.4 and XML-DSig rules -----------------------------------------------------


def test_reference_to_another_element_is_refused(keys, idp_key):
    """SAML Core §5.4.2: the single Reference names the ID of the element the signature envelops."""
    xml = signed(keys, signed_id="r-1", place_in="a-1")
    assert crypto_valid(xml, keys["idp"].cert_pem)
    refused(xml, idp_key, match="does not point at the signed node")


def test_two_references_are_refused(keys, idp_key):
    xml = signed(keys, extra_reference_uri="#r-1")
    assert crypto_valid(xml, keys["idp"].cert_pem)
    refused(xml, idp_key, match="exactly one <ds:Reference>")


def test_empty_reference_uri_inside_a_child_is_refused(keys, idp_key):
    xml = signed(keys, reference_uri="", transforms=(xmlsec.Transform.ENVELOPED, xmlsec.Transform.EXCL_C14N))
    refused(xml, idp_key, match="empty Reference URI")


def test_xpointer_reference_is_refused(keys, idp_key):
    xml = signed(keys).replace('URI="#a-1"', 'URI="#xpointer(/)"')
    refused(xml, idp_key, match="does not point at the signed node")


def test_inclusive_canonicalization_is_refused(keys, idp_key):
    xml = signed(keys, c14n=xmlsec.Transform.C14N)
    assert crypto_valid(xml, keys["idp"].cert_pem)
    refused(xml, idp_key, match="canonicalization method")


def test_transform_outside_the_saml_profile_is_refused(keys, idp_key):
    xml = signed(keys, transforms=(xmlsec.Transform.ENVELOPED, xmlsec.Transform.C14N))
    assert crypto_valid(xml, keys["idp"].cert_pem)
    refused(xml, idp_key, match="SAML Core §5.4.4")


def test_missing_enveloped_signature_transform_is_refused(keys, idp_key):
    genuine = signed(keys)
    xml = genuine.replace(f'<ds:Transform Algorithm="{xmlsec.constants.TransformEnveloped.href}"/>', "")
    assert xml != genuine
    refused(xml, idp_key, match="enveloped-signature")


@pytest.mark.parametrize("algorithm", ["http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
                                       "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
                                       "http://www.w3.org/2001/04/xmldsig-more#rsa-md5"])
def test_signature_methods_outside_the_allow_list_are_refused(keys, idp_key, algorithm):
    xml = signed(keys).replace(xmlsec.constants.TransformRsaSha256.href, algorithm)
    refused(xml, idp_key, match="signature method")


def test_md5_digest_is_refused(keys, idp_key):
    xml = signed(keys).replace(xmlsec.constants.TransformSha256.href, "http://www.w3.org/2001/04/xmldsig-more#md5")
    refused(xml, idp_key, match="digest method")


def test_object_element_is_refused(keys, idp_key):
    root = attacks.parse(signed(keys))
    etree.SubElement(root.find(f".//{{{DS}}}Signature"), f"{{{DS}}}Object").text = "unsigned"
    refused(attacks.serialize(root), idp_key, match="<ds:Object>")


def test_signature_must_be_a_child_of_the_signed_node(keys, idp_key):
    root = attacks.parse(signed(keys))
    signature = root.find(f".//{{{DS}}}Signature")
    root.find(f".//{{{SAML}}}Subject").append(signature)
    xml = attacks.serialize(root)
    assert crypto_valid(xml, keys["idp"].cert_pem)  # the enveloped transform removes it wherever it is
    refused(xml, idp_key, match="enveloped <ds:Signature>")


def test_second_signature_child_is_refused(keys, idp_key):
    root = attacks.parse(signed(keys))
    assertion = root.find(f"{{{SAML}}}Assertion")
    assertion.append(copy.deepcopy(assertion.find(f"{{{DS}}}Signature")))
    refused(attacks.serialize(root), idp_key, match="found 2")


def test_duplicate_ids_are_refused(keys, idp_key):
    """SAML Core §1.3.4: the signed copy and a used copy cannot share an ID."""
    root = attacks.parse(signed(keys))
    root.insert(1, attacks.strip_signature(attacks.make_evil(copy.deepcopy(root.find(f"{{{SAML}}}Assertion")))))
    refused(attacks.serialize(root), idp_key, match="duplicate ID")


def test_xml_id_cannot_take_over_a_reference(keys, idp_key):
    """libxml2 treats xml:id as an ID by itself; the parser is told not to, and duplicates are refused."""
    root = attacks.parse(signed(keys))
    evil = etree.SubElement(root, f"{{{SAML}}}Advice")
    evil.set("{http://www.w3.org/XML/1998/namespace}id", "a-1")
    refused(attacks.serialize(root), idp_key, match="duplicate ID")


def test_document_type_declarations_are_refused(keys, idp_key):
    """XML §3.3.1: a DTD could declare which attributes are IDs."""
    xml = f'<!DOCTYPE samlp:Response [<!ATTLIST saml:Assertion ID ID #IMPLIED>]>{signed(keys)}'
    refused(xml, idp_key, match="document type declarations")


@pytest.mark.parametrize("node_name, node_id, match", [
    (RESPONSE, "a-1", "no single"),  # xmlsec1 --id-attr:ID registers IDs of <node_name> elements only
    (ASSERTION, "a-2", "no single"),
    (ASSERTION, "xpointer(/)", "NCName"),
])
def test_the_node_is_chosen_by_name_and_id(keys, idp_key, node_name, node_id, match):
    refused(signed(keys), idp_key, node_name=node_name, node_id=node_id, match=match)


def test_malformed_xml_is_an_xmlsec_error(idp_key):
    refused("<samlp:Response", idp_key, match="not well-formed")


# -- wrapping, at the level of the backend -------------------------------------------------


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    peers = make_peers(tmp_path_factory.mktemp("peers"))
    configure_signatures(peers.idp)
    return peers, peers.response_xml(sign_response=True, sign_assertion=True)


@pytest.mark.parametrize("same_id", [True, False], ids=["same-id", "new-id"])
@pytest.mark.parametrize("variant", sorted({**attacks.RESPONSE_WRAPPING, **attacks.ASSERTION_WRAPPING}))
def test_wrapped_documents_never_verify_for_the_node_pysaml2_uses(genuine, variant, same_id):
    """What pysaml2 would ask for — the Response it parsed, its first Assertion — is refused."""
    peers, xml = genuine
    wrap = {**attacks.RESPONSE_WRAPPING, **attacks.ASSERTION_WRAPPING}[variant]
    wrapped = wrap(xml, same_id=same_id)
    key = xml_keys.certificate_key(peers.idp_keys.cert_pem)
    node_name = RESPONSE if variant in attacks.RESPONSE_WRAPPING else ASSERTION
    with pytest.raises(SignatureError):
        xml_signatures.verify_signature(wrapped, key, node_name, attacks.node_used_by_pysaml2(wrapped, node_name))


def test_the_genuine_response_verifies_at_both_levels(genuine):
    peers, xml = genuine
    key = xml_keys.certificate_key(peers.idp_keys.cert_pem)
    for node_name in (RESPONSE, ASSERTION):
        node_id = attacks.node_used_by_pysaml2(xml, node_name)
        assert xml_signatures.verify_signature(xml, key, node_name, node_id) is not None


# -- signing -------------------------------------------------------------------------------


def test_sign_statement_fills_the_template_of_the_named_node(keys, idp_key):
    xml = signed(keys)  # a complete signature; blank it back into a template
    template = attacks.parse(xml)
    for tag in ("DigestValue", "SignatureValue"):
        template.find(f".//{{{DS}}}{tag}").text = None
    out = CryptoBackendXmlSecInProcess().sign_statement(attacks.serialize(template), ASSERTION,
                                                         keys["idp"].key_file, "a-1")
    assert xml_signatures.verify_signature(out, idp_key, ASSERTION, "a-1") is not None
    assert keys["idp"].cert_base64 in out  # the template's KeyInfo is kept, as with xmlsec1


def test_signing_without_a_template_fails(keys):
    with pytest.raises(SignatureError, match="no <ds:Signature> template"):
        xml_signatures.sign(document(), xml_keys.private_key(keys["idp"].key_pem), ASSERTION, "a-1")


# -- keys ----------------------------------------------------------------------------------


def test_keys_are_parsed_once_per_content(keys):
    xml_keys.clear_key_cache()
    first = xml_keys.certificate_key(keys["idp"].cert_pem)
    assert xml_keys.certificate_key(bytes(keys["idp"].cert_pem)) is first
    assert xml_keys.certificate_key(keys["idp"].cert_file) is first  # same content through a path
    assert xml_keys.private_key(keys["idp"].key_pem) is xml_keys.private_key(keys["idp"].key_file)


def test_unreadable_material_is_an_xmlsec_error():
    with pytest.raises(XmlsecError):
        xml_keys.certificate_key(b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    with pytest.raises(XmlsecError):
        xml_keys.private_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
