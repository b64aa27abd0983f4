"""The per-IdP crypto policy (ADR 0009) on genuine pysaml2 responses.

SHA-1, RSA PKCS#1 v1.5 key transport and CBC are refused by default, before any
signature is verified or anything decrypted, and accepted only with the matching
``legacy_crypto`` item; every default-accepted algorithm works end to end.  The IdP
is a real pysaml2 ``Server`` signing and encrypting with the algorithms named.
"""

from __future__ import annotations

import base64

import pytest
import xmlsec
from lxml import etree
from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.server import Server

from broker.errors import InvalidResponse
from broker.saml import crypto_policy as alg
from broker.saml.crypto_policy import DEFAULT_POLICY, LEGACY_ITEMS, CryptoPolicy, policy_for
from broker.saml.pysaml2_crypto import configure_signatures, pysaml2_config_overrides
from broker.saml.response import Expected, IdpKeys, process_response
from broker.saml.xml_encryption import AssertionEncryption
from broker.saml.xml_keys import certificate_key, private_key
from broker.saml.xml_signatures import DIGEST_ALGORITHMS, SIGNATURE_ALGORITHMS, signature_context

if __package__:
    from .xmlsig_helpers import attacks
    from .xmlsig_helpers.peers import ACS_URL, IDP_ENTITY_ID, REQUEST_ID, SP_ENTITY_ID, make_peers
else:  # tests/saml is not a package: pytest put it on sys.path
    from xmlsig_helpers import attacks
    from xmlsig_helpers.peers import ACS_URL, IDP_ENTITY_ID, REQUEST_ID, SP_ENTITY_ID, make_peers

DS, XENC = attacks.DS, "http://www.w3.org/2001/04/xmlenc#"
SIGNINGS = {"assertion": (False, True), "response": (True, False), "both": (True, True)}
ALL_LEGACY = CryptoPolicy(LEGACY_ITEMS)


def expected(policy: CryptoPolicy = DEFAULT_POLICY) -> Expected:
    return Expected(sp_entity_id=SP_ENTITY_ID, acs_url=ACS_URL, request_id=REQUEST_ID, idp_entity_id=IDP_ENTITY_ID,
                    crypto=policy)


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    peers = make_peers(tmp_path_factory.mktemp("rsa"), encryption=True)
    configure_signatures(peers.idp)
    return peers


@pytest.fixture(scope="module")
def ec_peers(tmp_path_factory):
    """An IdP signing with an ECDSA P-256 key."""
    peers = make_peers(tmp_path_factory.mktemp("ec"), encryption=True, idp_key_type="ec")
    configure_signatures(peers.idp)
    return peers


def process(peers, xml: str, policy: CryptoPolicy = DEFAULT_POLICY):
    keys = IdpKeys({IDP_ENTITY_ID: [peers.idp_keys.cert_base64]})
    return process_response(base64.b64encode(xml.encode()).decode(), expected(policy), keys,
                            decryption_key=private_key(peers.sp_enc_keys.key_pem))


def algorithms_in(xml: str) -> set[str]:
    root = attacks.parse(xml)
    return {e.get("Algorithm") for e in root.iter(f"{{{DS}}}SignatureMethod", f"{{{DS}}}DigestMethod",
                                                   f"{{{XENC}}}EncryptionMethod")}


# -- the policy object -----------------------------------------------------------------------------


def test_the_default_policy_is_sha256_or_better_oaep_and_gcm():
    assert DEFAULT_POLICY == CryptoPolicy() == policy_for(None) == policy_for([])
    assert DEFAULT_POLICY.signature_methods() == {alg.RSA_SHA256, alg.RSA_SHA384, alg.RSA_SHA512,
                                                  alg.ECDSA_SHA256, alg.ECDSA_SHA384, alg.ECDSA_SHA512}
    assert DEFAULT_POLICY.digest_methods() == {alg.DIGEST_SHA256, alg.DIGEST_SHA384, alg.DIGEST_SHA512}
    assert DEFAULT_POLICY.warnings() == []
    # Everything a policy can accept, the verifier can process.
    assert ALL_LEGACY.signature_methods() <= SIGNATURE_ALGORITHMS.keys()
    assert ALL_LEGACY.digest_methods() <= DIGEST_ALGORITHMS.keys()


def test_legacy_items_are_exactly_three_and_validated():
    assert set(LEGACY_ITEMS) == {"sha1", "rsa-1_5", "cbc"}
    assert policy_for(["cbc", "sha1"]) == CryptoPolicy(frozenset({"sha1", "cbc"}))
    with pytest.raises(ValueError, match="unknown legacy_crypto item.*'sha224'"):
        CryptoPolicy({"sha224"})
    with pytest.raises(TypeError):
        CryptoPolicy("sha1")


