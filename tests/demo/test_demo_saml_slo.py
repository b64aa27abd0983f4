"""Single logout at the demo SAML IdPs, against a real pysaml2 SP (its own xmlsec1 signatures), over HTTP."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlencode, urlsplit

import lxml.html
import pytest
import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.attribute_converter import ac_factory
from saml2.mdstore import MetadataStore
from saml2.metadata import entity_descriptor
from saml2.pack import http_redirect_message
from saml2.s_utils import error_status_factory
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.samlp import STATUS_REQUEST_DENIED, STATUS_RESPONDER, STATUS_SUCCESS
from saml2.sigver import verify_redirect_signature
from saml2.xmldsig import SIG_RSA_SHA256

from broker.demo import saml_idp
from tests.demo.conftest import SP_SLO_REDIRECT, sp_config
from tests.demo.test_demo_saml_idp import saml_response, sign_in, start


def signed_in(saml_idp_server, client, login_form, only_form, city="vantaa", username="pupil.vantaa"):
    """Sign in at the IdP in a fresh browser; returns (browser, NameID, SessionIndex) from the verified assertion."""
    browser = requests.Session()
    request_id, page = start(browser, client, saml_idp_server.entity_id(city), only_form=only_form)
    encoded, _ = saml_response(sign_in(browser, page, login_form, username), only_form, saml_idp_server.acs)
    response = client.parse_authn_request_response(encoded, BINDING_HTTP_POST, outstanding={request_id: "/"})
    return browser, response.name_id, response.assertion.authn_statement[0].session_index


def has_session(saml_idp_server, browser, client, only_form, city="vantaa") -> bool:
    """Whether the IdP answers a new AuthnRequest from its session (no form)."""
    _, page = start(browser, client, saml_idp_server.entity_id(city), only_form=only_form)
    return 'id="login"' not in page.text


def slo_url(saml_idp_server, city, binding=BINDING_HTTP_REDIRECT):
    return f"{saml_idp_server.url}/{city}/slo/{'redirect' if binding == BINDING_HTTP_REDIRECT else 'post'}"


def logout_request_url(client, saml_idp_server, name_id, session_index, *, city="vantaa", relay_state="rs-logout",
                       sign=True):
    """A LogoutRequest from ``client`` by HTTP-Redirect: the URL (query signed by pysaml2 when ``sign``)."""
    destination = slo_url(saml_idp_server, city)
    _, message = client.create_logout_request(destination, saml_idp_server.entity_id(city), name_id=name_id,
                                              session_indexes=[session_index], sign=False)
    info = client.apply_binding(BINDING_HTTP_REDIRECT, str(message), destination, relay_state, sign=sign,
                                sigalg=SIG_RSA_SHA256)
    return dict(info["headers"])["Location"]


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def idp_cert(key_dir, city="vantaa") -> str:
    pem = saml_idp.idp_keys(key_dir, city).cert_path.read_text()
    return "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)


def test_metadata_lists_the_single_logout_services(tmp_path, key_dir):
    path = tmp_path / "vantaa-idp.xml"
    saml_idp.write_idp_metadata("https://idp.test", "vantaa", key_dir, path)
    store = MetadataStore(ac_factory(), None)
    store.load("local", str(path))
    for binding, suffix in ((BINDING_HTTP_REDIRECT, "redirect"), (BINDING_HTTP_POST, "post")):
        services = store.single_logout_service("https://idp.test/vantaa/idp", binding, "idpsso")
        assert [s["location"] for s in services] == [f"https://idp.test/vantaa/slo/{suffix}"]


def test_signed_logout_request_ends_the_session_and_gets_a_signed_response(
        saml_idp_server, saml_sp, login_form, only_form, key_dir):
    client = saml_sp()
    browser, name_id, session_index = signed_in(saml_idp_server, client, login_form, only_form)
    assert has_session(saml_idp_server, browser, client, only_form)

    answer = browser.get(logout_request_url(client, saml_idp_server, name_id, session_index), allow_redirects=False,
                         timeout=10)
    assert answer.status_code == 303, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    location = answer.headers["Location"]
    assert location.startswith(SP_SLO_REDIRECT + "?")
    params = query(location)
    assert params["RelayState"] == "rs-logout"
    assert params["SigAlg"] == SIG_RSA_SHA256
    # The query signature verifies with the IdP's metadata certificate (pysaml2's own check)...
    assert verify_redirect_signature(params, client.sec.sec_backend, idp_cert(key_dir))
    # ... and the SP accepts the LogoutResponse: Success, for its request, from the IdP.
    response = client.parse_logout_request_response(params["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert response.response.status.status_code.value == STATUS_SUCCESS
    assert response.response.destination == SP_SLO_REDIRECT
    assert response.issuer() == saml_idp_server.entity_id("vantaa")

    assert not has_session(saml_idp_server, browser, client, only_form), "the IdP session has ended"


def test_logout_request_by_post_with_an_xml_signature(saml_idp_server, saml_sp, login_form, only_form, key_dir):
    client = saml_sp()
    browser, name_id, session_index = signed_in(saml_idp_server, client, login_form, only_form,
                                                username="teacher.vantaa")
    destination = slo_url(saml_idp_server, "vantaa", BINDING_HTTP_POST)
    _, message = client.create_logout_request(destination, saml_idp_server.entity_id("vantaa"), name_id=name_id,
                                              session_indexes=[session_index], sign=True, sign_alg=SIG_RSA_SHA256)
    encoded = base64.b64encode(str(message).encode()).decode()
    answer = browser.post(destination, data={"SAMLRequest": encoded, "RelayState": "rs-post"},
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 303, answer.text
    params = query(answer.headers["Location"])
    assert verify_redirect_signature(params, client.sec.sec_backend, idp_cert(key_dir))
    assert params["RelayState"] == "rs-post"
    assert not has_session(saml_idp_server, browser, client, only_form)


def test_the_response_goes_by_post_to_an_sp_without_a_redirect_slo(
        saml_idp_server, saml_sp, key_dir, login_form, only_form):
    post_only = saml_sp(entity_id="http://sp-post.test/sp", acs="http://sp-post.test/acs",
                        slo=(("http://sp-post.test/slo", BINDING_HTTP_POST),))
    saml_idp_server.sp_entities.append(str(entity_descriptor(sp_config(
        key_dir, entity_id="http://sp-post.test/sp", acs="http://sp-post.test/acs",
        slo=(("http://sp-post.test/slo", BINDING_HTTP_POST),)))))
    browser = requests.Session()
    request_id, page = start(browser, post_only, saml_idp_server.entity_id("vantaa"), only_form=only_form)
    encoded, _ = saml_response(sign_in(browser, page, login_form, "pupil.vantaa"), only_form,
                               "http://sp-post.test/acs")
    response = post_only.parse_authn_request_response(encoded, BINDING_HTTP_POST, outstanding={request_id: "/"})
    url = logout_request_url(post_only, saml_idp_server, response.name_id,
                             response.assertion.authn_statement[0].session_index)
    page = browser.get(url, timeout=10)
    action, fields = only_form(page.text)
    assert action == "http://sp-post.test/slo" and fields["RelayState"] == "rs-logout"
    # HTTP-POST: the XML itself is signed; the SP verifies it against the IdP's metadata.
    logout = post_only.parse_logout_request_response(fields["SAMLResponse"], BINDING_HTTP_POST)
    assert logout.response.signature is not None
    assert logout.response.status.status_code.value == STATUS_SUCCESS


def test_an_unsigned_logout_request_is_refused_and_the_session_stays(saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp()
    browser, name_id, session_index = signed_in(saml_idp_server, client, login_form, only_form)
    page = browser.get(logout_request_url(client, saml_idp_server, name_id, session_index, sign=False),
                       allow_redirects=False, timeout=10)
    assert page.status_code == 400 and 'id="error"' in page.text
    assert "Location" not in page.headers
    # By HTTP-POST without an XML signature: refused too.
    destination = slo_url(saml_idp_server, "vantaa", BINDING_HTTP_POST)
    _, message = client.create_logout_request(destination, saml_idp_server.entity_id("vantaa"), name_id=name_id,
                                              session_indexes=[session_index], sign=False)
    page = browser.post(destination, data={"SAMLRequest": base64.b64encode(str(message).encode()).decode()},
                        allow_redirects=False, timeout=10)
    assert page.status_code == 400 and 'id="error"' in page.text
    assert has_session(saml_idp_server, browser, client, only_form)


def test_a_forged_or_tampered_logout_request_is_refused(saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp()
    browser, name_id, session_index = signed_in(saml_idp_server, client, login_form, only_form)

    # Signed with a key that is not in the SP's metadata (same entity id).
    forger = saml_sp(key_name="forger-sp")
    forged = logout_request_url(forger, saml_idp_server, name_id, session_index)
    assert browser.get(forged, allow_redirects=False, timeout=10).status_code == 400

    # A genuine signature, with the RelayState changed after signing.
    genuine = logout_request_url(client, saml_idp_server, name_id, session_index)
    params = query(genuine)
    params["RelayState"] = "rs-evil"
    tampered = genuine.split("?")[0] + "?" + urlencode(params)
    assert browser.get(tampered, allow_redirects=False, timeout=10).status_code == 400

    # A SHA-1 signature is not accepted.
    destination = slo_url(saml_idp_server, "vantaa")
    _, message = client.create_logout_request(destination, saml_idp_server.entity_id("vantaa"), name_id=name_id,
                                              session_indexes=[session_index], sign=False)
    sha1 = http_redirect_message(str(message), destination, "rs", sign=True, backend=client.sec.sec_backend,
                                 sigalg="http://www.w3.org/2000/09/xmldsig#rsa-sha1")
    assert browser.get(dict(sha1["headers"])["Location"], allow_redirects=False, timeout=10).status_code == 400

    assert has_session(saml_idp_server, browser, client, only_form)


def test_a_logout_request_for_another_session_index_leaves_the_session(
        saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp()
    browser, name_id, _ = signed_in(saml_idp_server, client, login_form, only_form)
    other = NameID(format=NAMEID_FORMAT_PERSISTENT, text="someone-else", name_qualifier=name_id.name_qualifier,
                   sp_name_qualifier=name_id.sp_name_qualifier)
    for wrong_name, wrong_index in ((name_id, "not-this-session"), (other, None)):
        answer = browser.get(logout_request_url(client, saml_idp_server, wrong_name, wrong_index or "x"),
                             allow_redirects=False, timeout=10)
        # Success (the principal named has no such session here), but this session is untouched.
        assert answer.status_code == 303
        logout = client.parse_logout_request_response(query(answer.headers["Location"])["SAMLResponse"],
                                                      BINDING_HTTP_REDIRECT)
        assert logout.response.status.status_code.value == STATUS_SUCCESS
    assert has_session(saml_idp_server, browser, client, only_form)


def idp_initiated(saml_idp_server, browser, city="vantaa"):
    """Open the IdP's sign-out page, press the button; returns the page and the IdP's answer (not followed)."""
    page = browser.get(f"{saml_idp_server.url}/{city}/logout", timeout=10)
    form = lxml.html.fromstring(page.text).xpath('//form[.//button[@id="sign-out"]]')
    assert form, page.text
    return page, browser.post(form[0].action, data=dict(form[0].form_values()), allow_redirects=False, timeout=10)


def logout_response_url(client, saml_idp_server, request, relay_state, *, status=None, city="vantaa"):
    response = client.create_logout_response(request, [BINDING_HTTP_REDIRECT], status=status, sign=False)
    info = client.apply_binding(BINDING_HTTP_REDIRECT, str(response), slo_url(saml_idp_server, city), relay_state,
                                response=True, sign=True, sigalg=SIG_RSA_SHA256)
    return dict(info["headers"])["Location"]


def test_idp_initiated_logout_sends_a_signed_logout_request_and_shows_the_outcome(
        saml_idp_server, saml_sp, login_form, only_form, key_dir):
    client = saml_sp()
    browser, name_id, session_index = signed_in(saml_idp_server, client, login_form, only_form)
    page, answer = idp_initiated(saml_idp_server, browser)
    assert "Aino Virtanen" in lxml.html.fromstring(page.text).get_element_by_id("who").text_content()

    assert answer.status_code == 303, answer.text
    location = answer.headers["Location"]
    assert location.startswith(SP_SLO_REDIRECT + "?")
    params = query(location)
    assert params["SigAlg"] == SIG_RSA_SHA256 and params["RelayState"]
    assert verify_redirect_signature(params, client.sec.sec_backend, idp_cert(key_dir))
    request = client.parse_logout_request(params["SAMLRequest"], BINDING_HTTP_REDIRECT).message
    assert request.issuer.text == saml_idp_server.entity_id("vantaa")
    assert request.destination == SP_SLO_REDIRECT
    assert request.name_id.text == name_id.text and request.name_id.format == NAMEID_FORMAT_PERSISTENT
    assert request.name_id.sp_name_qualifier == saml_idp_server.sp_entity_id
    assert [index.text for index in request.session_index] == [session_index]
    assert request.not_on_or_after

    # The IdP session ended at once, before the SP answers.
    assert not has_session(saml_idp_server, requests.Session(), client, only_form)
    assert 'id="sign-out"' not in browser.get(f"{saml_idp_server.url}/vantaa/logout", timeout=10).text

    done = browser.get(logout_response_url(client, saml_idp_server, request, params["RelayState"]), timeout=10)
    assert done.status_code == 200
    status = lxml.html.fromstring(done.text).get_element_by_id("status").text_content()
    assert status == "Olet kirjautunut ulos."
    # The same LogoutResponse again is not expected any more.
    again = browser.get(logout_response_url(client, saml_idp_server, request, params["RelayState"]), timeout=10)
    assert again.status_code == 400 and 'id="error"' in again.text


def test_idp_initiated_logout_shows_an_sp_that_refused(saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp()
    browser, _, _ = signed_in(saml_idp_server, client, login_form, only_form)
    _, answer = idp_initiated(saml_idp_server, browser)
    params = query(answer.headers["Location"])
    request = client.parse_logout_request(params["SAMLRequest"], BINDING_HTTP_REDIRECT).message
    status = error_status_factory((STATUS_RESPONDER, "The SP could not sign you out"))
    status.status_code.status_code.value = STATUS_REQUEST_DENIED
    done = browser.get(logout_response_url(client, saml_idp_server, request, params["RelayState"], status=status)
                       + "&lang=en", timeout=10)
    html = lxml.html.fromstring(done.text)
    assert html.get_element_by_id("status").text_content() == "Signing out did not succeed everywhere."
    detail = html.get_element_by_id("detail").text_content()
    assert STATUS_RESPONDER in detail and STATUS_REQUEST_DENIED in detail


def test_an_unsigned_or_unsolicited_logout_response_is_refused(saml_idp_server, saml_sp, login_form, only_form):
    client = saml_sp()
    browser, _, _ = signed_in(saml_idp_server, client, login_form, only_form)
    _, answer = idp_initiated(saml_idp_server, browser)
    params = query(answer.headers["Location"])
    request = client.parse_logout_request(params["SAMLRequest"], BINDING_HTTP_REDIRECT).message

    unsigned = client.create_logout_response(request, [BINDING_HTTP_REDIRECT], sign=False)
    info = client.apply_binding(BINDING_HTTP_REDIRECT, str(unsigned), slo_url(saml_idp_server, "vantaa"),
                                params["RelayState"], response=True, sign=False)
    page = browser.get(dict(info["headers"])["Location"], timeout=10)
    assert page.status_code == 400 and 'id="error"' in page.text

    wrong_relay_state = browser.get(logout_response_url(client, saml_idp_server, request, "not-ours"), timeout=10)
    assert wrong_relay_state.status_code == 400

    # Still pending: the genuine answer completes it.
    done = browser.get(logout_response_url(client, saml_idp_server, request, params["RelayState"]), timeout=10)
    assert done.status_code == 200 and 'id="status"' in done.text


def test_logout_page_without_a_session(saml_idp_server):
    page = requests.get(f"{saml_idp_server.url}/vantaa/logout?lang=en", timeout=10)
    assert page.status_code == 200
    assert lxml.html.fromstring(page.text).get_element_by_id("status").text_content() == "You are not signed in."
    assert 'id="sign-out"' not in page.text


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_slo_without_a_message_is_an_error_page(saml_idp_server, binding):
    url = f"{saml_idp_server.url}/vantaa/slo/{binding}"
    page = requests.get(url, timeout=10) if binding == "redirect" else requests.post(url, data={}, timeout=10)
    assert page.status_code == 400 and 'id="error"' in page.text
