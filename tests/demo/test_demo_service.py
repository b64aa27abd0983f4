"""The demo services as clients of a real OpenID provider (the demo Entra IdP), over HTTP."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import lxml.html
import requests

from broker.demo import service
from broker.demo.directory import DEMO_DIRECTORY
from broker.demo.servers import free_port


def claims(page: requests.Response) -> dict[tuple[str, str], str]:
    """(source, claim) -> value, from the ``#claims`` table."""
    rows = lxml.html.fromstring(page.text).xpath('//table[@id="claims"]/tbody/tr')
    return {(row.get("data-source"), row.get("data-claim")): row.xpath("td")[2].text_content() for row in rows}


def test_sign_in_shows_the_claims_and_the_other_service_signs_in_silently(services, login_form):
    browser = requests.Session()
    home = browser.get(f"{services.a}/", timeout=10)
    assert 'id="status"' in home.text and 'id="sign-in"' in home.text

    form_page = browser.get(f"{services.a}/login?idp_hint=vantaa&ui_locales=sv", timeout=10)
    authorize = parse_qs(urlsplit(form_page.url).query)
    assert authorize["idp_hint"] == ["vantaa"] and authorize["ui_locales"] == ["sv"]
    assert authorize["code_challenge_method"] == ["S256"] and authorize["nonce"] and authorize["state"]
    assert "Användarnamn" in form_page.text

    action, fields = login_form(form_page.text)
    page = browser.post(action, data={**fields, "username": "pupil.vantaa", "password": "demo"}, timeout=10)
    assert page.url == f"{services.a}/"
    assert "Aino Virtanen" in lxml.html.fromstring(page.text).get_element_by_id("who").text_content()
    got = claims(page)
    assert got[("id_token", "tid")] == DEMO_DIRECTORY["vantaa"]["entra_tenant_id"]
    assert got[("id_token", "extn_learnerId")] == "1.2.246.562.98.09200000001"
    assert got[("userinfo", "sub")] == got[("id_token", "sub")]

    link = lxml.html.fromstring(page.text).get_element_by_id("other-service").get("href")
    other = browser.get(link, timeout=10)
    assert other.url == f"{services.b}/", "signed in at B without a form"
    assert 'id="login"' not in other.text
    assert claims(other)[("id_token", "oid")] == got[("id_token", "oid")]
    assert claims(other)[("id_token", "aud")] == "svc-b"

    # Separate cookies: signing in at B did not sign A out.
    assert 'id="who"' in browser.get(f"{services.a}/", timeout=10).text
    browser.get(f"{services.a}/logout", timeout=10)
    assert 'id="status"' in browser.get(f"{services.a}/", timeout=10).text
    assert 'id="who"' in browser.get(f"{services.b}/", timeout=10).text


def test_an_idp_error_is_shown_not_swallowed(services, login_form):
    browser = requests.Session()
    action, fields = login_form(browser.get(f"{services.a}/login", timeout=10).text)
    page = browser.post(action, data={**fields, "cancel": "1"}, timeout=10)
    assert page.status_code == 400
    assert "access_denied" in lxml.html.fromstring(page.text).get_element_by_id("error").text_content()


def test_a_callback_without_its_state_is_refused(services):
    page = requests.get(f"{services.a}/callback", params={"code": "x", "state": "forged"}, timeout=10)
    assert page.status_code == 400 and 'id="error"' in page.text


def test_an_unreachable_issuer_is_a_page_not_a_crash():
    app = service.create_app(name="Lonely", base_url="http://svc.test", issuer=f"http://127.0.0.1:{free_port()}",
                             client_id="c", client_secret="s", other_service=None, cookie_name="lonely")
    page = app.test_client().get("/login")
    assert page.status_code == 502 and b"issuer_unreachable" in page.data
