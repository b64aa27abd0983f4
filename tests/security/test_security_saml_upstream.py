"""Every check on a SAML response from a city IdP, through the running broker.

Each test starts a real login at the broker (an OIDC relying party, a hint naming
the city's SAML IdP), takes the broker's real AuthnRequest, and answers it with a
response built by the city's own pysaml2 ``Server`` (the demo IdP configuration and
its signing key), altered in one way.  The altered response is posted to the
broker's ACS from the person's browser.  Every refusal is then checked for what a
person or a machine sees (``flows.assert_refused``) and for its effect: no code
reached the relying party, and the browser holds no broker session.

Turku's IdP signs the Response and the Assertion; Espoo's (ADFS-like) signs only the
Assertion, which is where wrapping and issuer confusion bite.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from saml2 import samlp

from broker.demo import mpassid
from broker.demo.directory import find_user
from broker.i18n import MESSAGES
from broker.login import cookies
from broker.login.seal import FlowSeal
from broker.saml import crypto_policy as alg
from broker.saml.xml_encryption import AssertionEncryption

from . import saml_forge as forge
from .agent import HTML, JSON, Person
from .flows import Authorization, assert_not_signed_in, assert_refused, log_capture

VISITORS = {"fi": ("fi", HTML), "sv": ("sv", HTML), "json": ("en", JSON)}
USER = {"turku": "teacher.turku", "espoo": "teacher.espoo"}


@pytest.fixture(params=["fi", "sv", "json"])
def visitor(request):
    return VISITORS[request.param]


@dataclasses.dataclass
class Flow:
    person: Person
    request: forge.AuthnRequest
    authz: Authorization
    city: str


def begin(stack, rp, city_idps, city: str, visitor=("fi", HTML)) -> Flow:
    """Start a login at ``city``'s SAML IdP; stop where the browser would reach the IdP."""
    language, accept = visitor
    person = Person(stop_at=("https://", stack.saml_url), language=language, accept=accept)
    authz = rp.authorize(f"{city}/koulu")
    response = person.get(authz.url)
    assert response.is_redirect, f"{response.status_code} {response.text[:300]}"
    location = response.headers["Location"]
    assert location.startswith(f"{stack.saml_url}/{city}/sso/redirect?"), location
    return Flow(person, city_idps(city).parse_request(location), authz, city)


def deliver(flow: Flow, xml: str, *, relay_state: str | None = None, acs: str | None = None, person=None):
    person = person or flow.person
    return person.post(acs or flow.request.acs, {
        "SAMLResponse": forge.encode(xml),
        "RelayState": flow.request.relay_state if relay_state is None else relay_state})


def private_values(city: str) -> tuple[str, ...]:
    user = find_user(city, USER[city])
    return (user["given_name"], user["family_name"], user["mpass_uid"])


# Refusal reasons in the log, as the one SAML response processor (saml_response) words them.
BAD_SIGNATURE = "signature does not verify"
REJECTED = ("signature does not verify|duplicate ID|exactly one assertion"
            "|more than one Assertion|SAML schema|neither the assertion nor the response is signed")


def refused(flow: Flow, response, caplog, rp, *, status=400, code="invalid_response",
            message_key="error.invalid_response", detail=None):
    cid = assert_refused(response, flow.person, caplog, status=status, code=code, message_key=message_key,
                         detail=detail, rp=rp, private=private_values(flow.city))
    assert_not_signed_in(flow.person, rp, f"{flow.city}/koulu")
    return cid


def flow_cookie(person: Person):
    return next(c for c in person.http.cookies if c.name == cookies.FLOW)


def set_flow_cookie(person: Person, value: str, *, like=None) -> None:
    """Put a flow cookie with ``value`` in ``person``'s jar (shaped ``like`` a captured one)."""
    cookie = copy.copy(like or flow_cookie(person))
    cookie.value = value
    person.http.cookies.set_cookie(cookie)


# -- the harness produces what the broker accepts ---------------------------------------------


@pytest.fixture(scope="module")
def genuine_claims(stack, rp, city_idps):
    """``city -> ID token claims`` of the genuine user, from a login with an unaltered response
    built and signed by the city's own IdP configuration and key."""
    claims = {}
    for city, username in USER.items():
        flow = begin(stack, rp, city_idps, city)
        response = deliver(flow, city_idps(city).response(flow.request, username))
        claims[city] = rp.redeem(rp.code_from(response, flow.authz), flow.authz)
    return claims


@pytest.mark.parametrize("city", ["turku", "espoo"])
def test_unaltered_response_signed_with_the_city_key_signs_in(genuine_claims, city):
    """The control: without the alteration each test makes, the same response is accepted."""
    claims = genuine_claims[city]
    user = find_user(city, USER[city])
    assert claims["given_name"] == user["given_name"]
    assert claims["roles"] == ["teacher"] and {a["role"] for a in claims["role_assignments"]} == {"teacher"}


# -- (1) integrity of what is signed ------------------------------------------------------------


