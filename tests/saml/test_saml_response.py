"""The one-pass SAML response processor on genuine pysaml2 responses: signed response and/or
assertion, encrypted assertions, and what must be refused.

Every response here is built and signed by a real pysaml2 IdP (``xmlsig_helpers.peers``);
alterations are made either before signing (the result is genuinely signed and differs only
in what the test changed) or after it (comments, tampering), never by mocking the message.
"""

from __future__ import annotations

import base64
import re
import sys

import pytest
from lxml import etree

from broker.errors import InvalidResponse
from broker.saml import response as saml_response
from broker.saml.pysaml2_crypto import CryptoBackendXmlSecInProcess, configure_signatures
from broker.saml.response import Expected, IdpKeys, process_response
from broker.saml.xml_encryption import AssertionEncryption
from broker.saml.xml_keys import certificate_key, private_key
from broker.saml.xml_signatures import verify_signature

if __package__:
    from .xmlsig_helpers import attacks
    from .xmlsig_helpers.peers import ACS_URL, IDP_ENTITY_ID, REQUEST_ID, SP_ENTITY_ID, make_peers
else:  # tests/saml is not a package: pytest put it on sys.path
    from xmlsig_helpers import attacks
    from xmlsig_helpers.peers import ACS_URL, IDP_ENTITY_ID, REQUEST_ID, SP_ENTITY_ID, make_peers

SAML, SAMLP = attacks.SAML, attacks.SAMLP
EXPECTED = Expected(sp_entity_id=SP_ENTITY_ID, acs_url=ACS_URL, request_id=REQUEST_ID, idp_entity_id=IDP_ENTITY_ID)
UID = "urn:oid:0.9.2342.19200300.100.1.1"
SIGNINGS = {"assertion": (False, True), "response": (True, False), "both": (True, True)}


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    peers = make_peers(tmp_path_factory.mktemp("peers"), encryption=True)
    configure_signatures(peers.idp)
    return peers


@pytest.fixture(scope="module")
def keys(peers):
    return IdpKeys({IDP_ENTITY_ID: [peers.idp_keys.cert_base64]})


@pytest.fixture(scope="module")
def decryption_key(peers):
    return private_key(peers.sp_enc_keys.key_file)


def _process(xml: str, keys, decryption_key=None, expected: Expected = EXPECTED):
    return process_response(base64.b64encode(xml.encode()).decode(), expected, keys, decryption_key=decryption_key)


def _signatures_verify(peers, xml: str) -> None:
    """The alteration left every signature of *xml* valid: a refusal is the processor's own rule."""
    key = certificate_key(peers.idp_keys.cert_pem)
    root = attacks.parse(xml)
    if root.find(f"{{{attacks.DS}}}Signature") is not None:
        verify_signature(xml, key, f"{SAMLP}:Response", root.get("ID"))
    assertion = attacks.assertion_of(root)
    if assertion is not None and assertion.find(f"{{{attacks.DS}}}Signature") is not None:
        verify_signature(xml, key, f"{SAML}:Assertion", assertion.get("ID"))


# -- what is accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize("signing", sorted(SIGNINGS))
def test_signed_by_response_or_assertion_is_accepted(peers, keys, signing):
    sign_response, sign_assertion = SIGNINGS[signing]
    assertion = _process(peers.response_xml(sign_response=sign_response, sign_assertion=sign_assertion), keys)
    assert assertion.issuer == IDP_ENTITY_ID and assertion.name_id
    assert assertion.attributes[UID] == ["alice"]
    assert assertion.proxy_count is None


def test_unsigned_is_refused(peers, keys):
    with pytest.raises(InvalidResponse, match="neither the assertion nor the response is signed"):
        _process(peers.response_xml(sign_response=False, sign_assertion=False), keys)


@pytest.mark.parametrize("sign_response", [True, False])
def test_encrypted_assertion_is_decrypted_with_our_key_only(peers, keys, decryption_key, sign_response):
    xml = peers.response_xml(sign_response=sign_response, sign_assertion=True, encrypt_assertion=True)
    assert "EncryptedAssertion" in xml
    assertion = _process(xml, keys, decryption_key)
    assert assertion.attributes
    with pytest.raises(InvalidResponse, match="no decryption key"):
        _process(xml, keys)
    wrong = private_key(peers.sp_keys.key_file)
    with pytest.raises(InvalidResponse):
        _process(xml, keys, wrong)


