"""The verification kit (``digione_verify``) on tokens the running broker really issued.

A relying party (Authlib) signs demo people in through the demo stack: the city IdPs, the
broker's discovery and mapping, its token endpoint.  A service then checks the access tokens
it got with the kit as a resource server would: fetching the broker's discovery document and
JWKS over HTTP, checking roles and schools, asking the introspection endpoint.  Issue 11:
a teacher's token passes ``roles=("teacher",)`` and fails with another school.

The claims themselves are checked against ``docs/claims.schema.json``: access tokens, ID
tokens and userinfo as the broker sent them.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import jsonschema
import pytest
import requests
from agent import Person, register_client
from authlib.integrations.requests_client import OAuth2Session

from broker.demo.directory import DEMO_DIRECTORY
from digione_verify import (
    BadSignature,
    Introspection,
    MissingRole,
    RevokedToken,
    TokenVerifier,
    WrongAudience,
    WrongSchool,
    WrongTokenType,
    b64url_decode,
    b64url_encode,
    require_token,
)

REDIRECT = "https://kit.example.org/cb"
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "claims.schema.json").read_text())
CLAIMS = jsonschema.Draft202012Validator(SCHEMA)
ACCESS_TOKEN = jsonschema.Draft202012Validator({"$ref": "#/$defs/access_token", "$defs": SCHEMA["$defs"]})

VANTAA_FIRST, VANTAA_SECOND = (s["code"] for s in DEMO_DIRECTORY["vantaa"]["schools"][:2])
ESPOO_FIRST = DEMO_DIRECTORY["espoo"]["schools"][0]["code"]


@pytest.fixture(scope="module")
def clients(stack) -> dict[str, str]:
    out = {}
    for name, profile in (("kit-rp", "digione"), ("kit-mpassid-rp", "mpassid")):
        _, secret = register_client(stack, client_id=name, redirect_uris=[REDIRECT],
                                    policy={"scopes": ["openid", "roles", "schools"], "profile": profile})
        out[name] = secret
    return out


def _metadata(stack) -> dict:
    return requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()


def _sign_in(stack, client_id: str, secret: str, hint: str, username: str) -> tuple[dict, dict]:
    """``(token response, userinfo)`` of one code flow with PKCE, as the relying party sees them."""
    meta = _metadata(stack)
    session = OAuth2Session(client_id, secret, scope="openid roles schools", redirect_uri=REDIRECT,
                            code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                              nonce=secrets.token_urlsafe(16), idp_hint=hint)
    callback = Person.callback(Person().login(url, *hint.split("/"), username))
    token = session.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    return dict(token), session.get(meta["userinfo_endpoint"]).json()


@pytest.fixture(scope="module")
def teacher(stack, clients) -> tuple[dict, dict]:
    """Vantaa's demo teacher (both Vantaa schools), through the city's SAML IdP."""
    return _sign_in(stack, "kit-rp", clients["kit-rp"], "vantaa/koulu", "teacher.vantaa")


def kit(stack, audience: str = "kit-rp", **options) -> TokenVerifier:
    """A service's verifier, configured as docs/verifying-tokens.md says: the issuer and an audience."""
    return TokenVerifier(stack.broker_url, audience, **options)


def _payload(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[1]))


def test_a_teachers_token_passes_as_teacher_and_at_the_teachers_schools(stack, teacher):
    token, _ = teacher
    verifier = kit(stack)
    claims = verifier.verify(token["access_token"], roles=("teacher",))
    assert claims["roles"] == ["teacher"]
    assert {a["school"] for a in claims["role_assignments"]} == {VANTAA_FIRST, VANTAA_SECOND}
    assert verifier.verify(token["access_token"], roles=("teacher",), schools=(VANTAA_FIRST,))
    assert verifier.verify(token["access_token"], roles=("teacher",), schools=(VANTAA_SECOND,))
    assert kit(stack, required_roles=("teacher",), required_schools=(VANTAA_FIRST,)).verify(token["access_token"])


def test_a_teachers_token_fails_with_another_school_or_another_role(stack, teacher):
    token, _ = teacher
    verifier = kit(stack)
    with pytest.raises(WrongSchool):
        verifier.verify(token["access_token"], roles=("teacher",), schools=(ESPOO_FIRST,))
    with pytest.raises(WrongSchool):
        verifier.verify(token["access_token"], schools=(ESPOO_FIRST,))
    with pytest.raises(MissingRole):
        verifier.verify(token["access_token"], roles=("principal",))
    with pytest.raises(MissingRole):
        verifier.verify(token["access_token"], roles=("principal",), schools=(VANTAA_FIRST,))


def test_a_pupils_token_is_no_teachers(stack, clients):
    token, _ = _sign_in(stack, "kit-rp", clients["kit-rp"], "vantaa/entra", "pupil.vantaa")
    verifier = kit(stack)
    with pytest.raises(MissingRole):
        verifier.verify(token["access_token"], roles=("teacher",))
    assert verifier.verify(token["access_token"], roles=("learner",), schools=(VANTAA_FIRST,))
    with pytest.raises(WrongSchool):  # the pupil's school only
        verifier.verify(token["access_token"], roles=("learner",), schools=(VANTAA_SECOND,))


