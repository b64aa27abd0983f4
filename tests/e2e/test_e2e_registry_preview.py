"""A staged version is reachable only through its test link: one browser signs in through a staged IdP
while everyone else keeps the active version; activation ends the test and makes it live."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from agent import Person, choice_form, register_client

from broker.registry import preview
from broker.registry.preview import COOKIE

REDIRECT = "https://preview-rp.example/cb"


@pytest.fixture(scope="module")
def rp(stack):
    client, _ = register_client(stack, client_id="preview-rp", redirect_uris=[REDIRECT],
                                policy={"scopes": ["openid", "roles"]})
    return client.client_id


@pytest.fixture(scope="module")
def staged(stack):
    """Oulu's SAML IdP under a new id, ``uusi``: staged, not active."""
    registry = stack.app.registry_service
    oulu = registry.versions.state().documents[("tenant", "oulu")]
    idps = [dict(idp, id="uusi") if idp["id"] == "koulu" else idp for idp in oulu["identity_providers"]]
    return registry.propose({("tenant", "oulu"): {**oulu, "identity_providers": idps}}, by="test",
                            comment="Oulu's new IdP", activate=False)


def _authorize(stack, client_id: str) -> str:
    return (f"{stack.broker_url}/authorize?response_type=code&client_id={client_id}&redirect_uri={REDIRECT}"
            f"&scope=openid&state={secrets.token_urlsafe(8)}&nonce=n")


def _disco(person: Person, stack, client_id: str):
    response = person.get(_authorize(stack, client_id))
    assert "/disco" in response.url
    return person.get(f"{stack.broker_url}/disco?tenant=oulu") if choice_form(response, "oulu/koulu") is None \
        and choice_form(response, "oulu/uusi") is None else response


def test_only_the_browser_with_the_test_link_sees_the_staged_idp_and_signs_in_through_it(stack, rp, staged):
    tester, everyone = Person(), Person()
    started = tester.get(preview.test_link(stack.settings(), staged.id))
    assert started.status_code == 200 and COOKIE in tester.http.cookies
    page = _disco(tester, stack, rp)
    assert choice_form(page, "oulu/uusi") is not None and choice_form(page, "oulu/koulu") is None
    answer = tester.sign_in(tester.choose(page, "oulu", "uusi"), "pupil.oulu")
    callback = Person.callback(answer)
    assert callback.startswith(REDIRECT) and "code" in parse_qs(urlsplit(callback).query)
    # Its broker session is the preview's own: the live login path never sees it.
    assert not any(name in tester.http.cookies for name in ("digione_sso",))

    live = _disco(everyone, stack, rp)
    assert choice_form(live, "oulu/koulu") is not None and choice_form(live, "oulu/uusi") is None


def test_a_forged_or_expired_link_is_refused_and_routes_nothing(stack, rp, staged):
    person = Person()
    link = preview.test_link(stack.settings(), staged.id)
    version, expires, mac = link.split("t=")[1].split(".")
    for forged in (f"{int(version) + 1}.{expires}.{mac}", f"{version}.{int(expires) + 60}.{mac}",
                   f"{version}.1.{mac}", "garbage"):
        refused = person.get(f"{stack.broker_url}/registry/preview?t={forged}")
        assert refused.status_code == 400
        assert not person.http.cookies.get(COOKIE)
    person.http.cookies.set(COOKIE, f"{version}.{expires}.{'0' * 64}")
    page = _disco(person, stack, rp)
    assert choice_form(page, "oulu/koulu") is not None, "a forged cookie is ignored: the live version serves"


def test_activation_ends_the_test_and_the_new_idp_is_live(stack, rp, staged):
    tester = Person()
    link = preview.test_link(stack.settings(), staged.id)
    tester.get(link)
    stack.app.registry_service.activate(staged.id, by="test")
    assert stack.app.rebuild()
    gone = tester.get(link)
    assert gone.status_code == 410
    page = _disco(Person(), stack, rp)
    assert choice_form(page, "oulu/uusi") is not None and choice_form(page, "oulu/koulu") is None
    stack.app.registry_service.rollback(by="test", comment="back to koulu")
    assert stack.app.rebuild()
    assert choice_form(_disco(Person(), stack, rp), "oulu/koulu") is not None