@pytest.mark.parametrize("city", ["turku", "espoo"])
@pytest.mark.parametrize("field", ["uid", "role", "given_name"])
def test_tampered_attribute_value_in_a_signed_assertion_is_refused(stack, rp, city_idps, caplog, visitor,
                                                                   city, field):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city, visitor)
    user = find_user(city, USER[city])
    role = mpassid.attributes(city, user)["urn:mpass.id:role"][0]
    old, new = {"uid": (user["mpass_uid"], find_user(city, f"principal.{city}")["mpass_uid"]),
                "role": (role, role.replace(";Opettaja;2;", ";Rehtori;6;")),
                "given_name": (user["given_name"], forge.EVIL_NAME)}[field]
    assert old != new
    xml = forge.tamper_attribute(city_idps(city).response(flow.request, USER[city]), old, new)
    refused(flow, deliver(flow, xml), caplog, rp, detail=BAD_SIGNATURE)


# -- (2) replay --------------------------------------------------------------------------------


def test_replayed_response_is_refused_in_the_same_browser_and_in_another(stack, rp, city_idps, caplog):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku", VISITORS["sv"])
    captured = copy.copy(flow_cookie(flow.person))     # the flow cookie before the first POST
    xml = city_idps("turku").response(flow.request, USER["turku"])
    first = deliver(flow, xml)
    rp.code_from(first, flow.authz)                     # accepted once

    # The same browser posts it again, with the flow cookie it had before.
    set_flow_cookie(flow.person, captured.value, like=captured)
    again = deliver(flow, xml)
    assert_refused(again, flow.person, caplog, status=400, code="replayed_response",
                   message_key="error.replayed_response", detail="replay", rp=rp, private=private_values("turku"))

    # An attacker who captured response and cookie, in a browser of their own.
    attacker = Person(stop_at=("https://", stack.saml_url), language="fi")
    set_flow_cookie(attacker, captured.value, like=captured)
    stolen = deliver(flow, xml, person=attacker)
    assert_refused(stolen, attacker, caplog, status=400, code="replayed_response",
                   message_key="error.replayed_response", rp=rp)
    assert_not_signed_in(attacker, rp, "turku/koulu")


@pytest.mark.redis
@pytest.mark.parametrize("city", ["turku", "espoo"])
def test_replay_to_a_second_instance_sharing_the_redis_store_is_refused(redis_pair, caplog, city):
    log_capture(caplog)
    stack, rp, idp = redis_pair["stack"], redis_pair["rp"], redis_pair[city]
    second_acs = f"{redis_pair['second_url']}/saml2/acs/post"

    def start(visitor=VISITORS["fi"]) -> Flow:
        return begin(stack, rp, lambda _city: idp, city, visitor)

    # Instance 2 finishes a flow instance 1 began (so a refusal there is not an inability).
    flow = start()
    captured = copy.copy(flow_cookie(flow.person))
    xml = idp.response(flow.request, USER[city])
    rp.code_from(deliver(flow, xml, acs=second_acs), flow.authz)
    # ...and the same response, replayed to instance 1 with the captured flow cookie, is refused.
    set_flow_cookie(flow.person, captured.value, like=captured)
    assert_refused(deliver(flow, xml), flow.person, caplog, status=400, code="replayed_response",
                   message_key="error.replayed_response", rp=rp)

    # The other way round, for a machine client: accepted by instance 1, replayed to instance 2.
    flow = start(VISITORS["json"])
    captured = copy.copy(flow_cookie(flow.person))
    xml = idp.response(flow.request, USER[city])
    rp.code_from(deliver(flow, xml), flow.authz)
    set_flow_cookie(flow.person, captured.value, like=captured)
    assert_refused(deliver(flow, xml, acs=second_acs), flow.person, caplog, status=400, code="replayed_response",
                   message_key="error.replayed_response", rp=rp)


