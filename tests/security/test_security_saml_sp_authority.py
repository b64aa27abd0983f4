"""Which city IdP a person used is not every service's business (SAML Core §2.7.2.2, ADR 0013).

The ``<AuthenticatingAuthority>`` of the assertions the broker issues names the broker itself unless
the SP's registration entitles it to the city IdP (``release_authenticating_authority``), and the
city IdP's identifier (a SAML entityID, an OIDC issuer with the city's Entra tenant in it) appears
nowhere else in the Response.  The decision is the SP's, not the session's: single sign-on from a
session opened for an entitled SP still tells an unentitled one nothing.  Switching the entitlement
on is reviewed by a platform admin, as a wider release policy is.

Real peers: stock pysaml2 SPs, the demo city SAML IdP (Lahti) and the demo Entra tenant (Espoo).
"""

from __future__ import annotations

import pytest

from broker.admin.registrations import prepare_sp

from .agent import HTML, Person
from .saml_sps import make_sp, parse, sign_in_for

#: The city IdPs, by MPASSid authnsource: (registry key, how its identifier is read).
CITIES = {"lahti-koulu": ("lahti/koulu", lambda idp: idp.entity_id),
          "espoo-entra": ("espoo/entra", lambda idp: idp.issuer)}
USERS = {"lahti-koulu": "teacher.lahti", "espoo-entra": "teacher.espoo"}


@pytest.fixture(scope="module")
def sps(stack, tmp_path_factory):
    directory = tmp_path_factory.mktemp("authority-sps")
    made = {"unentitled": make_sp(stack, directory, "not-entitled"),
            "entitled": make_sp(stack, directory, "entitled", release_authenticating_authority=True)}
    stack.app.rebuild()
    return made


def _city(stack, source: str) -> str:
    key, identifier = CITIES[source]
    value = identifier(stack.app.registry.tenants.idps[key])
    assert value
    return value


def _authorities(sp, answer) -> list[str]:
    authn = parse(sp, answer.xml, answer.request_id)
    return [a.text for s in authn.assertion.authn_statement for a in s.authn_context.authenticating_authority]


def _broker(stack) -> str:
    return f"{stack.broker_url}/saml2/idp/metadata"


@pytest.mark.parametrize("source", list(CITIES))
def test_an_unentitled_sp_learns_nothing_of_the_city_idp(stack, sps, source):
    answer = sign_in_for(stack, sps["unentitled"], source, USERS[source])
    assert _authorities(sps["unentitled"], answer) == [_broker(stack)]
    city = _city(stack, source)
    assert city.encode() not in answer.xml, "the city IdP is named in the Response"
    for node in answer.root.iter():   # nor in any attribute value or text, under another spelling
        assert city.lower() not in ((node.text or "") + " ".join(node.attrib.values())).lower()


@pytest.mark.parametrize("source", list(CITIES))
def test_an_entitled_sp_is_told_the_city_idp(stack, sps, source):
    answer = sign_in_for(stack, sps["entitled"], source, USERS[source])
    assert _authorities(sps["entitled"], answer) == [_city(stack, source)]


@pytest.mark.parametrize("first,then", [("entitled", "unentitled"), ("unentitled", "entitled")])
def test_single_sign_on_decides_per_sp_not_per_session(stack, sps, first, then):
    person = Person(stop_at=("https://",), language="en", accept=HTML)
    sign_in_for(stack, sps[first], "lahti-koulu", "pupil.lahti", person)
    answer = sign_in_for(stack, sps[then], "lahti-koulu", "pupil.lahti", person)   # from the broker session
    expected = _city(stack, "lahti-koulu") if then == "entitled" else _broker(stack)
    assert _authorities(sps[then], answer) == [expected]
    if then == "unentitled":
        assert _city(stack, "lahti-koulu").encode() not in answer.xml


def test_the_entitlement_is_reviewed_like_a_wider_policy(sps):
    """An SP's owner switching it on waits for a platform admin; switching it off does not."""
    sp = sps["unentitled"]
    policy = {"scopes": ["openid", "roles", "profile"], "profile": "mpassid"}
    existing = prepare_sp(sp.metadata, "not-entitled", policy, "roles", None, comment="",
                          approved_by_author=True).document
    asked = prepare_sp(sp.metadata, "not-entitled", {**policy, "release_authenticating_authority": True}, "roles",
                       existing, comment="", approved_by_author=False)
    assert asked.status == "pending_approval"
    assert asked.document["policy"]["release_authenticating_authority"] is True
    unchanged = prepare_sp(sp.metadata, "not-entitled", policy, "roles", existing, comment="",
                           approved_by_author=False)
    assert unchanged.status == "staged"
    dropped = prepare_sp(sp.metadata, "not-entitled", policy, "roles", asked.document, comment="",
                         approved_by_author=False)
    assert dropped.status == "staged" and "release_authenticating_authority" not in dropped.document["policy"]
