"""What a person clicks, in headless Chromium: sign in to a demo service through the broker's
discovery page and a city's login form, reach the second service by single sign-on, in Finnish
and in Swedish, on a desktop and on a phone, and meet the broker's error page.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser

ALL_CITIES = ["espoo", "jyvaskyla", "lahti", "oulu", "tampere", "turku", "vantaa"]
CORRELATION_ID = re.compile(r"^[0-9a-f]{16}$")
# What a stack trace or an internal error would leak onto a page.
LEAKS = ("Traceback", 'File "', "site-packages", ".py", "Exception", "Internal Server Error")

DISCO = {
    "fi": {"title": "Valitse kotikuntasi", "search": "Hae kuntaa tai koulua", "method": "Valitse kirjautumistapa"},
    "sv": {"title": "Välj din hemkommun", "search": "Sök kommun eller skola", "method": "Välj inloggningssätt"},
    "en": {"title": "Choose your city", "search": "Search city or school", "method": "Choose how to sign in"},
}
ERROR = {
    "fi": {"title": "Kirjautumista ei voitu aloittaa", "expired": "Kirjautuminen vanheni",
           "unknown_client": "Palvelua, josta tulit, ei ole rekisteröity.",
           "idp_error": "Kotikuntasi kirjautumispalvelu palautti virheen.", "reference": "Virhetunniste"},
    "sv": {"title": "Inloggningen kunde inte påbörjas", "expired": "Inloggningen gick ut",
           "unknown_client": "Tjänsten du kom från är inte registrerad.",
           "idp_error": "Din hemkommuns inloggningstjänst returnerade ett fel.", "reference": "Felkod"},
    "en": {"title": "Sign-in could not start", "expired": "The sign-in expired",
           "unknown_client": "The service you came from is not registered.",
           "idp_error": "Your city's sign-in service returned an error.", "reference": "Error reference"},
}


# -- helpers: what a person sees and does ---------------------------------------------------------

def visible_cities(page) -> list[str]:
    """The cities of the list of every city, if it is shown."""
    return page.eval_on_selector_all(
        "#all [data-tenant]", "els => els.filter(e => e.offsetParent !== null).map(e => e.dataset.tenant)")


def results(page) -> list[str]:
    """The city of each search result shown, in order."""
    return page.eval_on_selector_all(
        "#result-list [data-tenant]", "els => els.filter(e => e.offsetParent !== null).map(e => e.dataset.tenant)")


def horizontal_overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0: no horizontal scroll)."""
    return page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")


def search(page, typed: str) -> list[str]:
    """Type into the search box as a person does, key by key; once the broker has answered, the
    city of each result (or, with the box empty, every city listed)."""
    page.fill("#q", "")
    page.locator("#q").press_sequentially(typed, delay=20)
    if not typed.strip():
        page.wait_for_selector("#all", state="visible")
        return visible_cities(page)
    page.wait_for_selector(f'#results[data-query="{typed.strip()}"]', state="visible")
    return results(page)


def start_at_service(stack, page) -> None:
    """Open demo service A, not signed in, and click "Sign in": the broker's discovery page."""
    service_a = stack.service_urls[0]
    page.goto(service_a + "/")
    assert page.locator("#status").is_visible()
    page.click("#sign-in")
    page.wait_for_url(f"{stack.broker_url}/disco**")


def fill_login_form(stack, page, username: str) -> None:
    """On the city's demo IdP (SAML or Entra-shaped): username, password, sign in."""
    assert urlsplit(page.url).netloc in (urlsplit(stack.saml_url).netloc, urlsplit(stack.entra_url).netloc), page.url
    page.fill("#username", username)
    page.fill("#password", "demo")
    page.click("#login")


def claims(page) -> dict[str, str]:
    """The claims table of a demo service: claim name -> value (ID token rows)."""
    return page.eval_on_selector_all(
        "#claims tbody tr[data-source=id_token]",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.claim, r.cells[2].innerText]))")


def assert_no_leak(html: str) -> None:
    for leak in LEAKS:
        assert leak not in html, f"the page shows {leak!r}"


# -- (a) sign in, then single sign-on to the second service -------------------------------------------