def test_tampered_ciphertext_is_refused(peers, keys, decryption_key):
    xml = peers.response_xml(sign_response=False, sign_assertion=True, encrypt_assertion=True)
    values = re.findall(r"<(?:\w+:)?CipherValue>([^<]+)<", xml)
    data = bytearray(base64.b64decode(values[-1]))
    data[len(data) // 2] ^= 0x01
    tampered = xml.replace(values[-1], base64.b64encode(bytes(data)).decode())
    with pytest.raises(InvalidResponse):
        _process(tampered, keys, decryption_key)


def test_a_key_not_in_metadata_never_verifies(peers):
    other = IdpKeys({IDP_ENTITY_ID: [peers.attacker_keys.cert_base64]})
    with pytest.raises(InvalidResponse, match="signature does not verify"):
        _process(peers.response_xml(), other)
    with pytest.raises(InvalidResponse, match="no signing certificate"):
        _process(peers.response_xml(), IdpKeys({}))


# -- comments and child nodes in signed text (issue 2) ----------------------------------------------


def _name_id(value: str):
    def mutate(response):
        response.assertion.subject.name_id.text = value
    return mutate


def test_a_signed_name_id_is_read_whole(peers, keys):
    """The control: the IdP signs ``bob.attacker`` and the broker reads ``bob.attacker``."""
    assert _process(peers.response_xml(mutate=_name_id("bob.attacker")), keys).name_id == "bob.attacker"


# (element, text before the comment)
COMMENTED = {
    "NameID": ("NameID", "bob"),
    "Issuer": ("Issuer", None),
    "Audience": ("Audience", "https://broker"),
    "AttributeValue": ("AttributeValue", "ali"),
    "AuthnContextClassRef": ("AuthnContextClassRef", "urn:oasis:names:tc:SAML:2.0:ac:classes:"),
}


@pytest.mark.parametrize("signing", sorted(SIGNINGS))
@pytest.mark.parametrize("where", sorted(COMMENTED))
def test_a_comment_inside_signed_text_is_refused_never_read_in_part(peers, keys, where, signing):
    """``bob<!---->.attacker``: the signatures still verify (c14n drops comments), lxml's ``.text``
    is ``bob``; the response is refused, so the victim's identifier can never come out of it."""
    sign_response, sign_assertion = SIGNINGS[signing]
    genuine = peers.response_xml(mutate=_name_id("bob.attacker"), sign_response=sign_response,
                                 sign_assertion=sign_assertion)
    tag, after = COMMENTED[where]
    if tag == "Issuer":  # the assertion's (the Response Issuer is unsigned when only the assertion is)
        root = attacks.parse(genuine)
        issuer = attacks.assertion_of(root).find(f"{{{SAML}}}Issuer")
        assert issuer.text == IDP_ENTITY_ID
        comment = etree.Comment("")
        issuer.text, comment.tail = IDP_ENTITY_ID[:12], IDP_ENTITY_ID[12:]
        issuer.append(comment)
        xml = attacks.serialize(root)
    else:
        xml = attacks.insert_comment(genuine, tag, after)
    _signatures_verify(peers, xml)
    with pytest.raises(InvalidResponse, match="a comment inside the Response"):
        _process(xml, keys)


def test_a_comment_between_elements_is_refused_too(peers, keys):
    """Anywhere inside the Response: no SAML message carries one, none is ever signed."""
    root = attacks.parse(peers.response_xml())
    assertion = attacks.assertion_of(root)
    assertion.insert(1, etree.Comment(" generated by the IdP "))
    xml = attacks.serialize(root)
    _signatures_verify(peers, xml)
    with pytest.raises(InvalidResponse, match="a comment inside the Response"):
        _process(xml, keys)


def test_a_processing_instruction_is_refused(peers, keys):
    xml = attacks.parse(peers.response_xml(sign_response=False))
    name_id = next(xml.iter(f"{{{SAML}}}NameID"))
    name_id.append(etree.ProcessingInstruction("x", "y"))
    with pytest.raises(InvalidResponse, match="a processing instruction inside the Response"):
        _process(attacks.serialize(xml), keys)


def test_a_comment_inside_an_encrypted_assertion_is_refused(peers, keys, decryption_key):
    """Comments hidden in the ciphertext surface on decryption and are refused there."""
    signed = attacks.insert_comment(peers.response_xml(mutate=_name_id("bob.attacker"), sign_response=False),
                                    "NameID", "bob")
    root = attacks.parse(signed)
    assertion = attacks.assertion_of(root)
    holder = etree.Element(f"{{{SAML}}}EncryptedAssertion")
    root.replace(assertion, holder)
    holder.append(assertion)
    template = AssertionEncryption().template(certificate_b64=peers.sp_enc_keys.cert_base64)
    encrypted = CryptoBackendXmlSecInProcess().encrypt_assertion(
        attacks.serialize(root), peers.sp_enc_keys.cert_pem, template, node_id=assertion.get("ID"))
    assert "<!--" not in encrypted and "NameID" not in encrypted  # the comment travels in the ciphertext
    with pytest.raises(InvalidResponse, match="a comment inside the decrypted Assertion"):
        _process(encrypted, keys, decryption_key)


def test_text_is_never_read_in_part_even_past_the_comment_check(peers, keys, monkeypatch):
    """The second layer: with the message-wide comment check switched off, reading the values
    still refuses an element with a child node instead of reading its first text node."""
    xml = attacks.insert_comment(peers.response_xml(mutate=_name_id("bob.attacker")), "NameID", "bob")
    monkeypatch.setattr(saml_response, "refuse_comments", lambda *_: None)
    with pytest.raises(InvalidResponse, match="NameID holds child nodes"):
        _process(xml, keys)


def test_a_structured_attribute_value_is_not_read_as_a_string(peers, keys):
    """An eduPersonTargetedID-style value (a NameID inside AttributeValue) is left out, not flattened."""
    def add_structured(xml: str) -> str:
        root = attacks.parse(xml)
        statement = next(root.iter(f"{{{SAML}}}AttributeStatement"))
        attribute = etree.SubElement(statement, f"{{{SAML}}}Attribute", Name="urn:oid:1.3.6.1.4.1.5923.1.1.1.10")
        value = etree.SubElement(attribute, f"{{{SAML}}}AttributeValue")
        etree.SubElement(value, f"{{{SAML}}}NameID").text = "opaque-id"
        return attacks.serialize(root)

    assertion = _process(peers.response_xml(mutate_xml=add_structured), keys)
    assert assertion.attributes["urn:oid:1.3.6.1.4.1.5923.1.1.1.10"] == []
    assert assertion.attributes[UID] == ["alice"]


# -- the bearer confirmation answers our request (issue 3) ------------------------------------------


def _bearer(response):
    return response.assertion.subject.subject_confirmation[0].subject_confirmation_data


def test_a_bearer_confirmation_without_in_response_to_is_refused(peers, keys):
    """Profiles §4.1.4.3: solicited logins only, so the confirmation must name our request."""
    def unsolicited(response):
        _bearer(response).in_response_to = None

    xml = peers.response_xml(mutate=unsolicited)
    assert "InResponseTo" in xml.split("SubjectConfirmationData")[0]  # the Response still answers us
    with pytest.raises(InvalidResponse, match="bearer confirmation has no InResponseTo"):
        _process(xml, keys)


def test_a_bearer_confirmation_answering_another_request_is_refused(peers, keys):
    def other(response):
        _bearer(response).in_response_to = "id-another-request"

    with pytest.raises(InvalidResponse, match="answers another request"):
        _process(peers.response_xml(mutate=other), keys)


# -- conditions (issue 3) ------------------------------------------------------------------------------

XSI = "http://www.w3.org/2001/XMLSchema-instance"


def _with_conditions(*snippets: str):
    """Add condition elements (XML; ``saml`` and ``xsi`` are declared on each) to the assertion's Conditions."""
    def mutate_xml(xml: str) -> str:
        root = attacks.parse(xml)
        conditions = next(root.iter(f"{{{SAML}}}Conditions"))
        # lxml re-uses the document's declarations on insertion: QNames in values take its prefix.
        prefix = next(name for name, uri in conditions.nsmap.items() if uri == SAML)
        for snippet in snippets:
            snippet = snippet.replace('xsi:type="saml:', f'xsi:type="{prefix}:')
            if "xmlns:saml" not in snippet:
                snippet = re.sub(r"^<([\w:]+)", rf'<\1 xmlns:saml="{SAML}" xmlns:xsi="{XSI}"', snippet, count=1)
            conditions.append(etree.fromstring(snippet))
        return attacks.serialize(root)
    return mutate_xml


UNDERSTOOD_NOT = {
    "audience-as-condition": '<saml:Condition xsi:type="saml:AudienceRestrictionType">'
                             '<saml:Audience>https://other.example.org/sp</saml:Audience></saml:Condition>',
    "one-time-use-as-condition": '<saml:Condition xsi:type="saml:OneTimeUseType"/>',
}


@pytest.mark.parametrize("condition", sorted(UNDERSTOOD_NOT))
def test_a_condition_the_broker_does_not_evaluate_makes_the_assertion_indeterminate(peers, keys, condition):
    """Core §2.5.1.1: not understood → Indeterminate → refused.  The ``<Condition>`` form of an
    audience restriction naming another SP would otherwise have been ignored."""
    xml = peers.response_xml(mutate_xml=_with_conditions(UNDERSTOOD_NOT[condition]))
    with pytest.raises(InvalidResponse, match=r"does not evaluate: the assertion is Indeterminate \(Core §2.5.1"):
        _process(xml, keys)


def test_a_condition_of_an_unknown_type_is_refused(peers, keys):
    snippet = (f'<saml:Condition xmlns:saml="{SAML}" xmlns:xsi="{XSI}" xmlns:x="urn:example:conditions" '
               'xsi:type="x:DelegationRestrictionType"/>')
    xml = peers.response_xml(mutate_xml=_with_conditions(snippet))
    with pytest.raises(InvalidResponse, match="Indeterminate|SAML schema"):
        _process(xml, keys)


def test_one_time_use_is_understood_and_at_most_once(peers, keys):
    assert _process(peers.response_xml(mutate_xml=_with_conditions("<saml:OneTimeUse/>")), keys).attributes
    twice = peers.response_xml(mutate_xml=_with_conditions("<saml:OneTimeUse/>", "<saml:OneTimeUse/>"))
    with pytest.raises(InvalidResponse, match=r"more than one OneTimeUse condition \(Core §2.5.1.5\)"):
        _process(twice, keys)


def test_proxy_restriction_count_is_honoured(peers, keys):
    """Core §2.5.1.6: Count=0 forbids what the broker does (issue its own assertion); a positive
    Count is passed on for the assertions the broker issues."""
    with pytest.raises(InvalidResponse, match="ProxyRestriction Count=0"):
        _process(peers.response_xml(mutate_xml=_with_conditions('<saml:ProxyRestriction Count="0"/>')), keys)
    assertion = _process(peers.response_xml(mutate_xml=_with_conditions('<saml:ProxyRestriction Count="3"/>')), keys)
    assert assertion.proxy_count == 3
    twice = _with_conditions('<saml:ProxyRestriction Count="3"/>', '<saml:ProxyRestriction Count="1"/>')
    with pytest.raises(InvalidResponse, match="more than one ProxyRestriction"):
        _process(peers.response_xml(mutate_xml=twice), keys)


def test_proxy_restriction_audiences_must_name_the_service(peers, keys):
    restricted = peers.response_xml(mutate_xml=_with_conditions(
        "<saml:ProxyRestriction><saml:Audience>https://service-a.example.org</saml:Audience></saml:ProxyRestriction>"))
    with pytest.raises(InvalidResponse, match="does not name the service"):
        _process(restricted, keys)  # the caller did not say which service: fail closed
    with pytest.raises(InvalidResponse, match="does not name the service"):
        _process(restricted, keys, expected=Expected(**{**EXPECTED.__dict__, "downstream": "https://b.example.org"}))
    accepted = _process(restricted, keys,
                        expected=Expected(**{**EXPECTED.__dict__, "downstream": "https://service-a.example.org"}))
    assert accepted.proxy_count is None


class _Audit:
    """File opens and process spawns while armed (PEP 578; the hook stays, inert, once added)."""

    EVENTS = ("open", "tempfile.mkstemp", "subprocess.Popen", "os.posix_spawn", "os.system", "os.fork")
    installed, armed, seen = False, False, []

    @classmethod
    def hook(cls, event, args):
        if cls.armed and event in cls.EVENTS:
            cls.seen.append(event)


def test_processing_a_response_opens_no_file_and_spawns_no_process(peers, keys, decryption_key, tmp_path):
    xml = peers.response_xml(sign_response=True, sign_assertion=True, encrypt_assertion=True)
    if not _Audit.installed:
        sys.addaudithook(_Audit.hook)
        _Audit.installed = True
    control = tmp_path / "control"
    control.write_text("x")
    _Audit.seen, _Audit.armed = [], True
    try:
        control.read_text()                       # the hook sees what it watches for...
        seen_control, _Audit.seen = list(_Audit.seen), []
        assertion = _process(xml, keys, decryption_key)
    finally:
        _Audit.armed = False
    assert "open" in seen_control
    assert assertion.attributes and _Audit.seen == []  # ...and nothing while a response is processed
