"""A city's choice of services cannot be widened by what an answer claims, nor outlived by its flow.

The package's stack, with Lahti's tenant file given a choice for this module (and restored
after): Lahti allows every service, except that its school 93981 (where the demo pupil is)
allows only ``security-rp``.  Answers are built and signed by Lahti's own IdP configuration and
key (``saml_forge.CityIdp``), so what the broker checks is a genuine Lahti assertion that says
exactly what the test wants it to say.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest

from broker.demo import mpassid
from broker.i18n import MESSAGES

from . import saml_forge as forge
from .agent import HTML, Person
from .conftest import register_rp
from .flows import RelyingParty

CHOICE = {"default": "all", "schools": {"93981": ["security-rp"]}}


@pytest.fixture(scope="module")
def gated(stack, rp) -> RelyingParty:
    """``gated-rp``: a service Lahti's school 93981 has not enabled (Lahti's choice is rolled back afterwards)."""
    registry = stack.app.registry_service
    original = registry.versions.state().documents[("tenant", "lahti")]
    registry.propose({("tenant", "lahti"): {**original, "allowed_services": CHOICE}}, by="test",
                     comment="Lahti chooses its services")
    try:
        gated_rp = register_rp(stack, "gated-rp")   # rebuilds: the new choice applies from here on
        assert not stack.app.registry.tenants.by_id["lahti"].allowed_services.allows_all
        yield gated_rp
    finally:
        registry.propose({("tenant", "lahti"): original}, by="test", comment="Lahti's choice undone")
        stack.app.rebuild()


def _begin(stack, rp: RelyingParty, city_idps, person: Person):
    authz = rp.authorize("lahti/koulu")
    response = person.get(authz.url)
    assert response.is_redirect, f"{response.status_code} {response.text[:300]}"
    return authz, city_idps("lahti").parse_request(response.headers["Location"])


def _deliver(person: Person, request, xml: str):
    return person.post(request.acs, {"SAMLResponse": forge.encode(xml), "RelayState": request.relay_state})


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _refused_page(response, rp: RelyingParty, authz) -> None:
    assert response.status_code == 403 and not response.is_redirect, response.status_code
    assert MESSAGES["access.title"]["fi"] in response.text
    (link,) = lxml.html.fromstring(response.text).xpath('//a[@id="continue"]')
    href = link.get("href")
    assert href.startswith(rp.redirect_uri + "?")
    query = _query(href)
    assert query["error"] == ["access_denied"] and query["state"] == [authz.state] and "code" not in query


def _person(stack) -> Person:
    return Person(stop_at=("https://", stack.saml_url), language="fi", accept=HTML)


def test_a_school_the_city_does_not_have_does_not_widen_access(stack, rp, gated, city_idps):
    """Lahti's IdP places the pupil in a Turku school and in a code Lahti does not list: the mapping
    keeps only Lahti's schools, and only Lahti's choice applies."""
    def more_schools(identity: dict) -> dict:
        name = mpassid.FRIENDLY_NAMES[mpassid.SCHOOL_INFO]
        identity[name] = [*identity[name], "98532;Runosmäen demokoulu", "93989;Keksitty koulu"]
        return identity

    person = _person(stack)
    authz, request = _begin(stack, gated, city_idps, person)
    xml = city_idps("lahti").response(request, "pupil.lahti", attributes=more_schools)
    _refused_page(_deliver(person, request, xml), gated, authz)


def test_the_refused_flow_is_over_and_its_answer_gets_nothing_more(stack, rp, gated, city_idps):
    person = _person(stack)
    authz, request = _begin(stack, gated, city_idps, person)
    xml = city_idps("lahti").response(request, "pupil.lahti")
    _refused_page(_deliver(person, request, xml), gated, authz)
    again = _deliver(person, request, xml)
    assert not again.is_redirect and again.status_code >= 400, "the same answer posted again is refused"
    assert "code=" not in again.headers.get("Location", "") and 'id="continue"' not in again.text
    # The person did sign in: the service the school allows is answered silently, the other is not.
    silent = gated.authorize("lahti/koulu", prompt="none")
    query = _query(person.get(silent.url).headers["Location"])
    assert query["error"] == ["access_denied"] and "code" not in query
    allowed = rp.authorize("lahti/koulu", prompt="none")
    assert rp.code_from(person.get(allowed.url), allowed)


def test_a_genuine_answer_for_a_school_that_allows_the_service_signs_in(stack, rp, gated, city_idps):
    """The control: the teacher is also in 93982, which follows the default (every service)."""
    person = _person(stack)
    authz, request = _begin(stack, gated, city_idps, person)
    xml = city_idps("lahti").response(request, "teacher.lahti")
    claims = gated.redeem(gated.code_from(_deliver(person, request, xml), authz), authz)
    assert claims["sub"]
