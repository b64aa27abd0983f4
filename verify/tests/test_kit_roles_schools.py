"""Roles and schools: what ``roles=`` and ``schools=`` accept and what they refuse.

The broker's access tokens carry ``roles`` (role names) and ``role_assignments`` (where each
role is held).  A role check reads ``roles`` only; a school check pairs role and school in
one ``role_assignments`` entry, so a teacher at one school who is the principal of another
never passes as the principal of the first.
"""

from __future__ import annotations

import json

import pytest
from kit_tokens import TEACHER_AND_PRINCIPAL, Issuer

from digione_verify import (
    BadSignature,
    Forbidden,
    MissingRole,
    WrongSchool,
    require_token,
    roles_of,
    schools_of,
)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


def test_role_names_pass(issuer):
    verifier = issuer.verifier()
    claims = verifier.verify(issuer.access_token(), roles=("teacher",))
    assert claims["roles"] == ["teacher", "principal"]
    assert verifier.verify(issuer.access_token(), roles=("teacher", "principal"))["sub"] == "pairwise-sub"
    assert issuer.verifier(required_roles=("principal",)).verify(issuer.access_token())


def test_a_role_not_held_is_refused_as_forbidden(issuer):
    with pytest.raises(MissingRole) as caught:
        issuer.verifier().verify(issuer.access_token(), roles=("teacher", "learner"))
    assert caught.value.status == 403 and caught.value.error == "insufficient_scope"
    assert caught.value.reason == "role learner is required"
    with pytest.raises(MissingRole):
        issuer.verifier(required_roles=("learner",)).verify(issuer.access_token())


@pytest.mark.parametrize("roles", [
    [{"role": "teacher", "code": 2, "school": "03083"}],     # the old shape: objects are not role names
    {"teacher": True},
    None,
    [["teacher"]],
    ["Teacher"],                                             # names are exact
])
def test_roles_that_are_not_role_names_count_for_nothing(issuer, roles):
    with pytest.raises(MissingRole):
        issuer.verifier().verify(issuer.access_token(roles=roles), roles=("teacher",))


def test_a_single_role_name_as_a_string_is_one_role(issuer):
    assert issuer.verifier().verify(issuer.access_token(roles="teacher"), roles=("teacher",))


def test_a_role_at_the_required_school_passes(issuer):
    verifier = issuer.verifier()
    assert verifier.verify(issuer.access_token(), roles=("teacher",), schools=("03083",))
    assert verifier.verify(issuer.access_token(), roles=("principal",), schools=("03084",))
    # schools are alternatives: a teacher at either
    assert verifier.verify(issuer.access_token(), roles=("teacher",), schools=("99999", "03083"))
    # no role named: some role at that school
    assert verifier.verify(issuer.access_token(), schools=("03084",))
    assert issuer.verifier(required_schools=("03083",)).verify(issuer.access_token(), roles=("teacher",))


def test_a_role_at_another_school_is_refused(issuer):
    verifier = issuer.verifier()
    with pytest.raises(WrongSchool) as caught:
        verifier.verify(issuer.access_token(), roles=("teacher",), schools=("03084",))
    assert caught.value.reason == "role teacher at school 03084 is required"
    assert isinstance(caught.value, MissingRole) and caught.value.status == 403
    with pytest.raises(WrongSchool):
        verifier.verify(issuer.access_token(), schools=("99999",))
    with pytest.raises(WrongSchool):  # the verifier's own school requirement holds on every call
        issuer.verifier(required_schools=("99999",)).verify(issuer.access_token(), roles=("teacher",))


def test_roles_and_schools_are_paired_by_one_assignment_never_mixed(issuer):
    """A teacher at 03083 and principal of 03084 is no principal at 03083, nor teacher at 03084."""
    verifier = issuer.verifier()
    for role, school in (("principal", "03083"), ("teacher", "03084")):
        with pytest.raises(WrongSchool):
            verifier.verify(issuer.access_token(), roles=(role,), schools=(school,))
    # both roles required, each at one of the schools: every role must be held at one of them
    assert verifier.verify(issuer.access_token(), roles=("teacher", "principal"), schools=("03083", "03084"))
    with pytest.raises(WrongSchool):
        verifier.verify(issuer.access_token(), roles=("teacher", "principal"), schools=("03083",))


