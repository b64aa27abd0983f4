"""The demo SAML IdPs against a real pysaml2 SP, over HTTP, as a browser would drive them."""

from __future__ import annotations

import base64
import re

import pytest
import requests
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.attribute_converter import ac_factory
from saml2.mdstore import MetadataStore
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from saml2.samlp import STATUS_AUTHN_FAILED, STATUS_NO_PASSIVE, STATUS_RESPONDER

from broker.demo import saml_idp

URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
      "ds": "http://www.w3.org/2000/09/xmldsig#"}


def start(browser, client, idp_entity_id, *, binding=BINDING_HTTP_REDIRECT, relay_state="rs-1", only_form=None,
          **request_args):
    """Send an AuthnRequest from ``client`` through ``browser``; returns (request id, IdP's answer)."""
    request_id, info = client.prepare_for_authenticate(
        entityid=idp_entity_id, relay_state=relay_state, binding=binding, **request_args)
    if binding == BINDING_HTTP_REDIRECT:
        return request_id, browser.get(dict(info["headers"])["Location"], timeout=10)
    action, fields = only_form(info["data"])
    return request_id, browser.post(action, data=fields, timeout=10)


def sign_in(browser, page, login_form, username, password="demo"):
    action, fields = login_form(page.text)
    fields.update(username=username, password=password)
    return browser.post(action, data=fields, timeout=10)


def saml_response(page, only_form, acs):
    """The SAMLResponse and RelayState the IdP's auto-POST page would send to ``acs``."""
    assert page.status_code == 200, page.text
    action, fields = only_form(page.text)
    assert action == acs
    return fields["SAMLResponse"], fields.get("RelayState")


def attributes(authn_response) -> dict[str, tuple[str, list[str]]]:
    """SAML attribute name -> (NameFormat, values), exactly as on the wire."""
    statement = authn_response.assertion.attribute_statement[0]
    return {a.name: (a.name_format, [v.text for v in a.attribute_value]) for a in statement.attribute}


