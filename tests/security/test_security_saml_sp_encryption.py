"""Encrypted assertions for SAML service providers (SAML Core §2.3.4, §6; XML-Enc 1.1; ADR 0013).

* Asking for encryption without a key the broker can use is refused when the SP is registered,
  whichever way the registration arrives, with a message naming the field and what was expected:
  never a plaintext assertion to an SP that asked, never a failed login later.
* An encrypted assertion that was tampered with is refused by the SP (a stock pysaml2 SP; the
  ``xmlsec1`` program decrypts): a flipped ciphertext bit (AES-GCM's tag), an assertion an attacker
  encrypted to the SP's public key (anyone can: encryption is not authentication, the broker's
  signature inside is what counts), the ciphertext of another SP's assertion.
"""

from __future__ import annotations

import base64
import copy
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from saml2.response import StatusInvalidAuthnResponseStatement
from saml2.sigver import SignatureError

from broker.registry.relying_parties import RegistrationError, ReleasePolicy
from broker.registry.versions import Invalid
from broker.saml import crypto_policy as algorithms
from broker.saml.xml_encryption import AssertionEncryption, decrypt, encrypt_node
from broker.saml.xml_keys import certificate_key, private_key

from .saml_sps import DS, MD, SAML, XENC, Answer, make_sp, parse, sign_in_for


@pytest.fixture(scope="module")
def sps(stack, tmp_path_factory):
    directory = tmp_path_factory.mktemp("sealed-sps")
    made = {
        # Checks the Response's signature: the ordinary, strict service.
        "strict": make_sp(stack, directory, "sealed-strict", encryption=True, encrypt_assertions=True),
        # Wants only the assertion signed (pysaml2 allows it): what an attacker who strips the Response's
        # signature faces, so the tests show the encryption and the assertion's signature hold on their own.
        "lax": make_sp(stack, directory, "sealed-lax", encryption=True, want_response_signed=False,
                       encrypt_assertions=True),
        "other": make_sp(stack, directory, "sealed-other", encryption=True, encrypt_assertions=True),
    }
    stack.app.rebuild()
    return made


# -- registration ------------------------------------------------------------------------------------------


def _certificate(key, common_name: str = "sp") -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _encryption_descriptor(metadata: str) -> tuple[etree._Element, etree._Element]:
    root = etree.fromstring(metadata.encode())
    return root, root.find(f".//{{{MD}}}KeyDescriptor[@use='encryption']")


def _without_encryption_key(metadata: str) -> str:
    root, descriptor = _encryption_descriptor(metadata)
    descriptor.getparent().remove(descriptor)
    return etree.tostring(root, encoding="unicode")


def _with_encryption_certificate(metadata: str, certificate: str) -> str:
    root, descriptor = _encryption_descriptor(metadata)
    descriptor.find(f".//{{{DS}}}X509Certificate").text = certificate
    return etree.tostring(root, encoding="unicode")


def _listing(metadata: str, *methods: str) -> str:
    root, descriptor = _encryption_descriptor(metadata)
    for method in methods:
        etree.SubElement(descriptor, f"{{{MD}}}EncryptionMethod", Algorithm=method)
    return etree.tostring(root, encoding="unicode")


REFUSED_METADATA = {
    "no encryption key": (_without_encryption_key, "publishes no encryption key"),
    "an EC key": (lambda m: _with_encryption_certificate(m, _certificate(ec.generate_private_key(ec.SECP256R1()))),
                  "not RSA"),
    "RSA-1024": (lambda m: _with_encryption_certificate(
        m, _certificate(rsa.generate_private_key(public_exponent=65537, key_size=1024))), "1024 bits"),
    "only CBC listed": (lambda m: _listing(m, algorithms.AES256_CBC, algorithms.RSA_OAEP_MGF1P), "AES-GCM only"),
    "only RSA v1.5 listed": (lambda m: _listing(m, algorithms.AES256_GCM, algorithms.RSA_PKCS1_V1_5),
                             "RSA-OAEP only"),
}


@pytest.mark.parametrize("case", list(REFUSED_METADATA))
def test_encryption_without_a_usable_key_is_refused_at_registration(stack, sps, case):
    alter, reason = REFUSED_METADATA[case]
    metadata = alter(sps["strict"].metadata)
    registry = stack.app.registry_service
    before = registry.versions.state().documents
    with pytest.raises(RegistrationError) as refused:
        registry.register_sp(metadata, name="sealed-refused", by="test",
                             policy=ReleasePolicy(profile="mpassid"), encrypt_assertions=True)
    assert "policy.encrypt_assertions" in str(refused.value) and reason in str(refused.value), refused.value
    # The file form / admin path: a staged document is validated by the same function at activation.
    document = {"metadata_xml": metadata, "policy": {"scopes": ["openid"], "profile": "mpassid",
                                                     "encrypt_assertions": True}}
    with pytest.raises(Invalid) as invalid:
        registry.propose({("sp", "sealed-refused"): document}, by="test", comment="asks without a key")
    assert any("policy.encrypt_assertions" in p and reason in p for p in invalid.value.problems), invalid.value
    assert registry.versions.state().documents == before
    # The same metadata without the flag registers (plaintext, signed assertions): the key is needed only to ask.
    if case == "no encryption key":
        sp, _ = registry.register_sp(metadata, name="sealed-plain", by="test", activate=False,
                                     policy=ReleasePolicy(profile="mpassid"))
        assert sp.encryption is None and not sp.encrypt_assertions


