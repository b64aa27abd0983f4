"""Fixtures of the admin tests: one broker per test module and database (SQLite, then PostgreSQL).

``site`` is an :class:`admin_env.AdminSite` started on a fresh registry database; ``ops``
its :class:`~broker.admin.operations.AdminOperations`; ``tokens`` a bearer token per role
of :data:`admin_env.ROLES`; ``principals`` the same as :class:`Principal` objects.
"""

from __future__ import annotations

import pytest
from admin_env import AdminSite, make_tokens, postgres_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('admin-db') / 'registry.sqlite3'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(scope="module")
def site(database_url, tmp_path_factory):
    site = AdminSite(tmp_path_factory.mktemp("admin-site"), database_url)
    site.start()
    yield site
    site.close()


@pytest.fixture(scope="module")
def ops(site):
    from broker.admin.operations import AdminOperations

    return AdminOperations(site.app)


@pytest.fixture(scope="module")
def tokens(ops):
    return make_tokens(ops)


@pytest.fixture(scope="module")
def principals(ops, tokens):
    found = {name: ops.principal_for_token(token) for name, token in tokens.items()}
    assert all(found.values())
    return found
