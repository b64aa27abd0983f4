"""End to end through pysaml2's crypto plugin: a real pysaml2 IdP signs, a pysaml2 SP verifies.

The plugin (:mod:`broker.saml.pysaml2_crypto`) is what every pysaml2 entity of the
broker uses (its SAML IdP frontend, the demo IdPs); pysaml2 SPs and IdPs here stand
for the services and city IdPs on the other side.  Signature wrapping (XSW1–XSW8),
stripping, certificate faking and tampering are refused, genuine and encrypted
responses are accepted, and nothing touches a file or a process on the way.
"""

from __future__ import annotations

import contextlib
import sys
from typing import ClassVar

import pytest
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from broker.saml import pysaml2_crypto, xml_keys, xml_parsing, xml_signatures
from broker.saml.pysaml2_crypto import configure_signatures, pysaml2_config_overrides

if __package__:
    from .xmlsig_helpers import attacks
    from .xmlsig_helpers.peers import IDENTITY, make_peers
else:  # tests/saml is not a package: pytest put it on sys.path
    from xmlsig_helpers import attacks
    from xmlsig_helpers.peers import IDENTITY, make_peers


# -- peers ---------------------------------------------------------------------------------


class Scenario:
    """Peers for one SP policy, with the genuine response the IdP sends under it."""

    def __init__(self, directory, *, response_signed: bool, assertion_signed: bool, encryption: bool = False):
        self.peers = make_peers(directory, want_response_signed=response_signed,
                                want_assertions_signed=assertion_signed, encryption=encryption)
        configure_signatures(self.peers.idp)
        self.genuine = self.peers.response_xml(sign_response=response_signed, sign_assertion=assertion_signed,
                                               encrypt_assertion=encryption)

    def using(self) -> Scenario:
        configure_signatures(self.peers.sp)
        return self

    def parse(self, xml: str):
        return self.peers.parse(xml)


@pytest.fixture(scope="session")
def assertion_signed(tmp_path_factory) -> Scenario:
    """The common IdP profile (ADFS, Entra): only the assertion is signed; the SP requires it."""
    return Scenario(tmp_path_factory.mktemp("assertion-signed"), response_signed=False, assertion_signed=True)


@pytest.fixture(scope="session")
def response_signed(tmp_path_factory) -> Scenario:
    """Only the Response is signed; the SP requires a signed Response."""
    return Scenario(tmp_path_factory.mktemp("response-signed"), response_signed=True, assertion_signed=False)


@pytest.fixture(scope="session")
def both_signed(tmp_path_factory) -> Scenario:
    return Scenario(tmp_path_factory.mktemp("both-signed"), response_signed=True, assertion_signed=True)


@pytest.fixture(scope="session")
def encrypted(tmp_path_factory) -> Scenario:
    """Signed Response, signed assertion, assertion encrypted to the SP's encryption key."""
    return Scenario(tmp_path_factory.mktemp("encrypted"), response_signed=True, assertion_signed=True,
                    encryption=True)


def assert_refused(scenario: Scenario, xml: str) -> None:
    """The SP refuses *xml*: it raises, or at least never yields the attacker's subject."""
    try:
        response = scenario.parse(xml)
    except Exception:  # noqa: BLE001 - pysaml2 refuses with many exception types; any refusal will do
        return
    if response is None:
        return
    uid = response.ava.get("uid")
    name_id = response.name_id.text if response.name_id is not None else None
    assert uid != [attacks.ATTACKER_UID] and name_id != attacks.ATTACKER_NAME_ID, "attacker's assertion accepted"
    pytest.fail(f"forged response accepted (uid={uid}, NameID={name_id})")


def assert_genuine(response) -> None:
    assert response is not None
    assert response.ava == IDENTITY
    assert response.name_id.text and response.name_id.text != attacks.ATTACKER_NAME_ID


# -- genuine responses ---------------------------------------------------------------------


@pytest.mark.parametrize("scenario_name", ["assertion_signed", "response_signed", "both_signed"])
def test_genuine_signed_response_is_accepted(request, scenario_name):
    scenario = request.getfixturevalue(scenario_name).using()
    assert_genuine(scenario.parse(scenario.genuine))


def test_encrypted_assertion_is_decrypted_and_verified(encrypted):
    scenario = encrypted.using()
    assert "EncryptedAssertion" in scenario.genuine and "AttributeValue" not in scenario.genuine
    response = scenario.parse(scenario.genuine)
    assert_genuine(response)
    assert response.assertion.signature is not None


# -- signature wrapping --------------------------------------------------------------------


@pytest.mark.parametrize("same_id", [True, False], ids=["same-id", "new-id"])
@pytest.mark.parametrize("variant", sorted(attacks.RESPONSE_WRAPPING))
def test_response_signature_wrapping_is_refused(response_signed, variant, same_id):
    scenario = response_signed.using()
    assert_refused(scenario, attacks.RESPONSE_WRAPPING[variant](scenario.genuine, same_id=same_id))