# The broker searches cities' and schools' names in all three languages as the person types:
# "vant" is Vantaa, and also inside Hervanta, a Tampere school; typing on leaves Vantaa.
@pytest.mark.parametrize("typing,city,method,username,family_name", [
    ({"Tur": ["turku"]},                                                # one method: SAML, MPASSid attributes
     "turku", None, "teacher.turku", "Saarinen"),
    ({"vant": ["vantaa", "tampere"], "vantaa": ["vantaa"]},              # two methods: pick Microsoft (Entra)
     "vantaa", "entra", "pupil@vantaa.example", "Virtanen"),
], ids=["turku-saml", "vantaa-entra"])
def test_sign_in_through_discovery_then_sso_to_service_b(stack, open_session, typing, city, method, username,
                                                         family_name):
    session = open_session("fi-FI")
    page = session.page
    start_at_service(stack, page)

    # The discovery page, in Finnish: every city, then the broker's results as the person types.
    assert page.get_attribute("html", "lang") == "fi"
    assert page.inner_text("h1") == DISCO["fi"]["title"]
    assert page.inner_text("label[for=q]") == DISCO["fi"]["search"]
    assert visible_cities(page) == ALL_CITIES
    assert search(page, "xyzzy") == []
    assert search(page, "") == ALL_CITIES, "clearing the search shows every city again"
    for typed, shown in typing.items():
        assert search(page, typed) == shown, typed
    page.click(f"#result-list [data-tenant={city}]")

    if method:   # the city has several sign-in methods: the broker asks which
        page.wait_for_url(f"{stack.broker_url}/disco?**tenant={city}**")
        assert page.inner_text("h1") == DISCO["fi"]["method"]
        assert page.locator("#methods [data-idp]").count() == 2
        page.click(f'#methods [data-idp="{city}/{method}"]')

    fill_login_form(stack, page, username)

    # Back at service A, signed in: the name and the claims the broker released.
    service_a, service_b = stack.service_urls
    page.wait_for_url(service_a + "/")
    assert family_name in page.inner_text("#who")
    released = claims(page)
    assert released["iss"] == stack.broker_url
    assert released["aud"] == "demo-service-a"
    assert released["sub"] and released["sub"] != username
    assert released["family_name"] == family_name
    assert released["roles"].startswith('["'), released["roles"]   # role names: strings
    assert '"school"' in released["role_assignments"], released["role_assignments"]
    assert page.locator("#claims tbody tr[data-source=userinfo]").count() > 0

    # Service B: the link, then (if B asks) its sign-in button; the broker's SSO session answers
    # at once: no discovery page, no city login form, no request to any IdP.
    idp_hosts = {urlsplit(stack.saml_url).netloc, urlsplit(stack.entra_url).netloc}
    before = len(session.requested)
    page.click("#other-service")
    page.wait_for_url(service_b + "/**")
    if page.locator("#sign-in").count():
        page.click("#sign-in")
        page.wait_for_url(service_b + "/")
    assert page.locator("#who").is_visible()
    released_b = claims(page)
    assert released_b["aud"] == "demo-service-b"
    assert released_b["sub"]   # pairwise per sector: the redirect host, localhost for both demo services
    assert "family_name" not in released_b, "service B did not ask for names"
    later = session.requested[before:]
    assert not [url for url in later if urlsplit(url).netloc in idp_hosts], later
    assert not [url for url in later if "/disco" in url], later
    assert not session.refused


# -- (b) Swedish -------------------------------------------------------------------------------------------

def test_swedish_discovery_and_error_page(stack, open_session, tmp_path):
    session = open_session("sv-FI")
    page = session.page
    start_at_service(stack, page)

    assert page.get_attribute("html", "lang") == "sv"
    assert page.inner_text("h1") == DISCO["sv"]["title"]
    assert page.inner_text("label[for=q]") == DISCO["sv"]["search"]
    assert page.inner_text("#all [data-tenant=turku]") == "Åbo"
    assert page.inner_text("#all [data-tenant=vantaa]") == "Vanda"
    assert search(page, "dickursby") == ["vantaa"], "Swedish school names are searchable too"
    assert search(page, "Åbo") == ["turku"]
    assert search(page, "turku") == ["turku"], "a Finnish name on the Swedish page"
    assert page.inner_text("#result-list [data-tenant=turku] .name") == "Åbo"
    assert page.inner_text("#result-list [data-tenant=turku] .matched") == "(Turku)"
    page.click("#result-list [data-tenant=turku]")

    # The city's login form follows the browser's language; the person cancels there.
    page.wait_for_selector("#username")
    assert page.get_attribute("html", "lang") == "sv"
    page.click("#cancel")

    # Cancelling at the city's IdP is no dead end: the service hears access_denied (with its state).
    page.wait_for_url(lambda url: "/callback?" in url and "error=access_denied" in url)
    assert page.url.startswith(stack.service_urls[0]) and "state=" in page.url, page.url

    # A broker page that refuses (here a stale city-page link) is in Swedish too, with a reference.
    page.goto(f"{stack.broker_url}/disco/choose")
    page.wait_for_selector("#correlation-id")
    assert page.get_attribute("html", "lang") == "sv"
    assert page.inner_text("h1") == ERROR["sv"]["expired"]
    body = page.inner_text("body")
    assert ERROR["sv"]["reference"] in body
    assert CORRELATION_ID.match(page.inner_text("#correlation-id"))
    assert_no_leak(page.content())
    page.screenshot(path=tmp_path / "idp-error-sv.png", full_page=True)
    assert not session.refused