def test_every_legacy_item_comes_with_a_warning_naming_its_risk():
    warnings = ALL_LEGACY.warnings()
    assert len(warnings) == 3
    assert all(w.startswith("legacy_crypto ") for w in warnings)
    assert "padding oracle" in " ".join(warnings) and "collision" in " ".join(warnings)


# -- signatures ---------------------------------------------------------------------------------------

SHA1_CASES = {
    "rsa-sha1+sha1": (alg.RSA_SHA1, alg.DIGEST_SHA1),
    "rsa-sha1+sha256": (alg.RSA_SHA1, alg.DIGEST_SHA256),
    "rsa-sha256+sha1": (alg.RSA_SHA256, alg.DIGEST_SHA1),
}


@pytest.mark.parametrize("signing", sorted(SIGNINGS))
@pytest.mark.parametrize("case", sorted(SHA1_CASES))
def test_sha1_signatures_are_refused_by_default_and_accepted_with_sha1(peers, case, signing):
    sign_alg, digest_alg = SHA1_CASES[case]
    sign_response, sign_assertion = SIGNINGS[signing]
    xml = peers.response_xml(sign_response=sign_response, sign_assertion=sign_assertion, sign_alg=sign_alg,
                             digest_alg=digest_alg)
    assert {sign_alg, digest_alg} <= algorithms_in(xml)
    with pytest.raises(InvalidResponse, match=r"refused unless the IdP's legacy_crypto lists sha1 \(ADR 0009"):
        process(peers, xml)
    for policy in (CryptoPolicy({"cbc", "rsa-1_5"}),):  # the other items do not open SHA-1
        with pytest.raises(InvalidResponse, match="legacy_crypto lists sha1"):
            process(peers, xml, policy)
    assert process(peers, xml, CryptoPolicy({"sha1"})).attributes


@pytest.mark.parametrize("sign_alg, digest_alg", [
    (alg.DSIG_MORE + "rsa-sha224", alg.DIGEST_SHA256),
    (alg.RSA_SHA256, alg.DIGEST_SHA224),
], ids=["rsa-sha224", "sha224-digest"])
def test_sha224_is_below_sha256_and_no_legacy_item_opens_it(peers, sign_alg, digest_alg):
    xml = peers.response_xml(sign_alg=sign_alg, digest_alg=digest_alg)
    with pytest.raises(InvalidResponse, match="is not accepted: SHA-256 or better"):
        process(peers, xml, ALL_LEGACY)


def test_a_refused_signature_algorithm_is_refused_before_any_verification(peers):
    """The refusal names the policy even when the signature value is garbage: nothing was verified."""
    root = attacks.parse(peers.response_xml(sign_response=True, sign_assertion=False, sign_alg=alg.RSA_SHA1))
    root.find(f"{{{DS}}}Signature/{{{DS}}}SignatureValue").text = base64.b64encode(b"\x01" * 256).decode()
    with pytest.raises(InvalidResponse, match="legacy_crypto lists sha1"):
        process(peers, attacks.serialize(root))
    with pytest.raises(InvalidResponse, match="signature does not verify"):
        process(peers, attacks.serialize(root), CryptoPolicy({"sha1"}))


def test_libxmlsec1_itself_is_limited_to_the_policy(peers):
    """Defence in depth: the verification context enables only the policy's algorithms, so a SHA-1
    signature fails inside libxmlsec1 even when the policy check before it is skipped."""
    xml = peers.response_xml(sign_response=False, sign_alg=alg.RSA_SHA1, digest_alg=alg.DIGEST_SHA1)
    root = attacks.parse(xml)
    assertion = attacks.assertion_of(root)
    key = certificate_key(peers.idp_keys.cert_pem)
    for policy, verifies in ((DEFAULT_POLICY, False), (CryptoPolicy({"sha1"}), True)):
        ctx = signature_context(key, policy)
        ctx.register_id(assertion, "ID")
        if verifies:
            ctx.verify(assertion.find(f"{{{DS}}}Signature"))
        else:
            with pytest.raises(xmlsec.Error):
                ctx.verify(assertion.find(f"{{{DS}}}Signature"))


# -- encryption ---------------------------------------------------------------------------------------

