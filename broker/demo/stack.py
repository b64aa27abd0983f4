"""The embedded default: the broker, the demo city IdPs and two demo services, on localhost.

:class:`DemoStack` is what ``broker demo`` runs and what the end-to-end tests
start (on free ports, with a fresh directory).  ``prepare`` generates every key,
certificate, IdP metadata file and client secret into the demo directory (an
ignored folder, ``var/demo`` by default) and registers the demo services as
OIDC clients; ``start`` serves everything on threads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.demo import entra_idp, saml_idp, service
from broker.demo.directory import DEMO_DIRECTORY
from broker.demo.servers import ServerHandle, serve_in_thread
from broker.settings import ROOT, Settings

if TYPE_CHECKING:
    from broker.app import BrokerApp

logger = logging.getLogger(__name__)

ENTRA_CITIES = ("vantaa", "espoo", "oulu")   # the tenants whose files name an Entra IdP


@dataclasses.dataclass(frozen=True)
class Ports:
    broker: int = 8000
    saml: int = 8101
    entra: int = 8102
    service_a: int = 8201
    service_b: int = 8202


def _url(port: int) -> str:
    return f"http://localhost:{port}"


class DemoStack:
    """Everything the demo needs, wired together."""

    def __init__(self, *, demo_dir: Path | None = None, metadata_dir: Path | None = None,
                 registry_dir: Path | None = None, ports: Ports = Ports(), store=None,
                 host: str = "127.0.0.1", environ: Mapping[str, str] | None = None):
        self.demo_dir = Path(demo_dir or ROOT / "var" / "demo")
        self.metadata_dir = Path(metadata_dir or ROOT / "metadata")
        self.registry_dir = Path(registry_dir or self.demo_dir / "registry")
        self.ports = ports
        self.host = host
        self.store = store
        self.environ = dict(os.environ if environ is None else environ)
        self.servers: list[ServerHandle] = []
        self.app: BrokerApp | None = None

    # -- URLs -----------------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        return _url(self.ports.broker)

    @property
    def saml_url(self) -> str:
        return _url(self.ports.saml)

    @property
    def entra_url(self) -> str:
        return _url(self.ports.entra)

    @property
    def service_urls(self) -> tuple[str, str]:
        return _url(self.ports.service_a), _url(self.ports.service_b)

    # -- preparing -----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment the broker reads tenant files and settings with."""
        return {**self.environ, "DEMO_ENTRA_URL": self.entra_url, "BROKER_DEMO_DIR": str(self.demo_dir),
                "BROKER_METADATA_DIR": str(self.metadata_dir), "BROKER_REGISTRY_DIR": str(self.registry_dir),
                "BROKER_KEYS_DIR": str(self.demo_dir / "broker-keys"), "BROKER_PORT": str(self.ports.broker),
                "BROKER_BASE_URL": self.broker_url}

    def settings(self, **overrides: Any) -> Settings:
        return Settings.from_env(self.env(), **overrides)

    def prepare(self) -> None:
        """Generate keys, IdP metadata and secrets; register the demo services (idempotent)."""
        keys = self.demo_dir / "keys"
        saml_idp.ensure_idp_keys(keys)
        for city in DEMO_DIRECTORY:
            saml_idp.write_idp_metadata(self.saml_url, city, keys, self.metadata_dir / "demo" / f"{city}-idp.xml")
        for city in ENTRA_CITIES:
            self._secret(f"entra-{city}")
        from broker.app import open_registry
        from broker.registry.relying_parties import client_document

        registry = open_registry(self.settings())
        registry.seed()
        clients = []
        for index, url in enumerate(self.service_urls):
            client_id = f"demo-service-{'ab'[index]}"
            # A hears of a broker logout by back-channel (a logout token POSTed by the broker),
            # B by front-channel (an iframe on the broker's signed-out page): both kinds are shown.
            logout = ({"backchannel_logout_uri": f"{url}/backchannel-logout",
                       "backchannel_logout_session_required": True} if index == 0 else
                      {"frontchannel_logout_uri": f"{url}/frontchannel-logout",
                       "frontchannel_logout_session_required": True})
            clients.append({
                "client_id": client_id, "name": f"Demo service {'AB'[index]}",
                "client_secret": self._secret(client_id),
                "redirect_uris": [f"{url}/callback"], "post_logout_redirect_uris": [url + "/"], **logout,
                "policy": {"scopes": ["openid", "roles", "schools", "profile", "learner_id", "class_level",
                                      "education_providers"] if index == 0 else ["openid", "roles", "schools"],
                           # Both run on localhost: distinct sectors show that subjects are pairwise.
                           "profile": "digione", "sector": client_id},
            })
        registry.ensure({("client", c.client_id): c.to_dict() for c in (client_document(d)[0] for d in clients)},
                        by="demo", comment="the demo services")

    def _secret(self, name: str) -> str:
        path = self.demo_dir / "secrets" / f"{name}.secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    # -- running -----------------------------------------------------------------------

    def start_idps(self, *, saml_signing_key: Any = None) -> None:
        """Serve the demo IdPs; ``saml_signing_key(city)`` overrides the key pair a SAML IdP signs with."""
        keys = self.demo_dir / "keys"
        sp_metadata_url = f"{self.broker_url}/saml2/sp/metadata"

        def sp_metadata() -> str:
            import requests

            return requests.get(sp_metadata_url, timeout=5).text

        self._serve(saml_idp.create_app(base_url=self.saml_url, cities=list(DEMO_DIRECTORY), key_dir=keys,
                                        sp_metadata=sp_metadata, signing_key=saml_signing_key), self.ports.saml)
        broker_callbacks = [f"{self.broker_url}/oidc/{city}/entra/callback" for city in ENTRA_CITIES]
        # Where the broker comes back after signing out at Entra; its front-channel logout URL
        # (.../frontchannel_logout) the demo Entra derives from the callback it signed in at.
        broker_logouts = [f"{self.broker_url}/oidc/{city}/entra/logout" for city in ENTRA_CITIES]
        self._serve(entra_idp.create_app(
            base_url=self.entra_url,
            tenants={city: DEMO_DIRECTORY[city]["entra_tenant_id"] for city in ENTRA_CITIES},
            clients={f"digione-{city}": {"secret": self._secret(f"entra-{city}"), "redirect_uris": broker_callbacks,
                                         "post_logout_redirect_uris": broker_logouts}
                     for city in ENTRA_CITIES},
            key_dir=keys), self.ports.entra)

    def start_broker(self, **settings_overrides: Any) -> BrokerApp:
        from broker.app import create_app

        app = self.app = create_app(self.settings(**settings_overrides), store=self.store)
        self._serve(app, self.ports.broker)
        return app

    def start_services(self) -> None:
        a, b = self.service_urls
        # Each links to the other's /login: opening it signs in silently through the SSO session.
        pairs = ((a, ("Demo service B", b + "/login")), (b, ("Demo service A", a + "/login")))
        for index, (url, other) in enumerate(pairs):
            client_id = f"demo-service-{'ab'[index]}"
            self._serve(service.create_app(
                name=f"Demo service {'AB'[index]}", base_url=url, issuer=self.broker_url, client_id=client_id,
                client_secret=self._secret(client_id), other_service=other,
                cookie_name=f"demo_service_{'ab'[index]}",
                scope="openid roles schools profile learner_id class_level education_providers"
                if index == 0 else "openid roles schools"),
                self.ports.service_a if index == 0 else self.ports.service_b)

    def start(self) -> DemoStack:
        self.prepare()
        self.start_idps()
        self.start_broker()
        self.start_services()
        return self

    def _serve(self, app, port: int) -> ServerHandle:
        handle = serve_in_thread(app, self.host, port)
        self.servers.append(handle)
        return handle

    def stop(self) -> None:
        for handle in reversed(self.servers):
            handle.shutdown()
        self.servers.clear()
        if self.app is not None:
            self.app.close()

    def describe(self) -> str:
        a, b = self.service_urls
        return json.dumps({"broker": self.broker_url, "demo_service_a": a, "demo_service_b": b,
                           "demo_saml_idp": self.saml_url, "demo_entra_idp": self.entra_url,
                           "users": "docs/demo.md (e.g. pupil.vantaa / demo, teacher.vantaa / demo)"}, indent=2)