def _race(flow: Flow, xml: str, deliveries) -> list:
    """Post ``xml`` from each ``(person, acs)`` at the same moment; the responses, in order."""
    results: list = [None] * len(deliveries)
    barrier = threading.Barrier(len(deliveries))

    def post(index: int) -> None:
        person, acs = deliveries[index]
        barrier.wait()
        results[index] = deliver(flow, xml, acs=acs, person=person)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(deliveries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.redis
def test_one_response_posted_to_both_instances_at_once_signs_in_once(redis_pair):
    """The request id is consumed atomically: of two racing deliveries, exactly one wins."""
    stack, rp, idp = redis_pair["stack"], redis_pair["rp"], redis_pair["turku"]
    second_acs = f"{redis_pair['second_url']}/saml2/acs/post"
    for _ in range(3):
        flow = begin(stack, rp, lambda _city: idp, "turku")
        captured = copy.copy(flow_cookie(flow.person))
        xml = idp.response(flow.request, USER["turku"])
        deliveries = []
        for acs in (flow.request.acs, second_acs):       # two browsers holding the same flow cookie
            person = Person(stop_at=("https://",), language="fi")
            set_flow_cookie(person, captured.value, like=captured)
            deliveries.append((person, acs))
        results = _race(flow, xml, deliveries)
        codes = [r for r in results if r.is_redirect and "code=" in r.headers.get("Location", "")]
        assert len(codes) == 1, [(r.status_code, r.headers.get("Location")) for r in results]
        loser = next(r for r in results if r is not codes[0])
        assert loser.status_code == 400, loser.text[:300]
        assert MESSAGES["error.replayed_response"]["fi"] in loser.text


# -- (3) time ------------------------------------------------------------------------------------


def _conditions_expired(r):
    """Conditions valid from 10 min ago until 90 s ago (beyond the 60 s skew); the rest fresh."""
    r.assertion.conditions.not_before = forge.when(-600)
    r.assertion.conditions.not_on_or_after = forge.when(-90)


def _bearer_expired(r):
    forge.bearer_data(r).not_on_or_after = forge.when(-90)


def _all_expired(r):
    """A whole response issued an hour ago, every validity window closed."""
    r.issue_instant = r.assertion.issue_instant = forge.when(-3600)
    r.assertion.authn_statement[0].authn_instant = forge.when(-3600)
    r.assertion.conditions.not_before = forge.when(-3600)
    r.assertion.conditions.not_on_or_after = forge.when(-3300)
    forge.bearer_data(r).not_on_or_after = forge.when(-3300)


def _not_yet_valid(r):
    r.assertion.conditions.not_before = forge.when(300)
    r.assertion.conditions.not_on_or_after = forge.when(900)


def _bearer_not_yet_valid(r):
    forge.bearer_data(r).not_before = forge.when(300)


def _session_over(r):
    r.assertion.authn_statement[0].session_not_on_or_after = forge.when(-90)


def _issued_days_ago(r):
    r.issue_instant = forge.when(-3 * 24 * 3600)


# Each reason as the processor logs it.
EXPIRED, EARLY = "expired|has already ended|outside the accepted window", "not yet valid"
# (IssueInstant: see test_refusal_log_names_the_check_that_failed.)
TIME_REASON = {"conditions-expired": EXPIRED, "bearer-expired": EXPIRED, "all-expired": EXPIRED,
               "not-yet-valid": EARLY, "bearer-not-yet-valid": EARLY, "session-over": EXPIRED,
               "response-issued-days-ago": None}
TIMES = {"conditions-expired": _conditions_expired, "bearer-expired": _bearer_expired, "all-expired": _all_expired,
         "not-yet-valid": _not_yet_valid, "bearer-not-yet-valid": _bearer_not_yet_valid,
         "session-over": _session_over, "response-issued-days-ago": _issued_days_ago}


@pytest.mark.parametrize("city", ["turku", "espoo"])
@pytest.mark.parametrize("alteration", sorted(TIMES))
def test_expired_or_not_yet_valid_response_is_refused(stack, rp, city_idps, caplog, city, alteration):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city, VISITORS["sv" if city == "espoo" else "fi"])
    xml = city_idps(city).response(flow.request, USER[city], mutate=TIMES[alteration])
    refused(flow, deliver(flow, xml), caplog, rp, detail=TIME_REASON[alteration])


def test_expired_response_refused_for_a_machine_client(stack, rp, city_idps, caplog):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku", VISITORS["json"])
    xml = city_idps("turku").response(flow.request, USER["turku"], mutate=_conditions_expired)
    refused(flow, deliver(flow, xml), caplog, rp, detail=EXPIRED)


def test_clock_skew_of_the_documented_60_seconds_is_tolerated(stack, rp, city_idps):
    """The boundary the expiry tests stand on: 20 s past NotOnOrAfter is within the skew."""
    flow = begin(stack, rp, city_idps, "turku")

    def slightly_late(r):
        r.assertion.conditions.not_before = forge.when(-300)
        r.assertion.conditions.not_on_or_after = forge.when(-20)
        forge.bearer_data(r).not_on_or_after = forge.when(-20)

    rp.code_from(deliver(flow, city_idps("turku").response(flow.request, USER["turku"], mutate=slightly_late)),
                 flow.authz)


# -- (4) audience, recipient, destination ------------------------------------------------------------

OTHER_SP = "https://other-service.example.org/saml/sp"
OTHER_ACS = "https://other-service.example.org/saml/acs"


def _wrong_audience(r):
    r.assertion.conditions.audience_restriction[0].audience[0].text = OTHER_SP


def _wrong_recipient(r):
    forge.bearer_data(r).recipient = OTHER_ACS


def _wrong_destination(r):
    r.destination = OTHER_ACS


def _no_audience(r):
    r.assertion.conditions.audience_restriction = []


ADDRESSING = {"audience": _wrong_audience, "recipient": _wrong_recipient, "destination": _wrong_destination,
              "no-audience": _no_audience}
