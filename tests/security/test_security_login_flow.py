"""The login as one flow: an answer is accepted only from the IdP the flow waits for, and the city
page changes a flow only by the person's own POST.

Every test runs against the running broker with real peers: the cities' SAML IdPs (pysaml2
``Server`` with the city's key, :mod:`.saml_forge`), the hostile OpenID Provider of its own
tenant (:mod:`.hostile_op`), and the relying party the test plays.
"""

from __future__ import annotations

import http.client

import lxml.html
import pytest
import requests

from . import hostile_op
from .agent import HTML, JSON, Person
from .flows import assert_not_signed_in, assert_refused, log_capture
from .test_security_saml_upstream import USER, begin, deliver, flow_cookie, private_values, set_flow_cookie

HOSTILE = f"{hostile_op.TENANT}/{hostile_op.IDP}"


@pytest.fixture(autouse=True)
def honest_op(hostile):
    hostile.scenario = "valid"
    yield
    hostile.scenario = "valid"


def csrf_of(stack, person: Person) -> str:
    """The CSRF token of the person's own flow, as the city page shows it to them."""
    page = person.get(f"{stack.broker_url}/disco")
    assert page.status_code == 200, page.text[:300]
    token = lxml.html.fromstring(page.text).xpath("//input[@name='csrf']/@value")
    assert token, "the city page carries the flow's CSRF token"
    return token[0]


def switch_idp(stack, person: Person, idp: str) -> requests.Response:
    """The person opens the city page mid-login and picks another IdP (a legitimate POST)."""
    return person.post(f"{stack.broker_url}/disco/choose", {"idp": idp, "csrf": csrf_of(stack, person)})


# -- defect 1: an answer from an IdP the flow no longer waits for ---------------------------------------


@pytest.mark.parametrize("switch_to", ["espoo/koulu", "vantaa/entra"])
def test_answer_of_the_first_idp_after_choosing_another_is_refused(stack, rp, city_idps, caplog, switch_to):
    """Cross-tenant impersonation: A's genuine answer must not be mapped with B's rules, or at all."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku")
    flow.person.stop_at = (*flow.person.stop_at, stack.entra_url)
    moved = switch_idp(stack, flow.person, switch_to)
    assert moved.is_redirect and "/turku/" not in moved.headers["Location"]
    xml = city_idps("turku").response(flow.request, USER["turku"])
    response = deliver(flow, xml)
    assert_refused(response, flow.person, caplog, status=400, code="invalid_response",
                   message_key="error.invalid_response", detail="RelayState|another IdP|waits for",
                   rp=rp, private=private_values("turku"))
    assert_not_signed_in(flow.person, rp, "turku/koulu")


def test_saml_answer_replayed_with_the_flow_cookie_of_its_own_request_after_a_switch(stack, rp, city_idps,
                                                                                     caplog):
    """Keeping the old flow cookie does not help: a cookie names one IdP, and A's answer then maps as A."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku")
    old = flow_cookie(flow.person)
    switch_idp(stack, flow.person, "espoo/koulu")
    set_flow_cookie(flow.person, old.value, like=old)
    response = deliver(flow, city_idps("turku").response(flow.request, USER["turku"]))
    claims = rp.redeem(rp.code_from(response, flow.authz), flow.authz)
    # The answer was Turku's, checked as Turku's and mapped with Turku's rules: never Espoo's.
    tenant_schools = {s.code for s in stack.app.registry.tenants.by_id["turku"].schools}
    assert {school["code"] for school in claims.get("schools", [])} <= tenant_schools
    assert {role.get("school") for role in claims["role_assignments"]} <= tenant_schools | {None}


def test_oidc_answer_after_switching_to_a_saml_city_is_refused(stack, rp, hostile, city_idps, caplog):
    log_capture(caplog)
    person = Person(stop_at=("https://", stack.saml_url, hostile.issuer))
    authz = rp.authorize(HOSTILE)
    at_op = person.get(authz.url)
    assert at_op.is_redirect and at_op.headers["Location"].startswith(hostile.issuer + "/authorize")
    switch_idp(stack, person, "turku/koulu")
    # The OP answers the request the broker sent it before the switch.
    answer = requests.get(at_op.headers["Location"], allow_redirects=False, timeout=5)
    callback = answer.headers["Location"]
    assert callback.startswith(stack.broker_url) and "code=" in callback
    response = person.get(callback)
    assert_refused(response, person, caplog, status=400, code="invalid_response",
                   message_key="error.invalid_response", detail="another IdP|waits for", rp=rp)
    assert hostile.token_requests == [] or all(r.get("code") not in callback for r in hostile.token_requests), \
        "the broker redeemed a code for a flow that no longer waits for its IdP"
    assert_not_signed_in(person, rp, HOSTILE)


