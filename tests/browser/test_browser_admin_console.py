"""The admin console in headless Chromium, keyboard-and-mouse as a city admin uses it.

* The flow of issue 10: a Lahti city admin signs in through the broker itself (the console's
  own OIDC client), registers a second SAML IdP for the city by uploading its metadata file,
  runs a test login through the staged version's test link (only that browser sees it),
  activates it, a pupil signs in through it for real, and the admin rolls it back.
* Refusals: a form with a wrong CSRF token, a session left idle, another city's pages and
  actions, and API-token sign-in with a revoked or expired token.
* Accessibility: axe-core (bundled by the ``axe-playwright-python`` package, read from its
  installed files; the browser fetches nothing) finds 0 violations on every console page,
  in Finnish, Swedish and English.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from broker.demo import saml_idp
from broker.demo.servers import free_port, serve_in_thread

pytestmark = pytest.mark.browser

LANGUAGES = ("fi", "sv", "en")
LEAKS = ("Traceback", 'File "', "site-packages", ".py\"", "Internal Server Error")


def axe_source() -> str:
    try:
        from importlib.resources import files

        return (files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")
    except (ImportError, ModuleNotFoundError, FileNotFoundError):
        pytest.skip("axe-core is not installed: pip install axe-playwright-python (the test extras have it)")


@dataclasses.dataclass
class ConsoleSite:
    stack: Any
    ops: Any
    idp2_url: str
    metadata_file: Path
    tokens: dict[str, str]

    @property
    def admin(self) -> str:
        return self.stack.broker_url + "/admin"


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory) -> Any:
    """The demo stack with a second demo SAML IdP for Lahti (its own port and keys) and API tokens."""
    from broker.admin.operations import AdminOperations
    from broker.admin.principals import grants_from_json

    root = tmp_path_factory.mktemp("admin-console")
    port = free_port()
    url = f"http://localhost:{port}"
    keys = root / "idp2-keys"
    saml_idp.ensure_idp_keys(keys, cities=("lahti",))
    sp_metadata_url = f"{stack.broker_url}/saml2/sp/metadata"
    handle = serve_in_thread(saml_idp.create_app(base_url=url, cities=["lahti"], key_dir=keys,
                                                 sp_metadata=lambda: requests.get(sp_metadata_url, timeout=5).text),
                             "127.0.0.1", port)
    metadata = root / "lahti-uusi-idp.xml"
    metadata.write_text(saml_idp.metadata_xml(url, "lahti", keys))
    ops = AdminOperations(stack.app)
    tokens = {}
    for name, grants in {"platform": [{"role": "platform_admin"}],
                         "lahti": [{"role": "city_admin", "tenant": "lahti"}],
                         "vantaa": [{"role": "city_admin", "tenant": "vantaa"}],
                         "owner": [{"role": "service_owner", "service": "svc-console"}]}.items():
        tokens[name], _ = ops.tokens.create(grants_from_json(grants), lifetime=datetime.timedelta(hours=2),
                                            by="cli:test", note=f"{name} token")
    yield ConsoleSite(stack, ops, url, metadata, tokens)
    handle.shutdown()


# -- helpers: what an admin does --------------------------------------------------------------------

def sign_in_with_token(site: ConsoleSite, page: Any, token: str, *, lang: str | None = None) -> None:
    page.goto(site.admin + "/signin" + (f"?lang={lang}" if lang else ""))
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")
    page.wait_for_url(site.admin + "/")


def login_at_idp(page: Any, username: str) -> None:
    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.fill("#password", "demo")
    page.click("#login")


def wait_served(site: ConsoleSite, predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(site.stack.app.registry):
            return
        time.sleep(0.1)
    raise AssertionError("the broker did not serve the change in time")


def has_idp(tenant: str, idp: str) -> Any:
    return lambda registry: any(i.id == idp for i in registry.tenants.by_id[tenant].identity_providers)


def assert_no_leak(page: Any) -> None:
    html = page.content()
    for leak in LEAKS:
        assert leak not in html, f"the page shows {leak!r}"


def run_axe(page: Any, source: str) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is (the script is evaluated, not loaded: CSP allows no script)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(source)
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']} at "
                     + ", ".join(str(n["target"]) for n in v["nodes"][:5]) for v in violations)


def sign_in_through_broker(site: ConsoleSite, page: Any, city: str, username: str) -> None:
    """"Sign in" on the console: the broker's city page, the city's IdP, back at the console."""
    page.goto(site.admin + "/")
    page.wait_for_url(site.admin + "/signin**")
    page.click("#signin-oidc")
    page.wait_for_url(f"{site.stack.broker_url}/disco**")
    page.click(f"#cities [data-tenant={city}]")
    login_at_idp(page, username)
    page.wait_for_url(site.admin + "/**")


def service_login_via(site: ConsoleSite, page: Any, city: str, idp: str | None, username: str) -> dict[str, str]:
    """Sign in to demo service A through ``city``'s IdP ``idp`` (``None``: the city has one); the claims."""
    service_a = site.stack.service_urls[0]
    page.goto(service_a + "/")
    page.click("#sign-in")
    page.wait_for_url(f"{site.stack.broker_url}/disco**")
    page.click(f"#cities [data-tenant={city}]")
    if idp is not None:
        page.wait_for_url(f"{site.stack.broker_url}/disco?**tenant={city}**")
        page.click(f'#methods [data-idp="{city}/{idp}"]')
    login_at_idp(page, username)
    page.wait_for_url(service_a + "/")
    released: dict[str, str] = page.eval_on_selector_all(
        "#claims tbody tr[data-source=id_token]",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.claim, r.cells[2].innerText]))")
    return released


