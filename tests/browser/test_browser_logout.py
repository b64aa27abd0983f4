"""A shared classroom computer, in headless Chromium: signed out means signed out.

Sign in at demo service A, reach service B by single sign-on, "Sign out everywhere" at A:
the broker tells B (front-channel, in an iframe of its page) and the city's IdP, and takes the
person back to A.  Then B shows signed out, and "Sign in" at B shows the city page — the
next pupil is never signed in as the previous one.  And a pupil who cancels at the city's IdP
is returned to the service, which hears ``access_denied``; the language chosen on the city
page carries on to the IdP's form.
"""

from __future__ import annotations

import pytest

from .test_browser_login import fill_login_form, start_at_service

pytestmark = pytest.mark.browser


def test_sign_out_everywhere_at_a_signs_b_out_and_the_next_pupil_sees_the_city_page(stack, open_session):
    session = open_session("fi-FI")
    page = session.page
    service_a, service_b = stack.service_urls
    start_at_service(stack, page)
    page.click("#cities [data-tenant=tampere]")
    fill_login_form(stack, page, "pupil.tampere")
    page.wait_for_url(service_a + "/")
    assert page.locator("#who").is_visible()

    page.click("#other-service")
    page.wait_for_url(service_b + "/**")
    if page.locator("#sign-in").count():
        page.click("#sign-in")
        page.wait_for_url(service_b + "/")
    assert page.locator("#who").is_visible(), "service B signed in by SSO"

    # Back at A: sign out everywhere.  The broker's page frames B's front-channel logout, then returns.
    page.goto(service_a + "/")
    page.click("#sign-out-everywhere")
    page.wait_for_url(service_a + "/**", timeout=20_000)
    page.wait_for_selector("#status")
    assert not page.locator("#who").count(), "A is signed out"
    visited = session.requested
    assert any("/tampere/slo/redirect" in url for url in visited), "the city's IdP was told"
    assert any(url.startswith(service_b + "/frontchannel-logout") for url in visited), "B was told"

    # B: signed out; and "Sign in" at B shows the city page, never the previous pupil.
    page.goto(service_b + "/")
    assert page.locator("#status").is_visible() and not page.locator("#who").count()
    page.click("#sign-in")
    page.wait_for_url(f"{stack.broker_url}/disco**")
    remembered = page.locator("#remembered button[name=idp]")
    assert remembered.count() == 1 and remembered.get_attribute("value") == "tampere/koulu", \
        "the previous city is offered, not applied"
    assert not session.refused


def test_cancel_at_the_idp_returns_to_the_service_in_the_language_chosen(stack, open_session):
    session = open_session("fi-FI")
    page = session.page
    start_at_service(stack, page)
    page.click("nav.lang a[lang=sv]")                           # the pupil switches to Swedish on the city page
    page.wait_for_url(f"{stack.broker_url}/disco?**lang=sv**")
    assert page.get_attribute("html", "lang") == "sv"
    page.click("#cities [data-tenant=turku]")
    page.wait_for_selector("#username")
    assert page.get_attribute("html", "lang") == "sv", "the language travels to the city's IdP"
    page.click("#cancel")
    service_a = stack.service_urls[0]
    page.wait_for_url(lambda url: url.startswith(service_a) and "error=access_denied" in url)
    assert "state=" in page.url
    # A broker page on the way now is in Swedish too, with its language switch.
    page.goto(f"{stack.broker_url}/disco/choose")
    page.wait_for_selector("#correlation-id")
    assert page.get_attribute("html", "lang") == "sv"
    assert page.locator("nav.lang a[lang=fi]").count() == 1
