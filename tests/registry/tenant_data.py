"""Test data for the untrusted-tenant-file tests: real tenant files, real metadata, real
secrets in temporary folders, and the real ``broker`` command.

Imported by name (pytest puts this directory on sys.path), like tests/mapping/mapping_data.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.settings import ROOT

SECRET = "master-secret-" + "x" * 40          # BROKER_SECRET of the tests: must never be shown
SAML_BASE = "http://localhost:8101"


def names(text: str) -> dict[str, str]:
    return {"fi": text, "sv": text, "en": text}


def saml_idp(file: str = "vantaa-idp.xml", **extra: Any) -> dict[str, Any]:
    return {"id": "koulu", "type": "saml", "names": names("Koulu"), "metadata": {"file": file},
            "mapping": {"preset": "mpassid-saml"}, **extra}


def oidc_idp(secret: dict[str, str], *, issuer: str = "https://login.example/v2.0", **extra: Any) -> dict[str, Any]:
    return {"id": "entra", "type": "oidc", "names": names("Microsoft"), "issuer": issuer, "client_id": "digione",
            "client_secret": secret, "mapping": {"preset": "entra"}, **extra}


def tenant(city: str, *idps: dict[str, Any], code: str = "092", **extra: Any) -> dict[str, Any]:
    return {
        "id": city, "names": names(city.capitalize()), "municipality_code": code,
        "education_provider": {"oid": "1.2.246.562.10.90920000000", "names": names(f"{city} city")},
        "schools": [{"code": "90921", "oid": "1.2.246.562.10.90920000001", "names": names("Demo school")}],
        "identity_providers": list(idps), **extra,
    }


@functools.cache
def metadata_text(city: str = "vantaa") -> str:
    """A real IdP metadata document (the demo IdP's, with a real signing certificate)."""
    import tempfile

    from broker.demo import saml_idp as demo_idp

    keys = Path(tempfile.mkdtemp(prefix="tenant-data-keys-"))
    demo_idp.ensure_idp_keys(keys)
    return demo_idp.metadata_xml(SAML_BASE, city, keys)


def entity_id(city: str = "vantaa") -> str:
    return f"{SAML_BASE}/{city}/idp"


def active_registry(settings: Any):
    """The :class:`~broker.assemble.Registry` of the registry database's active version."""
    from broker.app import open_registry
    from broker.assemble import registry_of

    return registry_of(settings, open_registry(settings).versions.state().documents)


@dataclass
class Site:
    """A broker's folders in a temporary directory: tenants, metadata, secrets, keys, registry."""

    root: Path
    tenants: Path = field(init=False)
    metadata: Path = field(init=False)
    secrets: Path = field(init=False)
    keys: Path = field(init=False)
    registry: Path = field(init=False)

    def __post_init__(self):
        for name in ("tenants", "metadata", "secrets", "keys", "registry"):
            path = self.root / name
            path.mkdir(parents=True, exist_ok=True)
            setattr(self, name, path)

    def write_tenant(self, data: dict[str, Any], name: str | None = None) -> Path:
        path = self.tenants / f"{name or data['id']}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
        return path

    def write_metadata(self, name: str = "vantaa-idp.xml", text: str | None = None) -> Path:
        path = self.metadata / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(metadata_text() if text is None else text, encoding="utf-8")
        return path

    def write_secret(self, name: str, value: str) -> Path:
        path = self.secrets / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
        path.chmod(0o600)
        return path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a broker on these folders (what an operator would set)."""
        return {"PATH": "/usr/bin:/bin", "BROKER_TENANTS_DIR": str(self.tenants),
                "BROKER_METADATA_DIR": str(self.metadata), "BROKER_SECRETS_DIR": str(self.secrets),
                "BROKER_KEYS_DIR": str(self.keys), "BROKER_REGISTRY_DIR": str(self.registry),
                "BROKER_VAR_DIR": str(self.root / "var"), "BROKER_SECRET": SECRET, **extra}

    def cli(self, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "broker", *args], env=self.env(**extra), capture_output=True,
                              check=False, text=True, timeout=timeout, cwd=ROOT)
