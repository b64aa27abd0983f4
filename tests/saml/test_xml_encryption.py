"""XML encryption on its own (:mod:`broker.saml.xml_encryption`): round trips, our key only, and
the crypto policy applied before any decryption."""

from __future__ import annotations

import base64

import pytest
from lxml import etree
from saml2.sigver import DecryptError, pre_encryption_part

from broker.saml import crypto_policy as alg
from broker.saml.crypto_policy import AlgorithmRefused, CryptoPolicy
from broker.saml.pysaml2_crypto import CryptoBackendXmlSecInProcess
from broker.saml.xml_encryption import AssertionEncryption, decrypt, decrypt_node
from broker.saml.xml_keys import private_key
from broker.saml.xml_parsing import parse

if __package__:
    from .xmlsig_helpers import attacks
    from .xmlsig_helpers.peers import make_keypair
else:  # tests/saml is not a package: pytest put it on sys.path
    from xmlsig_helpers import attacks
    from xmlsig_helpers.peers import make_keypair

SAMLP, SAML, DS = attacks.SAMLP, attacks.SAML, attacks.DS
XENC = "http://www.w3.org/2001/04/xmlenc#"


def document() -> str:
    return (f'<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="r-1" Version="2.0" '
            f'IssueInstant="2026-01-01T00:00:00Z"><saml:EncryptedAssertion><saml:Assertion ID="a-1" Version="2.0" '
            f'IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://idp.example.org</saml:Issuer><saml:Subject>'
            f'<saml:NameID>alice</saml:NameID></saml:Subject></saml:Assertion></saml:EncryptedAssertion>'
            f'</samlp:Response>')


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    return {name: make_keypair(directory, name) for name in ("sp", "attacker")}


def encrypt(keys, encryption: AssertionEncryption) -> str:
    template = encryption.template(certificate_b64=keys["sp"].cert_base64)
    return CryptoBackendXmlSecInProcess().encrypt_assertion(document(), keys["sp"].cert_pem, template, node_id="a-1")


def methods(xml: str) -> tuple[str, str]:
    root = attacks.parse(xml)
    data = root.find(f".//{{{XENC}}}EncryptedData")
    return (data.find(f"{{{XENC}}}EncryptionMethod").get("Algorithm"),
            data.find(f".//{{{XENC}}}EncryptedKey/{{{XENC}}}EncryptionMethod").get("Algorithm"))


# -- what the broker's own entities encrypt with -----------------------------------------------


def test_default_assertion_encryption_is_rsa_oaep_and_aes_gcm(keys):
    """pysaml2's pre_encryption_part() default is Triple-DES-CBC; ours is AES-256-GCM with RSA-OAEP."""
    assert pre_encryption_part().encryption_method.algorithm == alg.TRIPLEDES_CBC
    encrypted = encrypt(keys, AssertionEncryption())
    assert methods(encrypted) == (alg.AES256_GCM, alg.RSA_OAEP_MGF1P)
    assert ">alice<" in decrypt(encrypted, private_key(keys["sp"].key_pem), policy=CryptoPolicy())


@pytest.mark.parametrize("encryption", [
    AssertionEncryption(data=alg.AES128_GCM),
    AssertionEncryption(data=alg.AES192_GCM),
    AssertionEncryption(data=alg.AES256_GCM, oaep_digest=alg.DIGEST_SHA256),
    AssertionEncryption(key_transport=alg.RSA_OAEP),
    AssertionEncryption(key_transport=alg.RSA_OAEP, oaep_digest=alg.DIGEST_SHA256, mgf=alg.XENC11 + "mgf1sha256"),
    AssertionEncryption(key_transport=alg.RSA_OAEP, oaep_digest=alg.DIGEST_SHA1, mgf=alg.XENC11 + "mgf1sha1"),
], ids=["aes128-gcm", "aes192-gcm", "oaep-sha256", "xmlenc11-oaep", "xmlenc11-oaep-sha256", "xmlenc11-oaep-sha1"])
def test_every_default_accepted_encryption_round_trips_under_the_default_policy(keys, encryption):
    encrypted = encrypt(keys, encryption)
    assert ">alice<" not in encrypted
    assert ">alice<" in decrypt(encrypted, private_key(keys["sp"].key_pem), policy=CryptoPolicy())


def test_an_mgf_needs_xmlenc11_rsa_oaep():
    with pytest.raises(ValueError, match="MGF"):
        AssertionEncryption(mgf=alg.XENC11 + "mgf1sha256")
    with pytest.raises(ValueError, match="unsupported data encryption"):
        AssertionEncryption(data="http://www.w3.org/2001/04/xmlenc#kw-aes128")


# -- the policy before any decryption -------------------------------------------------------------


def _garbled(xml: str) -> str:
    """The same document with both ciphertexts replaced by random bytes: any decryption would fail."""
    root = attacks.parse(xml)
    for value in root.iter(f"{{{XENC}}}CipherValue"):
        value.text = base64.b64encode(b"\x00" * 256).decode()
    return attacks.serialize(root)


