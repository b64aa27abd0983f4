"""Logout under attack, and a city IdP that cannot log out, through the running broker.

Real peers: the hostile OpenID Provider of its own tenant (it has no ``end_session_endpoint``),
the relying party the test plays, and a SAML message forged with a city's real key.
"""

from __future__ import annotations

import lxml.html
import pytest

from . import hostile_op
from .agent import HTML, JSON, Person
from .flows import log_capture
from .test_security_saml_upstream import USER, begin, deliver

HINT = f"{hostile_op.TENANT}/{hostile_op.IDP}"


@pytest.fixture(autouse=True)
def honest(hostile):
    hostile.scenario = "valid"
    yield
    hostile.scenario = "valid"


def _signed_in_at_the_hostile_op(rp, hostile) -> Person:
    person = Person(language="en", accept=HTML)
    authz = rp.authorize(HINT)
    rp.code_from(person.get(authz.url), authz)
    return person


def _csrf(stack, person: Person) -> str:
    page = person.get(f"{stack.broker_url}/logout")
    return lxml.html.fromstring(page.text).xpath("//input[@name='csrf']/@value")[0]


def test_a_city_idp_that_cannot_log_out_is_named_on_the_signed_out_page(stack, rp, hostile):
    person = _signed_in_at_the_hostile_op(rp, hostile)
    done = person.post(f"{stack.broker_url}/logout", {"csrf": _csrf(stack, person)})
    assert done.status_code == 200
    page = lxml.html.fromstring(done.text)
    assert page.xpath("//p[@id='signed-out']")
    note = " ".join(page.xpath("//p[@id='close-browser']//text()"))
    assert "Close the browser" in note and "Hostile – Hostile OP" in note, note


@pytest.mark.parametrize("accept", [HTML, JSON])
def test_a_cross_site_logout_form_signs_nobody_out(stack, rp, hostile, caplog, accept):
    """The broker's /logout POST needs this browser's token; a page elsewhere cannot know it."""
    log_capture(caplog)
    person = _signed_in_at_the_hostile_op(rp, hostile)
    person.http.headers["Accept"] = accept
    someone_else = _csrf(stack, _signed_in_at_the_hostile_op(rp, hostile))   # another browser's valid token
    for data in ({}, {"csrf": "0" * 32}, {"csrf": someone_else}):
        refused = person.post(f"{stack.broker_url}/logout", data)
        assert refused.status_code == 400 and "Traceback" not in refused.text
    person.http.headers["Accept"] = HTML
    authz = rp.authorize(HINT, prompt="none")
    assert rp.code_from(person.get(authz.url), authz), "the session is intact"


def test_end_session_without_a_hint_asks_and_a_forged_hint_proves_nothing(stack, rp, hostile):
    person = _signed_in_at_the_hostile_op(rp, hostile)
    for query in ("", "?client_id=security-rp", "?id_token_hint=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."):
        asked = person.get(f"{stack.broker_url}/end_session{query}")
        assert asked.status_code in (200, 400)
        if asked.status_code == 200:
            assert lxml.html.fromstring(asked.text).xpath("//button[@id='confirm']"), query
    authz = rp.authorize(HINT, prompt="none")
    assert rp.code_from(person.get(authz.url), authz), "still signed in: nothing was ended by a bare request"


def test_an_unsigned_or_foreign_logout_request_from_a_city_is_refused(stack, rp, city_idps, caplog):
    """A city's LogoutRequest must be signed with that city's key: else anyone could sign pupils out."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku")
    rp.code_from(deliver(flow, city_idps("turku").response(flow.request, USER["turku"])), flow.authz)
    from saml2 import BINDING_HTTP_REDIRECT

    idp = city_idps("turku")
    destination = f"{stack.broker_url}/saml2/sp/slo/redirect"
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID

    _, request = idp.server.create_logout_request(
        destination, f"{stack.broker_url}/saml2/sp/metadata",
        name_id=NameID(text="someone", format=NAMEID_FORMAT_PERSISTENT), sign=False)
    unsigned = idp.server.apply_binding(BINDING_HTTP_REDIRECT, str(request), destination, "r", sign=False)
    refused = flow.person.get(dict(unsigned["headers"])["Location"])
    assert refused.status_code == 400 and "not signed" in " ".join(r.getMessage() for r in caplog.records)
    authz = rp.authorize("turku/koulu", prompt="none")
    assert rp.code_from(flow.person.get(authz.url), authz), "the session is intact"
