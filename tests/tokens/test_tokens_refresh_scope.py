"""A refresh that narrows ``scope`` (RFC 6749 §6) releases only the claims of the scopes it kept.

The provider is built as the broker builds it (``broker.assemble``): the broker's own release
(:func:`broker.mapping.release_claims` under each client's policy), its access-token claims
(:func:`broker.mapping.access_token_claims`) and its scope table
(``claims_by_scope=broker.mapping.CLAIMS_BY_SCOPE``).  Authlib refreshes; the ID tokens are verified
with joserfc and Authlib's claim checks, the access tokens with ``digione_verify``, and
userinfo and introspection are asked over HTTP.
"""

from __future__ import annotations

import pytest
import requests
from tokens_env import Env, Registered
from tokens_forge import introspect
from tokens_harness import ProviderApp, subject
from tokens_rp import code_flow, verify_id_token

from broker import mapping
from broker.tokens import build_provider
from broker.tokens.grants import grant_key
from digione_verify import TokenVerifier

PUPIL = {
    "user_id": "1.2.246.562.24.10000000002",
    "given_name": "Aino",
    "family_name": "Virtanen",
    "learner_id": "1.2.246.562.98.09200000001",
    "roles": [{"role": "learner", "code": 1, "school": "90921"}],
}
NAMES_AND_LEARNER_ID = ("given_name", "family_name", "learner_id")
FULL = "openid profile learner_id roles"
#: What the roles scope releases of PUPIL, in ID tokens, userinfo, access tokens and introspection.
ROLES = {"roles": ["learner"], "role_assignments": PUPIL["roles"]}


def broker_release(client, identity, scopes):
    return mapping.release_claims(identity, policy=client.policy, granted_scopes=set(scopes))


def broker_access_claims(client, identity, scopes):
    return mapping.access_token_claims(identity, policy=client.policy, granted_scopes=set(scopes))


def roles_of(claims: dict) -> dict:
    return {name: claims[name] for name in ROLES if name in claims}


def provider_for(env: Env, server, *, claims_by_scope=mapping.CLAIMS_BY_SCOPE) -> Env:
    _, secret = env.registry.add_client({"client_id": "school", "redirect_uris": ["https://school.example/cb"],
                                         "policy": {"scopes": ["openid", "profile", "learner_id", "roles"]}})
    env.clients["school"] = Registered("school", secret, redirect_uri="https://school.example/cb")
    env.login.identity = dict(PUPIL)
    env.provider = build_provider(
        issuer=env.issuer, store=env.store, clients=env.registry, keyring=env.keyring, release=broker_release,
        subject=subject, scopes_supported=tuple(mapping.SCOPES),
        claims_supported=mapping.OIDC_CLAIMS, access_claims=broker_access_claims,
        resource_audiences=("https://api.example",), introspection_clients=("rs",), clock=env.clock,
        jwks_max_age=300, claims_by_scope=claims_by_scope)
    server.app = ProviderApp(env.provider, env.login, env.client_jwks)
    return env


@pytest.fixture
def school(env, server) -> Env:
    return provider_for(env, server)