@pytest.mark.parametrize("same_id", [True, False], ids=["same-id", "new-id"])
@pytest.mark.parametrize("variant", sorted(attacks.ASSERTION_WRAPPING))
def test_assertion_signature_wrapping_is_refused(assertion_signed, variant, same_id):
    scenario = assertion_signed.using()
    assert_refused(scenario, attacks.ASSERTION_WRAPPING[variant](scenario.genuine, same_id=same_id))


@pytest.mark.parametrize("variant", sorted(attacks.RESPONSE_WRAPPING))
def test_response_wrapping_of_a_doubly_signed_response_is_refused(both_signed, variant):
    scenario = both_signed.using()
    assert_refused(scenario, attacks.RESPONSE_WRAPPING[variant](scenario.genuine))


# -- stripping, tampering, faking ----------------------------------------------------------


def test_stripped_assertion_signature_is_refused_when_assertions_must_be_signed(assertion_signed):
    scenario = assertion_signed.using()
    assert_refused(scenario, attacks.make_evil_xml(attacks.strip_all_signatures(scenario.genuine)))


def test_stripped_response_signature_is_refused_when_responses_must_be_signed(response_signed):
    scenario = response_signed.using()
    assert_refused(scenario, attacks.make_evil_xml(attacks.strip_all_signatures(scenario.genuine)))


def test_stripped_assertion_signature_of_a_doubly_signed_response_is_refused(both_signed):
    """The Response signature covers the assertion: removing the inner signature breaks it."""
    scenario = both_signed.using()
    assert_refused(scenario, attacks.strip_assertion_signature(scenario.genuine))


@pytest.mark.parametrize("scenario_name", ["assertion_signed", "response_signed", "both_signed"])
def test_tampered_attribute_value_is_refused(request, scenario_name):
    scenario = request.getfixturevalue(scenario_name).using()
    assert_refused(scenario, attacks.tamper_attribute(scenario.genuine))


@pytest.mark.parametrize("scenario_name", ["assertion_signed", "both_signed"])
def test_certificate_faking_is_refused(request, scenario_name):
    """Re-signed with the attacker's key, the attacker's certificate in ``<ds:KeyInfo>``."""
    scenario = request.getfixturevalue(scenario_name).using()
    peers = scenario.peers
    faked = attacks.replace_key_info_certificates(scenario.genuine, peers.attacker_keys.cert_base64)
    attacker_key = xml_keys.private_key(peers.attacker_keys.key_pem)
    forged = attacks.resign(faked, lambda xml, name, node_id: xml_signatures.sign(xml, attacker_key, name, node_id),
                            response_too=scenario_name == "both_signed")
    # The forgery is cryptographically sound for the attacker's own certificate...
    assertion_id = attacks.node_used_by_pysaml2(forged, "Assertion")
    verified = xml_signatures.verify_signature(forged, xml_keys.certificate_key(peers.attacker_keys.cert_pem),
                                       f"{attacks.SAML}:Assertion", assertion_id)
    assert verified.get("ID") == assertion_id
    # ...and worthless to an SP that takes keys from metadata only.
    assert_refused(scenario, forged)


def test_key_info_is_ignored_metadata_key_decides(assertion_signed):
    """A genuine signature still verifies when ``<ds:KeyInfo>`` names another certificate."""
    scenario = assertion_signed.using()
    relabelled = attacks.replace_key_info_certificates(scenario.genuine, scenario.peers.attacker_keys.cert_base64)
    assert_genuine(scenario.parse(relabelled))


def test_reference_to_another_id_is_refused(assertion_signed):
    """The assertion's signature is valid (IdP key) but references the Response, not the assertion."""
    scenario = assertion_signed.using()
    unsigned = attacks.strip_all_signatures(scenario.genuine)
    root = attacks.parse(unsigned)
    forged = attacks.sign_raw(
        attacks.serialize(attacks.make_evil(root)), scenario.peers.idp_keys.key_pem,
        signed_id=root.get("ID"), place_in=attacks.assertion_of(root).get("ID"),
        cert_base64=scenario.peers.idp_keys.cert_base64,
    )
    assert_refused(scenario, forged)


def test_comment_inside_a_signed_value_does_not_truncate_it(assertion_signed):
    """CVE-2017-11427 class: "al<!---->ice" is signed as "alice" and must be read as "alice"."""
    scenario = assertion_signed.using()
    xml = scenario.genuine.replace(">alice<", ">al<!-- mallory -->ice<")
    assert xml != scenario.genuine
    assert scenario.parse(xml).ava["uid"] == ["alice"]


# -- the login path ------------------------------------------------------------------------