# What the refusal's log line must name (Destination: see test_refusal_log_names_the_check_that_failed).
ADDRESSING_REASON = {"audience": "AudienceRestriction|Audience", "recipient": "[Rr]ecipient",
                     "no-audience": "[Aa]udience",
                     "destination": None}


@pytest.mark.parametrize("city", ["turku", "espoo"])
@pytest.mark.parametrize("alteration", sorted(ADDRESSING))
def test_response_addressed_to_someone_else_is_refused(stack, rp, city_idps, caplog, visitor, city, alteration):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city, visitor)
    xml = city_idps(city).response(flow.request, USER[city], mutate=ADDRESSING[alteration])
    refused(flow, deliver(flow, xml), caplog, rp, detail=ADDRESSING_REASON[alteration])


def test_assertion_the_city_idp_issued_to_another_sp_for_the_brokers_request_id_is_refused(
        stack, rp, city_idps, caplog):
    """The attack the Audience and Recipient checks exist for. A rogue service provider registered at
    Turku's IdP copies the request id of a broker flow into its own AuthnRequest; the victim signs in at the
    rogue SP; the IdP (one that leaves out AudienceRestriction) answers that request id, addressed to the
    rogue SP's ACS. The rogue SP posts it into the broker flow it began, to become the victim everywhere."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku")

    def for_the_rogue_sp(r):
        r.destination = flow.request.acs          # the rogue SP re-addresses the (signed) outer envelope...
        _no_audience(r)                           # ...of an assertion minted for its own ACS
        forge.bearer_data(r).recipient = OTHER_ACS

    xml = city_idps("turku").response(flow.request, USER["turku"], mutate=for_the_rogue_sp, sign_response=False)
    refused(flow, deliver(flow, xml), caplog, rp)


REASONS = {"destination": (_wrong_destination, r"[Dd]estination"),
           "response-issued-days-ago": (_issued_days_ago, r"IssueInstant|issue instant|too old|issued")}


@pytest.mark.parametrize("alteration", sorted(REASONS))
def test_refusal_log_names_the_check_that_failed(stack, rp, city_idps, caplog, alteration):
    log_capture(caplog)
    mutate, reason = REASONS[alteration]
    flow = begin(stack, rp, city_idps, "turku")
    xml = city_idps("turku").response(flow.request, USER["turku"], mutate=mutate)
    refused(flow, deliver(flow, xml), caplog, rp, detail=reason)


# -- (5) (6) keys and signatures ------------------------------------------------------------------------


@pytest.mark.parametrize("city", ["turku", "espoo"])
def test_response_signed_by_an_attacker_key_with_its_certificate_in_key_info_is_refused(
        stack, rp, city_idps, attacker_keys, caplog, visitor, city):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city, visitor)
    impostor = forge.CityIdp.impostor(stack, city, city_idps.sp_metadata, attacker_keys)
    xml = impostor.response(flow.request, USER[city])
    assert impostor.server.sec.my_cert in xml.replace("\n", ""), "the attacker's certificate is in KeyInfo"
    refused(flow, deliver(flow, xml), caplog, rp, detail=BAD_SIGNATURE)


@pytest.mark.parametrize("city", ["turku", "espoo"])
def test_stripped_signatures_are_refused(stack, rp, city_idps, caplog, visitor, city):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city, visitor)
    root = forge.parse(city_idps(city).response(flow.request, USER[city]))
    forge.strip_signatures(root)
    forge.strip_signatures(forge.assertion_of(root))
    xml = forge.serialize(root)
    assert "Signature" not in xml
    refused(flow, deliver(flow, xml), caplog, rp, detail="neither the assertion nor the response is signed")


def test_unsigned_response_from_the_idp_is_refused(stack, rp, city_idps, caplog):
    """Not a stripped signature: the IdP itself sent nothing signed (built unsigned by pysaml2)."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "espoo", VISITORS["sv"])
    xml = city_idps("espoo").response(flow.request, USER["espoo"], sign_assertion=False, sign_response=False)
    refused(flow, deliver(flow, xml), caplog, rp, detail="neither the assertion nor the response is signed")


def test_signed_then_encrypted_assertion_signs_in(stack, rp, city_idps):
    """The control for the two tests below: pysaml2's sign-then-encrypt (RSA-OAEP, AES-256-GCM) is accepted."""
    flow = begin(stack, rp, city_idps, "turku")
    xml = city_idps("turku").encrypted_response(flow.request, USER["turku"], sign_assertion=True)
    assert {alg.RSA_OAEP_MGF1P, alg.AES256_GCM} <= encryption_methods(xml)
    rp.code_from(deliver(flow, xml), flow.authz)


