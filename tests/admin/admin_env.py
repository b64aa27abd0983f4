"""A broker for the admin tests: two cities, two services, every role's token, on SQLite or PostgreSQL.

Imported by name (pytest puts this directory on sys.path).  :class:`AdminSite` makes a
broker's folders in a temporary directory (tenants ``vantaa`` and ``espoo``, each with a
SAML IdP whose metadata is a real demo IdP's), a registry database (a SQLite file, or a
fresh PostgreSQL database made for the test module and dropped after it) and a real
:class:`~broker.app.BrokerApp` in process; :func:`principals` gives a token per role.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SECRET = "admin-test-master-secret-" + "y" * 40
SAML_BASE = "http://localhost:8101"
CITIES = ("vantaa", "espoo")
CLIENTS = ("svc-vantaa", "svc-other")
REDIRECT = "https://svc.example.org/cb"


def names(text: str) -> dict[str, str]:
    return {"fi": text, "sv": text, "en": text}


_KEYS: Path | None = None


def metadata_text(city: str) -> str:
    """A real IdP metadata document (the demo IdP's for ``city``, with a real signing certificate)."""
    global _KEYS
    from broker.demo import saml_idp as demo_idp

    if _KEYS is None:
        _KEYS = Path(tempfile.mkdtemp(prefix="admin-test-keys-"))
        demo_idp.ensure_idp_keys(_KEYS, cities=("vantaa", "espoo", "lahti", "oulu"))
    return demo_idp.metadata_xml(SAML_BASE, city, _KEYS)


def sp_metadata(name: str) -> str:
    """A real SAML SP's metadata (pysaml2's own), entityID ``https://<name>.sp.example/sp``."""
    global _KEYS
    from saml2 import BINDING_HTTP_POST
    from saml2.config import SPConfig
    from saml2.metadata import create_metadata_string

    from broker.pki import ensure_keypair

    if _KEYS is None:
        metadata_text("vantaa")
    assert _KEYS is not None
    entity = f"https://{name}.sp.example/sp"
    key, cert = ensure_keypair(_KEYS, f"sp-{name}", common_name=entity)
    config = SPConfig().load({"entityid": entity, "key_file": str(key), "cert_file": str(cert),
                              "service": {"sp": {"endpoints": {"assertion_consumer_service": [
                                  (f"https://{name}.sp.example/acs", BINDING_HTTP_POST)]}}}})
    return create_metadata_string(None, config=config).decode()


def entity_id(city: str) -> str:
    return f"{SAML_BASE}/{city}/idp"


def tenant(city: str, code: str) -> dict[str, Any]:
    return {
        "id": city, "names": names(city.capitalize()), "municipality_code": code,
        "education_provider": {"oid": f"1.2.246.562.10.9{code}0000000", "names": names(f"{city} city")},
        "schools": [{"code": f"9{code}1", "oid": f"1.2.246.562.10.9{code}0000001", "names": names("Demo school")}],
        "identity_providers": [{"id": "koulu", "type": "saml", "names": names("Koulu"),
                                "metadata": {"file": f"{city}-idp.xml"}, "mapping": {"preset": "mpassid-saml"}}],
    }


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the test PostgreSQL (tests/databases.py: CI starts one), dropped afterwards."""
    from databases import create_database, drop_database

    url = create_database("admin_test")
    try:
        yield url
    finally:
        drop_database(url)


@dataclass
class AdminSite:
    """A broker on temporary folders and ``database_url`` (see the module documentation)."""

    root: Path
    database_url: str
    app: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        for name in ("tenants", "metadata", "secrets", "keys", "registry"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        for index, city in enumerate(CITIES):
            (self.root / "metadata" / f"{city}-idp.xml").write_text(metadata_text(city))
            (self.root / "tenants" / f"{city}.yaml").write_text(
                yaml.safe_dump(tenant(city, f"{index + 1:02d}0"), sort_keys=False))

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "BROKER_TENANTS_DIR": str(self.root / "tenants"),
                "BROKER_METADATA_DIR": str(self.root / "metadata"), "BROKER_SECRETS_DIR": str(self.root / "secrets"),
                "BROKER_KEYS_DIR": str(self.root / "keys"), "BROKER_REGISTRY_DIR": str(self.root / "registry"),
                "BROKER_VAR_DIR": str(self.root / "var"), "BROKER_SECRET": SECRET,
                "BROKER_DATABASE_URL": self.database_url, "BROKER_BASE_URL": "http://localhost:8100"}

    def settings(self) -> Any:
        from broker.settings import Settings

        return Settings.from_env(self.env())

    def start(self) -> Any:
        from broker.app import create_app
        from broker.store import MemoryStore

        self.app = create_app(self.settings(), store=MemoryStore(), watch=False)
        service = self.app.registry_service
        for client_id in CLIENTS:
            service.register_client({"client_id": client_id, "redirect_uris": [REDIRECT.replace("svc", client_id)],
                                     "policy": {"scopes": ["openid", "roles"]}}, by="test")
        service.register_sp(sp_metadata("sp-other"), name="sp-other", by="test")
        self.app.rebuild()
        return self.app

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app.registry_service.versions.engine.dispose()


#: The principals of the tests, by name: (grants, description).
ROLES: dict[str, list[dict[str, str]]] = {
    "platform": [{"role": "platform_admin"}],
    "vantaa_admin": [{"role": "city_admin", "tenant": "vantaa"}],
    "vantaa_viewer": [{"role": "city_viewer", "tenant": "vantaa"}],
    "owner": [{"role": "service_owner", "service": "svc-vantaa"}, {"role": "service_owner", "service": "sp/sp-mine"}],
    "owner_new": [{"role": "service_owner", "service": "svc-new"}, {"role": "service_owner", "service": "sp/sp-new"}],
}


def make_tokens(ops: Any) -> dict[str, str]:
    """A token per entry of :data:`ROLES`, made by the operator at the shell."""
    import datetime

    from broker.admin.principals import cli_principal, grants_from_json

    operator = cli_principal("test@host")
    assert operator.is_platform_admin
    out = {}
    for name, grants in ROLES.items():
        token, _ = ops.tokens.create(grants_from_json(copy.deepcopy(grants)), lifetime=datetime.timedelta(hours=1),
                                     by=operator.name, note=name)
        out[name] = token
    return out


def snapshot(app: Any) -> tuple[Any, ...]:
    """Everything an admin call could change: the active state, every version's row, tokens and grants."""
    import sqlalchemy as sa

    from broker.registry import database as db

    engine = app.registry_service.versions.engine
    with engine.connect() as conn:
        tables = tuple(tuple(tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns)))
                       for t in (db.versions, db.changes, db.current, db.head, db.admin_grants))
        tokens = tuple(tuple(r) for r in conn.execute(sa.select(db.admin_tokens.c.id, db.admin_tokens.c.revoked_at,
                                                                db.admin_tokens.c.roles)
                                                      .order_by(db.admin_tokens.c.id)))
    return tables + (tokens,)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
