"""Encryption keys and algorithms for service providers, from their metadata (broker.saml.sp_encryption),
and the registration flags that ask for them (broker.registry.relying_parties).

What the broker chooses must decrypt at the SP: each negotiated combination is decrypted with the
SP's private key by the ``xmlsec1`` program (pysaml2's default backend; lasso, under
mod_auth_mellon, is on the same libxmlsec1), or by libxmlsec1 1.3 where only it has the algorithm.
"""

from __future__ import annotations

import base64
import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from saml2.sigver import EncryptError

from broker.pki import ensure_keypair
from broker.registry.relying_parties import (
    RegistrationError,
    ReleasePolicy,
    ServiceProvider,
    read_registration_files,
    sp_document,
    write_registration_files,
)
from broker.saml import crypto_policy as algorithms
from broker.saml.sp_encryption import (
    EncryptionUnavailable,
    SpAssertionEncryption,
    check_encrypted,
    sp_encryption,
)
from broker.saml.xml_encryption import decrypt, encrypt_node
from broker.saml.xml_keys import certificate_key, private_key

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return ensure_keypair(tmp_path_factory.mktemp("sp-keys"), "sp", common_name="https://sp.example/sp")


def _b64(path: Path) -> str:
    return "".join(line for line in path.read_text().splitlines() if not line.startswith("-----"))


def _ec_certificate() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _key_descriptor(certificate: str, use: str | None = "encryption", methods: str = "") -> str:
    use_attribute = f' use="{use}"' if use else ""
    return (f'<md:KeyDescriptor{use_attribute}><ds:KeyInfo><ds:KeyName>sp-2026</ds:KeyName><ds:X509Data>'
            f'<ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{methods}'
            f'</md:KeyDescriptor>')


def _metadata(*descriptors: str) -> str:
    return (f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" xmlns:xenc11="{XENC11}" '
            f'entityID="https://sp.example/sp"><md:SPSSODescriptor '
            f'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{"".join(descriptors)}'
            f'<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
            f'Location="https://sp.example/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>')


def _method(algorithm: str, inner: str = "") -> str:
    return f'<md:EncryptionMethod Algorithm="{algorithm}">{inner}</md:EncryptionMethod>'


# -- choosing the key and the algorithms --------------------------------------------------------------------


@pytest.mark.parametrize("use", ["encryption", None])
def test_an_encryption_key_or_one_for_both_uses_is_taken_with_the_defaults(pair, use):
    chosen = sp_encryption(_metadata(_key_descriptor(_b64(pair.cert_path), use="signing"),
                                     _key_descriptor(_b64(pair.cert_path), use=use)))
    assert chosen.certificate == _b64(pair.cert_path) and chosen.key_name == "sp-2026"
    assert (chosen.data, chosen.key_transport) == (algorithms.AES256_GCM, algorithms.RSA_OAEP_MGF1P)


def test_a_signing_key_alone_is_not_an_encryption_key(pair):
    with pytest.raises(EncryptionUnavailable, match="publishes no encryption key"):
        sp_encryption(_metadata(_key_descriptor(_b64(pair.cert_path), use="signing")))


def test_an_unusable_key_is_passed_over_for_a_usable_one(pair):
    chosen = sp_encryption(_metadata(_key_descriptor(_ec_certificate()), _key_descriptor(_b64(pair.cert_path))))
    assert chosen.certificate == _b64(pair.cert_path)
    with pytest.raises(EncryptionUnavailable, match="not RSA"):
        sp_encryption(_metadata(_key_descriptor(_ec_certificate())))
    with pytest.raises(EncryptionUnavailable, match="not base64 DER"):
        sp_encryption(_metadata(_key_descriptor("bm90IGEgY2VydGlmaWNhdGU=")))


LISTS = {
    "GCM and CBC listed: GCM": (_method(algorithms.AES256_CBC) + _method(algorithms.AES128_GCM),
                                (algorithms.AES128_GCM, algorithms.RSA_OAEP_MGF1P, None, None)),
    "xmlenc11 rsa-oaep with SHA-256 and MGF1-SHA-256": (
        _method(algorithms.RSA_OAEP, f'<ds:DigestMethod Algorithm="{algorithms.DIGEST_SHA256}"/>'
                                     f'<xenc11:MGF Algorithm="{XENC11}mgf1sha256"/>'),
        (algorithms.AES256_GCM, algorithms.RSA_OAEP, algorithms.DIGEST_SHA256, XENC11 + "mgf1sha256")),
    "both transports listed: mgf1p": (_method(algorithms.RSA_OAEP) + _method(algorithms.RSA_OAEP_MGF1P),
                                      (algorithms.AES256_GCM, algorithms.RSA_OAEP_MGF1P, None, None)),
    "only unknown algorithms: defaults": (_method("urn:example:cipher"),
                                          (algorithms.AES256_GCM, algorithms.RSA_OAEP_MGF1P, None, None)),
}


