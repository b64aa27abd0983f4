"""Resolving a tenant's secret references: ``{env: …}``, ``{file: …}`` or ``{encrypted: …}``.

A secret is never written in a tenant document (decision 8).  A city names an
environment variable of its own (``TENANT_SECRET_<CITY>_…``), a file of its own inside
the secrets directory, or a secret the admin console sealed for it
(:mod:`broker.registry.sealed_secrets`); anything else, or another city's, is refused
with the field named.
"""

from __future__ import annotations

from typing import Any

from broker.registry.environment import SECRET_PREFIX, env_name, secret_file_owner, secret_variable_owner
from broker.registry.paths import contained
from broker.registry.sealed_secrets import SealedSecretError, open_secret

#: A client secret file is at most this long (a secret, not a document).
MAX_SECRET_BYTES = 64 * 1024


def resolve_secret(raw: Any, path: str, c: Any, *, tenant_id: str) -> str | None:
    if isinstance(raw, str):
        c.fail(path, "{env: VARIABLE} or {file: PATH}; a secret is never written in a tenant file")
        return None
    if not isinstance(raw, dict) or len(raw) != 1 or not ({"env", "file", "encrypted"} & raw.keys()):
        c.fail(path, "{env: VARIABLE} or {file: PATH} (or {encrypted: …}, sealed by the admin console)")
        return None
    if "encrypted" in raw:
        if c.master_secret is None or not tenant_id:
            c.fail(f"{path}.encrypted", "a secret reference ({env: …} or {file: …}): sealed secrets open only "
                                        "in the registry")
            return None
        try:
            return open_secret(c.master_secret, raw["encrypted"], tenant_id=tenant_id)
        except SealedSecretError as exc:
            c.fail(f"{path}.encrypted", str(exc))
            return None
    own_prefix = f"{SECRET_PREFIX}{env_name(tenant_id or 'city')}_"
    if "env" in raw:
        name = raw["env"]
        if not isinstance(name, str) or not name:
            c.fail(f"{path}.env", f"the name of an environment variable ({own_prefix}…)")
            return None
        if secret_variable_owner(name, c.tenant_ids) != tenant_id or not tenant_id:
            c.fail(f"{path}.env", f"a variable named for this city, {own_prefix}<NAME> ({name} is not one; "
                                  "secrets of other cities and the broker's own settings cannot be named)")
            return None
        value = c.environ.get(name)
        if not value:
            c.fail(f"{path}.env", f"environment variable {name} to be set")
        return value
    name = raw["file"]
    secrets_dir = c.environ.secrets_dir
    if not isinstance(name, str) or not name:
        c.fail(f"{path}.file", "the path of a file in the secrets directory")
        return None
    found = contained(secrets_dir, name, relative_to=c.root)
    if found is None:
        c.fail(f"{path}.file", f"a file inside the secrets directory {secrets_dir} ({name} is outside it; the "
                               "operator sets the directory with secrets_dir / BROKER_SECRETS_DIR)")
        return None
    file, relative = found
    if not tenant_id or secret_file_owner(relative, c.tenant_ids) != tenant_id:
        city = tenant_id or "<city>"
        c.fail(f"{path}.file", f"a secret file of this city: {city}/<NAME>, {city}, {city}-<NAME> or <NAME>-{city} "
                               f"in the secrets directory ({relative} is not {city}'s)")
        return None
    if not file.is_file():
        c.fail(f"{path}.file", f"a readable file ({secrets_dir / relative} not found)")
        return None
    with file.open("rb") as handle:
        data = handle.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        c.fail(f"{path}.file", f"a secret of at most {MAX_SECRET_BYTES // 1024} KiB")
        return None
    value = data.decode("utf-8", "replace").strip()
    if not value:
        c.fail(f"{path}.file", f"a non-empty secret in {secrets_dir / relative}")
    return value or None