# -- the flow: register, test, activate, log in, roll back ------------------------------------------

def test_city_admin_registers_tests_activates_and_rolls_back_an_idp(site, open_session):
    stack = site.stack
    session = open_session("fi-FI")
    admin = session.page

    # Sign in through the broker: the person is known but holds no grant yet, and sees the subject.
    sign_in_through_broker(site, admin, "lahti", "principal.lahti")
    assert admin.locator("#subject").count() == 1, admin.url
    subject = admin.inner_text("#subject")
    from broker.admin.principals import grants_from_json

    site.ops.subjects.assign(subject, grants_from_json([{"role": "city_admin", "tenant": "lahti"}]),
                             by="cli:test", note="Lahden pääkäyttäjä")
    # The callback cannot be used twice (state is single use), nor its code.
    callback = next(url for url in session.requested if url.startswith(site.admin + "/callback?"))
    response = admin.goto(callback)
    assert response.status == 400
    assert "vanheni" in admin.inner_text("main") and admin.locator("#correlation-id").count() == 1
    # Signing in again is single sign-on at the broker: no city page, no IdP form.
    admin.goto(site.admin + "/signin")
    admin.click("#signin-oidc")
    admin.wait_for_url(site.admin + "/")
    from broker.demo.directory import find_user

    person = find_user("lahti", "principal.lahti")
    assert f"{person['given_name']} {person['family_name']}" in admin.inner_text("header"), "the name from the ID token"
    assert admin.locator("[data-tenant=vantaa]").count() == 0, "another city is listed"

    # Register the second IdP by uploading its metadata file.
    admin.click("[data-tenant=lahti]")
    admin.wait_for_url(site.admin + "/tenants/lahti")
    admin.click("#add-saml")
    admin.fill("#idp_id", "uusi")
    admin.fill("#names_fi", "Uudet tunnukset")
    admin.fill("#names_sv", "Nya användarnamn")
    admin.fill("#names_en", "New accounts")
    admin.check("#source-upload")
    admin.set_input_files("#metadata_file", str(site.metadata_file))
    admin.fill("#comment", "uusi tunnistuspalvelu")
    admin.click("#save-saml")
    admin.wait_for_url(site.admin + "/versions/**")
    assert admin.get_attribute("#version-status", "class") == "status staged"
    assert "uusi tunnistuspalvelu" in admin.inner_text("#version-comment")
    assert "+" in admin.inner_text("pre.diff")
    version_url = admin.url.split("?")[0]
    assert not has_idp("lahti", "uusi")(stack.app.registry), "a staged version is not served"

    # The test login: only the browser that opened the test link signs in through the staged IdP.
    if admin.locator("#test-link").count():
        link = admin.get_attribute("#test-link", "href")
        tester = open_session("fi-FI").page
        tester.goto(link)
        claims = service_login_via(site, tester, "lahti", "uusi", "pupil.lahti")
        assert claims["iss"] == stack.broker_url
        bystander = open_session("fi-FI").page
        bystander.goto(stack.service_urls[0] + "/")
        bystander.click("#sign-in")
        bystander.click("#cities [data-tenant=lahti]")
        bystander.wait_for_selector("#username")
        assert urlsplit(bystander.url).netloc == urlsplit(stack.saml_url).netloc, "the live path saw the staged IdP"
    else:
        pytest.fail("the staged version has no test link: " + admin.inner_text("#version-test"))

    # Activate: every browser may now use the new IdP, within seconds.
    admin.click("#activate")
    admin.wait_for_url(version_url + "?done=activated")
    assert admin.get_attribute("#version-status", "class") == "status activated"
    wait_served(site, has_idp("lahti", "uusi"))
    pupil = open_session("fi-FI").page
    claims = service_login_via(site, pupil, "lahti", "uusi", "pupil.lahti")
    assert claims["aud"] == "demo-service-a"
    assert '"school"' in claims["role_assignments"]

    # Roll back: Lahti is as it was before, the new IdP gone from the login.
    admin.goto(version_url)
    admin.click("#undo-lahti")
    admin.wait_for_url("**done=rolled_back")
    assert admin.get_attribute("#version-status", "class") == "status activated"
    wait_served(site, lambda registry: not has_idp("lahti", "uusi")(registry))
    again = open_session("fi-FI").page
    service_login_via(site, again, "lahti", None, "pupil.lahti")
    assert_no_leak(admin)

    # Signing out ends the broker's session too: the next "Sign in" asks for the city again.
    admin.click("header button[type=submit]")
    admin.wait_for_url(site.admin + "/signin?signed_out=1")
    assert admin.locator("main .notice").count() == 1
    admin.click("#signin-oidc")
    admin.wait_for_url(f"{stack.broker_url}/disco**")


