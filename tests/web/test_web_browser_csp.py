"""Issue 11 in a real browser (headless Debian Chromium): the policies the guard sends let the
broker's pages work — pysaml2's auto-POST page and :func:`broker.web.csp.autopost_page` post
to their target, the discovery page's search filter runs — and stop what they should: a page
posting anywhere else, a script the policy does not name."""

from __future__ import annotations

import base64
import html
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


def _pages(acs: str):
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
        if path.startswith("/disco"):
            from broker.discovery import pages

            cities = "".join(f'<a class="choice" id="{c}" data-search="{c}" href="#">{html.escape(c)}</a>'
                             for c in ("vantaa", "espoo", "oulu"))
            body = (f'<!doctype html><title>disco</title><input type="search" id="q"><nav>{cities}</nav>'
                    + f"<script>{pages.FILTER_SCRIPT}</script>")
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
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


def test_the_discovery_filter_runs_under_the_policy_with_its_hash(serve, page):
    broker = serve(guard(_pages("http://unused.example/acs"), script_hashes=broker_script_hashes()))
    page.goto(broker + "/disco")
    page.fill("#q", "esp")
    page.wait_for_function("document.getElementById('vantaa').style.display === 'none'")
    assert page.is_visible("#espoo") and not page.is_visible("#oulu")
    assert not page.violations, page.violations


def test_without_the_hash_the_script_is_blocked(serve, page):
    broker = serve(guard(_pages("http://unused.example/acs")))  # no script hashes
    page.goto(broker + "/disco")
    page.fill("#q", "esp")
    page.wait_for_timeout(500)
    assert page.is_visible("#vantaa"), "the filter must not have run"
    assert any("script-src" in v for v in page.violations), page.violations