class _Audit:
    """Records file opens, temporary files and process spawns while armed (PEP 578 audit hooks)."""

    EVENTS = ("open", "tempfile.mkstemp", "tempfile.mkdtemp", "subprocess.Popen", "os.posix_spawn",
              "os.spawn", "os.system", "os.exec", "os.fork")
    installed = False
    armed = False
    seen: ClassVar[list[tuple[str, tuple]]] = []

    @classmethod
    def hook(cls, event, args):
        if cls.armed and event in cls.EVENTS:
            cls.seen.append((event, args[:1]))

    @classmethod
    @contextlib.contextmanager
    def watching(cls):
        cls.seen, cls.armed = [], True
        try:
            yield cls.seen
        finally:
            cls.armed = False


@pytest.fixture
def audit():
    if not _Audit.installed:
        sys.addaudithook(_Audit.hook)  # hooks cannot be removed; this one is inert unless armed
        _Audit.installed = True
    return _Audit


def test_the_audit_sees_a_file_being_opened(audit, tmp_path):
    """Control for the test below: the hook does record what it watches for."""
    path = tmp_path / "seen"
    path.write_text("x")
    with audit.watching() as seen:
        path.read_text()
    assert "open" in {event for event, _ in seen}


def test_login_path_opens_no_file_and_spawns_no_process(encrypted, audit):
    """Decrypting and verifying a response (and the IdP signing and encrypting one) is all in memory."""
    scenario = encrypted.using()  # start-up: reads the key files once
    with audit.watching() as seen:
        xml = scenario.peers.response_xml(sign_response=True, sign_assertion=True, encrypt_assertion=True)
        response = scenario.parse(xml)
    assert_genuine(response)
    assert seen == []


# -- configuration -------------------------------------------------------------------------


def test_default_backend_is_in_process(assertion_signed):
    context = configure_signatures(assertion_signed.peers.sp)
    assert isinstance(context, pysaml2_crypto.InProcessSecurityContext)
    assert isinstance(context.crypto, pysaml2_crypto.CryptoBackendXmlSecInProcess)
    assert assertion_signed.peers.sp.sec is context
    assert assertion_signed.peers.sp.metadata.security is context
    assert context.crypto.version_nums >= (1, 2)


def test_construction_overrides():
    expected = {"crypto_backend": "XMLSecurity", "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256}
    assert pysaml2_config_overrides() == expected


@pytest.mark.parametrize("validation", pysaml2_crypto.SCHEMA_VALIDATIONS)
@pytest.mark.parametrize("scenario_name", ["assertion_signed", "both_signed", "encrypted"])
def test_every_schema_validation_accepts_genuine_responses(request, scenario_name, validation):
    scenario = request.getfixturevalue(scenario_name)
    context = configure_signatures(scenario.peers.sp, schema_validation=validation)
    assert context.schema_validation == validation
    assert_genuine(scenario.parse(scenario.genuine))


@pytest.mark.parametrize("validation", pysaml2_crypto.SCHEMA_VALIDATIONS)
def test_every_schema_validation_refuses_wrapping(assertion_signed, response_signed, validation):
    for scenario, wrappings in ((assertion_signed, attacks.ASSERTION_WRAPPING),
                                (response_signed, attacks.RESPONSE_WRAPPING)):
        configure_signatures(scenario.peers.sp, schema_validation=validation)
        for wrap in wrappings.values():
            for same_id in (True, False):
                assert_refused(scenario, wrap(scenario.genuine, same_id=same_id))


def test_signed_node_validation_sees_the_document_as_received(assertion_signed):
    """A misplaced child inside the signed assertion: pysaml2's re-serialization hides it."""
    scenario = assertion_signed
    root = attacks.parse(scenario.genuine)
    assertion = attacks.assertion_of(root)
    subject = assertion.find(f"{{{attacks.SAML}}}Subject")
    assertion.remove(subject)
    assertion.append(subject)  # Subject after AttributeStatement: schema-invalid, pysaml2 reorders
    attacks.strip_signature(assertion)
    resigned = attacks.sign_raw(attacks.serialize(root), scenario.peers.idp_keys.key_pem,
                                signed_id=assertion.get("ID"), cert_base64=scenario.peers.idp_keys.cert_base64)
    configure_signatures(scenario.peers.sp, schema_validation="libxml2")
    assert_genuine(scenario.parse(resigned))
    configure_signatures(scenario.peers.sp, schema_validation="signed-node")
    assert_refused(scenario, resigned)


def test_unknown_schema_validation_is_a_configuration_error(assertion_signed):
    with pytest.raises(ValueError, match="schema_validation"):
        configure_signatures(assertion_signed.peers.sp, schema_validation="none")


def test_mismatched_libxml2_builds_are_refused(assertion_signed, monkeypatch):
    assert xml_parsing.check_libxml2() == tuple(xml_parsing.etree.LIBXML_VERSION)
    monkeypatch.setattr(xml_parsing.xmlsec, "get_libxml_version", lambda: (2, 9, 1))
    with pytest.raises(RuntimeError, match="libxml2"):
        configure_signatures(assertion_signed.peers.sp)