# -- refusals ------------------------------------------------------------------------------------

def test_a_form_with_a_wrong_csrf_token_is_refused(site, open_session):
    page = open_session("en-GB").page
    sign_in_with_token(site, page, site.tokens["lahti"])
    page.goto(site.admin + "/tenants/lahti/services")
    before = site.stack.app.registry_service.versions.head()
    page.evaluate("() => document.querySelector('#services-form input[name=csrf]').value = 'forged'")
    page.click("#save-services")
    page.wait_for_selector("#correlation-id")
    assert "did not come from this console" in page.inner_text("#error-message")
    # A cross-site form carries no token at all: refused the same way.
    response = page.request.post(site.admin + "/tenants/lahti/services", form={"mode-city": "all"})
    assert response.status == 403
    assert site.stack.app.registry_service.versions.head() == before
    assert_no_leak(page)


def test_an_idle_session_ends(site, open_session, monkeypatch):
    from broker.admin.console import session as console_session

    page = open_session("sv-FI").page
    sign_in_with_token(site, page, site.tokens["lahti"])
    page.goto(site.admin + "/versions")
    assert page.url.startswith(site.admin + "/versions")
    later = time.time() + console_session.IDLE_TIMEOUT + 5
    monkeypatch.setattr(console_session, "clock", lambda: later)
    page.goto(site.admin + "/tenants/lahti")
    page.wait_for_url(site.admin + "/signin**")
    assert "ended=1" in page.url
    assert page.get_attribute("html", "lang") == "sv"
    assert "Din session avslutades" in page.inner_text("main")


