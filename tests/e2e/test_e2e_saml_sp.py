"""A SAML service provider (pysaml2) receives a signed assertion through the broker, with
exactly the MPASSid attribute names and formats its release policy allows."""

from __future__ import annotations

import pytest
import requests
from agent import Person, forms
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext

from broker.pki import ensure_keypair
from broker.registry.relying_parties import ReleasePolicy

SP = "https://sp.example.org/sp"
ACS = "https://sp.example.org/acs"


@pytest.fixture(scope="module")
def sp(stack, tmp_path_factory):
    key, cert = ensure_keypair(tmp_path_factory.mktemp("sp"), "sp", common_name=SP)
    idp_metadata = requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text
    config = SPConfig().load({
        "entityid": SP, "key_file": str(key), "cert_file": str(cert),
        "metadata": {"inline": [idp_metadata]},
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [(ACS, BINDING_HTTP_POST)]},
                           "want_assertions_signed": True, "want_response_signed": True,
                           "allow_unsolicited": False}},
    })
    stack.app.registry_service.register_sp(
        create_metadata_string(None, config=config).decode(), name="e2e-sp", by="test",
        policy=ReleasePolicy(scopes=("openid", "roles", "schools", "profile", "education_providers"),
                             profile="mpassid"))
    stack.app.rebuild()
    return Saml2Client(config)


def _broker_idp(stack) -> str:
    return f"{stack.broker_url}/saml2/idp/metadata"


def _send(sp: Saml2Client, stack, person: Person, **kwargs):
    request_id, info = sp.prepare_for_authenticate(entityid=_broker_idp(stack), binding=BINDING_HTTP_REDIRECT,
                                                   **kwargs)
    location = dict(info["headers"])["Location"]
    return request_id, person.get(location)


def _assertion(sp: Saml2Client, response, request_id):
    form = next(f for f in forms(response) if "SAMLResponse" in f.fields)
    assert form.action == ACS
    return sp.parse_authn_request_response(form.fields["SAMLResponse"], BINDING_HTTP_POST,
                                           outstanding={request_id: "/"})


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
                          "urn:mpass.id:educationProviderInfo"}
    assert "urn:oid:1.3.6.1.4.1.16161.1.1.27" not in names  # learner id not in this SP's policy
    roles = names["urn:mpass.id:role"]
    assert all(len(r.split(";")) == 7 for r in roles), roles
    assert any(r.split(";")[3:5] == ["Opettaja", "2"] for r in roles)
    assert authn.name_id.format == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def test_sp_hint_in_requested_authn_context_skips_discovery(stack, sp):
    person = Person()
    context = RequestedAuthnContext(authn_context_class_ref=[
        AuthnContextClassRef(text="urn:mpass.id:authnsource:lahti-koulu")])
    request_id, response = _send(sp, stack, person, requested_authn_context=context)
    assert "/disco" not in response.url
    authn = _assertion(sp, person.sign_in(response, "pupil.lahti"), request_id)
    assert authn.assertion.issuer.text == _broker_idp(stack)