# -- (c) a phone ---------------------------------------------------------------------------------------------

def test_phone_sized_discovery_has_no_horizontal_scroll(stack, open_session, tmp_path):
    session = open_session("fi-FI", phone=True)
    page = session.page
    start_at_service(stack, page)
    assert page.evaluate("window.innerWidth") == 390

    assert horizontal_overflow(page) <= 0, "the city list scrolls sideways on a phone"
    page.screenshot(path=tmp_path / "discovery-phone.png", full_page=True)
    assert search(page, "vantaa") == ["vantaa"]
    page.click("#result-list [data-tenant=vantaa]")
    page.wait_for_url(f"{stack.broker_url}/disco?**tenant=vantaa**")
    assert horizontal_overflow(page) <= 0, "the method page scrolls sideways on a phone"
    page.screenshot(path=tmp_path / "methods-phone.png", full_page=True)
    page.click('#methods [data-idp="vantaa/koulu"]')

    page.wait_for_selector("#username")
    assert horizontal_overflow(page) <= 0, "the city's login form scrolls sideways on a phone"
    fill_login_form(stack, page, "teacher.vantaa")
    page.wait_for_url(stack.service_urls[0] + "/")
    assert "Korhonen" in page.inner_text("#who")
    page.screenshot(path=tmp_path / "service-a-phone.png")   # what the phone shows first
    page.screenshot(path=tmp_path / "service-a-phone-full.png", full_page=True)
    # The claims table: a name ("id_token", "extn_learnerId") is never broken inside a word; only values wrap.
    broken = page.eval_on_selector_all(
        "#claims td.name", "cells => cells.filter(c => { const r = document.createRange(); r.selectNodeContents(c);"
        " return r.getClientRects().length > 1; }).map(c => c.innerText)")
    assert not broken, f"claim names wrapped on a phone: {broken}"
    assert page.eval_on_selector_all("#claims td.value", "cells => cells.some(c => {"
                                     " const r = document.createRange(); r.selectNodeContents(c);"
                                     " return r.getClientRects().length > 1; })"), "long values wrap"
    # Recorded, not asserted: the demo service is not the broker.
    print(f"service A after sign-in, horizontal overflow on a phone: {horizontal_overflow(page)} px; "
          f"screenshots in {tmp_path}")
    assert not session.refused


# -- (d) an error a person can meet -----------------------------------------------------------------------------

@pytest.mark.parametrize("locale", ["fi-FI", "sv-FI", "en-GB"])
@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_unknown_client_error_page_is_localized_and_never_redirects(stack, open_session, locale, phone, tmp_path):
    session = open_session(locale, phone=phone)
    page = session.page
    lang = locale.split("-")[0]
    url = (f"{stack.broker_url}/authorize?client_id=unknown&redirect_uri=https://evil.example/cb"
           "&response_type=code&scope=openid")
    response = page.goto(url)

    assert response.status == 400
    assert page.url == url, "no redirect anywhere"
    assert not [u for u in session.requested if "evil.example" in urlsplit(u).netloc], session.requested
    assert not session.refused
    assert "evil.example" not in (page.eval_on_selector_all("[href],[action],[src]", "els => els.map(e => "
                                                            "e.getAttribute('href') || e.getAttribute('action') || "
                                                            "e.getAttribute('src')).join(' ')"))

    assert page.get_attribute("html", "lang") == lang
    assert page.inner_text("h1") == ERROR[lang]["title"]
    body = page.inner_text("body")
    assert ERROR[lang]["unknown_client"] in body
    assert ERROR[lang]["reference"] in body
    assert CORRELATION_ID.match(page.inner_text("#correlation-id"))
    assert_no_leak(page.content())
    if phone:
        assert horizontal_overflow(page) <= 0, "the error page scrolls sideways on a phone"
        page.screenshot(path=tmp_path / f"error-{lang}-phone.png", full_page=True)
