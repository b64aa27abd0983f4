"""The console's defences: sessions and their cookie, CSRF on every form, sign-in by the broker's OIDC
(state, nonce, PKCE; the client the console registers for itself), refused tokens, another city's
objects, and bad input that never becomes a 5xx.
"""

from __future__ import annotations

import io
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from admin_env import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.admin.console import oidc
from broker.admin.console import session as console_session


def post_routes(site):
    """Every POST route of the console, with its path filled in."""
    app = site.app.admin
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin_console.") and "POST" in (rule.methods or ()):
            path = rule.rule.replace("<tenant_id>", "vantaa").replace("<idp_id>", "koulu")
            path = path.replace("<int:version_id>", "1")
            out.append(path)
    return sorted(out)


# -- sessions -----------------------------------------------------------------------------------------

def test_session_cookie_is_httponly_samesite_lax_and_random(browser, tokens):
    person = browser()
    person.get("/admin/signin")
    response = person.post("/admin/signin/token", {"token": tokens["vantaa_admin"]})
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("digione_admin="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie
    assert "Max-Age" not in cookie, "a browser-session cookie"
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value) >= 43 and tokens["vantaa_admin"] not in cookie


def test_on_https_the_cookies_are_secure_with_the_host_prefix():
    session_name, pre_name = console_session.cookie_names(secure=True)
    assert session_name == "__Host-digione_admin" and pre_name == "__Host-digione_admin_pre"
    header = console_session.cookie_header(session_name, "x", secure=True)
    assert "Secure" in header and "Path=/;" in header and "SameSite=Lax" in header and "HttpOnly" in header


def test_the_store_never_holds_the_token_in_clear(site, browser, tokens):
    person = browser(tokens["vantaa_admin"])
    assert person.get("/admin/").status_code == 200
    dumped = repr(site.app.store._data)
    assert tokens["vantaa_admin"] not in dumped


def test_an_idle_session_ends_and_a_busy_one_lives(browser, tokens, monkeypatch):
    person = browser(tokens["vantaa_admin"])
    start = time.time()
    for minutes in (5, 10, 14):   # each request restarts the idle clock
        monkeypatch.setattr(console_session, "clock", lambda m=minutes: start + m * 60)
        assert person.get("/admin/tenants/vantaa").status_code == 200
    monkeypatch.setattr(console_session, "clock", lambda: start + 14 * 60 + console_session.IDLE_TIMEOUT + 1)
    response = person.get("/admin/tenants/vantaa")
    assert response.status_code == 303 and "ended=1" in response.headers["Location"]
    assert any(c.startswith("digione_admin=;") for c in response.headers.getlist("Set-Cookie"))


def test_a_session_ends_after_its_maximum_lifetime_even_when_busy(browser, tokens, monkeypatch):
    person = browser(tokens["vantaa_admin"])
    start = time.time()
    step = console_session.IDLE_TIMEOUT - 60
    elapsed = 0
    while elapsed + step < console_session.MAX_LIFETIME:
        elapsed += step
        monkeypatch.setattr(console_session, "clock", lambda e=elapsed: start + e)
        assert person.get("/admin/").status_code == 200
    monkeypatch.setattr(console_session, "clock", lambda: start + console_session.MAX_LIFETIME + 1)
    assert person.get("/admin/").status_code == 303


def test_sign_out_ends_the_session_for_good(browser, tokens):
    person = browser(tokens["vantaa_admin"])
    cookie = person.client.get_cookie("digione_admin", path="/admin").value
    response = person.post("/admin/signout")
    assert response.status_code == 303 and "signed_out=1" in response.headers["Location"]
    assert person.get("/admin/").status_code == 303
    replay = browser()
    replay.client.set_cookie("digione_admin", cookie, path="/admin")
    assert replay.get("/admin/").status_code == 303, "the old cookie still opens the session"


def test_a_revoked_token_ends_its_open_session(browser, site):
    import datetime

    from broker.admin.operations import AdminOperations
    from broker.admin.principals import grants_from_json

    ops = AdminOperations(site.app)
    token, info = ops.tokens.create(grants_from_json([{"role": "city_admin", "tenant": "vantaa"}]),
                                    lifetime=datetime.timedelta(hours=1), by="cli:test", note="short")
    person = browser(token)
    assert person.get("/admin/tenants/vantaa").status_code == 200
    ops.tokens.revoke(info.id, by="cli:test")
    assert person.get("/admin/tenants/vantaa").status_code == 303


