"""Every check on an OIDC upstream's answer, through the running broker, against a hostile OP.

The hostile OP (``hostile_op.py``) is its own tenant (``hostile/op``) and a real
HTTP peer: the person's browser goes broker → OP → broker callback, the broker
exchanges the code at the OP's token endpoint and verifies the ID token it gets.
With ``scenario = "valid"`` that login succeeds (the control); every other
scenario is one lie, and the broker must refuse it, show a proper page (or JSON)
and leave the person signed out.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from . import hostile_op
from .agent import HTML, JSON, Person
from .flows import Authorization, assert_not_signed_in, assert_refused, log_capture

HINT = f"{hostile_op.TENANT}/{hostile_op.IDP}"
VISITORS = {"fi": ("fi", HTML), "sv": ("sv", HTML), "en": ("en", HTML), "json": ("fi", JSON)}


@pytest.fixture(autouse=True)
def honest_afterwards(hostile):
    hostile.scenario = "valid"
    yield
    hostile.scenario = "valid"


def sign_in(rp, hostile, scenario: str, visitor=VISITORS["fi"]) -> tuple[Person, Authorization, object]:
    language, accept = visitor
    hostile.scenario = scenario
    person = Person(language=language, accept=accept)
    authz = rp.authorize(HINT)
    response = person.get(authz.url)
    visited = [hop.url for hop in response.history] + [response.url]
    assert any(url.startswith(hostile.issuer + "/authorize") for url in visited), visited
    return person, authz, response


def refused(person, response, caplog, rp, *, status=400, code="invalid_response",
            message_key="error.invalid_response", detail=None):
    cid = assert_refused(response, person, caplog, status=status, code=code, message_key=message_key,
                         detail=detail, rp=rp, private=("Hilda", "Hostila", hostile_op.SUBJECT_OID))
    assert_not_signed_in(person, rp, HINT)
    return cid


def test_honest_answer_signs_in(rp, hostile):
    """The control: the OP as configured, every check passing."""
    _person, authz, response = sign_in(rp, hostile, "valid")
    claims = rp.redeem(rp.code_from(response, authz), authz)
    assert claims["given_name"] == "Hilda"
    assert claims["roles"] == ["teacher"] and {a["role"] for a in claims["role_assignments"]} == {"teacher"}
    exchange = hostile.token_requests[-1]
    assert exchange["code_verifier"] and exchange["grant_type"] == "authorization_code"


# -- the ID token --------------------------------------------------------------------------------

FORGED = {
    "alg_none": r"alg 'none' is not accepted",
    "hs256_spki_pem": r"alg 'HS256' is not accepted",      # HMAC keyed with the OP's public key (PEM)...
    "hs256_pkcs1_pem": r"alg 'HS256' is not accepted",
    "hs256_jwk_n": r"alg 'HS256' is not accepted",         # ...or with its modulus
    "foreign_key": r"signature does not verify",           # another key, the OP's kid
    "unknown_kid": r"ID token rejected: .*(kid|key)",
    "embedded_jwk": r"no published key has this kid",      # the attacker's key in the header (jwk)
    "wrong_iss": r"iss is not the expected issuer",
    "wrong_aud": r"aud does not contain",
    "other_azp": r"azp is not this client",
    "nonce_mismatch": r"nonce does not match",
    "no_nonce": r"nonce does not match",
    "expired": r"expired",
    "no_exp": r"ID token rejected: .*exp",
    "not_yet_valid": r"not valid yet",
    "no_sub": r"without sub",
}


@pytest.mark.parametrize("visitor", ["fi", "sv", "json"])
@pytest.mark.parametrize("scenario", sorted(FORGED))
def test_bad_id_token_is_refused(rp, hostile, caplog, scenario, visitor):
    log_capture(caplog)
    person, _, response = sign_in(rp, hostile, scenario, VISITORS[visitor])
    refused(person, response, caplog, rp, detail=FORGED[scenario])


# -- the token endpoint and the callback --------------------------------------------------------------


@pytest.mark.parametrize("visitor", ["sv", "json"])
def test_token_endpoint_error_is_an_idp_error(rp, hostile, caplog, visitor):
    log_capture(caplog)
    person, _, response = sign_in(rp, hostile, "token_error", VISITORS[visitor])
    refused(person, response, caplog, rp, status=502, code="idp_error", message_key="error.idp_error",
            detail="token endpoint")


@pytest.mark.parametrize("visitor", ["fi", "json"])
def test_access_denied_in_the_callback_goes_back_to_the_service(rp, hostile, caplog, visitor):
    """The city's OP says the person declined: the service hears access_denied with its state; no code is used."""
    log_capture(caplog)
    before = len(hostile.token_requests)
    person, authz, response = sign_in(rp, hostile, "access_denied", VISITORS[visitor])
    assert response.is_redirect and response.headers["Location"].startswith(rp.redirect_uri)
    query = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}
    assert query["error"] == "access_denied" and query["state"] == authz.state and "code" not in query
    assert len(hostile.token_requests) == before
    assert_not_signed_in(person, rp, HINT)


