"""Configuration from the environment and ``config/broker.yaml``, read once at start.

Secrets never live in the repository: the master secret comes from
``BROKER_SECRET`` or the file named by ``BROKER_SECRET_FILE``; without either,
the broker generates one into its keys directory (an ignored folder) — fine for
the demo and one machine, while several instances must be given the same secret.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

import yaml

from broker.derive import derive_key

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclasses.dataclass(frozen=True)
class Lifetimes:
    """Lifetimes in seconds of everything the broker keeps between requests."""

    flow: int = 900               # a login in progress (state cookie, SAML request id)
    sso_session: int = 8 * 3600   # one school day
    code: int = 60
    access_token: int = 600
    id_token: int = 600
    refresh_token: int = 8 * 3600
    discovery_choice: int = 180 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class Settings:
    base_url: str
    port: int
    redis_url: str | None
    workers: int
    tenants_dir: Path
    metadata_dir: Path
    registry_dir: Path
    keys_dir: Path
    config_dir: Path
    master_secret: bytes
    redis_prefix: str = "digione:"
    signature_backend: str = "in-process"
    #: Audiences added to every access token (the platform's resource servers), RFC 9068 §3.
    resource_audiences: tuple[str, ...] = ()
    #: Client ids of resource servers that may introspect any token (RFC 7662 §2.1).
    introspection_clients: tuple[str, ...] = ()
    cookie_secure: bool = False
    access_log: bool = False
    #: The pre-fork server of ``broker serve``: uwsgi (default) or gunicorn.
    server: str = "uwsgi"
    log_level: str = "INFO"
    lifetimes: Lifetimes = Lifetimes()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The environment the settings were read from; tenant files expand ``${VARS}`` from it too.
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def user_id_salt(self) -> bytes:
        """Salt of the broker's user ids (tenant- and IdP-scoped, never an upstream value)."""
        return derive_key(self.master_secret, b"user-id")

    @property
    def pairwise_salt(self) -> bytes:
        """Salt of pairwise subject identifiers."""
        return derive_key(self.master_secret, b"pairwise-subject")

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure or self.base_url.startswith("https://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``) and ``config/broker.yaml``.

        Keyword ``overrides`` win over both; tests use them instead of the environment.
        """
        env = dict(os.environ if environ is None else environ)
        config_dir = Path(overrides.pop("config_dir", None) or env.get("BROKER_CONFIG_DIR") or ROOT / "config")
        file_conf = _read_yaml(config_dir / "broker.yaml")
        port = int(overrides.pop("port", None) or env.get("BROKER_PORT") or file_conf.get("port", 8000))
        base_url = (overrides.pop("base_url", None) or env.get("BROKER_BASE_URL")
                    or file_conf.get("base_url") or f"http://localhost:{port}").rstrip("/")
        var = Path(env.get("BROKER_VAR_DIR") or ROOT / "var")
        keys_dir = Path(overrides.pop("keys_dir", None) or env.get("BROKER_KEYS_DIR") or var / "keys")
        lifetimes = Lifetimes(**{k: int(v) for k, v in (file_conf.get("lifetimes") or {}).items()})
        values: dict[str, Any] = dict(
            base_url=base_url,
            port=port,
            redis_url=env.get("BROKER_REDIS_URL") or None,
            redis_prefix=env.get("BROKER_REDIS_PREFIX") or file_conf.get("redis_prefix", "digione:"),
            resource_audiences=tuple(file_conf.get("resource_audiences") or ()),
            introspection_clients=tuple(file_conf.get("introspection_clients") or ()),
            workers=int(env.get("BROKER_WORKERS") or file_conf.get("workers", 1)),
            tenants_dir=Path(env.get("BROKER_TENANTS_DIR") or ROOT / "tenants"),
            metadata_dir=Path(env.get("BROKER_METADATA_DIR") or ROOT / "metadata"),
            registry_dir=Path(env.get("BROKER_REGISTRY_DIR") or var / "registry"),
            keys_dir=keys_dir,
            config_dir=config_dir,
            signature_backend=env.get("BROKER_SIGNATURE_BACKEND") or file_conf.get("signature_backend", "in-process"),
            cookie_secure=_flag(env.get("BROKER_COOKIE_SECURE"), file_conf.get("cookie_secure", False)),
            access_log=_flag(env.get("BROKER_ACCESS_LOG"), file_conf.get("access_log", False)),
            server=env.get("BROKER_SERVER") or file_conf.get("server", "uwsgi"),
            log_level=(env.get("BROKER_LOG_LEVEL") or file_conf.get("log_level", "INFO")).upper(),
            lifetimes=lifetimes,
            extra=file_conf,
            environ=env,
        )
        values.update(overrides)
        if "master_secret" not in values:
            values["master_secret"] = _master_secret(env, Path(values["keys_dir"]))
        if values["signature_backend"] not in ("in-process", "xmlsec1"):
            raise SettingsError("signature_backend: expected 'in-process' or 'xmlsec1'")
        if values["server"] not in ("uwsgi", "gunicorn"):
            raise SettingsError("server (BROKER_SERVER): expected 'uwsgi' or 'gunicorn'")
        return cls(**values)


def _flag(raw: str | None, default: bool) -> bool:
    if raw is None:
        return bool(default)
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    return data


def _master_secret(env: Mapping[str, str], keys_dir: Path) -> bytes:
    if env.get("BROKER_SECRET"):
        secret = env["BROKER_SECRET"].encode()
    elif env.get("BROKER_SECRET_FILE"):
        secret = Path(env["BROKER_SECRET_FILE"]).read_bytes().strip()
    else:
        path = keys_dir / "master.secret"
        if not path.exists():
            keys_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            tmp.replace(path)
        secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise SettingsError("BROKER_SECRET: expected at least 32 bytes of secret")
    return secret