def test_unsigned_assertion_encrypted_to_the_brokers_public_key_is_refused(stack, rp, city_idps, caplog, visitor):
    """Anyone can encrypt to the key in the broker's SP metadata: encryption proves nothing about the sender."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku", visitor)
    xml = city_idps("turku").encrypted_response(flow.request, USER["turku"], sign_assertion=False)
    refused(flow, deliver(flow, xml), caplog, rp, detail=REJECTED)


def test_attacker_signed_assertion_encrypted_to_the_brokers_key_is_refused(stack, rp, city_idps, attacker_keys,
                                                                          caplog):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "espoo", VISITORS["sv"])
    impostor = forge.CityIdp.impostor(stack, "espoo", city_idps.sp_metadata, attacker_keys)
    xml = impostor.encrypted_response(flow.request, USER["espoo"], sign_assertion=True)
    refused(flow, deliver(flow, xml), caplog, rp, detail=REJECTED)


XML_BOMBS = {
    "external-entity": '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    "entity-expansion": ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
                         + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">'
                                   for p, c in zip("abcdefgh", "bcdefghi", strict=True))
                         + "]>"),
}


@pytest.mark.parametrize("bomb", sorted(XML_BOMBS))
def test_doctype_in_a_response_is_refused_without_resolving_it(stack, rp, city_idps, caplog, bomb):
    """XXE and entity expansion (defusedxml in pysaml2): refused fast, nothing of the entity in the answer."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku", VISITORS["json"])
    xml = city_idps("turku").response(flow.request, USER["turku"])
    entity = "&x;" if bomb == "external-entity" else "&i;"
    xml = XML_BOMBS[bomb] + forge.tamper_attribute(xml, find_user("turku", USER["turku"])["given_name"], entity)
    started = time.monotonic()
    response = deliver(flow, xml)
    assert time.monotonic() - started < 5
    assert "root:" not in response.text
    refused(flow, response, caplog, rp)


# -- (7) signature wrapping -----------------------------------------------------------------------------

XSW = [("espoo", where, same_id) for where in ("before", "after", "around", "extensions") for same_id in (False, True)]
XSW += [("turku", "before", False), ("turku", "after", True)]


@pytest.mark.parametrize("city,where,same_id", XSW)
def test_signature_wrapping_never_signs_in_the_attacker(stack, rp, city_idps, genuine_claims, caplog,
                                                        city, where, same_id):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city, VISITORS["sv" if same_id else "fi"])
    user = find_user(city, USER[city])
    evil = {user["mpass_uid"]: forge.EVIL_UID, user["given_name"]: forge.EVIL_NAME,
            user["family_name"]: forge.EVIL_NAME}
    xml = forge.xsw_clone(city_idps(city).response(flow.request, USER[city]), evil, where=where, same_id=same_id)
    assert xml.count(forge.EVIL_NAME) >= 2
    response = deliver(flow, xml)
    if response.is_redirect:   # accepted: then only the signed assertion may have been read
        claims = rp.redeem(rp.code_from(response, flow.authz), flow.authz)
        assert forge.EVIL_NAME not in str(claims)
        assert claims["sub"] == genuine_claims[city]["sub"]
        pytest.fail(f"XSW ({where}, same_id={same_id}) was accepted; the signed values were used, but a response "
                    "with two assertions should be refused")
    refused(flow, response, caplog, rp, detail=REJECTED)


# -- (8) (9) issuers ----------------------------------------------------------------------------------------


def test_unsigned_response_issuer_differing_from_the_signed_assertion_issuer_is_refused(
        stack, rp, city_idps, caplog, visitor):
    """Issue 3: Espoo signs only the assertion; the Response <Issuer> (unsigned) names Turku."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "espoo", visitor)
    xml = forge.set_response_issuer(city_idps("espoo").response(flow.request, USER["espoo"]),
                                    city_idps("turku").entity_id)
    refused(flow, deliver(flow, xml), caplog, rp, detail="Response Issuer is not the IdP")


def test_unsigned_response_issuer_naming_an_unknown_entity_is_refused(stack, rp, city_idps, caplog):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "espoo", VISITORS["sv"])
    xml = forge.set_response_issuer(city_idps("espoo").response(flow.request, USER["espoo"]),
                                    "https://idp.evil.example/idp")
    refused(flow, deliver(flow, xml), caplog, rp)


def test_response_without_its_own_issuer_is_accepted_when_the_assertion_issuer_is_right(stack, rp, city_idps):
    """SAML Core §3.2.2: the Response Issuer is optional; the control for the two tests above."""
    flow = begin(stack, rp, city_idps, "espoo")
    xml = forge.set_response_issuer(city_idps("espoo").response(flow.request, USER["espoo"]), None)
    rp.code_from(deliver(flow, xml), flow.authz)


@pytest.mark.parametrize("asked,answering", [("espoo", "turku"), ("turku", "espoo"), ("turku", "vantaa")])
def test_response_from_another_citys_idp_is_refused(stack, rp, city_idps, caplog, visitor, asked, answering):
    """A city's IdP answers (genuinely signed, its own issuer) a request the broker sent to another city."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, asked, visitor)
    request = dataclasses.replace(flow.request, idp=city_idps(answering).entity_id)
    user = f"teacher.{answering}"
    xml = city_idps(answering).response(request, user)
    cid = assert_refused(deliver(flow, xml), flow.person, caplog, status=400, code="invalid_response",
                         message_key="error.invalid_response", rp=rp,
                         detail="Issuer is not the IdP")
    assert cid
    assert_not_signed_in(flow.person, rp, f"{asked}/koulu")