def test_a_city_admin_cannot_see_or_change_another_city(site, open_session):
    page = open_session("en-GB").page
    sign_in_with_token(site, page, site.tokens["lahti"])
    assert page.locator("[data-tenant=vantaa]").count() == 0
    for path in ("/tenants/vantaa", "/tenants/vantaa/services", "/tenants/vantaa/new-idp/saml",
                 "/tenants/vantaa/idps/koulu/saml", "/tenants/vantaa/idps/koulu/mapping", "/tenants/nosuch"):
        response = page.goto(site.admin + path)
        assert response.status == 404, path
        assert page.locator("#correlation-id").count() == 1
    # A version of Vantaa's, staged by Vantaa's admin, is not listed and not found.
    vantaa = site.ops.principal_for_token(site.tokens["vantaa"])
    document = site.ops.tenant(vantaa, "vantaa")["document"]
    staged = site.ops.stage_tenant(vantaa, "vantaa", {**document, "domains": ["vantaa.console.example"]},
                                   "vantaa's own change")["version"]["id"]
    page.goto(site.admin + "/versions")
    assert page.locator(f"[data-version='{staged}']").count() == 0
    csrf = page.get_attribute("input[name=csrf]", "value")
    head = site.stack.app.registry_service.versions.head()
    for path, form in ((f"/versions/{staged}", None), (f"/versions/{staged}/activate", {}),
                       (f"/versions/{staged}/discard", {}), ("/tenants/vantaa/services", {"mode-city": "all"}),
                       (f"/versions/{staged}/rollback", {"tenant_id": "vantaa", "to_version": "1"})):
        if form is None:
            response = page.request.get(site.admin + path)
        else:
            response = page.request.post(site.admin + path, form={"csrf": csrf, **form})
        assert response.status == 404, (path, response.status)
    assert site.stack.app.registry_service.versions.head() == head
    assert site.stack.app.registry_service.versions.version(staged).status == "staged"
    site.ops.discard(vantaa, staged)


def test_token_sign_in_with_a_revoked_or_expired_token_is_refused(site, open_session):
    import sqlalchemy as sa

    from broker.admin.principals import grants_from_json
    from broker.registry import database as db

    ops = site.ops
    grants = grants_from_json([{"role": "city_admin", "tenant": "lahti"}])
    revoked, info = ops.tokens.create(grants, lifetime=datetime.timedelta(hours=1), by="cli:test", note="revoked")
    ops.tokens.revoke(info.id, by="cli:test")
    expired, info = ops.tokens.create(grants, lifetime=datetime.timedelta(hours=1), by="cli:test", note="expired")
    with ops.tokens.engine.begin() as conn:
        conn.execute(sa.update(db.admin_tokens).where(db.admin_tokens.c.id == info.id)
                     .values(expires_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)))
    page = open_session("en-GB").page
    for token in (revoked, expired, "dgadm_" + "x" * 43, "not a token"):
        page.goto(site.admin + "/signin")
        page.fill("#token", token)
        page.click("#token-form button[type=submit]")
        page.wait_for_selector("#token-error")
        assert "not accepted" in page.inner_text("#token-error")
        assert page.get_attribute("#token", "aria-invalid") == "true"
        page.goto(site.admin + "/")
        assert "/admin/signin" in page.url, "a refused token opened a session"

    # A token revoked while its session is open ends the session at the next click.
    live, info = ops.tokens.create(grants, lifetime=datetime.timedelta(hours=1), by="cli:test", note="live")
    sign_in_with_token(site, page, live)
    ops.tokens.revoke(info.id, by="cli:test")
    page.goto(site.admin + "/tenants/lahti")
    page.wait_for_url(site.admin + "/signin**")


# -- accessibility: every page, three languages -----------------------------------------------------

