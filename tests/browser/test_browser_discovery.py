"""The city search in headless Chromium, as a pupil on a phone uses it: diacritics or none, a
school's name, a typo, no matches and the way to help, without JavaScript too; and every state
of the page at axe-core 0 violations on a phone viewport, in Finnish, Swedish and English."""

from __future__ import annotations

from typing import Any

import pytest

from .test_browser_login import fill_login_form, horizontal_overflow, search, start_at_service

pytestmark = pytest.mark.browser


def axe_source() -> str:
    try:
        from importlib.resources import files

        return (files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")
    except (ImportError, ModuleNotFoundError, FileNotFoundError):
        pytest.skip("axe-core is not installed: pip install axe-playwright-python (the test extras have it)")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is (evaluated through the DevTools protocol: the
    page's CSP allows no script but its own)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source())
    return page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")["violations"]


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']} at " + ", ".join(str(n["target"]) for n in v["nodes"][:5])
                     for v in violations)


def csp_violations(page: Any) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text) if "Content Security Policy" in m.text else None)
    return messages


def result_texts(page: Any) -> list[str]:
    return page.eval_on_selector_all("#result-list .choice", "els => els.map(e => e.innerText.replace(/\\s+/g, ' '))")


def test_diacritics_typos_and_a_school_name_on_a_phone(stack, open_session, tmp_path):
    session = open_session("fi-FI", phone=True)
    page = session.page
    violations = csp_violations(page)
    start_at_service(stack, page)

    for typed in ("jyvaskyla", "JYVÄSKYLÄ", "Jyväs", "jyvskyla"):           # none, all, part, a typo
        assert search(page, typed)[:1] == ["jyvaskyla"], typed
        assert page.inner_text("#result-list li:first-child .name") == "Jyväskylä"
    assert search(page, "jyvas") and page.inner_text("#result-list li:first-child mark") == "Jyväs"

    assert search(page, "Tikkurilan koulu") == ["vantaa"]
    assert result_texts(page) == ["Tikkurilan demokoulu — Vantaa Koulu"]
    assert page.eval_on_selector_all("#result-list mark", "els => els.map(e => e.textContent)") == [
        "Tikkurilan", "koulu"]
    assert page.inner_text("#status") == "1 osuma"
    assert horizontal_overflow(page) <= 0
    page.screenshot(path=tmp_path / "search-school-phone.png", full_page=True)
    assert search(page, "90921") == ["vantaa"], "the school code"
    assert search(page, "tikurila") == ["vantaa"], "a letter missing"

    page.click("#result-list [data-tenant=vantaa]")
    page.wait_for_url(f"{stack.broker_url}/disco?**school=90921**")
    assert page.inner_text("#school") == "Koulu: Tikkurilan demokoulu"
    page.click('#methods [data-idp="vantaa/koulu"]')
    fill_login_form(stack, page, "pupil.vantaa")
    page.wait_for_url(stack.service_urls[0] + "/")
    assert "Virtanen" in page.inner_text("#who")
    assert not violations, violations
    assert not session.refused, session.refused


def test_no_matches_says_so_and_leads_to_help(stack, open_session):
    session = open_session("en-GB", phone=True)
    page = session.page
    start_at_service(stack, page)
    assert search(page, "xyzzy") == []
    assert page.inner_text("#status") == "No matches"
    none = page.inner_text("#no-matches")
    assert "No city or school matches “xyzzy”." in none and "ask your teacher" in none
    page.click("#no-matches a")
    page.wait_for_url(f"{stack.broker_url}/help?lang=en")
    assert page.inner_text("h1") == "Instructions and help"
    page.click("text=Back to signing in")
    page.wait_for_url(f"{stack.broker_url}/disco?lang=en")
    assert search(page, "espoo")[:1] == ["espoo"], "the login is still under way"


def test_the_search_works_without_javascript(stack, browser):
    context = browser.new_context(java_script_enabled=False, locale="sv-FI",
                                  extra_http_headers={"Accept-Language": "sv"}, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        start_at_service(stack, page)
        page.fill("#q", "Myrbacka")
        page.click("#search-button")
        page.wait_for_url("**/disco?**q=Myrbacka**")
        assert page.input_value("#q") == "Myrbacka"
        assert page.inner_text("#result-list .choice .name") == "Myrbacka demoskola"
        assert not page.is_visible("#all")
        page.click("#result-list [data-tenant=vantaa]")
        page.wait_for_url("**/disco?**tenant=vantaa**school=90922**")
        assert page.inner_text("#school") == "Skola: Myrbacka demoskola"
    finally:
        context.close()


@pytest.mark.parametrize("lang,locale", [("fi", "fi-FI"), ("sv", "sv-FI"), ("en", "en-GB")])
def test_every_state_of_the_pages_has_no_axe_violations_on_a_phone(stack, open_session, lang, locale, tmp_path):
    session = open_session(locale, phone=True)
    page = session.page
    start_at_service(stack, page)
    checked: dict[str, list[dict[str, Any]]] = {}

    def check(name: str) -> None:
        assert horizontal_overflow(page) <= 0, f"{name} scrolls sideways on a phone"
        checked[name] = axe_violations(page)
        page.screenshot(path=tmp_path / f"{name}-{lang}.png", full_page=True)

    check("city-page")
    search(page, "koulu")
    check("results")
    search(page, "xyzzy")
    check("no-matches")
    search(page, "vantaa")
    page.click("#result-list [data-tenant=vantaa]")
    page.wait_for_url("**tenant=vantaa**")
    check("methods")
    for site_page in ("help", "privacy", "accessibility"):
        page.goto(f"{stack.broker_url}/{site_page}?lang={lang}")
        check(site_page)
    failing = {name: describe(v) for name, v in checked.items() if v}
    assert not failing, "\n".join(f"{name}:\n{text}" for name, text in failing.items())