@pytest.mark.parametrize("assignments", [
    None,
    "teacher;03083",
    {"role": "teacher", "school": "03083"},
    [["teacher", "03083"]],
    [{"role": "teacher", "school": 3083}],
    [{"role": "teacher"}],                                   # a role at the education provider: no school
    [{"school": "03083"}],
    [{"role": ["teacher"], "school": "03083"}],
])
def test_assignments_that_do_not_say_role_and_school_count_for_nothing(issuer, assignments):
    with pytest.raises(WrongSchool):
        issuer.verifier().verify(issuer.access_token(role_assignments=assignments), roles=("teacher",),
                                 schools=("03083",))


def test_the_role_names_are_checked_too_when_schools_are(issuer):
    """An assignment does not stand in for ``roles``: both claims must say so."""
    token = issuer.access_token(roles=["principal"])
    with pytest.raises(MissingRole) as caught:
        issuer.verifier().verify(token, roles=("teacher",), schools=("03083",))
    assert not isinstance(caught.value, WrongSchool)


def test_an_assignment_edited_after_signing_is_refused(issuer):
    """Moving the teacher to another school in the payload breaks the signature."""
    token = issuer.access_token()
    head, payload, signature = token.split(".")
    from digione_verify import b64url_decode, b64url_encode

    claims = json.loads(b64url_decode(payload))
    claims["role_assignments"][0]["school"] = "03084"
    forged = ".".join((head, b64url_encode(json.dumps(claims).encode()), signature))
    with pytest.raises(BadSignature):
        issuer.verifier().verify(forged, roles=("teacher",), schools=("03084",))


def test_roles_of_and_schools_of_read_the_claims():
    assert roles_of(TEACHER_AND_PRINCIPAL) == {"teacher", "principal"}
    assert schools_of(TEACHER_AND_PRINCIPAL) == {"03083", "03084"}
    assert schools_of(TEACHER_AND_PRINCIPAL, "teacher") == {"03083"}
    assert schools_of(TEACHER_AND_PRINCIPAL, "learner") == frozenset()
    assert roles_of({}) == schools_of({}) == frozenset()
    assert roles_of({"roles": [{"role": "teacher"}]}) == frozenset()


def _wsgi(app, token: str | None):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = "Bearer " + token
    seen: dict = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def test_require_token_checks_schools_on_a_wsgi_app(issuer):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [",".join(sorted(schools_of(environ["digione.token"], "teacher"))).encode()]

    at_03083 = require_token(issuer.verifier(), roles=("teacher",), schools=("03083",))(app)
    assert _wsgi(at_03083, issuer.access_token()) == ("200 OK", {"Content-Type": "text/plain"}, b"03083")
    at_03084 = require_token(issuer.verifier(), roles=("teacher",), schools=("03084",))(app)
    status, headers, body = _wsgi(at_03084, issuer.access_token())
    assert status == "403 Forbidden" and headers["Cache-Control"] == "no-store"
    assert headers["WWW-Authenticate"].startswith('Bearer realm="api", error="insufficient_scope"')
    assert json.loads(body) == {"error": "insufficient_scope",
                                "error_description": "role teacher at school 03084 is required"}
    assert _wsgi(at_03084, None)[0] == "401 Unauthorized"


def test_require_token_checks_schools_on_a_flask_view(issuer):
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)

    @app.get("/grades")
    @require_token(issuer.verifier(), roles=("teacher",), schools=("03083",))
    def grades():
        return {"schools": sorted(schools_of(flask.g.token_claims, "teacher"))}

    client = app.test_client()
    assert client.get("/grades", headers={"Authorization": "Bearer " + issuer.access_token()}).json == {
        "schools": ["03083"]}
    elsewhere = issuer.access_token(role_assignments=[{"role": "teacher", "code": 2, "school": "03084"}])
    refused = client.get("/grades", headers={"Authorization": "Bearer " + elsewhere})
    assert refused.status_code == 403 and refused.json["error"] == "insufficient_scope"


def test_forbidden_is_the_family_of_every_grant_failure():
    assert issubclass(WrongSchool, MissingRole) and issubclass(MissingRole, Forbidden)