@pytest.mark.parametrize("token", ["", "x", "dgadm_" + "A" * 43, "dgadm_" + "A" * 600, "\u0000\u202e"])
def test_unknown_tokens_are_refused_in_words(browser, token):
    person = browser(lang="fi")
    person.get("/admin/signin")
    response = person.post("/admin/signin/token", {"token": token})
    html = response.get_data(as_text=True)
    assert response.status_code in (400, 401)
    assert 'id="token-error"' in html and 'aria-invalid="true"' in html
    assert not any(c.startswith("digione_admin=") for c in response.headers.getlist("Set-Cookie"))


# -- CSRF ---------------------------------------------------------------------------------------------

def test_every_form_needs_the_sessions_csrf_token(site, browser, tokens):
    routes = post_routes(site)
    assert len(routes) >= 14, routes
    person = browser(tokens["platform"])
    before = snapshot(site.app)
    for path in routes:
        if path in ("/admin/signin/token",):
            continue
        for csrf in (None, "", "forged"):
            data = {} if csrf is None else {"csrf": csrf}
            response = person.post(path, data, csrf=False)
            assert response.status_code == 403, (path, csrf, response.status_code)
            assert "correlation-id" in response.get_data(as_text=True)
    assert snapshot(site.app) == before
    assert person.get("/admin/").status_code == 200, "a refused form does not end the session"


def test_the_token_form_needs_the_pre_session_token(browser, tokens):
    person = browser()
    person.get("/admin/signin")
    response = person.post("/admin/signin/token", {"token": tokens["vantaa_admin"], "csrf": "forged"}, csrf=False)
    assert response.status_code == 403
    stranger = browser()    # never saw the form: no pre-session cookie
    response = stranger.post("/admin/signin/token", {"token": tokens["vantaa_admin"]}, csrf=False)
    assert response.status_code == 403


# -- another city's objects -----------------------------------------------------------------------------

def test_another_citys_pages_and_forms_are_not_found_and_nothing_changes(site, browser, tokens):
    person = browser(tokens["vantaa_admin"])
    before = snapshot(site.app)
    for path in ("/admin/tenants/espoo", "/admin/tenants/espoo/services", "/admin/tenants/espoo/new-idp/saml",
                 "/admin/tenants/espoo/new-idp/oidc", "/admin/tenants/espoo/idps/koulu/saml",
                 "/admin/tenants/espoo/idps/koulu/mapping", "/admin/versions?tenant=espoo"):
        response = person.get(path)
        assert response.status_code in (404, 200), path
        if response.status_code == 200:
            assert "espoo" not in re.sub(r"<nav.*?</nav>|<title>.*?</title>|<h1>.*?</h1>", "",
                                         response.get_data(as_text=True), flags=re.S).split("<main", 1)[1], path
    for path in ("/admin/tenants/espoo/services", "/admin/tenants/espoo/new-idp/saml",
                 "/admin/tenants/espoo/new-idp/oidc", "/admin/tenants/espoo/idps/koulu/mapping"):
        response = person.post(path, {"mode-city": "all", "idp_id": "x", "names_fi": "a", "names_sv": "b",
                                      "names_en": "c", "issuer": "https://x.example", "client_id": "c",
                                      "client_secret": "s", "mapping": "preset: entra", "action": "save",
                                      "source": "upload",
                                      "metadata_file": (io.BytesIO(b"<x/>"), "m.xml")},
                               content_type="multipart/form-data")
        assert response.status_code == 404, path
    response = person.post("/admin/versions/1/rollback", {"tenant_id": "espoo", "to_version": "1"})
    assert response.status_code == 404
    assert snapshot(site.app) == before


# -- sign-in through the broker ---------------------------------------------------------------------------

