"""What a tenant file may read from its surroundings: a few variables, its own secrets.

Tenant files are written by city administrators and are untrusted input.  They may

* expand ``${NAME}`` / ``${NAME:-default}`` only for names on an allow-list: the demo's
  own variables (:data:`DEMO_VARIABLES`) plus what the operator adds with the setting
  ``tenant_env`` / ``BROKER_TENANT_ENV``.  ``BROKER_*`` names other than
  :data:`ALLOWED_BROKER_VARIABLES` and secret names (``TENANT_SECRET_*``) can never be
  on the list, so ``BROKER_SECRET`` cannot be shown on a discovery page;
* read a client secret ``{env: NAME}`` only from a variable named for the city:
  ``TENANT_SECRET_<CITY>_<ANYTHING>`` (the city id in capitals, ``-`` as ``_``);
* read a client secret ``{file: PATH}`` only inside the secrets directory (setting
  ``secrets_dir`` / ``BROKER_SECRETS_DIR``), after resolving symlinks and ``..``, and only
  a file named for the city: in a folder ``<city>/``, or called ``<city>``, ``<city>-…``
  or ``…-<city>`` (any extension after the first dot);
* read SAML metadata only inside the metadata directory (:mod:`broker.registry.metadata`);
* name a CA file (``ca_file``) only inside the CA directory (setting ``ca_dir`` /
  ``BROKER_CA_DIR``; none by default), and only one named for the city, as for secret
  files (:mod:`broker.registry.ca_files`).

:class:`TenantEnvironment` carries the readable variables (only those) with the
allow-list, the secrets directory and the CA directory; :class:`~broker.settings.Settings` builds one, and
:func:`~broker.registry.tenants.load_tenants` reads through it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path

from broker.deployment import ROOT

#: The variables the shipped (demo) tenant files use; always allowed.
DEMO_VARIABLES = frozenset({"DEMO_ENTRA_URL", "BROKER_DEMO_DIR"})
#: The only ``BROKER_*`` names a tenant file may expand (a path, never a secret).
ALLOWED_BROKER_VARIABLES = frozenset({"BROKER_DEMO_DIR"})
#: Client secrets named by ``{env: …}`` start with this, then the city's id.
SECRET_PREFIX = "TENANT_SECRET_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


class TenantEnvironmentError(ValueError):
    """An allow-list entry that may never be allowed; the message names it."""


def allow_list(extra: Iterable[str] = ()) -> frozenset[str]:
    """:data:`DEMO_VARIABLES` plus ``extra``; raises :class:`TenantEnvironmentError` for a name that
    is not a variable name, a ``BROKER_*`` name (other than :data:`ALLOWED_BROKER_VARIABLES`) or
    a secret's name."""
    names = set(DEMO_VARIABLES)
    for raw in extra:
        name = str(raw).strip()
        if not name:
            continue
        if not _NAME.match(name):
            raise TenantEnvironmentError(f"'{name}' is not an environment variable name")
        if name.startswith("BROKER_") and name not in ALLOWED_BROKER_VARIABLES:
            raise TenantEnvironmentError(f"{name}: BROKER_* variables are the broker's own settings and secrets "
                                         "and are never expanded in tenant files")
        if name.startswith(SECRET_PREFIX):
            raise TenantEnvironmentError(f"{name}: {SECRET_PREFIX}* variables are client secrets; tenant files "
                                         "name them as client_secret: {env: NAME}, never as ${NAME}")
        names.add(name)
    return frozenset(names)


