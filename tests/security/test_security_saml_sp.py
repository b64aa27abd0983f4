"""The broker as a SAML IdP: what a service provider's ``<AuthnRequest>`` may and may not do.

Real peers: pysaml2 ``Saml2Client`` service providers registered with the broker by their
metadata (one whose metadata says ``AuthnRequestsSigned="true"``, one that does not sign),
the demo city IdPs the person signs in at, and the broker's own Response parsed by the SP.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.response import StatusAuthnFailed, StatusNoPassive
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID, Subject
from saml2.xmldsig import SIG_RSA_SHA256

from broker.pki import ensure_keypair
from broker.registry.relying_parties import ReleasePolicy
from broker.saml.pysaml2_crypto import configure_signatures

from .agent import HTML, JSON, Person, forms
from .flows import assert_refused, log_capture


@dataclasses.dataclass
class Sp:
    client: Saml2Client
    entity_id: str
    acs: str


def _sp(stack, directory: Path, name: str, *, signs: bool, register: bool = True) -> Sp:
    entity_id = f"https://{name}.sp.example/sp"
    acs = f"https://{name}.sp.example/acs"
    key, cert = ensure_keypair(directory, name, common_name=entity_id)
    idp_metadata = requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text
    config = SPConfig().load({
        "entityid": entity_id, "key_file": str(key), "cert_file": str(cert),
        "metadata": {"inline": [idp_metadata]},
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [(acs, BINDING_HTTP_POST)]},
                           "authn_requests_signed": signs, "want_assertions_signed": True,
                           "want_response_signed": True, "allow_unsolicited": False}},
    })
    client = Saml2Client(config)
    configure_signatures(client)
    if register:
        stack.app.registry_service.register_sp(create_metadata_string(None, config=config).decode(), name=name,
                                               by="test", policy=ReleasePolicy(scopes=("openid", "roles"),
                                                                               profile="mpassid"))
    return Sp(client, entity_id, acs)


@pytest.fixture(scope="module")
def sps(stack, tmp_path_factory):
    directory = tmp_path_factory.mktemp("sps")
    made = {"signing": _sp(stack, directory, "signing", signs=True),
            "plain": _sp(stack, directory, "plain", signs=False)}
    # The same entity id as the signing SP, with a key of its own that the broker never saw.
    made["impostor"] = _sp(stack, tmp_path_factory.mktemp("impostor"), "signing", signs=True, register=False)
    stack.app.rebuild()
    return made


def _idp(stack) -> str:
    return f"{stack.broker_url}/saml2/idp/metadata"


def _redirect(sp: Sp, stack, *, sign: bool, **kwargs) -> tuple[str, str]:
    request_id, info = sp.client.prepare_for_authenticate(
        entityid=_idp(stack), binding=BINDING_HTTP_REDIRECT, sign=sign, sigalg=SIG_RSA_SHA256 if sign else None,
        **kwargs)
    return request_id, dict(info["headers"])["Location"]


def _person(stack, accept=HTML) -> Person:
    return Person(stop_at=("https://",), language="en", accept=accept)


def _sign_in(stack, person: Person, response, username: str):
    """Sign in at the city IdP (unless its own session answers), and carry its answer to the broker."""
    if any("password" in f.fields for f in forms(response)):
        response = person.sign_in(response, username)
    for form in forms(response):
        if "SAMLResponse" in form.fields and form.action.startswith(stack.broker_url):
            return person.post(form.action, form.fields)
    return response


def _saml_answer(sp: Sp, response, request_id: str):
    form = next(f for f in forms(response) if "SAMLResponse" in f.fields)
    assert form.action == sp.acs
    assert response.headers["Cache-Control"] == "no-store"
    csp = response.headers["Content-Security-Policy"]
    assert f"form-action https://{urlsplit(sp.acs).netloc}" in csp and "frame-ancestors 'none'" in csp
    return sp.client.parse_authn_request_response(form.fields["SAMLResponse"], BINDING_HTTP_POST,
                                                  outstanding={request_id: "/"})


# -- AuthnRequestsSigned (Metadata §2.4.4) ---------------------------------------------------------------


@pytest.mark.parametrize("accept", [HTML, JSON])
def test_unsigned_request_from_an_sp_that_signs_is_refused(stack, sps, caplog, accept):
    log_capture(caplog)
    _, location = _redirect(sps["signing"], stack, sign=False)
    assert "Signature=" not in location
    person = _person(stack, accept)
    assert_refused(person.get(location), person, caplog, status=400, code="invalid_request",
                   message_key="error.invalid_request", detail="AuthnRequestsSigned")


def test_signed_request_from_an_sp_that_signs_is_served(stack, sps):
    _, location = _redirect(sps["signing"], stack, sign=True)
    response = _person(stack).get(location)
    assert response.status_code == 200 and "/disco" in response.url


@pytest.mark.parametrize("tamper", ["signature", "sigalg", "relay_state", "impostor_key"])
def test_forged_request_signature_is_refused(stack, sps, caplog, tamper):
    log_capture(caplog)
    sp = sps["impostor"] if tamper == "impostor_key" else sps["signing"]
    _, location = _redirect(sp, stack, sign=True, relay_state="rs-1")
    base, _, query = location.partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    if tamper == "signature":
        params["Signature"] = params["Signature"][:-8] + ("A" * 8 if not params["Signature"].endswith("A" * 8)
                                                          else "B" * 8)
    elif tamper == "sigalg":
        params["SigAlg"] = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
    elif tamper == "relay_state":
        params["RelayState"] = "rs-2"
    person = _person(stack)
    assert_refused(person.get(f"{base}?{urlencode(params)}"), person, caplog, status=400, code="invalid_request",
                   message_key="error.invalid_request", detail="signature")


def test_a_bad_signature_is_refused_even_from_an_sp_that_need_not_sign(stack, sps, caplog):
    log_capture(caplog)
    _, location = _redirect(sps["plain"], stack, sign=True)
    base, _, query = location.partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    params["Signature"] = "A" + params["Signature"][1:] if not params["Signature"].startswith("A") else \
        "B" + params["Signature"][1:]
    person = _person(stack)
    assert_refused(person.get(f"{base}?{urlencode(params)}"), person, caplog, status=400, code="invalid_request",
                   message_key="error.invalid_request", detail="signature")


# -- IsPassive and a requested Subject (Core §3.4.1) -------------------------------------------------------


def test_is_passive_without_a_session_answers_no_passive(stack, sps):
    sp = sps["plain"]
    request_id, location = _redirect(sp, stack, sign=False, is_passive="true")
    response = _person(stack).get(location)
    assert "/disco" not in response.url, "a passive request showed the city page"
    with pytest.raises(StatusNoPassive):
        _saml_answer(sp, response, request_id)


def _signed_in(stack, sp: Sp) -> tuple[Person, str]:
    """A person signed in at ``sp`` through Lahti's IdP; their pairwise NameID at that SP."""
    person = _person(stack)
    request_id, location = _redirect(sp, stack, sign=sp is not None and sp.entity_id.startswith("https://signing"),
                                     requested_authn_context=samlp.RequestedAuthnContext(
                                         authn_context_class_ref=[_ref("urn:mpass.id:authnsource:lahti-koulu")]))
    response = _sign_in(stack, person, person.get(location), "teacher.lahti")
    authn = _saml_answer(sp, response, request_id)
    return person, authn.name_id.text


