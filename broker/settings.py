"""Configuration from the environment and ``config/broker.yaml``, read once at start.

Secrets never live in the repository: the master secret comes from
``BROKER_SECRET`` or the file named by ``BROKER_SECRET_FILE``; without either,
the broker generates one into its keys directory (an ignored folder) — fine for
the demo and one machine, while several instances must be given the same secret.
That file is created readable by its owner only (``0600``) from its first byte.

What tenant files may read is set here too (decision 8): ``tenant_env`` /
``BROKER_TENANT_ENV``, the variables ``${NAME}`` may expand besides the demo's, and
``secrets_dir`` / ``BROKER_SECRETS_DIR``, the only folder client secret files are
read from, and ``ca_dir`` / ``BROKER_CA_DIR``, the only folder the cities' CA files
(``ca_file``) are read from.  :attr:`Settings.environ` is a
:class:`~broker.registry.environment.TenantEnvironment` built from them: it holds
no other variable of the environment.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from broker.deployment import ROOT  # re-exported: every default path is relative to it
from broker.derive import derive_key
from broker.ratelimit.config import Network, RateLimits, RateLimitSettingError, trusted_proxies
from broker.registry.environment import (
    DEMO_VARIABLES,
    TenantEnvironment,
    TenantEnvironmentError,
    allow_list,
    default_ca_dir,
    default_secrets_dir,
    parse_names,
)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclasses.dataclass(frozen=True)
class Lifetimes:
    """Lifetimes in seconds of everything the broker keeps between requests."""

    flow: int = 900               # a login in progress (state cookie, SAML request id)
    sso_session: int = 8 * 3600   # one school day: a broker session's maximum lifetime
    sso_idle: int = 3600          # a broker session unused this long ends (a pupil who walked away)
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
    #: Names tenant files may expand as ``${NAME}``: the demo's and the operator's ``tenant_env``.
    tenant_env: frozenset[str] = DEMO_VARIABLES
    #: The only folder tenant files may name client secret files in (``secrets_dir``).
    secrets_dir: Path = ROOT / "var" / "demo" / "secrets"
    #: The only folder tenant files may name CA files in (``ca_dir``); ``None``: no city may name one.
    ca_dir: Path | None = None
    #: What tenant files may read (a TenantEnvironment from :meth:`from_env`): the allow-listed
    #: variables and ``TENANT_SECRET_*``, never the rest of the environment.
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    #: The registry's database (SQLAlchemy URL): PostgreSQL in production; by default a SQLite
    #: file in the registry directory (``BROKER_DATABASE_URL`` / ``database_url``).
    database_url: str = ""
    #: RFC 7591/7592 dynamic client registration at /register (``dynamic_registration``), off by default.
    dynamic_registration: bool = False
    #: Rate limits shared through the store (``rate_limits``, ``BROKER_RATE_LIMIT_*``; ADR 0018).
    rate_limits: RateLimits = RateLimits()
    #: Peers whose ``X-Forwarded-For`` names the client (``trusted_proxies``, ``BROKER_TRUSTED_PROXIES``).
    trusted_proxies: tuple[Network, ...] = ()
    #: The port ``broker serve`` answers ``/metrics`` on, and nothing else (``BROKER_METRICS_PORT`` /
    #: ``metrics_port``; 0: no metrics port).  Never the public port (decision 16).
    metrics_port: int = 9102
    #: The audit (broker.audit, docs/operations.md "Audit"): records older than this are purged.
    #: 395 days: a whole school year and the following weeks in which a guardian, a school or the
    #: data protection officer asks about it, and no longer (the records are about minors).
    audit_retention_days: int = 395
    #: Audit records buffered in Redis at most while the database is away; the excess is discarded
    #: (and counted in an ERROR line).  About 300 bytes each: 1,000,000 is ~300 MB, 15 minutes of
    #: the national peak (1,000 logins a second) or hours of an ordinary morning.
    audit_buffer_max: int = 1_000_000

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url",
                               f"sqlite:///{Path(self.registry_dir).resolve() / 'registry.sqlite3'}")

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
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``) and ``config/broker.yaml``.

        Keyword ``overrides`` win over both; tests use them instead of the environment.
        """
        env = dict(os.environ if environ is None else environ)
        # ``broker check`` changes nothing: without a master secret it checks with a throw-away one.
        create_secret = overrides.pop("create_master_secret", True)
        config_dir = Path(overrides.pop("config_dir", None) or env.get("BROKER_CONFIG_DIR") or ROOT / "config")
        file_conf = _read_yaml(config_dir / "broker.yaml")
        port = int(overrides.pop("port", None) or env.get("BROKER_PORT") or file_conf.get("port", 8000))
        base_url = (overrides.pop("base_url", None) or env.get("BROKER_BASE_URL")
                    or file_conf.get("base_url") or f"http://localhost:{port}").rstrip("/")
        var = Path(env.get("BROKER_VAR_DIR") or ROOT / "var")
        keys_dir = Path(overrides.pop("keys_dir", None) or env.get("BROKER_KEYS_DIR") or var / "keys")
        lifetimes = Lifetimes(**{k: int(v) for k, v in (file_conf.get("lifetimes") or {}).items()})
        values: dict[str, Any] = {
            "base_url": base_url,
            "port": port,
            "redis_url": env.get("BROKER_REDIS_URL") or None,
            "redis_prefix": env.get("BROKER_REDIS_PREFIX") or file_conf.get("redis_prefix", "digione:"),
            "resource_audiences": tuple(file_conf.get("resource_audiences") or ()),
            "introspection_clients": tuple(file_conf.get("introspection_clients") or ()),
            "workers": int(env.get("BROKER_WORKERS") or file_conf.get("workers", 1)),
            "tenants_dir": Path(env.get("BROKER_TENANTS_DIR") or ROOT / "tenants"),
            "metadata_dir": Path(env.get("BROKER_METADATA_DIR") or ROOT / "metadata"),
            "registry_dir": Path(env.get("BROKER_REGISTRY_DIR") or var / "registry"),
            "keys_dir": keys_dir,
            "config_dir": config_dir,
            "cookie_secure": _flag(env.get("BROKER_COOKIE_SECURE"), file_conf.get("cookie_secure", False)),
            "access_log": _flag(env.get("BROKER_ACCESS_LOG"), file_conf.get("access_log", False)),
            "server": env.get("BROKER_SERVER") or file_conf.get("server", "uwsgi"),
            "log_level": (env.get("BROKER_LOG_LEVEL") or file_conf.get("log_level", "INFO")).upper(),
            "lifetimes": lifetimes,
            "extra": file_conf,
            "database_url": env.get("BROKER_DATABASE_URL") or file_conf.get("database_url") or "",
            "dynamic_registration": _flag(env.get("BROKER_DYNAMIC_REGISTRATION"),
                                          bool(file_conf.get("dynamic_registration", False))),
            "metrics_port": _port(env.get("BROKER_METRICS_PORT"), file_conf.get("metrics_port", 9102)),
            "audit_retention_days": int(env.get("BROKER_AUDIT_RETENTION_DAYS")
                                        or file_conf.get("audit_retention_days", 395)),
            "audit_buffer_max": int(env.get("BROKER_AUDIT_BUFFER_MAX") or file_conf.get("audit_buffer_max", 1_000_000)),
        }
        try:
            values["rate_limits"] = RateLimits.from_config(env, file_conf.get("rate_limits"))
            values["trusted_proxies"] = trusted_proxies(env, file_conf.get("trusted_proxies"))
        except RateLimitSettingError as exc:
            raise SettingsError(str(exc)) from None
        values.update(overrides)
        values["tenant_env"] = _tenant_env(values.get("tenant_env"), env, file_conf)
        values["secrets_dir"] = _secrets_dir(values.get("secrets_dir"), env, file_conf)
        _check_secrets_dir(values["secrets_dir"], env, values)
        values["ca_dir"] = _ca_dir(values.get("ca_dir"), env, file_conf)
        _check_ca_dir(values["ca_dir"], env, values)
        values["environ"] = TenantEnvironment.of(values.get("environ", env), allowed=values["tenant_env"],
                                                 secrets_dir=values["secrets_dir"], root=ROOT,
                                                 ca_dir=values["ca_dir"])
        if "master_secret" not in values:
            values["master_secret"] = _master_secret(env, Path(values["keys_dir"]), create=create_secret)
        if env.get("BROKER_SIGNATURE_BACKEND") or "signature_backend" in file_conf:
            # The xmlsec1 subprocess path is gone (decision 9): refuse rather than silently ignore it.
            raise SettingsError("signature_backend (BROKER_SIGNATURE_BACKEND) was removed: SAML signatures are "
                                "always checked in-process (docs/decisions/0009-saml-crypto-policy.md)")
        if not 1 <= values["audit_retention_days"] <= 36500 or values["audit_buffer_max"] < 1000:
            raise SettingsError("audit_retention_days: 1 to 36500 days; audit_buffer_max: at least 1000")
        if values["server"] not in ("uwsgi", "gunicorn"):
            raise SettingsError("server (BROKER_SERVER): expected 'uwsgi' or 'gunicorn'")
        if values["metrics_port"] and values["metrics_port"] == values["port"]:
            raise SettingsError("metrics_port (BROKER_METRICS_PORT) must differ from the public port (or be 0)")
        return cls(**values)


