"""Service providers the SAML security tests play: stock pysaml2 ``Saml2Client`` peers (the ``xmlsec1``
program verifies and decrypts, as on a service's own server), registered with the broker by their
metadata, and a person who signs in for them at a city IdP (a demo SAML IdP or the demo Entra tenant).
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import requests
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import AuthnContextClassRef

from broker.pki import ensure_keypair
from broker.registry.relying_parties import ReleasePolicy

from .agent import HTML, Person, forms

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"


@dataclasses.dataclass
class Sp:
    client: Saml2Client
    entity_id: str
    acs: str
    key: Path
    cert: Path
    metadata: str


@dataclasses.dataclass
class Answer:
    """The broker's Response as it reached the SP's ACS."""

    xml: bytes
    request_id: str

    @property
    def root(self) -> etree._Element:
        return etree.fromstring(self.xml)


def make_sp(stack, directory: Path, name: str, *, encryption: bool = False, want_response_signed: bool = True,
            register: bool = True, scopes=("openid", "roles", "profile"), **flags: bool) -> Sp:
    """A pysaml2 SP with its own key pair (also its encryption key when ``encryption``), registered
    under ``name`` with the mpassid profile and the SAML ``flags`` (``encrypt_assertions``, …)."""
    entity_id, acs = f"https://{name}.sp.example/sp", f"https://{name}.sp.example/acs"
    key, cert = ensure_keypair(directory / name, "sp", common_name=entity_id)
    idp_metadata = requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text
    config = SPConfig().load({
        "entityid": entity_id, "key_file": str(key), "cert_file": str(cert),
        **({"encryption_keypairs": [{"key_file": str(key), "cert_file": str(cert)}]} if encryption else {}),
        "metadata": {"inline": [idp_metadata]},
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [(acs, BINDING_HTTP_POST)]},
                           "want_assertions_signed": True, "want_response_signed": want_response_signed,
                           "allow_unsolicited": False}},
    })
    metadata = create_metadata_string(None, config=config).decode()
    if register:
        stack.app.registry_service.register_sp(metadata, name=name, by="test",
                                               policy=ReleasePolicy(scopes=scopes, profile="mpassid"), **flags)
    return Sp(Saml2Client(config), entity_id, acs, key, cert, metadata)


def sign_in_for(stack, sp: Sp, source: str, username: str, person: Person | None = None) -> Answer:
    """The person asks ``sp``, names the city IdP (MPASSid ``authnsource``, e.g. ``lahti-koulu``), signs in."""
    person = person or Person(stop_at=("https://",), language="en", accept=HTML)
    request_id, info = sp.client.prepare_for_authenticate(
        entityid=f"{stack.broker_url}/saml2/idp/metadata", binding=BINDING_HTTP_REDIRECT,
        requested_authn_context=samlp.RequestedAuthnContext(
            authn_context_class_ref=[AuthnContextClassRef(text=f"urn:mpass.id:authnsource:{source}")]))
    response = person.get(dict(info["headers"])["Location"])
    if any("password" in f.fields for f in forms(response)):
        response = person.sign_in(response, username)
    for _ in range(2):   # a city SAML IdP answers the broker with an auto-posted form
        posts = [f for f in forms(response) if "SAMLResponse" in f.fields]
        if posts and posts[0].action.startswith(stack.broker_url):
            response = person.post(posts[0].action, posts[0].fields)
    form = next(f for f in forms(response) if "SAMLResponse" in f.fields)
    assert form.action == sp.acs, form.action
    return Answer(base64.b64decode(form.fields["SAMLResponse"]), request_id)


def parse(sp: Sp, xml: bytes, request_id: str):
    """What the SP makes of a Response (pysaml2 raises when it refuses it)."""
    return sp.client.parse_authn_request_response(base64.b64encode(xml).decode(), BINDING_HTTP_POST,
                                                  outstanding={request_id: "/"})