def test_a_flag_that_is_not_a_boolean_is_refused(stack, sps):
    document = {"metadata_xml": sps["strict"].metadata, "policy": {"profile": "mpassid", "encrypt_assertions": "yes"}}
    with pytest.raises(Invalid) as invalid:
        stack.app.registry_service.propose({("sp", "sealed-str"): document}, by="test", comment="a string")
    assert any("policy.encrypt_assertions: expected true or false" in p for p in invalid.value.problems)


# -- tampering ----------------------------------------------------------------------------------------------


def _strip_response_signature(root: etree._Element) -> None:
    root.remove(root.find(f"{{{DS}}}Signature"))


def _cipher_value(root: etree._Element) -> etree._Element:
    return root.find(f"{{{SAML}}}EncryptedAssertion/{{{XENC}}}EncryptedData/{{{XENC}}}CipherData/"
                     f"{{{XENC}}}CipherValue")


def _flip_ciphertext(root: etree._Element) -> None:
    node = _cipher_value(root)
    data = bytearray(base64.b64decode(node.text))
    data[len(data) // 2] ^= 0x01
    node.text = base64.b64encode(bytes(data)).decode()


def _reencrypt(root: etree._Element, sp, *, keep_signature: bool) -> None:
    """Decrypt with the SP's key (the attacker's view of a legitimate assertion, the worst case), make the
    pupil a principal, encrypt it again to the SP's public certificate: no broker key is involved."""
    opened = etree.fromstring(decrypt(etree.tostring(root), private_key(sp.key)).encode())
    assertion = opened.find(f"{{{SAML}}}EncryptedAssertion/{{{SAML}}}Assertion")
    for value in assertion.iter(f"{{{SAML}}}AttributeValue"):
        value.text = (value.text or "").replace(";Oppilas;1;", ";Rehtori;6;")
    if not keep_signature:
        assertion.remove(assertion.find(f"{{{DS}}}Signature"))
    template = etree.fromstring(AssertionEncryption().template().encode())
    encrypt_node(opened, assertion, template, certificate_key(sp.cert))
    root.replace(root.find(f"{{{SAML}}}EncryptedAssertion"), opened.find(f"{{{SAML}}}EncryptedAssertion"))


def _assert_refused(sp, root: etree._Element, request_id: str, reason: str | None) -> None:
    """The SP gets no identity from the Response.

    ``reason`` is how pysaml2 refuses: a ``SignatureError`` matching it, or (``None``: an
    assertion it cannot decrypt) a Response handed back with no assertion, whose
    ``session_info()``, what an SP reads, raises.
    """
    if reason is not None:
        with pytest.raises(SignatureError, match=reason):
            parse(sp, etree.tostring(root), request_id)
        return
    authn = parse(sp, etree.tostring(root), request_id)
    assert authn.assertion is None and not authn.ava, "the SP accepted a tampered assertion"
    with pytest.raises(StatusInvalidAuthnResponseStatement):
        authn.session_info()


def _lahti_pupil(stack, sp) -> Answer:
    return sign_in_for(stack, sp, "lahti-koulu", "pupil.lahti")


def test_the_untampered_answer_is_accepted_with_and_without_the_response_signature(stack, sps):
    """The control: what the tampering tests change, and only that, is what the SP refuses."""
    for strip in (False, True):
        answer = _lahti_pupil(stack, sps["lax"])
        root = answer.root
        if strip:
            _strip_response_signature(root)
        authn = parse(sps["lax"], etree.tostring(root), answer.request_id)
        assert authn.assertion.signature is not None
        roles = [v.text for s in authn.assertion.attribute_statement for a in s.attribute
                 if a.name == "urn:mpass.id:role" for v in a.attribute_value]
        assert roles and all(";Oppilas;1;" in r for r in roles)


#: case -> (the SP, the tampering, how the SP refuses: None = it cannot decrypt, else its SignatureError).
TAMPERING = {
    "a flipped ciphertext bit (AES-GCM tag)": (
        "lax", lambda root, sps: (_strip_response_signature(root), _flip_ciphertext(root)), None),
    "a flipped ciphertext bit under the Response signature": (
        "strict", lambda root, sps: _flip_ciphertext(root), "Failed to verify signature"),
    # The SP decrypts these (they are encrypted to its key) and refuses them for the broker's signature.
    "an attacker's assertion, encrypted to the SP, signature kept": (
        "lax", lambda root, sps: (_strip_response_signature(root), _reencrypt(root, sps["lax"], keep_signature=True)),
        "Failed to verify signature"),
    "an attacker's assertion, encrypted to the SP, unsigned": (
        "lax", lambda root, sps: (_strip_response_signature(root),
                                  _reencrypt(root, sps["lax"], keep_signature=False)),
        "Signature missing for assertion"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_encrypted_assertion_is_refused_by_the_sp(stack, sps, case):
    which, tamper, reason = TAMPERING[case]
    answer = _lahti_pupil(stack, sps[which])
    root = answer.root
    tamper(root, sps)
    _assert_refused(sps[which], root, answer.request_id, reason)


def test_another_sps_encrypted_assertion_is_refused(stack, sps):
    """The ciphertext of an assertion for another SP (encrypted to its key, for its audience) in place of
    this SP's: it cannot be decrypted with this SP's key."""
    answer = _lahti_pupil(stack, sps["lax"])
    other = _lahti_pupil(stack, sps["other"]).root
    root = answer.root
    _strip_response_signature(root)
    root.replace(root.find(f"{{{SAML}}}EncryptedAssertion"), copy.deepcopy(other.find(f"{{{SAML}}}EncryptedAssertion")))
    _assert_refused(sps["lax"], root, answer.request_id, None)