@pytest.mark.parametrize("encryption, item", [
    (AssertionEncryption(key_transport=alg.RSA_PKCS1_V1_5), "rsa-1_5"),
    (AssertionEncryption(data=alg.AES128_CBC), "cbc"),
    (AssertionEncryption(data=alg.AES256_CBC), "cbc"),
    (AssertionEncryption(data=alg.TRIPLEDES_CBC), "cbc"),
], ids=["rsa-1_5", "aes128-cbc", "aes256-cbc", "tripledes-cbc"])
def test_legacy_encryption_is_refused_before_decrypting_and_accepted_with_its_item(keys, encryption, item):
    encrypted = encrypt(keys, encryption)
    key = private_key(keys["sp"].key_pem)
    # Refused on the algorithm alone: with garbage ciphertext the refusal is still the policy's, so
    # no padding or decryption error (an oracle) was ever produced.
    for xml in (encrypted, _garbled(encrypted)):
        with pytest.raises(AlgorithmRefused, match=f"legacy_crypto lists {item}"):
            decrypt(xml, key, policy=CryptoPolicy())
    assert ">alice<" in decrypt(encrypted, key, policy=CryptoPolicy({item}))
    assert ">alice<" in decrypt(encrypted, key)  # no policy: the library allow-list (pysaml2 plugin)


@pytest.mark.parametrize("change, match", [
    (lambda m: m.set("Algorithm", XENC + "kw-aes128"), "unsupported or missing EncryptedKey EncryptionMethod"),
    (lambda m: etree.SubElement(m, f"{{{DS}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#md5"),
     "RSA-OAEP DigestMethod"),
    (lambda m: etree.SubElement(m, f"{{{alg.XENC11}}}MGF", Algorithm=alg.XENC11 + "mgf1sha256"), "RSA-OAEP MGF"),
], ids=["key-wrap", "oaep-md5", "mgf-with-mgf1p"])
def test_key_transport_parameters_outside_the_policy_are_refused(keys, change, match):
    root = parse(encrypt(keys, AssertionEncryption()))
    change(root.find(f".//{{{XENC}}}EncryptedKey/{{{XENC}}}EncryptionMethod"))
    with pytest.raises((AlgorithmRefused, DecryptError), match=match):
        decrypt_node(root, root.find(f".//{{{XENC}}}EncryptedData"), private_key(keys["sp"].key_pem),
                     policy=CryptoPolicy())


# -- decryption with our key only --------------------------------------------------------------------


@pytest.mark.parametrize("cipher", [alg.TRIPLEDES_CBC, alg.AES128_CBC, alg.AES256_GCM])
def test_encrypted_assertion_round_trip_with_pysaml2_templates(keys, cipher):
    backend = CryptoBackendXmlSecInProcess()
    template = str(pre_encryption_part(msg_enc=cipher, encrypt_cert=keys["sp"].cert_base64))
    encrypted = backend.encrypt_assertion(document(), keys["sp"].cert_pem, template, node_id="a-1")
    assert ">alice<" not in encrypted and "EncryptedData" in encrypted
    decrypted = backend.decrypt(encrypted, keys["sp"].key_pem)
    assert ">alice<" in decrypted
    assert attacks.parse(decrypted).find(f"{{{SAML}}}EncryptedAssertion/{{{SAML}}}Assertion").get("ID") == "a-1"


def test_decryption_with_another_key_fails(keys):
    backend = CryptoBackendXmlSecInProcess()
    template = AssertionEncryption().template(certificate_b64=keys["sp"].cert_base64)
    encrypted = backend.encrypt(document(), keys["sp"].cert_pem, template, "aes-256")
    with pytest.raises(DecryptError):
        backend.decrypt(encrypted, keys["attacker"].key_pem)
    assert ">alice<" in backend.decrypt(encrypted, keys["sp"].key_file)


def test_encrypted_key_found_through_a_retrieval_method(keys):
    """XML-Enc §3.5.1: the EncryptedKey beside the EncryptedData, named by a RetrievalMethod (Shibboleth style)."""
    backend = CryptoBackendXmlSecInProcess()
    template = str(pre_encryption_part(msg_enc=alg.AES128_GCM, encrypt_cert=keys["sp"].cert_base64,
                                       encrypted_key_id="EK-1"))
    root = attacks.parse(backend.encrypt_assertion(document(), keys["sp"].cert_pem, template, node_id="a-1"))
    holder = root.find(f"{{{SAML}}}EncryptedAssertion")
    data = holder.find(f"{{{XENC}}}EncryptedData")
    key_info = data.find(f"{{{DS}}}KeyInfo")
    holder.append(key_info.find(f"{{{XENC}}}EncryptedKey"))
    etree.SubElement(key_info, f"{{{DS}}}RetrievalMethod", URI="#EK-1", Type=f"{XENC}EncryptedKey")
    assert ">alice<" in decrypt(attacks.serialize(root), private_key(keys["sp"].key_pem), policy=CryptoPolicy())


def test_no_encrypted_data_is_a_decrypt_error(keys):
    with pytest.raises(DecryptError, match="no <xenc:EncryptedData>"):
        CryptoBackendXmlSecInProcess().decrypt(document(), keys["sp"].key_pem)