def _port(raw: str | None, default: Any) -> int:
    """A TCP port number, or 0 for none."""
    try:
        port = int(raw if raw not in (None, "") else default)
    except (TypeError, ValueError):
        raise SettingsError("metrics_port (BROKER_METRICS_PORT): expected a port number or 0") from None
    if not 0 <= port <= 65535:
        raise SettingsError("metrics_port (BROKER_METRICS_PORT): expected a port number or 0")
    return port


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


def _tenant_env(override: Any, env: Mapping[str, str], file_conf: Mapping[str, Any]) -> frozenset[str]:
    """The demo's variables plus ``BROKER_TENANT_ENV`` (comma-separated), else ``tenant_env`` in broker.yaml."""
    try:
        if override is not None:
            extra = parse_names(override)
        elif env.get("BROKER_TENANT_ENV") is not None:
            extra = parse_names(env["BROKER_TENANT_ENV"])
        else:
            extra = parse_names(file_conf.get("tenant_env"))
        return allow_list(extra)
    except TenantEnvironmentError as exc:
        raise SettingsError(f"tenant_env (BROKER_TENANT_ENV): {exc}") from None


def _secrets_dir(override: Any, env: Mapping[str, str], file_conf: Mapping[str, Any]) -> Path:
    """``BROKER_SECRETS_DIR``, else ``secrets_dir`` in broker.yaml, else the demo's secrets folder."""
    raw = override or env.get("BROKER_SECRETS_DIR") or file_conf.get("secrets_dir")
    if raw is None:
        return default_secrets_dir(env, ROOT)
    path = Path(str(raw))
    return path if path.is_absolute() else ROOT / path


