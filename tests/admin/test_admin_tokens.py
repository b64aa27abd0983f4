"""API tokens: only their SHA-256 is stored; expired, revoked, malformed or unknown tokens are nobody."""

from __future__ import annotations

import datetime
import hashlib

import pytest
import sqlalchemy as sa
from admin_env import bearer
from werkzeug.test import Client

from broker.admin.principals import Grant, GrantError, grants_from_json
from broker.admin.tokens import MAX_LIFETIME, TokenStore, parse_duration
from broker.registry import database as db

VIEWER = (Grant("city_viewer", tenant="vantaa"),)


@pytest.fixture(scope="module")
def store(site):
    return TokenStore(site.app.registry_service.versions.engine)


def _row(store, token_id):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(db.admin_tokens).where(db.admin_tokens.c.id == token_id)).one()


def test_only_the_tokens_hash_is_stored(store):
    token, info = store.create(VIEWER, lifetime=datetime.timedelta(hours=1), by="test", note="hash")
    assert token.startswith("dgadm_") and len(token) == 49
    row = _row(store, info.id)
    assert row.hash == hashlib.sha256(token.encode()).hexdigest()
    with store.engine.connect() as conn:
        everything = str([tuple(r) for r in conn.execute(sa.select(db.admin_tokens))])
    assert token not in everything and token[6:] not in everything
    assert "token" not in info.to_dict()
    principal = store.authenticate(token)
    assert principal.name == f"token:{info.id}" and principal.grants == VIEWER


def test_expired_and_revoked_tokens_are_refused_by_the_api(site, store):
    client = Client(site.app)
    token, info = store.create(VIEWER, lifetime=datetime.timedelta(hours=1), by="test")
    assert client.get("/admin/api/tenants", headers=bearer(token)).status_code == 200
    with store.engine.begin() as conn:
        conn.execute(sa.update(db.admin_tokens).where(db.admin_tokens.c.id == info.id).values(
            expires_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)))
    assert store.authenticate(token) is None and store.get(info.id).state() == "expired"
    assert client.get("/admin/api/tenants", headers=bearer(token)).status_code == 401
    token, info = store.create(VIEWER, lifetime=datetime.timedelta(hours=1), by="test")
    assert store.revoke(info.id, by="test").state() == "revoked"
    assert store.revoke(info.id, by="test").state() == "revoked"     # idempotent
    assert store.revoke("t-no-such", by="test") is None
    assert client.get("/admin/api/tenants", headers=bearer(token)).status_code == 401
    assert info.id not in [t.id for t in store.entries()]
    assert info.id in [t.id for t in store.entries(include_inactive=True)]


def test_malformed_unknown_and_grantless_tokens_are_nobody(store):
    for token in (None, "", "dgadm_", "dgadm_" + "A" * 43, "x" * 49, "dgadm_" + "A" * 42 + "!"):
        assert store.authenticate(token) is None
    token, info = store.create(VIEWER, lifetime=datetime.timedelta(hours=1), by="test")
    with store.engine.begin() as conn:                                 # a row whose grants no longer parse
        conn.execute(sa.update(db.admin_tokens).where(db.admin_tokens.c.id == info.id).values(roles="[{\"role\": 1}]"))
    assert store.authenticate(token) is None


def test_last_use_is_recorded_at_most_once_a_minute(store):
    token, info = store.create(VIEWER, lifetime=datetime.timedelta(hours=1), by="test")
    store.authenticate(token)
    first = store.get(info.id).last_used_at
    store.authenticate(token)
    assert first is not None and store.get(info.id).last_used_at == first


def test_lifetimes_and_grants_are_bounded():
    assert parse_duration("30d") == datetime.timedelta(days=30)
    assert parse_duration("90m") == datetime.timedelta(minutes=90)
    for bad in ("0d", "367d", "30", "d", "-1d", "1y", "", " 5 d"):
        with pytest.raises(GrantError):
            parse_duration(bad)
    assert parse_duration(f"{MAX_LIFETIME.days}d") == MAX_LIFETIME
    for bad in ([], [{"role": "city_admin"}], [{"role": "service_owner", "service": "a/b"}],
                [{"role": "platform_admin", "tenant": "vantaa"}], [{"role": "root"}], [{"role": "city_admin",
                 "tenant": "vantaa", "extra": 1}], "platform_admin", [{"role": "city_admin", "tenant": "Vantaa"}]):
        with pytest.raises(GrantError):
            grants_from_json(bad)
    assert grants_from_json([{"role": "service_owner", "service": "sp/kirjasto"}])[0].service == "sp/kirjasto"