@pytest.mark.parametrize("case", list(LISTS))
def test_the_sps_encryption_methods_are_honoured_and_what_is_chosen_decrypts_with_xmlsec1(pair, tmp_path, case):
    methods, expected = LISTS[case]
    chosen = sp_encryption(_metadata(_key_descriptor(_b64(pair.cert_path), methods=methods)))
    assert (chosen.data, chosen.key_transport, chosen.oaep_digest, chosen.mgf) == expected
    document = etree.fromstring(b'<r><secret>kept</secret></r>')
    template = etree.fromstring(chosen.algorithms().template(certificate_b64=chosen.certificate).encode())
    encrypt_node(document, document[0], template, certificate_key(chosen.pem()))
    if chosen.key_transport == algorithms.RSA_OAEP:
        # Debian's xmlsec1 (1.2) has no xmlenc11#rsa-oaep; libxmlsec1 1.3 (python-xmlsec's) has: an SP
        # that lists only that transport says it can, and gets it.
        assert "<secret>kept</secret>" in decrypt(etree.tostring(document), private_key(pair.key_path))
        return
    (tmp_path / "encrypted.xml").write_bytes(etree.tostring(document))
    decrypted = subprocess.run(["xmlsec1", "--decrypt", "--privkey-pem", str(pair.key_path),
                                str(tmp_path / "encrypted.xml")], capture_output=True, check=True).stdout
    assert b"<secret>kept</secret>" in decrypted


@pytest.mark.parametrize("methods,reason", [
    (_method(algorithms.AES256_CBC) + _method(algorithms.TRIPLEDES_CBC), "AES-GCM only"),
    (_method(algorithms.RSA_PKCS1_V1_5), "RSA-OAEP only"),
    (_method(algorithms.RSA_OAEP, '<ds:DigestMethod Algorithm="urn:example:md5"/>'), "unknown DigestMethod"),
])
def test_what_the_broker_never_sends_is_refused(pair, methods, reason):
    with pytest.raises(EncryptionUnavailable, match=reason):
        sp_encryption(_metadata(_key_descriptor(_b64(pair.cert_path), methods=methods)))


def test_metadata_with_a_dtd_is_not_read(pair):
    xml = '<!DOCTYPE x [<!ENTITY e "e">]>' + _metadata(_key_descriptor(_b64(pair.cert_path)))
    with pytest.raises(EncryptionUnavailable, match="not well-formed"):
        sp_encryption(xml)


# -- what leaves the broker -------------------------------------------------------------------------------

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
XENC = "http://www.w3.org/2001/04/xmlenc#"


@pytest.mark.parametrize("body,plaintext", [
    ('<saml:EncryptedAssertion><xenc:EncryptedData/></saml:EncryptedAssertion>', False),
    ('<saml:Assertion/>', True),
    ('<saml:EncryptedAssertion><xenc:EncryptedData/></saml:EncryptedAssertion><saml:Assertion/>', True),
    ('<saml:EncryptedAssertion><xenc:EncryptedData/><saml:Assertion/></saml:EncryptedAssertion>', True),
    ('', True),
])
def test_a_response_leaves_only_with_its_assertion_encrypted(body, plaintext):
    xml = f'<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" xmlns:xenc="{XENC}">{body}</samlp:Response>'
    if plaintext:
        with pytest.raises(EncryptError):
            check_encrypted(xml)
    else:
        check_encrypted(xml)


def test_no_key_is_used_for_an_sp_that_registered_none():
    with pytest.raises(EncryptError, match="no encryption key"):
        SpAssertionEncryption(entity=None, keys={})(None, "https://other.example/sp", "<samlp:Response/>")


# -- the registration flags -------------------------------------------------------------------------------


def test_the_flags_are_written_only_when_set_and_read_back(pair, tmp_path):
    metadata = _metadata(_key_descriptor(_b64(pair.cert_path)))
    name, plain = sp_document(metadata, name="plain", policy=ReleasePolicy(profile="mpassid"))
    assert set(plain["policy"]) == {"scopes", "profile", "subject_type", "sector"}
    _, sealed = sp_document(metadata, name="sealed", policy=ReleasePolicy(profile="mpassid"),
                            encrypt_assertions=True, release_authenticating_authority=True)
    sp = ServiceProvider.from_document("sealed", sealed)
    assert sp.encrypt_assertions and sp.release_authenticating_authority
    assert sp.encryption is not None and sp.encryption.certificate == _b64(pair.cert_path)
    assert sp.policy == ReleasePolicy(profile="mpassid")   # the flags are not release scopes
    # The file form (sps/<name>.json) carries them next to the policy's fields.
    write_registration_files(tmp_path, {}, {"sealed": sealed, "plain": plain})
    _, read = read_registration_files(tmp_path)
    assert read["sealed"]["policy"] == {**sealed["policy"], "scopes": ["openid", "roles"]}
    assert ServiceProvider.from_document("sealed", read["sealed"]) == sp
    assert ServiceProvider.from_document(name, plain).encryption is None


def test_asking_for_encryption_without_a_key_names_the_field(pair):
    metadata = _metadata(_key_descriptor(_b64(pair.cert_path), use="signing"))
    with pytest.raises(RegistrationError, match=r"sp x: policy\.encrypt_assertions: expected the SP's metadata"):
        ServiceProvider.from_document("x", {"metadata_xml": metadata,
                                            "policy": {"profile": "mpassid", "encrypt_assertions": True}})
    with pytest.raises(RegistrationError, match="policy: expected scopes"):
        ServiceProvider.from_document("x", {"metadata_xml": metadata, "policy": {"encrypt": True}})