def test_saml_answer_after_switching_to_an_oidc_city_is_refused(stack, rp, hostile, city_idps, caplog):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "espoo")
    flow.person.stop_at = (*flow.person.stop_at, hostile.issuer)
    switch_idp(stack, flow.person, HOSTILE)
    response = deliver(flow, city_idps("espoo").response(flow.request, USER["espoo"]))
    assert_refused(response, flow.person, caplog, status=400, code="invalid_response",
                   message_key="error.invalid_response", detail="another IdP|waits for|no upstream", rp=rp,
                   private=private_values("espoo"))


# -- defect 9: the city page writes nothing, and only the person's own POST chooses ---------------------


def _store_size(stack) -> int:
    return len(stack.app.store._data)


def test_choosing_by_get_or_without_the_flow_csrf_token_changes_nothing(stack, rp, city_idps, caplog):
    log_capture(caplog)
    person = Person(stop_at=("https://", stack.saml_url))
    authz = rp.authorize()
    page = person.get(authz.url)
    assert "/disco" in page.url and page.status_code == 200
    before = flow_cookie(person).value
    # A cross-site link: GET does not choose.
    link = person.http.get(f"{stack.broker_url}/disco/choose?idp=turku/koulu", allow_redirects=False, timeout=5)
    assert link.is_redirect and link.headers["Location"].startswith(f"{stack.broker_url}/disco")
    # A cross-site form: it cannot know the flow's token.
    for data in ({"idp": "turku/koulu"}, {"idp": "turku/koulu", "csrf": "guess"},
                 {"idp": "turku/koulu", "csrf": before[:24]}):
        response = person.post(f"{stack.broker_url}/disco/choose", data)
        assert_refused(response, person, caplog, status=403, code="invalid_request",
                       message_key="error.expired_flow", detail="CSRF")
    assert flow_cookie(person).value == before, "a refused choice changed the flow"
    # The person's own choice works.
    chosen = person.post(f"{stack.broker_url}/disco/choose", {"idp": "turku/koulu", "csrf": csrf_of(stack, person)})
    assert chosen.is_redirect and chosen.headers["Location"].startswith(f"{stack.saml_url}/turku/sso/redirect")


def test_replaying_a_flow_cookie_at_the_city_page_writes_nothing_to_the_store(stack, rp):
    person = Person(stop_at=("https://", stack.saml_url))
    person.get(rp.authorize().url)
    token = csrf_of(stack, person)
    before = _store_size(stack)
    for _ in range(40):
        assert person.http.get(f"{stack.broker_url}/disco", timeout=5).status_code == 200
        response = person.http.post(f"{stack.broker_url}/disco/choose", data={"idp": "turku/koulu", "csrf": token},
                                    allow_redirects=False, timeout=5)
        assert response.is_redirect
    assert _store_size(stack) == before, "choosing an IdP wrote to the store"


def test_the_previous_city_is_offered_never_applied(stack, rp, city_idps):
    """On a shared computer the next pupil sees the city page; the last choice is a button, not a redirect."""
    flow = begin(stack, rp, city_idps, "turku")
    response = deliver(flow, city_idps("turku").response(flow.request, USER["turku"]))
    rp.code_from(response, flow.authz)
    # The broker session is gone (signed out, or expired); the remembered city stays.
    for cookie in list(flow.person.http.cookies):
        if cookie.name == "digione_sso":
            flow.person.http.cookies.clear(cookie.domain, cookie.path, cookie.name)
    page = flow.person.get(rp.authorize().url)
    assert "/disco" in page.url and page.status_code == 200, "the remembered city was applied silently"
    doc = lxml.html.fromstring(page.text)
    assert doc.xpath("//section[@id='remembered']//button[@name='idp']/@value") == ["turku/koulu"]


# -- defect 11: what pages carry ------------------------------------------------------------------------


def test_the_city_page_has_a_csp_and_is_not_cached(stack, rp):
    person = Person(stop_at=("https://", stack.saml_url))
    page = person.get(rp.authorize().url)
    assert page.headers["Cache-Control"] == "no-store"
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    scripts = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in scripts and "'sha256-" in scripts, "scripts run by hash only"


@pytest.mark.parametrize("accept", [HTML, JSON])
def test_front_page_and_dotted_paths_are_answered_not_crashed(stack, accept):
    front = requests.get(f"{stack.broker_url}/", headers={"Accept": accept}, timeout=5)
    assert front.status_code == 200 and "Traceback" not in front.text
    port = int(stack.broker_url.rsplit(":", 1)[1])
    for path in ("/../etc/passwd", "/disco/../token", "/%2e%2e/jwks", "//token"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # sends the path unnormalised
        connection.request("GET", path, headers={"Accept": accept})
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        assert response.status in (400, 404, 405) and "Traceback" not in body, (path, response.status)