LEGACY_ENCRYPTIONS = {
    "rsa-1_5": (AssertionEncryption(key_transport=alg.RSA_PKCS1_V1_5), {"rsa-1_5"}),
    "aes128-cbc": (AssertionEncryption(data=alg.AES128_CBC), {"cbc"}),
    "aes256-cbc": (AssertionEncryption(data=alg.AES256_CBC), {"cbc"}),
    "tripledes-cbc": (AssertionEncryption(data=alg.TRIPLEDES_CBC), {"cbc"}),
    "rsa-1_5+aes256-cbc": (AssertionEncryption(key_transport=alg.RSA_PKCS1_V1_5, data=alg.AES256_CBC),
                           {"rsa-1_5", "cbc"}),
}


@pytest.mark.parametrize("sign_response", [False, True], ids=["assertion-signed", "response-signed-too"])
@pytest.mark.parametrize("case", sorted(LEGACY_ENCRYPTIONS))
def test_legacy_encryption_is_refused_by_default_and_accepted_with_its_items(peers, case, sign_response):
    encryption, items = LEGACY_ENCRYPTIONS[case]
    xml = peers.response_xml(sign_response=sign_response, sign_assertion=True, encrypt_assertion=True,
                             encryption=encryption)
    assert {encryption.data, encryption.key_transport} <= algorithms_in(xml)
    with pytest.raises(InvalidResponse, match=r"refused unless the IdP's legacy_crypto lists (rsa-1_5|cbc)"):
        process(peers, xml)
    for item in items:  # one item is not enough when both are needed
        if len(items) > 1:
            with pytest.raises(InvalidResponse, match="legacy_crypto lists"):
                process(peers, xml, CryptoPolicy({item}))
    assert process(peers, xml, CryptoPolicy(items)).attributes


def test_a_refused_key_transport_is_refused_before_any_decryption(peers):
    """No RSA PKCS#1 v1.5 decryption is attempted (no padding oracle), even on garbage ciphertext."""
    xml = peers.response_xml(sign_response=False, encrypt_assertion=True,
                             encryption=AssertionEncryption(key_transport=alg.RSA_PKCS1_V1_5))
    root = attacks.parse(xml)
    for value in root.iter(f"{{{XENC}}}CipherValue"):
        value.text = base64.b64encode(b"\x02" * 256).decode()
    with pytest.raises(InvalidResponse, match="legacy_crypto lists rsa-1_5"):
        process(peers, attacks.serialize(root))
    with pytest.raises(InvalidResponse, match="could not be decrypted"):
        process(peers, attacks.serialize(root), CryptoPolicy({"rsa-1_5"}))


# -- what is accepted by default, end to end -------------------------------------------------------------

RSA_SIGNATURES = [(alg.RSA_SHA256, alg.DIGEST_SHA256), (alg.RSA_SHA384, alg.DIGEST_SHA384),
                  (alg.RSA_SHA512, alg.DIGEST_SHA512), (alg.RSA_SHA256, alg.DIGEST_SHA512)]
EC_SIGNATURES = [(alg.ECDSA_SHA256, alg.DIGEST_SHA256), (alg.ECDSA_SHA384, alg.DIGEST_SHA384),
                 (alg.ECDSA_SHA512, alg.DIGEST_SHA256)]


def _signature_method(uri: str):
    """pysaml2's pre_signature_part() knows no ECDSA: put the method into its template before signing."""
    def mutate_xml(xml: str) -> str:
        root = attacks.parse(xml)
        for method in root.iter(f"{{{DS}}}SignatureMethod"):
            method.set("Algorithm", uri)
        return attacks.serialize(root)
    return mutate_xml


@pytest.mark.parametrize("signing", sorted(SIGNINGS))
@pytest.mark.parametrize("sign_alg, digest_alg", RSA_SIGNATURES + EC_SIGNATURES,
                         ids=[f"{s.rsplit('#')[1]}+{d.rsplit('#')[1]}" for s, d in RSA_SIGNATURES + EC_SIGNATURES])
def test_every_default_signature_algorithm_is_accepted(peers, ec_peers, sign_alg, digest_alg, signing):
    sign_response, sign_assertion = SIGNINGS[signing]
    if "ecdsa" in sign_alg:
        idp, options = ec_peers, {"mutate_xml": _signature_method(sign_alg)}
    else:
        idp, options = peers, {"sign_alg": sign_alg}
    xml = idp.response_xml(sign_response=sign_response, sign_assertion=sign_assertion, digest_alg=digest_alg,
                           **options)
    assert {sign_alg, digest_alg} <= algorithms_in(xml)
    assert process(idp, xml).attributes