def test_sign_in_starts_a_code_flow_with_pkce_state_and_nonce(site, browser):
    person = browser()
    response = person.get("/admin/signin/start?next=/admin/versions")
    assert response.status_code == 303
    target = urlsplit(response.headers["Location"])
    assert f"{target.scheme}://{target.netloc}" == site.app.settings.base_url and target.path == "/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["client_id"] == "digione-admin" and query["response_type"] == "code"
    assert query["redirect_uri"] == site.app.settings.base_url + "/admin/callback"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    # The console's client is registered as a version, confidential, with the derived secret.
    client = site.app.registry.parties.client("digione-admin")
    assert client is not None and not client.public
    assert client.check_secret(oidc.client_secret(site.app.settings))
    assert client.redirect_uris == (site.app.settings.base_url + "/admin/callback",)
    # Once registered, starting again adds no version.
    head = site.app.registry_service.versions.head()
    person.get("/admin/signin/start")
    assert site.app.registry_service.versions.head() == head


def test_a_callback_with_an_unknown_state_or_an_error_is_a_page(browser):
    person = browser(lang="sv")
    person.get("/admin/signin")   # the pre-session cookie
    for query in ("code=abc&state=unknown", "error=access_denied&state=x", "", "code=" + "a" * 5000 + "&state=s"):
        response = person.get("/admin/callback?" + query)
        html = response.get_data(as_text=True)
        assert response.status_code == 400, query
        assert '<html lang="sv">' in html and 'id="correlation-id"' in html
    # State started in one browser, used in another: refused.
    first = browser()
    start = urlsplit(first.get("/admin/signin/start").headers["Location"])
    state = parse_qs(start.query)["state"][0]
    other = browser()
    other.get("/admin/signin")
    assert other.get(f"/admin/callback?code=abc&state={state}").status_code == 400


def test_the_id_token_must_be_the_brokers_for_the_console(site):
    with pytest.raises(oidc.SignInFailed):
        oidc.verify_id_token(site.app, "e30.e30.", nonce="n")   # unsigned
    with pytest.raises(oidc.SignInFailed):
        oidc.verify_id_token(site.app, "not a token", nonce="n")


# -- bad input ------------------------------------------------------------------------------------------

FIELDS = ("idp_id", "names_fi", "names_sv", "names_en", "source", "url", "entity_id", "pin_1", "pin_2", "issuer",
          "client_id", "client_secret", "mapping", "sample", "action", "comment", "mode-city", "tenant_id",
          "to_version", "redirect_uris", "token_endpoint_auth_method", "scope-roles", "reason-openid", "name",
          "profile", "subject_type", "jwks_uri")
text = st.one_of(st.text(max_size=300), st.sampled_from(["", "all", "chosen", "url", "upload", "save", "explain",
                                                         "-1", "99999999999999999999", "<x/>", "{}", "[]",
                                                         "a: &x [1]\nb: *x", "https://localhost:1/", "vantaa"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path_index=st.integers(min_value=0, max_value=100), fields=st.dictionaries(st.sampled_from(FIELDS), text),
       upload=st.one_of(st.none(), st.binary(max_size=2000)))
def test_no_form_input_makes_a_server_error(site, browser, tokens, path_index, fields, upload):
    routes = [r for r in post_routes(site) if r not in ("/admin/signout", "/admin/signin/token")]
    path = routes[path_index % len(routes)]
    person = browser(tokens["vantaa_admin"])
    data = dict(fields)
    if upload is not None:
        data["metadata_file"] = (io.BytesIO(upload), "m.xml")
        data["sample_file"] = (io.BytesIO(upload), "s.json")
    response = person.post(path, data, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code < 500, (path, fields, html[:3000])
    assert "Traceback" not in html


def test_a_citys_allowed_services_never_lock_its_admins_out_of_the_console():
    from types import SimpleNamespace

    from broker.login.access import ServiceGate
    from broker.registry.services import ServiceAccess

    nothing = ServiceAccess(default=frozenset(), codes=frozenset({"90921"}))
    tenants = SimpleNamespace(by_id={"vantaa": SimpleNamespace(allowed_services=nothing)})
    names = SimpleNamespace(service_id=lambda protocol, requester: requester)
    gate = ServiceGate(tenants, names)  # type: ignore[arg-type]
    answer = SimpleNamespace(idp="vantaa/koulu", identity={"schools": [{"code": "90921"}]})
    assert gate.allows(SimpleNamespace(protocol="oidc", requester=oidc.CLIENT_ID), answer)
    assert not gate.allows(SimpleNamespace(protocol="oidc", requester="demo-service-a"), answer)