def userinfo(env, access_token: str) -> dict:
    response = requests.get(env.url("userinfo"), headers={"Authorization": "Bearer " + access_token}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def api(env) -> TokenVerifier:
    return TokenVerifier(env.issuer, "https://api.example", clock=env.clock)


def test_a_refresh_with_openid_roles_gets_no_names_or_learner_id_anywhere(school):
    env = school
    s, token, nonce, _ = code_flow(env, "school", scope=FULL)
    first = verify_id_token(env, token["id_token"], "school", nonce=nonce, access_token=token["access_token"])
    assert all(first[name] == PUPIL[name] for name in NAMES_AND_LEARNER_ID)  # the code's own scopes: all of it
    assert roles_of(first) == ROLES

    narrowed = s.refresh_token(env.url("token"), scope="openid roles")
    assert narrowed["scope"] == "openid roles"
    id_token = verify_id_token(env, narrowed["id_token"], "school", access_token=narrowed["access_token"])
    access = api(env).verify(narrowed["access_token"])
    info = userinfo(env, narrowed["access_token"])
    seen = introspect(env, narrowed["access_token"])
    for where in (id_token, access, info, seen):
        assert not any(name in where for name in NAMES_AND_LEARNER_ID), where
    assert roles_of(id_token) == ROLES and roles_of(info) == ROLES
    assert roles_of(access) == ROLES and roles_of(seen) == ROLES  # RFC 9068 §2.2.3.1
    assert id_token["sub"] == first["sub"] == info["sub"]
    # the access token issued with the code still describes what was granted then
    assert userinfo(env, token["access_token"])["learner_id"] == PUPIL["learner_id"]


def test_a_refresh_with_openid_only_gets_no_roles_either(school):
    env = school
    s, _, _, _ = code_flow(env, "school", scope=FULL)
    narrowed = s.refresh_token(env.url("token"), scope="openid")
    id_token = verify_id_token(env, narrowed["id_token"], "school", access_token=narrowed["access_token"])
    access = api(env).verify(narrowed["access_token"])
    info = userinfo(env, narrowed["access_token"])
    for where in (id_token, access, info, introspect(env, narrowed["access_token"])):
        assert not roles_of(where) and not any(name in where for name in NAMES_AND_LEARNER_ID), where
    assert set(info) == {"sub"}


def test_keeping_profile_keeps_the_names_but_not_the_learner_id(school):
    env = school
    s, _, _, _ = code_flow(env, "school", scope=FULL)
    narrowed = s.refresh_token(env.url("token"), scope="openid profile")
    id_token = verify_id_token(env, narrowed["id_token"], "school", access_token=narrowed["access_token"])
    info = userinfo(env, narrowed["access_token"])
    for where in (id_token, info):
        assert where["given_name"] == PUPIL["given_name"] and where["family_name"] == PUPIL["family_name"]
        assert "learner_id" not in where and not roles_of(where)
    assert not roles_of(api(env).verify(narrowed["access_token"]))


def test_a_refresh_without_scope_has_the_original_scope_again(school):
    """RFC 6749 §6: an omitted scope is the scope originally granted."""
    env = school
    s, _, _, _ = code_flow(env, "school", scope=FULL)
    s.refresh_token(env.url("token"), scope="openid roles")
    again = s.refresh_token(env.url("token"))
    assert again["scope"] == FULL
    id_token = verify_id_token(env, again["id_token"], "school", access_token=again["access_token"])
    assert all(id_token[name] == PUPIL[name] for name in NAMES_AND_LEARNER_ID)
    assert userinfo(env, again["access_token"])["learner_id"] == PUPIL["learner_id"]


def test_a_refresh_without_openid_gets_no_id_token_and_no_userinfo(school):
    env = school
    s, _, _, _ = code_flow(env, "school", scope=FULL)
    narrowed = s.refresh_token(env.url("token"), scope="roles")
    assert "id_token" not in narrowed and roles_of(api(env).verify(narrowed["access_token"])) == ROLES
    response = requests.get(env.url("userinfo"), headers={"Authorization": "Bearer " + narrowed["access_token"]},
                            timeout=5)
    assert response.status_code == 403  # OIDC Core §5.3: userinfo needs openid


def test_without_a_scope_table_a_narrowed_refresh_keeps_every_claim(env, server):
    """claims_by_scope=None: no filtering, as before."""
    env = provider_for(env, server, claims_by_scope=None)
    s, _, _, _ = code_flow(env, "school", scope=FULL)
    narrowed = s.refresh_token(env.url("token"), scope="openid roles")
    id_token = verify_id_token(env, narrowed["id_token"], "school", access_token=narrowed["access_token"])
    assert id_token["learner_id"] == PUPIL["learner_id"]


def test_a_grant_stored_with_the_old_roles_refreshes_into_names_and_assignments(school):
    """A grant written before access claims were a mapping (``ro``: the bare role objects, as the
    broker stored them until issue 11) keeps working across the upgrade: its refreshed access
    tokens carry role names and assignments, which the kit checks."""
    env = school
    s, token, _, _ = code_flow(env, "school", scope=FULL)
    gid = api(env).verify(token["access_token"])["gid"]
    grant = env.store.get(grant_key(gid))
    env.store.put(grant_key(gid), {**grant, "ro": [dict(r) for r in PUPIL["roles"]]}, 3600)
    refreshed = s.refresh_token(env.url("token"))
    access = api(env).verify(refreshed["access_token"], roles=("learner",), schools=("90921",))
    assert roles_of(access) == ROLES


def test_access_claims_never_replace_what_the_access_token_itself_says(env, server):
    """Whatever ``access_claims`` returns, the RFC 9068 claims are the provider's own."""
    def hostile(client, identity, scopes):
        return {"roles": ["principal"], "iss": "https://evil.example", "sub": "someone-else", "aud": "x",
                "client_id": "other", "scope": "admin", "exp": 9999999999, "gid": "g", "jti": "j"}

    provider_for(env, server)
    env.provider = build_provider(
        issuer=env.issuer, store=env.store, clients=env.registry, keyring=env.keyring, release=broker_release,
        subject=subject, scopes_supported=tuple(mapping.SCOPES), access_claims=hostile,
        resource_audiences=("https://api.example",), clock=env.clock, claims_by_scope=mapping.CLAIMS_BY_SCOPE)
    server.app = ProviderApp(env.provider, env.login, env.client_jwks)
    _, token, _, _ = code_flow(env, "school", scope=FULL)
    access = api(env).verify(token["access_token"], roles=("principal",))
    assert access["iss"] == env.issuer and access["client_id"] == "school" and access["scope"] == FULL
    assert access["aud"] == ["school", "https://api.example"] and access["sub"] != "someone-else"
    assert access["exp"] < 9999999999 and access["gid"] != "g" and access["jti"] != "j"