def _check_secrets_dir(secrets_dir: Path, env: Mapping[str, str], values: Mapping[str, Any]) -> None:
    """Tenant files may read any file of their own city in the secrets directory, so it must
    hold nothing of the broker's: not the master secret, the keys or the registrations."""
    base = secrets_dir.resolve()
    private = {"BROKER_KEYS_DIR (the broker's keys)": Path(values["keys_dir"]),
               "BROKER_REGISTRY_DIR (the registrations)": Path(values["registry_dir"])}
    if env.get("BROKER_SECRET_FILE"):
        private["BROKER_SECRET_FILE (the master secret)"] = Path(env["BROKER_SECRET_FILE"])
    for what, path in private.items():
        resolved = path.resolve()
        if resolved == base or base in resolved.parents:
            raise SettingsError(f"secrets_dir (BROKER_SECRETS_DIR): expected a folder for the cities' client "
                                f"secrets only, but {secrets_dir} holds {what} {path}; give the cities' secrets "
                                f"their own folder (e.g. {secrets_dir / 'tenants'})")


def _ca_dir(override: Any, env: Mapping[str, str], file_conf: Mapping[str, Any]) -> Path | None:
    """``BROKER_CA_DIR``, else ``ca_dir`` in broker.yaml, else none (no city may name a CA file)."""
    raw = override or env.get("BROKER_CA_DIR") or file_conf.get("ca_dir")
    if not raw:
        return default_ca_dir({}, ROOT)
    path = Path(str(raw))
    return path if path.is_absolute() else ROOT / path


def _check_ca_dir(ca_dir: Path | None, env: Mapping[str, str], values: Mapping[str, Any]) -> None:
    """A city may name any file of its own in the CA directory, so it holds CA certificates only:
    not the master secret, the keys, the registrations or the cities' client secrets."""
    if ca_dir is None:
        return
    base = ca_dir.resolve()
    private = {"BROKER_KEYS_DIR (the broker's keys)": Path(values["keys_dir"]),
               "BROKER_REGISTRY_DIR (the registrations)": Path(values["registry_dir"]),
               "BROKER_SECRETS_DIR (the cities' client secrets)": Path(values["secrets_dir"])}
    if env.get("BROKER_SECRET_FILE"):
        private["BROKER_SECRET_FILE (the master secret)"] = Path(env["BROKER_SECRET_FILE"])
    for what, path in private.items():
        resolved = path.resolve()
        if resolved == base or base in resolved.parents:
            raise SettingsError(f"ca_dir (BROKER_CA_DIR): expected a folder for the cities' CA certificates only, "
                                f"but {ca_dir} holds {what} {path}; give the CA files their own folder")


def _master_secret(env: Mapping[str, str], keys_dir: Path, *, create: bool = True) -> bytes:
    if env.get("BROKER_SECRET"):
        secret = env["BROKER_SECRET"].encode()
    elif env.get("BROKER_SECRET_FILE"):
        secret = Path(env["BROKER_SECRET_FILE"]).read_bytes().strip()
    else:
        path = keys_dir / "master.secret"
        if not path.exists() and not create:
            return secrets.token_urlsafe(48).encode()
        if not path.exists():
            _create_private_file(path, secrets.token_urlsafe(48).encode())
        elif path.stat().st_mode & 0o077:
            path.chmod(0o600)   # one written by an older version: owner only from now on
        secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise SettingsError("BROKER_SECRET: expected at least 32 bytes of secret")
    return secret


def _create_private_file(path: Path, content: bytes) -> None:
    """Write ``path`` readable by its owner only (0600) at every moment, and atomically.

    The content goes to a new temporary file created with mode 0600 (``O_EXCL``: never an
    existing file or a symlink), is flushed to disk, and is then linked into place without
    replacing a file another process may have written first: of two instances starting at
    once, both read the winner's secret.  The temporary name is removed in every case.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass                # another process created it first: theirs is the secret
        except OSError:         # a filesystem without hard links: rename, unless one appeared meanwhile
            if not path.exists():
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