def test_another_citys_key_cannot_speak_for_the_city_asked(stack, rp, city_idps, caplog):
    """Turku's key signing an assertion whose Issuers claim Espoo: the Espoo key from metadata decides."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "espoo", VISITORS["sv"])
    turku = city_idps("turku")
    espoo_id = city_idps("espoo").entity_id

    def claim_espoo(r):
        r.issuer.text = espoo_id
        r.assertion.issuer.text = espoo_id

    xml = turku.response(flow.request, "teacher.turku", mutate=claim_espoo)
    refused(flow, deliver(flow, xml), caplog, rp, detail=REJECTED)


# -- (10) binding to this flow ---------------------------------------------------------------------------


@pytest.mark.parametrize("city", ["turku", "espoo"])
def test_response_to_another_flows_request_is_refused(stack, rp, city_idps, caplog, visitor, city):
    log_capture(caplog)
    mine = begin(stack, rp, city_idps, city, visitor)
    theirs = begin(stack, rp, city_idps, city)
    xml = city_idps(city).response(theirs.request, USER[city])
    refused(mine, deliver(mine, xml), caplog, rp, detail="InResponseTo")
    # The other flow was not spent by the attempt: its owner still signs in with it.
    rp.code_from(deliver(theirs, xml), theirs.authz)


def test_unsigned_response_in_response_to_rewritten_to_this_flow_is_refused(stack, rp, city_idps, caplog):
    """Espoo: the assertion (signed) answers another flow; the attacker rewrites the unsigned Response's
    InResponseTo to the victim flow's request id."""
    log_capture(caplog)
    mine = begin(stack, rp, city_idps, "espoo", VISITORS["sv"])
    theirs = begin(stack, rp, city_idps, "espoo")
    root = forge.parse(city_idps("espoo").response(theirs.request, USER["espoo"]))
    root.set("InResponseTo", mine.request.id)
    refused(mine, deliver(mine, forge.serialize(root)), caplog, rp, detail="InResponseTo")


def test_relay_state_of_another_flow_is_refused(stack, rp, city_idps, caplog):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku")
    xml = city_idps("turku").response(flow.request, USER["turku"])
    refused(flow, deliver(flow, xml, relay_state="not-this-flow"), caplog, rp, detail="RelayState")


# -- (11) (12) the flow cookie ---------------------------------------------------------------------------


def test_response_without_a_flow_cookie_shows_the_expired_flow_page(stack, rp, city_idps, caplog, visitor):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku", visitor)
    xml = city_idps("turku").response(flow.request, USER["turku"])
    flow.person.http.cookies.clear()
    refused(flow, deliver(flow, xml), caplog, rp, code="expired_flow", message_key="error.expired_flow")


def test_response_with_an_expired_flow_cookie_shows_the_expired_flow_page(stack, rp, city_idps, caplog, visitor):
    """A flow cookie sealed with the broker's own key, but an issue time past the flow lifetime."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku", visitor)
    settings = stack.app.settings
    lifetime = settings.lifetimes.flow
    now = FlowSeal(settings.master_secret, name=cookies.FLOW, max_age=lifetime)
    past = FlowSeal(settings.master_secret, name=cookies.FLOW, max_age=lifetime,
                      clock=lambda: time.time() - lifetime - 60)
    state = now.open_data(flow_cookie(flow.person).value)          # the real state of this flow...
    set_flow_cookie(flow.person, past.seal_data(state))            # ...sealed as if it began too long ago
    xml = city_idps("turku").response(flow.request, USER["turku"])
    refused(flow, deliver(flow, xml), caplog, rp, code="expired_flow", message_key="error.expired_flow")


@pytest.mark.parametrize("position", [0.3, 0.6, 0.95])
def test_tampered_flow_cookie_is_refused(stack, rp, city_idps, caplog, position):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku", VISITORS["sv"])
    value = flow_cookie(flow.person).value
    index = 3 + int((len(value) - 3) * position)
    flipped = value[:index] + ("A" if value[index] != "A" else "B") + value[index + 1:]
    set_flow_cookie(flow.person, flipped)
    xml = city_idps("turku").response(flow.request, USER["turku"])
    cid = refused(flow, deliver(flow, xml), caplog, rp, code="expired_flow", message_key="error.expired_flow")
    assert any("flow cookie rejected" in r.getMessage() and cid in r.getMessage() for r in caplog.records)


def test_flow_cookie_sealed_with_another_secret_is_refused(stack, rp, city_idps, caplog):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku")
    settings = stack.app.settings
    state = FlowSeal(settings.master_secret, name=cookies.FLOW, max_age=900).open_data(flow_cookie(flow.person).value)
    forged = FlowSeal(b"x" * 48, name=cookies.FLOW, max_age=900).seal_data(state)
    set_flow_cookie(flow.person, forged)
    xml = city_idps("turku").response(flow.request, USER["turku"])
    refused(flow, deliver(flow, xml), caplog, rp, code="expired_flow", message_key="error.expired_flow")


# -- (13) the IdP says no -----------------------------------------------------------------------------------


@pytest.mark.parametrize("city", ["turku", "espoo"])
@pytest.mark.parametrize("status", [samlp.STATUS_AUTHN_FAILED, samlp.STATUS_REQUEST_DENIED])
def test_the_person_declining_at_the_idp_is_access_denied_to_the_service(stack, rp, city_idps, caplog, city,
                                                                          status):
    """The IdP says the person did not sign in (cancelled, declined): the service hears access_denied, with its
    state, and no session is left behind (issue 9: never a stranded error page)."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city)
    xml = city_idps(city).error_response(flow.request, status, "The user cancelled the sign-in")
    response = deliver(flow, xml)
    assert response.is_redirect, response.text[:300]
    query = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}
    assert response.headers["Location"].startswith(rp.redirect_uri)
    assert query["error"] == "access_denied" and query["state"] == flow.authz.state and "code" not in query
    assert_not_signed_in(flow.person, rp, f"{city}/koulu")


