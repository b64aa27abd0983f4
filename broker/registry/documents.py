"""The registry's objects in their two forms: files (the GitOps form) and documents (a version).

The file form is what operators keep in Git: ``tenants/<id>.yaml`` and, in the
registry directory, ``clients/<client_id>.json`` and ``sps/<name>.xml`` (+ ``.json``).
``broker registry import`` turns it into a version (:func:`read_files`), ``export``
writes a version back (:func:`write_files`).  A tenant document is the tenant file's
content as parsed, environment references (``${NAME}``) and secret references kept
as written: they are resolved, and the whole document validated, each time a login
path is built from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from broker.registry.relying_parties import read_registration_files, write_registration_files
from broker.registry.tenants import TenantError, TenantProblem, read_tenant_files
from broker.registry.versions import Documents


def read_files(tenants_dir: Path, registry_dir: Path, *, root: Path | None = None) -> Documents:
    """Every object in its file form; raises :class:`TenantError` if a tenant file is not even YAML."""
    documents: Documents = {}
    problems = []
    for key, (source, content) in read_tenant_files(tenants_dir, root=root).items():
        if isinstance(content, TenantProblem):
            problems.append(f"{source}: {content.where}: expected {content.expected}")
        elif not isinstance(content, dict):
            problems.append(f"{source}: (top level): expected a mapping with id, names, municipality_code, "
                            "education_provider, schools, identity_providers")
        else:
            documents[("tenant", key)] = content
    if problems:
        raise TenantError(problems)
    clients, sps = read_registration_files(registry_dir)
    documents.update({("client", key): content for key, content in clients.items()})
    documents.update({("sp", key): content for key, content in sps.items()})
    return documents


def write_files(documents: Mapping[tuple[str, str], Mapping[str, Any]], tenants_dir: Path, registry_dir: Path) -> int:
    """Write ``documents`` in their file form; return how many objects were written."""
    tenants_dir = Path(tenants_dir)
    tenants_dir.mkdir(parents=True, exist_ok=True)
    for (kind, key), content in documents.items():
        if kind == "tenant":
            (tenants_dir / f"{key}.yaml").write_text(
                yaml.safe_dump(dict(content), sort_keys=False, allow_unicode=True, width=120))
    write_registration_files(
        registry_dir,
        {key: content for (kind, key), content in documents.items() if kind == "client"},
        {key: content for (kind, key), content in documents.items() if kind == "sp"})
    return len(documents)


def tenant_documents(documents: Mapping[tuple[str, str], Any],
                     sources: Mapping[str, str] | None = None) -> dict[str, tuple[str, Any]]:
    """The tenant documents of ``documents`` as :func:`~broker.registry.tenants.tenants_from_documents` takes them."""
    return {key: ((sources or {}).get(key) or f"tenant {key}", content)
            for (kind, key), content in documents.items() if kind == "tenant"}


def of_kind(documents: Mapping[tuple[str, str], Any], kind: str) -> dict[str, Any]:
    return {key: content for (k, key), content in documents.items() if k == kind}