def parse_names(raw: object) -> list[str]:
    """A comma-separated string or a list of names, as the settings give them."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(raw, (list, tuple)):
        return [str(part).strip() for part in raw if str(part).strip()]
    raise TenantEnvironmentError("expected a list of variable names (or a comma-separated string)")


def never_expandable(name: str) -> bool:
    """Names no allow-list can make readable through ``${…}``."""
    return (name.startswith("BROKER_") and name not in ALLOWED_BROKER_VARIABLES) or name.startswith(SECRET_PREFIX)


def default_secrets_dir(environ: Mapping[str, str], root: Path) -> Path:
    """``BROKER_SECRETS_DIR``, else the demo's secrets folder (``$BROKER_DEMO_DIR/secrets``,
    ``var/demo/secrets`` in the source tree)."""
    if environ.get("BROKER_SECRETS_DIR"):
        return _absolute(Path(environ["BROKER_SECRETS_DIR"]), root)
    demo = environ.get("BROKER_DEMO_DIR")
    return _absolute(Path(demo), root) / "secrets" if demo else root / "var" / "demo" / "secrets"


def default_ca_dir(environ: Mapping[str, str], root: Path) -> Path | None:
    """``BROKER_CA_DIR``, else none: tenant files may then name no CA file."""
    raw = environ.get("BROKER_CA_DIR")
    return _absolute(Path(raw), root) if raw else None


def _absolute(path: Path, root: Path) -> Path:
    return path if path.is_absolute() else root / path


class TenantEnvironment(Mapping[str, str]):
    """The environment as tenant files see it: only allow-listed variables and city secrets.

    A read-only mapping (the variables), plus ``allowed`` (the names ``${…}`` may expand),
    ``secrets_dir`` and ``ca_dir`` (``None``: no CA files).  Everything else in the process
    environment, ``BROKER_SECRET`` first, is simply not in it.
    """

    def __init__(self, environ: Mapping[str, str], *, allowed: Collection[str] | None = None,
                 secrets_dir: Path | None = None, root: Path | None = None, ca_dir: Path | None = None):
        root = Path(root or ROOT)
        extra = parse_names(environ.get("BROKER_TENANT_ENV")) if allowed is None else list(allowed)
        self.allowed: frozenset[str] = allow_list(extra)
        self.secrets_dir: Path = Path(secrets_dir) if secrets_dir is not None else default_secrets_dir(environ, root)
        self.ca_dir: Path | None = Path(ca_dir) if ca_dir is not None else default_ca_dir(environ, root)
        self._variables = {name: value for name, value in environ.items()
                           if name in self.allowed or name.startswith(SECRET_PREFIX)}

    @classmethod
    def of(cls, environ: Mapping[str, str] | None, *, allowed: Collection[str] | None = None,
           secrets_dir: Path | None = None, root: Path | None = None,
           ca_dir: Path | None = None) -> TenantEnvironment:
        """``environ`` itself if it already is one and nothing else is given, else a new one
        (from ``os.environ`` when ``environ`` is ``None``)."""
        if isinstance(environ, TenantEnvironment):
            if allowed is None and secrets_dir is None and ca_dir is None:
                return environ
            return cls(environ._variables, allowed=environ.allowed if allowed is None else allowed,
                       secrets_dir=environ.secrets_dir if secrets_dir is None else secrets_dir, root=root,
                       ca_dir=environ.ca_dir if ca_dir is None else ca_dir)
        return cls(os.environ if environ is None else environ, allowed=allowed, secrets_dir=secrets_dir, root=root,
                   ca_dir=ca_dir)

    def expandable(self, name: str) -> bool:
        return name in self.allowed and not never_expandable(name)

    def __getitem__(self, name: str) -> str:
        return self._variables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)

    def __repr__(self) -> str:  # never the values: some are secrets
        return (f"TenantEnvironment(allowed={sorted(self.allowed)}, secrets_dir={str(self.secrets_dir)!r}, "
                f"ca_dir={str(self.ca_dir) if self.ca_dir else None!r})")


def env_name(tenant_id: str) -> str:
    """``ii-kunta`` → ``II_KUNTA``: a city id as it appears in variable names."""
    return tenant_id.upper().replace("-", "_")


def secret_variable_owner(name: str, tenant_ids: Iterable[str]) -> str | None:
    """The city a ``TENANT_SECRET_<CITY>[_…]`` variable belongs to: the longest matching id."""
    if not name.startswith(SECRET_PREFIX):
        return None
    rest = name[len(SECRET_PREFIX):]
    owners = [t for t in tenant_ids if rest == env_name(t) or rest.startswith(env_name(t) + "_")]
    return max(owners, key=len) if owners else None


def secret_file_owner(relative: Path, tenant_ids: Iterable[str]) -> str | None:
    """The city a file inside the secrets directory belongs to.

    ``<city>/…`` belongs to that city; a file directly in the directory belongs to the
    city it is named for (``<city>``, ``<city>-…``, ``…-<city>``, before the first dot),
    the longest id winning (``entra-ii-kunta`` is ``ii-kunta``'s, not ``kunta``'s); a name
    two cities of the same length claim belongs to neither.
    """
    ids = list(tenant_ids)
    parts = relative.parts
    if len(parts) > 1:
        return parts[0] if parts[0] in ids else None
    if not parts:
        return None
    base = parts[0].split(".", 1)[0]
    owners = [t for t in ids if base == t or base.startswith(t + "-") or base.endswith("-" + t)]
    if not owners:
        return None
    longest = max(len(t) for t in owners)
    best = [t for t in owners if len(t) == longest]
    return best[0] if len(best) == 1 else None