@pytest.mark.parametrize("city", ["turku"])
def test_another_error_status_from_the_idp_shows_the_idp_error_page(stack, rp, city_idps, caplog, visitor, city):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city, visitor)
    xml = city_idps(city).error_response(flow.request, "urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal",
                                         "no such user")
    refused(flow, deliver(flow, xml), caplog, rp, status=502, code="idp_error", message_key="error.idp_error")


# -- (14) comments inside signed values (issue 2) -------------------------------------------------------


def _signed_uid(suffix: str):
    """The IdP signs the user's uid with ``suffix`` appended (an account whose uid extends the victim's)."""
    def attributes(identity):
        uid = identity[mpassid.FRIENDLY_NAMES[mpassid.UID]][0]
        return {**identity, mpassid.FRIENDLY_NAMES[mpassid.UID]: [uid + suffix]}
    return attributes


def _signed_name_id(r):
    r.assertion.subject.name_id.text = "bob.attacker"


def test_a_signed_value_extending_the_victims_is_another_user(stack, rp, city_idps, genuine_claims):
    """The control for the test below: the IdP signs ``<victim uid>.attacker`` and NameID
    ``bob.attacker``; read whole, they are someone else, never the victim."""
    flow = begin(stack, rp, city_idps, "turku")
    xml = city_idps("turku").response(flow.request, USER["turku"], attributes=_signed_uid(".attacker"),
                                      mutate=_signed_name_id)
    claims = rp.redeem(rp.code_from(deliver(flow, xml), flow.authz), flow.authz)
    assert claims["sub"] != genuine_claims["turku"]["sub"]


# (element, the text the comment follows): the value read up to the comment would be the victim's.
COMMENTS = {"uid": ("AttributeValue", None), "name-id": ("NameID", "bob"),
            "audience": ("Audience", "http"), "authn-context": ("AuthnContextClassRef", "urn:oasis")}


@pytest.mark.parametrize("city", ["turku", "espoo"])
@pytest.mark.parametrize("where", sorted(COMMENTS))
def test_a_comment_inside_a_signed_value_is_refused(stack, rp, city_idps, caplog, city, where):
    """``victim<!---->.attacker`` after signing: every signature still verifies (c14n drops comments) and
    lxml's ``.text`` stops at the comment.  The response is refused; nothing is read in part."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city, VISITORS["sv" if city == "espoo" else "fi"])
    victim_uid = find_user(city, USER[city])["mpass_uid"]
    xml = city_idps(city).response(flow.request, USER[city], attributes=_signed_uid(".attacker"),
                                   mutate=_signed_name_id)
    tag, after = COMMENTS[where]
    if tag == "AttributeValue":
        root = forge.parse(xml)
        value = next(v for v in forge.assertion_of(root).iter(f"{{{forge.SAML}}}AttributeValue")
                     if v.text == victim_uid + ".attacker")
        comment = forge.etree.Comment("")
        value.text, comment.tail = victim_uid, ".attacker"
        value.append(comment)
        xml = forge.serialize(root)
    else:
        xml = forge.insert_comment(xml, tag, after)
    refused(flow, deliver(flow, xml), caplog, rp, detail="a comment inside the Response")


# -- (15) answers to our request only; conditions we evaluate (issue 3) ------------------------------------


def _no_bearer_in_response_to(r):
    forge.bearer_data(r).in_response_to = None


@pytest.mark.parametrize("city", ["turku", "espoo"])
def test_a_bearer_confirmation_without_in_response_to_is_refused(stack, rp, city_idps, caplog, city):
    """Profiles §4.1.4.3: the broker always sends a request; an answer that does not name it is refused
    (Espoo signs only the assertion, so the Response's own InResponseTo proves nothing)."""
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city)
    xml = city_idps(city).response(flow.request, USER[city], mutate=_no_bearer_in_response_to)
    refused(flow, deliver(flow, xml), caplog, rp, detail="bearer confirmation has no InResponseTo")


