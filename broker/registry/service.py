"""Changing the registry: the one path every writer takes (CLI, admin API, import, the demo).

:class:`RegistryService` stages changes as versions and activates them only after
the whole resulting registry passes the validation start-up applies
(:func:`broker.assemble.registry_of`: schemas, metadata parsed as at start,
entityIDs and issuers unique, mapping rules compiled).  A change that fails leaves
the active version as it was, so one city's bad change never reaches another
city's login.  After an activation it tells every instance (Redis
pub/sub, :meth:`RegistryService.after_activation`); instances that miss it see the new head at their next poll
(:mod:`broker.registry.watch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from broker.registry.documents import read_files, write_files
from broker.registry.relying_parties import (
    Client,
    RegistrationError,
    ReleasePolicy,
    ServiceProvider,
    client_document,
    sp_document,
)
from broker.registry.tenants import TenantError, crypto_warnings
from broker.registry.versions import (
    Conflict,
    Documents,
    Invalid,
    Key,
    RegistryVersions,
    Version,
    VersionError,
    canonical,
)
from broker.settings import Settings

logger = logging.getLogger(__name__)

SYSTEM = "system"


class RegistryService:
    """Stage, validate, activate, roll back; register clients and SPs; import and export files."""

    def __init__(self, settings: Settings, versions: RegistryVersions):
        self.settings = settings
        self.versions = versions
        self._listeners: list[Callable[[int], None]] = []
        from broker.audit.storage import AuditLog

        #: Every change made here is also an audit record (broker.audit): who, when, what.
        self.audit = AuditLog(versions.engine)

    def after_activation(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(seq)`` after every activation made through this service."""
        self._listeners.append(listener)

    # -- validation -------------------------------------------------------------------------

    def validate(self, documents: Documents) -> dict[str, Any]:
        """The report of a valid registry; raises :class:`Invalid` listing every problem."""
        from broker.assemble import registry_of

        try:
            registry = registry_of(self.settings, documents)
        except TenantError as exc:
            raise Invalid(exc.problems) from None
        except RegistrationError as exc:
            raise Invalid([str(exc)]) from None
        return {"tenants": len(registry.tenants), "clients": len(registry.parties.clients),
                "sps": len(registry.parties.sps), "warnings": crypto_warnings(registry.tenants)}

    # -- versions -----------------------------------------------------------------------------

    def propose(self, changes: Mapping[Key, dict[str, Any] | None], *, by: str, comment: str = "",
                activate: bool = True, status: str = "staged") -> Version:
        """Stage ``changes`` as a new version and, with ``activate``, activate it.

        A change that fails validation (:class:`Invalid`) or meets a newer change
        (:class:`Conflict`) is discarded, so no unusable version is left staged, and the error
        is raised: nothing is half applied.
        """
        version = self.stage(changes, by=by, comment=comment, status=status)
        if not activate:
            return version
        try:
            return self.activate(version.id, by=by)
        except (Invalid, Conflict):
            self.discard(version.id, by=by)
            raise

    def stage(self, changes: Mapping[Key, dict[str, Any] | None], *, by: str, comment: str = "",
              status: str = "staged", restores: int | None = None) -> Version:
        """Stage ``changes`` as a new version (not validated here: :meth:`propose` and the admin's
        staging validate first)."""
        version = self.versions.stage(changes, by=by, comment=comment, status=status, restores=restores)
        self.record(by, "stage" if status == "staged" else status, version)
        return version

    def discard(self, version_id: int, *, by: str) -> Version:
        version = self.versions.discard(version_id, by=by)
        self.record(by, "discard", version)
        return version

    def ensure(self, objects: Mapping[Key, dict[str, Any] | None], *, by: str, comment: str = "") -> Version | None:
        """Make the active version hold ``objects`` as given: a new version if anything differs, else ``None``."""
        current = self.versions.state().documents
        # Compared as stored (canonical JSON): a document built in memory holds tuples where the
        # stored one has lists, and the same content must not look changed (a second `broker demo`).
        changes = {key: content for key, content in objects.items()
                   if (None if current.get(key) is None else canonical(current[key]))
                   != (None if content is None else canonical(content))}
        return self.propose(changes, by=by, comment=comment) if changes else None

    def activate(self, version_id: int, *, by: str) -> Version:
        version = self.versions.activate(version_id, by=by, validate=self.validate)
        self._activated(version, "activate")
        return version

    def restore(self, version_id: int, *, by: str, comment: str = "") -> Version:
        version = self.versions.restore(version_id, by=by, comment=comment, validate=self.validate)
        self._activated(version, "restore")
        return version

    def rollback(self, *, by: str, comment: str = "") -> Version:
        version = self.versions.rollback(by=by, comment=comment, validate=self.validate)
        self._activated(version, "rollback")
        return version

    def record(self, by: str, action: str, version: Version | None = None,
               documents: tuple[str, ...] = ()) -> None:
        """The audit record of an admin change (``documents``: "kind:key" when no version says)."""
        touched = [f"{kind}:{key}" for kind, key, _ in version.touches] if version is not None else list(documents)
        self.audit.admin_change(by, action, touched, version=version.id if version is not None else None)

    def _activated(self, version: Version, action: str) -> None:
        self.record(version.activated_by or version.created_by, action, version)
        logger.info("registry version activated version=%s seq=%s by=%s changes=%d", version.id,
                    version.activated_seq, version.activated_by, len(version.touches))
        seq = version.activated_seq
        if seq is None:
            return
        for listener in self._listeners:
            try:
                listener(seq)
            except Exception as exc:  # noqa: BLE001 - instances poll anyway; a lost notice only delays them
                logger.warning("registry change notice not sent (%s); instances see it at their next poll",
                               exc.__class__.__name__)

    # -- registrations -------------------------------------------------------------------------

    def register_client(self, data: Mapping[str, Any], *, by: str, comment: str = "",
                        activate: bool = True) -> tuple[Client, str | None, Version]:
        """Register (or replace) an OIDC client; returns it, its secret in clear (shown once) and the version."""
        client, secret = client_document(data)
        version = self.propose({("client", client.client_id): client.to_dict()}, by=by,
                               comment=comment or f"register client {client.client_id}", activate=activate)
        return client, secret, version

    def register_sp(self, metadata_xml: str, *, by: str, name: str | None = None,
                    policy: ReleasePolicy | None = None, comment: str = "",
                    activate: bool = True, **flags: bool) -> tuple[ServiceProvider, Version]:
        """Register (or replace) a SAML SP; ``flags`` are the SAML ones (``encrypt_assertions``,
        ``release_authenticating_authority``: :data:`~broker.registry.relying_parties.SP_FLAGS`)."""
        name, content = sp_document(metadata_xml, name=name, policy=policy, **flags)
        sp = ServiceProvider.from_document(name, content)
        version = self.propose({("sp", name): content}, by=by, comment=comment or f"register SAML SP {name}",
                               activate=activate)
        return sp, version

    # -- the file form -----------------------------------------------------------------------

    def import_files(self, tenants_dir: Path, registry_dir: Path, *, by: str, comment: str = "",
                     activate: bool = True) -> Version:
        """Make the files a version: tenants exactly as the files (a tenant without a file is removed);
        registrations found in ``registry_dir`` added or replaced (others are kept)."""
        documents = read_files(tenants_dir, registry_dir)
        current = self.versions.state().documents
        changes: dict[Key, dict[str, Any] | None] = {k: v for k, v in documents.items() if current.get(k) != v}
        changes.update({k: None for k in current if k[0] == "tenant" and k not in documents})
        return self.propose(changes, by=by, comment=comment or f"import {tenants_dir}", activate=activate)

    def export_files(self, tenants_dir: Path, registry_dir: Path, version_id: int | None = None) -> int:
        documents = self.versions.documents(version_id) if version_id else self.versions.state().documents
        return write_files(documents, tenants_dir, registry_dir)

    def seed(self) -> Version | None:
        """On an empty database, make the shipped files the first version (any instance may race to it)."""
        if self.versions.head()[1] is not None:
            return None
        try:
            return self.import_files(self.settings.tenants_dir, self.settings.registry_dir, by=SYSTEM,
                                     comment="first version, from the tenant files and the registry directory")
        except Conflict:
            return None   # another instance seeded it first
        except VersionError:
            if self.versions.head()[1] is not None:
                return None
            raise