DEFAULT_ENCRYPTIONS = {
    "mgf1p+aes128-gcm": AssertionEncryption(data=alg.AES128_GCM),
    "mgf1p+aes192-gcm": AssertionEncryption(data=alg.AES192_GCM),
    "mgf1p+aes256-gcm": AssertionEncryption(),
    "mgf1p-sha256+aes256-gcm": AssertionEncryption(oaep_digest=alg.DIGEST_SHA256),
    "mgf1p-sha1+aes128-gcm": AssertionEncryption(data=alg.AES128_GCM, oaep_digest=alg.DIGEST_SHA1),
    "oaep11+aes256-gcm": AssertionEncryption(key_transport=alg.RSA_OAEP),
    "oaep11-sha256-mgf1sha256+aes128-gcm": AssertionEncryption(
        data=alg.AES128_GCM, key_transport=alg.RSA_OAEP, oaep_digest=alg.DIGEST_SHA256, mgf=alg.XENC11 + "mgf1sha256"),
    "oaep11-sha1-mgf1sha1+aes256-gcm": AssertionEncryption(
        key_transport=alg.RSA_OAEP, oaep_digest=alg.DIGEST_SHA1, mgf=alg.XENC11 + "mgf1sha1"),
}


@pytest.mark.parametrize("sign_response", [False, True], ids=["assertion-signed", "response-signed-too"])
@pytest.mark.parametrize("case", sorted(DEFAULT_ENCRYPTIONS))
def test_every_default_encryption_is_accepted(peers, case, sign_response):
    """RSA-OAEP (either identifier, SHA-1 inside OAEP included) with AES-GCM."""
    encryption = DEFAULT_ENCRYPTIONS[case]
    xml = peers.response_xml(sign_response=sign_response, encrypt_assertion=True, encryption=encryption)
    assert {encryption.data, encryption.key_transport} <= algorithms_in(xml)
    assert "AttributeValue" not in xml
    assert process(peers, xml).attributes


# -- what the broker's own pysaml2 entities produce ----------------------------------------------------------


def test_a_pysaml2_server_with_the_in_process_backend_signs_sha256_and_encrypts_oaep_gcm(tmp_path):
    """As the broker's SAML IdP frontend is built: the overrides merged, then configure_signatures.
    No algorithm is passed to create_authn_response (pysaml2's own default would be RSA-SHA1 and
    Triple-DES-CBC), and the result passes the strict default policy."""
    peers = make_peers(tmp_path, encryption=True)
    server = Server(config=IdPConfig().load({
        "entityid": IDP_ENTITY_ID, "key_file": peers.idp_keys.key_file, "cert_file": peers.idp_keys.cert_file,
        "metadata": {"inline": [str(entity_descriptor(peers.sp.config))]},
        "service": {"idp": {"endpoints": {"single_sign_on_service": [(IDP_ENTITY_ID + "/sso", BINDING_HTTP_REDIRECT)]},
                            "policy": {"default": {"lifetime": {"minutes": 5}}}}},
        **pysaml2_config_overrides(),
    }))
    configure_signatures(server)
    assert (server.signing_algorithm, server.digest_algorithm) == (alg.RSA_SHA256, alg.DIGEST_SHA256)
    response = server.create_authn_response(
        {"uid": ["alice"]}, in_response_to=REQUEST_ID, destination=ACS_URL, sp_entity_id=SP_ENTITY_ID,
        userid="alice", authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
        sign_response=True, sign_assertion=True, encrypt_assertion=True, encrypt_assertion_self_contained=True)
    xml = response if isinstance(response, str) else str(response)
    assert algorithms_in(xml) >= {alg.RSA_SHA256, alg.DIGEST_SHA256, alg.AES256_GCM, alg.RSA_OAEP_MGF1P}
    assert not algorithms_in(xml) & {alg.RSA_SHA1, alg.DIGEST_SHA1, alg.TRIPLEDES_CBC}
    assert process(peers, xml).attributes


def test_an_encrypted_key_with_unknown_parameters_is_refused(peers):
    xml = peers.response_xml(sign_response=False, encrypt_assertion=True)
    root = attacks.parse(xml)
    method = next(root.iter(f"{{{XENC}}}EncryptedKey")).find(f"{{{XENC}}}EncryptionMethod")
    etree.SubElement(method, f"{{{DS}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#md5")
    with pytest.raises(InvalidResponse, match="RSA-OAEP DigestMethod"):
        process(peers, attacks.serialize(root))


def test_the_tenant_files_legacy_crypto_items_are_the_policys():
    """``legacy_crypto:`` in a tenant file (broker.registry.tenants) names exactly these items."""
    from broker.registry.tenants import LEGACY_CRYPTO

    assert set(LEGACY_CRYPTO) == set(LEGACY_ITEMS)
    assert policy_for(frozenset(LEGACY_CRYPTO)) == ALL_LEGACY