def test_pupil_signs_in_with_redirect_binding_and_gets_mpassid_attributes(
        saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp(want_response_signed=True)
    browser = requests.Session()
    request_id, page = start(browser, client, saml_idp_server.entity_id("vantaa"), only_form=only_form)
    assert page.status_code == 200 and 'id="login"' in page.text
    encoded, relay_state = saml_response(sign_in(browser, page, login_form, "pupil.vantaa"), only_form,
                                         saml_idp_server.acs)
    assert relay_state == "rs-1"

    # The SP verifies the response and assertion signatures against the IdP metadata.
    response = client.parse_authn_request_response(encoded, BINDING_HTTP_POST, outstanding={request_id: "/"})
    assert response.in_response_to == request_id
    assert response.issuer() == saml_idp_server.entity_id("vantaa")
    xml = etree.fromstring(base64.b64decode(encoded))
    assert xml.find("ds:Signature", NS) is not None, "the Response is signed"
    assert xml.find("saml:Assertion/ds:Signature", NS) is not None, "the Assertion is signed"

    name_id = response.name_id
    assert name_id.format == NAMEID_FORMAT_PERSISTENT
    assert name_id.name_qualifier == saml_idp_server.entity_id("vantaa")
    assert name_id.sp_name_qualifier == saml_idp_server.sp_entity_id
    assert name_id.text

    got = attributes(response)
    assert {fmt for fmt, _ in got.values()} == {URI}
    values = {name: vals for name, (_, vals) in got.items()}
    assert re.fullmatch(r"MPASSOID\.[0-9a-f]{40}", values.pop("urn:mpass.id:uid")[0])
    assert values == {
        "urn:oid:2.5.4.42": ["Aino Maria"],
        "urn:oid:2.5.4.4": ["Virtanen"],
        "urn:mpass.id:nickname": ["Aino"],
        "urn:oid:1.3.6.1.4.1.16161.1.1.27": ["1.2.246.562.98.09200000001"],
        "urn:mpass.id:schoolInfo": ["90921;Tikkurilan demokoulu", "1.2.246.562.10.90920000001;Tikkurilan demokoulu"],
        "urn:mpass.id:classLevel": ["7"],
        "urn:mpass.id:learningMaterialsCharge": ["0;90921"],
        "urn:mpass.id:role": ["1.2.246.562.10.90920000000;90921;7A;Oppilas;1;1.2.246.562.10.90920000001;"],
        "urn:mpass.id:educationProviderInfo": ["1.2.246.562.10.90920000000;Vantaan kaupunki"],
    }


def test_espoo_like_adfs_signs_only_the_assertion(saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp(want_response_signed=False)
    browser = requests.Session()
    request_id, page = start(browser, client, saml_idp_server.entity_id("espoo"), binding=BINDING_HTTP_POST,
                             only_form=only_form)
    encoded, _ = saml_response(sign_in(browser, page, login_form, "teacher@espoo.example"), only_form,
                               saml_idp_server.acs)
    xml = etree.fromstring(base64.b64decode(encoded))
    assert xml.find("ds:Signature", NS) is None
    assert xml.find("saml:Assertion/ds:Signature", NS) is not None
    response = client.parse_authn_request_response(encoded, BINDING_HTTP_POST, outstanding={request_id: "/"})
    values = {name: vals for name, (_, vals) in attributes(response).items()}
    assert values["urn:oid:2.5.4.42"] == ["Sanna Maria"]
    assert "urn:oid:1.3.6.1.4.1.16161.1.1.27" not in values, "teachers have no learner id"
    assert "urn:mpass.id:classLevel" not in values


def test_tampere_teacher_has_two_schools_and_v11_roles_too(saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp()
    browser = requests.Session()
    request_id, page = start(browser, client, saml_idp_server.entity_id("tampere"), only_form=only_form)
    encoded, _ = saml_response(sign_in(browser, page, login_form, "teacher.tampere"), only_form, saml_idp_server.acs)
    response = client.parse_authn_request_response(encoded, BINDING_HTTP_POST, outstanding={request_id: "/"})
    values = {name: vals for name, (_, vals) in attributes(response).items()}
    roles = values["urn:mpass.id:role"]
    assert [role.split(";")[1] for role in roles] == ["98371", "98372"]
    assert all(len(role.split(";")) == 7 and role.split(";")[3:5] == ["Opettaja", "2"] for role in roles)
    assert values["urn:mpass.id:role_v1.1"] == ["Tampere;98371;;Opettaja", "Tampere;98372;;Opettaja"]
    assert len(values["urn:mpass.id:schoolInfo"]) == 4


def test_idp_session_skips_the_form_unless_force_authn(saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp()
    browser = requests.Session()
    idp = saml_idp_server.entity_id("vantaa")
    _, page = start(browser, client, idp, only_form=only_form)
    first, _ = saml_response(sign_in(browser, page, login_form, "principal.vantaa"), only_form, saml_idp_server.acs)

    request_id, page = start(browser, client, idp, only_form=only_form)
    assert 'id="login"' not in page.text
    second, _ = saml_response(page, only_form, saml_idp_server.acs)
    response = client.parse_authn_request_response(second, BINDING_HTTP_POST, outstanding={request_id: "/"})
    values = {name: vals for name, (_, vals) in attributes(response).items()}
    assert values["urn:oid:2.5.4.4"] == ["Mäkinen"]

    _, page = start(browser, client, idp, only_form=only_form, force_authn="true")
    assert 'id="login"' in page.text

    # Another city is another IdP: its session is separate.
    _, page = start(browser, client, saml_idp_server.entity_id("espoo"), only_form=only_form)
    assert 'id="login"' in page.text


def test_is_passive_without_a_session_answers_no_passive(saml_idp_server, saml_sp, only_form):
    client = saml_sp()
    request_id, page = start(requests.Session(), client, saml_idp_server.entity_id("vantaa"), only_form=only_form,
                             is_passive="true")
    encoded, _ = saml_response(page, only_form, saml_idp_server.acs)
    status = etree.fromstring(base64.b64decode(encoded)).find("samlp:Status/samlp:StatusCode", NS)
    assert status.get("Value") == STATUS_RESPONDER
    assert status.find("samlp:StatusCode", NS).get("Value") == STATUS_NO_PASSIVE


def test_cancel_answers_authn_failed(saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp()
    browser = requests.Session()
    _, page = start(browser, client, saml_idp_server.entity_id("vantaa"), only_form=only_form)
    action, fields = login_form(page.text)
    encoded, _ = saml_response(browser.post(action, data={**fields, "cancel": "1"}), only_form, saml_idp_server.acs)
    status = etree.fromstring(base64.b64decode(encoded)).find("samlp:Status/samlp:StatusCode/samlp:StatusCode", NS)
    assert status.get("Value") == STATUS_AUTHN_FAILED


def test_wrong_password_shows_the_form_again_with_an_error(saml_idp_server, saml_sp, login_form, only_form):
    browser = requests.Session()
    _, page = start(browser, saml_sp(), saml_idp_server.entity_id("vantaa"), only_form=only_form)
    again = sign_in(browser, page, login_form, "pupil.vantaa", password="wrong")
    assert again.status_code == 401
    assert 'id="error"' in again.text and "SAMLResponse" not in again.text
    assert login_form(again.text)[1]["username"] == "pupil.vantaa"


def test_an_acs_missing_from_the_sp_metadata_is_never_posted_to(saml_idp_server, saml_sp, only_form):
    page = start(requests.Session(), saml_sp(), saml_idp_server.entity_id("vantaa"), only_form=only_form,
                 assertion_consumer_service_url="http://evil.test/acs")[1]
    assert page.status_code == 400
    assert 'id="error"' in page.text
    assert "evil.test" not in page.text


def test_an_unknown_sp_is_refused_until_the_sp_metadata_names_it(saml_idp_server, saml_sp, key_dir, only_form):
    newcomer = saml_sp(entity_id="http://sp2.test/sp", acs="http://sp2.test/acs")
    idp = saml_idp_server.entity_id("vantaa")
    page = start(requests.Session(), newcomer, idp, only_form=only_form)[1]
    assert page.status_code == 400 and 'id="error"' in page.text

    # The broker re-registers: the IdP fetches the SP metadata again on the next unknown SP.
    saml_idp_server.sp_entities.append(str(entity_descriptor(newcomer.config)))
    page = start(requests.Session(), newcomer, idp, only_form=only_form)[1]
    assert page.status_code == 200 and 'id="login"' in page.text


def test_sp_metadata_is_fetched_on_first_use_not_at_start(key_dir):
    calls = []
    app = saml_idp.create_app(base_url="http://idp.test", cities=["vantaa"], key_dir=key_dir,
                              sp_metadata=lambda: calls.append(1) or "")
    assert app.test_client().get("/vantaa/metadata").status_code == 200
    assert calls == []


def test_an_sp_metadata_failure_is_a_503_page(key_dir):
    def broken():
        raise ConnectionError("broker not up")

    app = saml_idp.create_app(base_url="http://idp.test", cities=["vantaa"], key_dir=key_dir, sp_metadata=broken)
    page = app.test_client().get("/vantaa/sso/redirect?SAMLRequest=x")
    assert page.status_code == 503 and b'id="error"' in page.data


def test_write_idp_metadata_writes_what_an_sp_can_load(tmp_path, key_dir):
    path = tmp_path / "metadata" / "vantaa-idp.xml"
    saml_idp.write_idp_metadata("https://idp.test", "vantaa", key_dir, path)
    store = MetadataStore(ac_factory(), None)
    store.load("local", str(path))
    entity = "https://idp.test/vantaa/idp"
    for binding, suffix in ((BINDING_HTTP_REDIRECT, "redirect"), (BINDING_HTTP_POST, "post")):
        assert [s["location"] for s in store.single_sign_on_service(entity, binding)] == [
            f"https://idp.test/vantaa/sso/{suffix}"]
    pem = saml_idp.idp_keys(key_dir, "vantaa").cert_path.read_text()
    body = "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)
    assert ["".join(cert.split()) for _, cert in store.certs(entity, "idpsso", "signing")] == [body]
    # Each city its own key: a response signed for one city cannot pass as another's.
    assert saml_idp.idp_keys(key_dir, "espoo").cert_path.read_text() != pem


@pytest.mark.parametrize(("lang", "header", "label"), [
    ("sv", "", "Användarnamn"), ("", "en-GB,en;q=0.8", "Username"), ("", "", "Käyttäjätunnus"),
])
def test_login_form_speaks_finnish_swedish_and_english(saml_idp_server, saml_sp, lang, header, label):
    client = saml_sp()
    _, info = client.prepare_for_authenticate(entityid=saml_idp_server.entity_id("vantaa"),
                                              binding=BINDING_HTTP_REDIRECT)
    url = dict(info["headers"])["Location"] + (f"&lang={lang}" if lang else "")
    page = requests.get(url, headers={"Accept-Language": header} if header else {}, timeout=10)
    assert label in page.text
    assert 'name="viewport"' in page.text