@pytest.fixture(scope="module")
def pages(site) -> dict[str, str]:
    """Console paths worth checking (a staged version, an activated one, a pending registration)."""
    from broker.admin.principals import grants_from_json

    ops = site.ops
    platform = ops.principal_for_token(site.tokens["platform"])
    lahti = ops.principal_for_token(site.tokens["lahti"])
    document = ops.tenant(lahti, "lahti")["document"]
    staged = ops.stage_tenant(lahti, "lahti", {**document, "domains": ["lahti.console.example"]},
                              "a staged change for the accessibility check")["version"]["id"]
    owner_token, _ = ops.tokens.create(grants_from_json([{"role": "service_owner", "service": "svc-axe"}]),
                                       lifetime=datetime.timedelta(hours=1), by="cli:test", note="owner")
    owner = ops.principal_for_token(owner_token)
    pending = ops.register_client(owner, {"client_id": "svc-axe", "redirect_uris": ["https://svc.example/cb"],
                                          "policy": {"scopes": ["openid", "roles"]},
                                          "reasons": {"openid": "sign-in", "roles": "pupil or teacher"}})
    activated = max(v["id"] for v in ops.versions(platform, limit=50) if v["status"] == "activated")
    return {
        "home": "/", "tenant": "/tenants/lahti", "services table": "/tenants/lahti/services",
        "new saml": "/tenants/lahti/new-idp/saml", "change saml": "/tenants/lahti/idps/koulu/saml",
        "new oidc": "/tenants/lahti/new-idp/oidc", "change oidc": "/tenants/vantaa/idps/entra/oidc",
        "mapping": "/tenants/lahti/idps/koulu/mapping", "versions": "/versions",
        "staged version": f"/versions/{staged}", "activated version": f"/versions/{activated}",
        "pending version": f"/versions/{pending['version']['id']}", "approvals": "/approvals",
        "services": "/services", "service": "/services/demo-service-a", "new client": "/services/clients/new",
        "new sp": "/services/sps/new", "not found": "/tenants/nosuch",
    }


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_console_page_has_no_axe_violations(site, open_session, pages, lang):
    source = axe_source()
    locale = {"fi": "fi-FI", "sv": "sv-FI", "en": "en-GB"}[lang]
    page = open_session(locale).page
    found: dict[str, str] = {}

    def check(name: str) -> None:
        assert page.get_attribute("html", "lang") == lang, name
        assert page.locator("a.skip[href='#main']").count() == 1, name
        assert page.locator("main#main").count() == 1, name
        assert_no_leak(page)
        violations = run_axe(page, source)
        if violations:
            found[name] = describe(violations)

    page.goto(site.admin + f"/signin?lang={lang}")
    check("sign-in")
    page.fill("#token", "wrong")
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#token-error")
    check("sign-in with an error")
    sign_in_with_token(site, page, site.tokens["platform"])
    for name, path in pages.items():
        page.goto(site.admin + path)
        check(name)
    # Forms shown again with problems: the error summary links each one to its field.
    page.goto(site.admin + "/tenants/lahti/new-idp/saml")
    page.click("#save-saml")
    page.wait_for_selector("#error-summary")
    assert page.locator("#error-summary a[href='#idp_id']").count() == 1
    check("saml form with errors")
    page.goto(site.admin + "/tenants/lahti/idps/koulu/mapping")
    page.fill("#sample", '{"sub": "abc", "roles": ["learner"]}')
    page.click("#explain")
    page.wait_for_selector("#explained")
    check("mapping explained")
    page.goto(site.admin + "/services/clients/new")
    page.fill("#client_id", "svc-axe")
    page.click("#register-client")
    page.wait_for_selector("#error-summary")
    check("client form with errors")
    # The signed-out page of a person who signed in through the broker (it moves on to the broker's
    # logout at once; held here so that it can be checked).
    from broker.admin.principals import grants_from_json

    site.ops.subjects.assign("axe-subject", grants_from_json([{"role": "platform_admin"}]), by="cli:test")
    sessions = site.stack.app.admin.extensions["digione_console"].sessions
    person = sessions.create(method="oidc", subject="axe-subject", name="Axe")
    page.context.clear_cookies()
    page.context.add_cookies([{"name": "digione_admin", "value": person.sid, "url": site.admin + "/"}])
    page.route("**/end_session**", lambda route: route.fulfill(status=204))
    page.goto(site.admin + "/")
    assert "Axe" in page.inner_text("header")
    page.click("header button[type=submit]")
    page.wait_for_selector("#end-session")
    check("signed out")
    assert not found, "\n\n".join(f"{name}:\n{text}" for name, text in found.items())


def test_the_console_is_usable_with_the_keyboard_alone(site, open_session):
    page = open_session("en-GB").page
    page.goto(site.admin + "/signin")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    # To the token field and on to the button by Tab alone, then Enter submits.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "token":
            break
    else:
        pytest.fail("the token field cannot be reached with Tab")
    page.keyboard.type(site.tokens["lahti"])
    page.keyboard.press("Enter")
    page.wait_for_url(site.admin + "/")
    focus = page.evaluate("""() => { const a = document.querySelector('[data-tenant=lahti]'); a.focus();
        const s = getComputedStyle(a); return s.outlineStyle + ' ' + s.outlineWidth; }""")
    assert "none" not in focus and not focus.endswith(" 0px"), f"no visible focus: {focus}"
    page.keyboard.press("Enter")
    page.wait_for_url(site.admin + "/tenants/lahti")