def _ref(text: str):
    from saml2.saml import AuthnContextClassRef

    return AuthnContextClassRef(text=text)


def test_requested_subject_of_the_signed_in_user_is_answered_from_the_session(stack, sps):
    sp = sps["plain"]
    person, name_id = _signed_in(stack, sp)
    subject = Subject(name_id=NameID(text=name_id, format=NAMEID_FORMAT_PERSISTENT))
    request_id, location = _redirect(sp, stack, sign=False, subject=subject, is_passive="true")
    authn = _saml_answer(sp, person.get(location), request_id)
    assert authn.name_id.text == name_id


def test_requested_subject_of_someone_else_is_never_answered_with_the_signed_in_user(stack, sps):
    sp = sps["plain"]
    person, name_id = _signed_in(stack, sp)
    other = Subject(name_id=NameID(text="not-" + name_id, format=NAMEID_FORMAT_PERSISTENT))
    # Passive: the session is someone else's, and no page may be shown.
    request_id, location = _redirect(sp, stack, sign=False, subject=other, is_passive="true")
    with pytest.raises(StatusNoPassive):
        _saml_answer(sp, person.get(location), request_id)
    # Interactive: the city IdP signs the person in again, as themselves; the SP does not get them as "other".
    request_id, location = _redirect(sp, stack, sign=False, subject=other, requested_authn_context=
                                     samlp.RequestedAuthnContext(authn_context_class_ref=[
                                         _ref("urn:mpass.id:authnsource:lahti-koulu")]))
    response = _sign_in(stack, person, person.get(location), "teacher.lahti")
    with pytest.raises(StatusAuthnFailed):
        _saml_answer(sp, response, request_id)