def test_a_principal_is_principal_of_the_second_school_only(stack, clients):
    token, _ = _sign_in(stack, "kit-rp", clients["kit-rp"], "espoo/koulu", "principal.espoo")
    espoo_second = DEMO_DIRECTORY["espoo"]["schools"][1]["code"]
    verifier = kit(stack)
    assert verifier.verify(token["access_token"], roles=("principal",), schools=(espoo_second,))
    with pytest.raises(WrongSchool):
        verifier.verify(token["access_token"], roles=("principal",), schools=(ESPOO_FIRST,))


def test_an_mpassid_profile_clients_access_tokens_have_the_same_roles(stack, clients):
    """Its ID token and userinfo keep MPASSid's names; its access tokens are the broker's own."""
    token, userinfo = _sign_in(stack, "kit-mpassid-rp", clients["kit-mpassid-rp"], "vantaa/koulu",
                               "teacher.vantaa")
    assert "roles" not in userinfo and len(userinfo["urn:mpass.id:role"]) == 2
    verifier = kit(stack, "kit-mpassid-rp")
    claims = verifier.verify(token["access_token"], roles=("teacher",), schools=(VANTAA_SECOND,))
    ACCESS_TOKEN.validate(claims)
    assert not {"office_oid"} & {k for a in claims["role_assignments"] for k in a}
    with pytest.raises(WrongSchool):
        verifier.verify(token["access_token"], roles=("teacher",), schools=(ESPOO_FIRST,))


def test_what_the_broker_sent_has_the_documented_shape(stack, teacher):
    token, userinfo = teacher
    ACCESS_TOKEN.validate(_payload(token["access_token"]))
    id_token = TokenVerifier(stack.broker_url, "kit-rp", typ=None).verify(token["id_token"])  # signature checked
    CLAIMS.validate(id_token)
    CLAIMS.validate(userinfo)
    assert id_token["roles"] == userinfo["roles"] == ["teacher"]
    assert id_token["role_assignments"] == userinfo["role_assignments"] == _payload(
        token["access_token"])["role_assignments"]


def test_switched_forged_and_foreign_tokens_are_refused(stack, teacher, clients):
    token, _ = teacher
    verifier = kit(stack)
    # the ID token is no access token (RFC 9068 §4: typ)
    with pytest.raises(WrongTokenType):
        verifier.verify(token["id_token"], roles=("teacher",))
    # moved to an Espoo school in the payload: the signature no longer verifies
    head, payload, signature = token["access_token"].split(".")
    claims = json.loads(b64url_decode(payload))
    claims["role_assignments"] = [{**a, "school": ESPOO_FIRST} for a in claims["role_assignments"]]
    forged = ".".join((head, b64url_encode(json.dumps(claims).encode()), signature))
    with pytest.raises(BadSignature):
        verifier.verify(forged, roles=("teacher",), schools=(ESPOO_FIRST,))
    # a token issued to another client is not for this service
    other, _ = _sign_in(stack, "kit-mpassid-rp", clients["kit-mpassid-rp"], "vantaa/koulu", "teacher.vantaa")
    with pytest.raises(WrongAudience):
        verifier.verify(other["access_token"], roles=("teacher",))


def test_a_revoked_token_fails_at_introspection(stack, clients):
    token, _ = _sign_in(stack, "kit-rp", clients["kit-rp"], "vantaa/koulu", "teacher.vantaa")
    meta = _metadata(stack)
    asking = kit(stack, introspection=Introspection(meta["introspection_endpoint"], "kit-rp", clients["kit-rp"],
                                                    cache_seconds=0))
    assert asking.verify(token["access_token"], roles=("teacher",), schools=(VANTAA_FIRST,))
    revoked = requests.post(meta["revocation_endpoint"], auth=("kit-rp", clients["kit-rp"]), timeout=5,
                            data={"token": token["access_token"], "token_type_hint": "access_token"})
    assert revoked.status_code == 200
    with pytest.raises(RevokedToken):
        asking.verify(token["access_token"], roles=("teacher",), schools=(VANTAA_FIRST,))
    assert kit(stack).verify(token["access_token"])  # offline, it stays valid until it expires


def test_require_token_lets_the_teacher_in_at_the_teachers_school_only(stack, teacher):
    token, _ = teacher

    def grades(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(environ["digione.token"]["roles"]).encode()]

    def call(app) -> tuple[str, bytes]:
        seen = {}
        body = b"".join(app({"REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": "Bearer " + token["access_token"]},
                            lambda status, headers: seen.setdefault("status", status)))
        return seen["status"], body

    verifier = kit(stack)
    assert call(require_token(verifier, roles=("teacher",), schools=(VANTAA_FIRST,))(grades)) == (
        "200 OK", b'["teacher"]')
    status, body = call(require_token(verifier, roles=("teacher",), schools=(ESPOO_FIRST,))(grades))
    assert status == "403 Forbidden" and json.loads(body)["error"] == "insufficient_scope"
