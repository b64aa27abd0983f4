"""A SAML service provider (pysaml2, its stock ``xmlsec1`` backend) receives a signed assertion through
the broker, with exactly the MPASSid attribute names and formats its release policy allows: every name
of the profile when the policy allows every scope, by the attribute map the repository ships, and
encrypted for its own key when it asks.  The broker's metadata comes signed, as
``application/samlmetadata+xml``."""

from __future__ import annotations

import base64

import pytest
import requests
from agent import Person, forms
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext

from broker.mapping import PROFILES, SCOPES
from broker.pki import ensure_keypair
from broker.registry.relying_parties import ReleasePolicy
from broker.saml import crypto_policy as algorithms
from broker.settings import ROOT

SP = "https://sp.example.org/sp"
ACS = "https://sp.example.org/acs"
ALL_SCOPES = tuple(SCOPES)
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
XENC = "{http://www.w3.org/2001/04/xmlenc#}"


def _client(stack, directory, entity_id: str, acs: str, *, encryption: bool = False, **sp_settings) -> SPConfig:
    key, cert = ensure_keypair(directory, "sp", common_name=entity_id)
    idp_metadata = requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text
    return SPConfig().load({
        "entityid": entity_id, "key_file": str(key), "cert_file": str(cert),
        # The map this repository ships for pysaml2 peers: without an entry pysaml2 drops an attribute.
        "attribute_map_dir": str(ROOT / "attribute_maps"),
        **({"encryption_keypairs": [{"key_file": str(key), "cert_file": str(cert)}]} if encryption else {}),
        "metadata": {"inline": [idp_metadata]},
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [(acs, BINDING_HTTP_POST)]},
                           "want_assertions_signed": True, "want_response_signed": True,
                           "allow_unsolicited": False, **sp_settings}},
    })


def _register(stack, config: SPConfig, name: str, scopes=ALL_SCOPES, **flags) -> Saml2Client:
    stack.app.registry_service.register_sp(
        create_metadata_string(None, config=config).decode(), name=name, by="test",
        policy=ReleasePolicy(scopes=scopes, profile="mpassid"), **flags)
    stack.app.rebuild()
    return Saml2Client(config)


@pytest.fixture(scope="module")
def sp(stack, tmp_path_factory):
    config = _client(stack, tmp_path_factory.mktemp("sp"), SP, ACS)
    return _register(stack, config, "e2e-sp", scopes=("openid", "roles", "schools", "profile", "education_providers"))


def _broker_idp(stack) -> str:
    return f"{stack.broker_url}/saml2/idp/metadata"


def _send(sp: Saml2Client, stack, person: Person, **kwargs):
    request_id, info = sp.prepare_for_authenticate(entityid=_broker_idp(stack), binding=BINDING_HTTP_REDIRECT,
                                                   **kwargs)
    location = dict(info["headers"])["Location"]
    return request_id, person.get(location)


def _form(response):
    return next(f for f in forms(response) if "SAMLResponse" in f.fields)


def _assertion(sp: Saml2Client, response, request_id, acs: str = ACS):
    form = _form(response)
    assert form.action == acs
    return sp.parse_authn_request_response(form.fields["SAMLResponse"], BINDING_HTTP_POST,
                                           outstanding={request_id: "/"})


def _login(sp: Saml2Client, stack, username: str, acs: str = ACS):
    """A person signs in at Tampere's demo IdP for ``sp``: the wire Response and what pysaml2 made of it."""
    person = Person()
    request_id, response = _send(sp, stack, person)
    response = person.sign_in(person.choose(response, "tampere", "koulu"), username)
    wire = etree.fromstring(base64.b64decode(_form(response).fields["SAMLResponse"]))
    return wire, _assertion(sp, response, request_id, acs)


def test_sp_gets_signed_assertion_with_mpassid_attributes(stack, sp):
    person = Person()
    request_id, response = _send(sp, stack, person)
    response = person.choose(response, "tampere", "koulu")
    response = person.sign_in(response, "teacher.tampere")
    authn = _assertion(sp, response, request_id)   # pysaml2 checks the signature against our metadata
    assert authn.assertion.issuer.text == _broker_idp(stack)
    assert authn.assertion.signature is not None
    names = {a.name: [v.text for v in a.attribute_value]
             for s in authn.assertion.attribute_statement for a in s.attribute}
    assert set(names) >= {"urn:mpass.id:role", "urn:mpass.id:schoolInfo", "urn:oid:2.5.4.42",
                          "urn:mpass.id:educationProviderInfo", "urn:mpass.id:role_v1.1"}
    assert "urn:oid:1.3.6.1.4.1.16161.1.1.27" not in names  # learner id not in this SP's policy
    roles = names["urn:mpass.id:role"]
    assert all(len(r.split(";")) == 7 for r in roles), roles
    assert any(r.split(";")[3:5] == ["Opettaja", "2"] for r in roles)
    assert authn.name_id.format == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    # SAML Core §2.7.2.2: the broker, not Tampere's IdP, authenticated the person as far as this SP knows.
    authorities = [a.text for s in authn.assertion.authn_statement
                   for a in s.authn_context.authenticating_authority]
    assert authorities == [_broker_idp(stack)]


