"""Refusals a person or a machine can meet on the front channel: a clear, localized page (or
JSON), a 4xx status, a correlation id that is also in the log, never a stack trace, and
never a redirect to an address that is not registered."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import lxml.html
import pytest
import requests
from agent import Person, forms, register_client

from broker.errors import heading_key
from broker.i18n import MESSAGES

REDIRECT = "https://errors.example.org/cb"


@pytest.fixture(scope="module")
def client_id(stack):
    client, _ = register_client(stack, client_id="errors-rp", redirect_uris=[REDIRECT])
    return client.client_id


def _authorize(stack, **params) -> str:
    base = {"response_type": "code", "scope": "openid", "state": "s", "nonce": "n",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
    return f"{stack.broker_url}/authorize?{urlencode({**base, **params})}"


def _correlation_id(text: str) -> str:
    match = re.search(r'id="correlation-id">([0-9a-f]+)<', text)
    assert match, "the page shows a correlation id"
    return match.group(1)


def _heading(response) -> str:
    return lxml.html.fromstring(response.text).xpath("string(//h1)")


def _assert_page(response, caplog, *, lang: str, message_key: str, status: int = 400):
    assert response.status_code == status
    assert not response.is_redirect
    assert "Traceback" not in response.text and "File \"" not in response.text
    assert MESSAGES[message_key][lang] in response.text.replace("&#x27;", "'")
    assert _heading(response) == MESSAGES[heading_key(message_key)][lang]
    cid = _correlation_id(response.text)
    assert any(cid in record.getMessage() for record in caplog.records), "the log line carries the id"
    return cid


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_unknown_idp_hint_page_in_the_persons_language(stack, client_id, caplog, lang):
    caplog.set_level(logging.INFO)
    response = Person(language=lang).get(_authorize(stack, client_id=client_id, redirect_uri=REDIRECT,
                                                    idp_hint="atlantis/koulu"))
    _assert_page(response, caplog, lang=lang, message_key="error.unknown_idp")


def test_unknown_client_is_shown_not_redirected(stack, caplog):
    caplog.set_level(logging.INFO)
    response = Person(language="en").get(_authorize(stack, client_id="nobody",
                                                    redirect_uri="https://evil.example/cb"))
    assert response.status_code in (400, 401)
    assert "evil.example" not in response.headers.get("Location", "")
    _correlation_id(response.text)


@pytest.mark.parametrize("extra", [{}, {"response_type": "token"}, {"code_challenge_method": "plain"}])
def test_unregistered_redirect_uri_is_never_redirected_to(stack, client_id, caplog, extra):
    caplog.set_level(logging.INFO)
    response = Person(language="fi").get(_authorize(stack, client_id=client_id,
                                                    redirect_uri="https://evil.example/cb", **extra))
    assert response.status_code == 400
    assert "Location" not in response.headers
    _correlation_id(response.text)


def test_machine_clients_get_json(stack, client_id):
    response = requests.get(_authorize(stack, client_id=client_id, redirect_uri=REDIRECT, idp_hint="atlantis"),
                            headers={"Accept": "application/json"}, allow_redirects=False, timeout=5)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] and re.fullmatch(r"[0-9a-f]{16}", body["correlation_id"])


def test_unknown_path_and_expired_flow_pages(stack, caplog):
    caplog.set_level(logging.INFO)
    person = Person(language="sv")
    _assert_page(person.get(f"{stack.broker_url}/no/such/page"), caplog, lang="sv", message_key="error.not_found",
                 status=404)
    # Choosing an IdP without a login in progress (no flow cookie): the flow has expired.
    _assert_page(person.post(f"{stack.broker_url}/disco/choose", data={"idp": "vantaa/koulu"}), caplog, lang="sv",
                 message_key="error.expired_flow")
    # The ACS with no flow: the same.
    response = person.post(f"{stack.broker_url}/saml2/acs/post", data={"SAMLResponse": "x", "RelayState": "y"})
    _assert_page(response, caplog, lang="sv", message_key="error.expired_flow")


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_a_page_that_does_not_exist_says_so(stack, caplog, lang):
    """A mistyped address is not a failed sign-in: the heading says the page does not exist."""
    caplog.set_level(logging.INFO)
    response = Person(language=lang).get(f"{stack.broker_url}/no/such/page")
    _assert_page(response, caplog, lang=lang, message_key="error.not_found", status=404)
    assert _heading(response) == {"fi": "Sivua ei ole olemassa", "sv": "Sidan finns inte",
                                  "en": "This page does not exist"}[lang]
    # No login under way: the way on is the front page, which tells where to start.
    assert lxml.html.fromstring(response.text).get_element_by_id("home").get("href") == f"{stack.broker_url}/"


UNKNOWN_CITY = {"fi": "Emme tunne tätä kuntaa", "sv": "Vi känner inte till den kommunen",
                "en": "We don't know that city"}


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_an_unknown_city_without_a_login_is_not_an_expired_sign_in(stack, caplog, lang):
    caplog.set_level(logging.INFO)
    response = Person(language=lang).get(f"{stack.broker_url}/disco?tenant=nowhere")
    _assert_page(response, caplog, lang=lang, message_key="error.unknown_tenant", status=404)
    assert _heading(response) == UNKNOWN_CITY[lang]
    page = lxml.html.fromstring(response.text)
    assert not page.xpath('//form[@id="city-search"]'), "no search without a login to choose in"
    assert page.get_element_by_id("home").get("href") == f"{stack.broker_url}/"


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_an_unknown_city_during_a_login_offers_the_city_search(stack, client_id, caplog, lang):
    """ui_locales picks the language (the browser asks for another one); the search on the page works."""
    caplog.set_level(logging.INFO)
    person = Person(language="fi" if lang != "fi" else "en")
    disco = person.get(_authorize(stack, client_id=client_id, redirect_uri=REDIRECT, ui_locales=lang))
    assert disco.status_code == 200 and urlsplit(disco.url).path == "/disco"
    response = person.get(f"{stack.broker_url}/disco?tenant=nowhere")
    _assert_page(response, caplog, lang=lang, message_key="error.unknown_tenant", status=404)
    assert _heading(response) == UNKNOWN_CITY[lang]
    search = lxml.html.fromstring(response.text).get_element_by_id("city-search")
    assert search.get("method") == "get" and search.get("action") == f"{stack.broker_url}/disco"
    fields = {field.get("name"): field.get("value") or "" for field in search.xpath(".//input")}
    results = person.get(f"{search.get('action')}?{urlencode({**fields, 'q': 'Vantaa'})}")
    assert results.status_code == 200
    assert 'data-tenant="vantaa"' in results.text, "the search box leads to the city"
    assert f'<html lang="{lang}"' in results.text


def test_an_expired_sign_in_keeps_its_heading(stack, caplog):
    caplog.set_level(logging.INFO)
    for lang in ("fi", "sv", "en"):
        response = Person(language=lang).post(f"{stack.broker_url}/disco/choose", data={"idp": "vantaa/koulu"})
        _assert_page(response, caplog, lang=lang, message_key="error.expired_flow")
        assert _heading(response) == {"fi": "Kirjautuminen vanheni", "sv": "Inloggningen gick ut",
                                      "en": "The sign-in expired"}[lang]


def test_garbage_saml_request_is_a_400(stack, caplog):
    caplog.set_level(logging.INFO)
    response = Person(language="en").get(f"{stack.broker_url}/saml2/idp/sso/redirect?SAMLRequest=%%%garbage")
    assert response.status_code == 400
    _correlation_id(response.text)


def test_cancel_at_the_city_idp_returns_to_the_service_with_access_denied(stack, client_id, caplog):
    """A pupil who cancels at their city's IdP is not stranded on an error page: the service hears it."""
    caplog.set_level(logging.INFO)
    person = Person(language="en")
    response = person.get(_authorize(stack, client_id=client_id, redirect_uri=REDIRECT))
    response = person.choose(response, "turku", "koulu")
    login = next(f for f in forms(response) if "password" in f.fields)
    response = person.follow_posts(person.post(login.action, {**login.fields, "cancel": "1"}))
    callback = Person.callback(response)
    query = parse_qs(urlsplit(callback).query)
    assert callback.startswith(REDIRECT) and "code" not in query
    assert query["error"] == ["access_denied"] and query["state"] == ["s"]
    # The next attempt in the same browser starts at the city page again, and can pick another city.
    response = person.choose(person.get(_authorize(stack, client_id=client_id, redirect_uri=REDIRECT)), "oulu",
                             "koulu")
    callback = Person.callback(person.sign_in(response, "teacher.oulu"))
    assert callback.startswith(REDIRECT) and "code=" in callback
