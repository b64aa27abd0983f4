"""A login under way when a new registry version is activated finishes on the new login path,
and one city's refused change leaves every city's login as it was."""

from __future__ import annotations

import pytest
from agent import Person, register_client

from broker.registry.versions import Invalid

REDIRECT = "https://switch-rp.example/cb"


@pytest.fixture(scope="module")
def rp(stack):
    client, _ = register_client(stack, client_id="switch-rp", redirect_uris=[REDIRECT],
                                policy={"scopes": ["openid", "roles"]})
    return client.client_id


def _authorize(stack, client_id: str, hint: str) -> str:
    return (f"{stack.broker_url}/authorize?response_type=code&client_id={client_id}&redirect_uri={REDIRECT}"
            f"&scope=openid&state=s1&nonce=n&idp_hint={hint}")


@pytest.mark.parametrize("hint,username", [("turku/koulu", "teacher.turku"), ("espoo/entra", "pupil.espoo")])
def test_a_login_under_way_finishes_after_an_activation(stack, rp, hint, username):
    person = Person()
    at_idp = person.get(_authorize(stack, rp, hint))   # the person is at the city's IdP ...
    served = stack.app.seq
    register_client(stack, client_id=f"another-{hint.replace('/', '-')}", redirect_uris=["https://x.example/cb"])
    assert stack.app.seq > served, "... while another version became active"
    callback = Person.callback(person.sign_in(at_idp, username))
    assert callback.startswith(REDIRECT + "?code=")


def test_one_citys_refused_change_changes_no_login(stack, rp):
    registry = stack.app.registry_service
    turku = registry.versions.state().documents[("tenant", "turku")]
    served = stack.app.seq
    with pytest.raises(Invalid) as refused:
        registry.propose({("tenant", "turku"): {**turku, "schools": []}}, by="turku-admin", comment="oops")
    assert any("turku.yaml: schools: expected a non-empty list" in p for p in refused.value.problems)
    assert not stack.app.rebuild() and stack.app.seq == served
    for hint, username in (("turku/koulu", "teacher.turku"), ("vantaa/koulu", "pupil.vantaa")):
        person = Person()
        callback = Person.callback(person.sign_in(person.get(_authorize(stack, rp, hint)), username))
        assert callback.startswith(REDIRECT + "?code=")