AUDIENCE_CONDITION = ('<saml:Condition xsi:type="saml:AudienceRestrictionType">'
                      '<saml:Audience>https://other-service.example.org/saml/sp</saml:Audience></saml:Condition>')
PROXY_AUDIENCE = ('<saml:ProxyRestriction><saml:Audience>https://other-service.example.org</saml:Audience>'
                  '</saml:ProxyRestriction>')
CONDITIONS = {
    "audience-as-condition": (AUDIENCE_CONDITION, "Indeterminate"),
    "one-time-use-as-condition": ('<saml:Condition xsi:type="saml:OneTimeUseType"/>', "Indeterminate"),
    "proxy-count-0": ('<saml:ProxyRestriction Count="0"/>', "ProxyRestriction Count=0"),
    "proxy-audience": (PROXY_AUDIENCE, "does not name the service"),
}


@pytest.mark.parametrize("city", ["turku", "espoo"])
@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_a_condition_the_broker_cannot_meet_or_does_not_evaluate_is_refused(stack, rp, city_idps, caplog, city,
                                                                            condition):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city, VISITORS["json"])
    snippet, reason = CONDITIONS[condition]
    xml = city_idps(city).response(flow.request, USER[city], mutate_xml=forge.add_conditions(snippet))
    refused(flow, deliver(flow, xml), caplog, rp, detail=reason)


def test_one_time_use_and_a_proxy_count_are_understood(stack, rp, city_idps):
    flow = begin(stack, rp, city_idps, "turku")
    xml = city_idps("turku").response(flow.request, USER["turku"], mutate_xml=forge.add_conditions(
        "<saml:OneTimeUse/>", '<saml:ProxyRestriction Count="2"/>'))
    rp.code_from(deliver(flow, xml), flow.authz)


# -- (16) algorithms: SHA-256 or better, RSA-OAEP, AES-GCM by default (issue 4) ------------------------------


def encryption_methods(xml: str) -> set[str]:
    return {m.get("Algorithm") for m in forge.parse(xml).iter("{http://www.w3.org/2001/04/xmlenc#}EncryptionMethod")}


@pytest.mark.parametrize("city", ["turku", "espoo"])
@pytest.mark.parametrize("sign_alg, digest_alg", [(alg.RSA_SHA1, alg.DIGEST_SHA1), (alg.RSA_SHA1, alg.DIGEST_SHA256),
                                                  (alg.RSA_SHA256, alg.DIGEST_SHA1)],
                         ids=["rsa-sha1+sha1", "rsa-sha1", "sha1-digest"])
def test_sha1_signatures_are_refused_by_default(stack, rp, city_idps, caplog, city, sign_alg, digest_alg):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, city)
    xml = city_idps(city).response(flow.request, USER[city], sign_alg=sign_alg, digest_alg=digest_alg)
    refused(flow, deliver(flow, xml), caplog, rp, detail="refused unless the IdP's legacy_crypto lists sha1")


LEGACY_ENCRYPTION = {
    "rsa-1_5": AssertionEncryption(key_transport=alg.RSA_PKCS1_V1_5),
    "aes128-cbc": AssertionEncryption(data=alg.AES128_CBC),
    "tripledes-cbc": AssertionEncryption(data=alg.TRIPLEDES_CBC),
}


@pytest.mark.parametrize("encryption", sorted(LEGACY_ENCRYPTION))
def test_legacy_encryption_is_refused_by_default(stack, rp, city_idps, caplog, encryption):
    log_capture(caplog)
    flow = begin(stack, rp, city_idps, "turku", VISITORS["sv"])
    xml = city_idps("turku").encrypted_response(flow.request, USER["turku"], sign_assertion=True,
                                                encryption=LEGACY_ENCRYPTION[encryption])
    refused(flow, deliver(flow, xml), caplog, rp, detail=r"refused unless the IdP's legacy_crypto lists (rsa-1_5|cbc)")


@pytest.mark.parametrize("encryption", [
    AssertionEncryption(data=alg.AES128_GCM),
    AssertionEncryption(key_transport=alg.RSA_OAEP, oaep_digest=alg.DIGEST_SHA256, mgf=alg.XENC11 + "mgf1sha256"),
], ids=["mgf1p+aes128-gcm", "xmlenc11-oaep+aes256-gcm"])
def test_default_accepted_encryption_signs_in(stack, rp, city_idps, encryption):
    flow = begin(stack, rp, city_idps, "espoo")
    xml = city_idps("espoo").encrypted_response(flow.request, USER["espoo"], sign_assertion=True,
                                                encryption=encryption, sign_alg=alg.RSA_SHA512,
                                                digest_alg=alg.DIGEST_SHA512)
    assert {encryption.data, encryption.key_transport} <= encryption_methods(xml)
    rp.code_from(deliver(flow, xml), flow.authz)