@pytest.mark.parametrize("visitor", ["en", "sv", "json"])
@pytest.mark.parametrize("scenario,detail", [("state_mismatch", "state does not match"),
                                             ("iss_mismatch", "iss in the authorization response")])
def test_callback_for_another_flow_or_issuer_is_refused_before_the_code_is_used(rp, hostile, caplog, scenario,
                                                                                detail, visitor):
    log_capture(caplog)
    before = len(hostile.token_requests)
    person, _, response = sign_in(rp, hostile, scenario, VISITORS[visitor])
    refused(person, response, caplog, rp, detail=detail)
    assert len(hostile.token_requests) == before, "the code was exchanged although the callback was refused"


def test_callback_without_a_flow_cookie_shows_the_expired_flow_page(rp, hostile, caplog, stack):
    """The callback URL replayed in a browser that never began the flow."""
    log_capture(caplog)
    hostile.scenario = "valid"
    person = Person(language="sv", stop_at=("https://", hostile.issuer + "/authorize"))
    authz = rp.authorize(HINT)
    to_op = person.get(authz.url)
    callback = Person(language="sv", stop_at=("https://",)).http.get(to_op.headers["Location"],
                                                                     allow_redirects=False, timeout=10)
    assert callback.status_code == 302 and "/callback?" in callback.headers["Location"]
    stranger = Person(language="sv")
    response = stranger.get(callback.headers["Location"])
    refused(stranger, response, caplog, rp, code="expired_flow", message_key="error.expired_flow")


# -- a hostile city cannot become another city's person ------------------------------------------------


def test_hostile_op_asserting_another_citys_identifiers_gets_another_subject(stack, rp, hostile):
    """Issue 3: the subject is scoped by tenant and IdP. The hostile OP sends a Vantaa pupil's Entra
    ``oid``, ``tid`` and names; the service must see a different person, with no Vantaa school."""
    from broker.demo.directory import DEMO_DIRECTORY, find_user

    pupil = find_user("vantaa", "pupil.vantaa")
    person = Person(language="fi")
    authz = rp.authorize("vantaa/entra")
    genuine = rp.redeem(rp.code_from(person.sign_in(person.get(authz.url), pupil["upn"]), authz), authz)
    assert genuine["given_name"] == pupil["given_name"]

    hostile.impersonated = {"oid": pupil["entra_object_id"], "tid": DEMO_DIRECTORY["vantaa"]["entra_tenant_id"],
                            "given_name": pupil["given_name"], "family_name": pupil["family_name"],
                            "sub": genuine["sub"]}
    _impostor, authz, response = sign_in(rp, hostile, "impersonate:vantaa")
    forged = rp.redeem(rp.code_from(response, authz), authz)
    assert forged["sub"] != genuine["sub"]
    vantaa_schools = {school["code"] for school in DEMO_DIRECTORY["vantaa"]["schools"]}
    assert not {role.get("school") for role in forged.get("role_assignments", [])} & vantaa_schools
