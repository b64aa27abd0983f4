"""Issue 11 in a real browser (headless Debian Chromium): the policies the guard sends let the
broker's pages work — pysaml2's auto-POST page and :func:`broker.web.csp.autopost_page` post
to their target, the city page's search runs (its script by hash, its requests to the
broker) — and stop what they should: a page posting anywhere else, a script the policy does
not name."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from saml2.pack import http_form_post_message

from broker.web import broker_script_hashes, csp, guard

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    context.set_default_timeout(10_000)
    tab = context.new_page()
    tab.violations = []
    tab.on("console", lambda message: tab.violations.append(message.text)
           if "Content Security Policy" in message.text else None)
    yield tab
    context.close()


def _service(received: list):
    """The service's ACS: records what was posted to it."""
    def app(environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            received.append(parse_qs(environ["wsgi.input"].read(length).decode()))
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<title>acs</title><p id='done'>received</p>"]
    return app


def _city_pages():
    """The real city page of three cities (one IdP each), as the login path renders it."""
    from broker.discovery import DiscoveryPages
    from broker.registry.tenant_model import IdentityProvider, School, Tenant, Tenants

    cities = [Tenant(city, {"fi": name, "sv": name, "en": name}, code, f"1.2.246.562.10.{code}", {
        "fi": name, "sv": name, "en": name}, (School(f"9{code}1", f"1.2.246.562.10.9{code}1", {
            "fi": f"{name}n koulu", "sv": f"{name}n koulu", "en": f"{name}n koulu"}),),
        (IdentityProvider(city, "koulu", "saml", {"fi": "Koulu", "sv": "Skola", "en": "School"}, {}),))
        for city, name, code in (("vantaa", "Vantaa", "092"), ("espoo", "Espoo", "049"), ("oulu", "Oulu", "564"))]
    return DiscoveryPages(Tenants(by_id={t.id: t for t in cities}, idps={i.key: i for t in cities
                                                                         for i in t.identity_providers},
                                  saml_idps_by_entity={}), "")


def _pages(acs: str, page_policy: str | None = None):
    """The broker's side: a pysaml2 auto-POST page, ours, and one posting where its policy forbids."""
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/pysaml2":
            message = http_form_post_message("PHNhbWw+PC9zYW1sPg==", acs, relay_state="r-1", typ="SAMLResponse")
            start_response("200 OK", message["headers"])
            return [message["data"].encode()]
        if path == "/ours":
            body, headers = csp.autopost_page(acs, {"SAMLResponse": "PHNhbWw+", "RelayState": "r-2"}, lang="en")
            start_response("200 OK", headers)
            return [body]
        if path == "/elsewhere":  # our own auto-POST page, but the policy names another target
            body, headers = csp.autopost_page(acs, {"SAMLResponse": "stolen"})
            headers = [(n, csp.autopost_policy("https://sp.example.fi/acs", pysaml2=False)
                        if n == "Content-Security-Policy" else v) for n, v in headers]
            start_response("200 OK", headers)
            return [body]
        if path == "/disco/search":
            answer = json.dumps(_city_pages().search(parse_qs(environ["QUERY_STRING"])["q"][0], "fi"))
            start_response("200 OK", [("Content-Type", "application/json")])
            return [answer.encode()]
        if path == "/disco":
            pages = _city_pages()
            body = pages.render(tenant_id=None, lang="fi", accept_language=None, remembered=None, csrf="t")
            policy = pages.csp() if page_policy is None else page_policy
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                      ("Content-Security-Policy", policy)])
            return [body.encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no"]
    return app


def test_pysaml2_auto_post_page_submits_to_its_target(serve, page):
    received = []
    acs = serve(_service(received)) + "/acs"
    broker = serve(guard(_pages(acs), autopost_compat=True))
    page.goto(broker + "/pysaml2", wait_until="commit")
    page.wait_for_url(acs)
    assert page.text_content("#done") == "received"
    # pysaml2 base64-encodes the message it is given
    assert received == [{"SAMLResponse": [base64.b64encode(b"PHNhbWw+PC9zYW1sPg==").decode()], "RelayState": ["r-1"]}]
    assert not page.violations, page.violations


def test_our_auto_post_page_submits_without_unsafe_hashes(serve, page):
    received = []
    acs = serve(_service(received)) + "/acs"
    broker = serve(guard(_pages(acs)))
    response = page.goto(broker + "/ours", wait_until="commit")
    assert "'unsafe-hashes'" not in response.headers["content-security-policy"]
    page.wait_for_url(acs)
    assert received == [{"SAMLResponse": ["PHNhbWw+"], "RelayState": ["r-2"]}]
    assert not page.violations, page.violations


def test_a_form_to_a_target_the_policy_does_not_name_is_not_sent(serve, page):
    received = []
    acs = serve(_service(received)) + "/acs"
    broker = serve(guard(_pages(acs)))
    page.goto(broker + "/elsewhere", wait_until="commit")
    page.wait_for_timeout(1500)
    assert received == [] and page.url == broker + "/elsewhere"
    assert any("form-action" in v for v in page.violations), page.violations


def test_a_redirect_after_the_post_is_followed_to_another_origin(serve, page):
    # browsers check redirects after a form submission against form-action: a service's ACS
    # may send the person on to another host (here another port, over http: named explicitly)
    landed = []
    final = serve(lambda environ, start_response: (landed.append(environ["PATH_INFO"]), start_response(
        "200 OK", [("Content-Type", "text/html")]), [b"<p id='f'>app</p>"])[2])

    def acs(environ, start_response):
        start_response("302 Found", [("Location", final + "/app")])
        return [b""]

    target = serve(acs) + "/acs"

    def app(environ, start_response):
        body, headers = csp.autopost_page(target, {"SAMLResponse": "x"}, extra_targets=[final])
        start_response("200 OK", headers)
        return [body]

    page.goto(serve(guard(app)), wait_until="commit")
    page.wait_for_url(final + "/app")
    assert "/app" in landed and not page.violations, page.violations


def test_the_city_search_runs_under_the_page_policy_with_its_hash(serve, page):
    broker = serve(guard(_pages("http://unused.example/acs"), script_hashes=broker_script_hashes()))
    page.goto(broker + "/disco")
    page.fill("#q", "esp")
    page.wait_for_selector('#results[data-query="esp"]')
    assert page.eval_on_selector_all("#result-list [data-tenant]", "els => els.map(e => e.dataset.tenant + ' ' "
                                     "+ e.dataset.kind)") == ["espoo city", "espoo school"]
    assert not page.is_visible("#all"), "the list of every city makes way for the results"
    assert not page.violations, page.violations


def test_without_the_hash_the_script_is_blocked(serve, page):
    no_hash = csp.policy(form_action=None, connect_src=["'self'"])
    broker = serve(guard(_pages("http://unused.example/acs", page_policy=no_hash)))
    page.goto(broker + "/disco")
    page.fill("#q", "esp")
    page.wait_for_timeout(500)
    assert page.is_visible("#all") and not page.is_visible("#results"), "the search must not have run"
    assert any("script-src" in v for v in page.violations), page.violations


def test_without_connect_src_the_script_cannot_reach_the_broker(serve, page):
    no_connect = csp.policy(form_action=None, script_src=broker_script_hashes())
    broker = serve(guard(_pages("http://unused.example/acs", page_policy=no_connect)))
    page.goto(broker + "/disco")
    page.fill("#q", "esp")
    page.wait_for_timeout(700)
    assert not page.is_visible("#results")
    assert any("connect-src" in v or "default-src" in v for v in page.violations), page.violations