def test_sp_hint_in_requested_authn_context_skips_discovery(stack, sp):
    person = Person()
    context = RequestedAuthnContext(authn_context_class_ref=[
        AuthnContextClassRef(text="urn:mpass.id:authnsource:lahti-koulu")])
    request_id, response = _send(sp, stack, person, requested_authn_context=context)
    assert "/disco" not in response.url
    authn = _assertion(sp, person.sign_in(response, "pupil.lahti"), request_id)
    assert authn.assertion.issuer.text == _broker_idp(stack)


def test_every_mpassid_attribute_reaches_an_sp_allowed_every_scope(stack, tmp_path_factory):
    """Every name of the profile, under the local name of the shipped attribute map (nothing dropped)."""
    entity, acs = "https://all.sp.example/sp", "https://all.sp.example/acs"
    client = _register(stack, _client(stack, tmp_path_factory.mktemp("all"), entity, acs), "e2e-all")
    _, authn = _login(client, stack, "pupil.tampere", acs)
    assert set(authn.ava) == {a.local_name for a in PROFILES["mpassid"]}
    assert authn.ava["mpassLearningMaterialsCharge"] and all(
        v.split(";")[0] in ("0", "1") for v in authn.ava["mpassLearningMaterialsCharge"])
    assert all(len(v.split(";")) == 4 for v in authn.ava["mpassRoleV11"])
    assert all(len(authn.ava[a.local_name]) == 1 for a in PROFILES["mpassid"] if a.single)


def test_an_sp_requesting_attributes_by_name_gets_those_its_policy_allows(stack, tmp_path_factory):
    """Metadata §2.4.4.1 RequestedAttribute: the SP gets what it asks for and its policy allows; a required
    attribute the policy does not release (the learner id of a teacher) leaves it out, not the login."""
    entity, acs = "https://asks.sp.example/sp", "https://asks.sp.example/acs"
    config = _client(stack, tmp_path_factory.mktemp("asks"), entity, acs,
                     required_attributes=["mpassRoleV11", "learnerId"],
                     optional_attributes=["mpassLearningMaterialsCharge", "givenName"])
    client = _register(stack, config, "e2e-asks", scopes=("openid", "roles", "profile", "learning_materials"))
    _, authn = _login(client, stack, "teacher.tampere", acs)
    assert set(authn.ava) <= {"mpassRoleV11", "mpassLearningMaterialsCharge", "givenName"}
    assert {"mpassRoleV11", "givenName"} <= set(authn.ava)


def test_an_sp_that_asks_gets_an_encrypted_assertion_and_decrypts_it(stack, tmp_path_factory):
    entity, acs = "https://sealed.sp.example/sp", "https://sealed.sp.example/acs"
    config = _client(stack, tmp_path_factory.mktemp("sealed"), entity, acs, encryption=True)
    client = _register(stack, config, "e2e-sealed", encrypt_assertions=True)
    wire, authn = _login(client, stack, "pupil.tampere", acs)
    # On the wire: no assertion in plaintext, one EncryptedAssertion, AES-256-GCM under RSA-OAEP.
    assert wire.find(f"{SAML}Assertion") is None and b"Venla" not in etree.tostring(wire)
    data = wire.find(f"{SAML}EncryptedAssertion/{XENC}EncryptedData")
    assert data.find(f"{XENC}EncryptionMethod").get("Algorithm") == algorithms.AES256_GCM
    assert data.find(f".//{XENC}EncryptedKey/{XENC}EncryptionMethod").get("Algorithm") == algorithms.RSA_OAEP_MGF1P
    # pysaml2 (xmlsec1) decrypted it and verified the assertion's and the Response's signatures.
    assert authn.assertion.signature is not None and authn.assertion.issuer.text == _broker_idp(stack)
    assert set(authn.ava) == {a.local_name for a in PROFILES["mpassid"]}
    assert authn.ava["givenName"] == ["Venla Sofia"]


def test_an_sp_with_an_encryption_key_that_does_not_ask_gets_plaintext(stack, tmp_path_factory):
    """Publishing a key is not asking (no metadata attribute asks, ADR 0013): only the registration does."""
    entity, acs = "https://haskey.sp.example/sp", "https://haskey.sp.example/acs"
    client = _register(stack, _client(stack, tmp_path_factory.mktemp("haskey"), entity, acs, encryption=True),
                       "e2e-haskey", scopes=("openid", "roles"))
    wire, authn = _login(client, stack, "teacher.tampere", acs)
    assert wire.find(f"{SAML}Assertion") is not None and wire.find(f"{SAML}EncryptedAssertion") is None
    assert "mpassRole" in authn.ava


@pytest.mark.parametrize("path", ["saml2/idp/metadata", "saml2/sp/metadata"])
def test_metadata_is_served_signed_as_samlmetadata_xml(stack, path):
    response = requests.get(f"{stack.broker_url}/{path}", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == "application/samlmetadata+xml"
    root = etree.fromstring(response.content)
    signature = root.find("{http://www.w3.org/2000/09/xmldsig#}Signature")
    assert root.index(signature) == 0 and root.get("ID")   # the EntityDescriptor's first child, by its ID
    assert root.get("cacheDuration") == "PT6H" and root.get("validUntil") is None
