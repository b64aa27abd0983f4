"""Every admin action, and every permission check, in one place.

The API (:mod:`broker.admin.api`), the console (:mod:`broker.admin.console`) and the
``broker admin`` CLI call :class:`AdminOperations` and nothing else.  Every method
takes the :class:`~broker.admin.principals.Principal` first, checks it here, and
changes the registry only through :class:`~broker.registry.service.RegistryService`
(a change is a version, validated before it is staged and again when activated).

**Who may do what** (roles: :mod:`broker.admin.principals`)

* A platform admin may do everything, and alone may add or remove tenants, approve
  release policies, restore the whole registry, and manage tokens and grants.
* A city admin reads and changes their tenant's document, and activates, discards,
  test-logs-in and rolls back versions that change nothing else.  A city viewer
  reads the tenant and its versions and may dry-run mapping rules (``explain``).
* A service owner registers and updates their own services (client ids, ``sp/<name>``);
  what needs approval is decided by :mod:`broker.admin.registrations`.

**403 or 404.**  An object the principal holds no role for answers exactly as an
object that does not exist: :class:`NotFound` (404), whatever the action, so that
one city cannot learn what another has (a version counts as the objects it changes:
one that changes nothing the principal may see is not found).  An object the
principal may see but not act on this way (a viewer's tenant, a version that also
changes other cities, a platform-only action) is :class:`Forbidden` (403).

Every refusal is logged at WARNING with the correlation id, the principal's name,
the action and the object (``admin refused …``); every change at INFO.  Log lines
never carry documents, secrets or tokens.

Problems and warnings from validation name the object they are about; a principal
who is not a platform admin sees only those of objects it may read, and a count of
the others.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from broker.admin import edits, registrations
from broker.admin.errors import (
    AdminError,
    BadRequest,
    Forbidden,
    NotAvailable,
    NotFound,
    StateConflict,
    Unauthorized,
    ValidationFailed,
)
from broker.admin.principals import (
    TENANT_ID,
    GrantError,
    Principal,
    SubjectGrants,
    grants_from_json,
    service_id,
    service_key,
)
from broker.admin.staging import Staging
from broker.admin.tokens import TokenStore, parse_duration
from broker.admin.views import served_tenant, service_summary, tenant_expiry
from broker.logs import current_correlation_id
from broker.registry.diff import unified
from broker.registry.versions import Key, Version, VersionError

__all__ = ["AdminOperations", "AdminError", "BadRequest", "Forbidden", "NotFound", "StateConflict",
           "Unauthorized", "ValidationFailed", "NotAvailable"]

logger = logging.getLogger("broker.admin")

#: Version ids are database integers: anything outside is no version at all.
_MAX_ID = 2**31 - 1
_CHANGEABLE = ("staged", "pending_approval")
_SCHOOL = re.compile(r"[A-Za-z0-9._-]{1,32}")


def _school_codes(document: Mapping[str, Any]) -> set[str]:
    """The school codes a tenant document lists (as stored: not yet validated)."""
    schools = document.get("schools")
    return {str(s.get("code")) for s in schools if isinstance(s, dict)} if isinstance(schools, list) else set()


class AdminOperations:
    """The admin actions of one broker (``broker_app``: a :class:`~broker.app.BrokerApp`).

    ``http`` is the session the OIDC discovery fetch uses (default: a new
    :class:`requests.Session`).  Each staging method returns ``{"version", "report",
    "diff", "changes"}``: the staged version, the validation report (warnings), the
    unified diff and the changed objects, all limited to what the principal may see.
    """

    def __init__(self, broker_app: Any, *, http: Any = None):
        self.broker = broker_app
        self.settings = broker_app.settings
        self.registry_service = broker_app.registry_service
        self.registry_versions = self.registry_service.versions
        self.staging = Staging(self.settings, self.registry_service)
        self.tokens = TokenStore(self.registry_versions.engine)
        self.subjects = SubjectGrants(self.registry_versions.engine)
        self._http = http

    @classmethod
    def for_app(cls, app: Any) -> AdminOperations:
        """The operations of a Flask admin application (``app.config["BROKER"]``), made once per app."""
        ops = app.extensions.get("digione.admin.operations")
        if ops is None:
            ops = app.extensions["digione.admin.operations"] = cls(app.config["BROKER"])
        return ops

    # -- principals -----------------------------------------------------------------------------

    def principal_for_token(self, token: str | None) -> Principal | None:
        """The principal of an API bearer token (``None``: unknown, revoked or expired)."""
        return self.tokens.authenticate(token)

    def principal_for_subject(self, subject: str | None) -> Principal | None:
        """The principal of a console user (the broker's ``sub`` for ``digione-admin``), if granted."""
        return self.subjects.principal_for_subject(subject) if subject else None

    # -- the checks (the only place permissions are decided) ----------------------------------

    def _refuse(self, p: Principal, action: str, obj: str, error: AdminError) -> NoReturn:
        logger.warning("admin refused correlation_id=%s principal=%s action=%s object=%s status=%s reason=%s",
                       current_correlation_id() or "-", p.name, action, obj, error.status, error.code)
        error.logged = True
        raise error

    def _platform(self, p: Principal, action: str, obj: str) -> None:
        if not p.is_platform_admin:
            self._refuse(p, action, obj, Forbidden(f"{action}: a platform admin's action"))

    def _read_tenant(self, p: Principal, action: str, tenant_id: Any) -> str:
        if not (isinstance(tenant_id, str) and TENANT_ID.match(tenant_id) and p.reads_tenant(tenant_id)):
            self._refuse(p, action, f"tenant:{str(tenant_id)[:64]}", NotFound(f"no tenant {str(tenant_id)[:64]}"))
        return tenant_id

    def _write_tenant(self, p: Principal, action: str, tenant_id: Any) -> str:
        self._read_tenant(p, action, tenant_id)
        if not p.writes_tenant(tenant_id):
            self._refuse(p, action, f"tenant:{tenant_id}", Forbidden(f"tenant {tenant_id}: read only for you"))
        return tenant_id

    def _tenant_document(self, p: Principal, action: str, tenant_id: Any, *, write: bool) -> dict[str, Any]:
        tid = self._write_tenant(p, action, tenant_id) if write else self._read_tenant(p, action, tenant_id)
        document = self.registry_versions.state().documents.get(("tenant", tid))
        if document is None:
            self._refuse(p, action, f"tenant:{tid}", NotFound(f"no tenant {tid}"))
        return document

    def _own_service(self, p: Principal, action: str, service: Any) -> str:
        if not (isinstance(service, str) and 0 < len(service) <= 140 and p.owns_service(service)):
            self._refuse(p, action, f"service:{str(service)[:140]}", NotFound(f"no service {str(service)[:140]}"))
        return service

    def _visible_version(self, p: Principal, action: str, version_id: Any) -> Version:
        if isinstance(version_id, int) and not isinstance(version_id, bool) and 0 < version_id <= _MAX_ID:
            try:
                version = self.registry_versions.version(version_id)
            except VersionError:
                version = None
            if version is not None and any(p.reads(kind, key) for kind, key, _ in version.touches):
                return version
        self._refuse(p, action, f"version:{str(version_id)[:20]}", NotFound(f"no version {str(version_id)[:20]}"))

    def _changeable_version(self, p: Principal, action: str, version_id: Any) -> Version:
        """A version ``p`` may activate, discard or test: every object it changes is ``p``'s to change."""
        version = self._visible_version(p, action, version_id)
        if not all(p.writes(kind, key) for kind, key, _ in version.touches):
            self._refuse(p, action, f"version:{version.id}",
                         Forbidden(f"version {version.id} changes objects you may not change"))
        if version.status == "pending_approval" and not p.is_platform_admin and action != "discard":
            self._refuse(p, action, f"version:{version.id}",
                         Forbidden(f"version {version.id} awaits a platform admin's approval"))
        return version

    # -- reading ----------------------------------------------------------------------------

    def whoami(self, p: Principal) -> dict[str, Any]:
        """The principal, its grants, and the tenants and services they reach."""
        return {**p.to_dict(), "platform_admin": p.is_platform_admin,
                "tenants": {t: "admin" if p.writes_tenant(t) else "viewer" for t in sorted(p.tenants())},
                "services": sorted(p.services)}

    def tenants(self, p: Principal) -> list[dict[str, Any]]:
        """The tenants ``p`` may read (a platform admin: all), each with its names and IdPs."""
        out = []
        for (kind, key), doc in sorted(self.registry_versions.state().documents.items()):
            if kind == "tenant" and p.reads_tenant(key):
                idps = doc.get("identity_providers") if isinstance(doc.get("identity_providers"), list) else []
                out.append({"id": key, "names": doc.get("names"), "writable": p.writes_tenant(key),
                            "identity_providers": [{"id": i.get("id"), "type": i.get("type")}
                                                   for i in idps if isinstance(i, dict)]})
        return out

    def tenant(self, p: Principal, tenant_id: str) -> dict[str, Any]:
        """The tenant's document (as stored), what the broker serves of it, and its staged versions."""
        document = self._tenant_document(p, "tenant", tenant_id, write=False)
        staged = self.registry_versions.versions(
            limit=20, touching=lambda kind, key: (kind, key) == ("tenant", tenant_id))
        return {"id": tenant_id, "document": document, "writable": p.writes_tenant(tenant_id),
                "served": served_tenant(self.broker, tenant_id), "expiry": tenant_expiry(self.broker, tenant_id),
                "staged": [self._version_dict(p, v) for v in staged if v.status in _CHANGEABLE]}

    def versions(self, p: Principal, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        """Versions newest first (ids below ``before``), only those changing something ``p`` may read."""
        if not (isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit <= 200):
            raise BadRequest("limit", "a number from 1 to 200")
        if before is not None and not (isinstance(before, int) and 0 < before <= _MAX_ID):
            raise BadRequest("before", "a version number")
        found = self.registry_versions.versions(limit=limit, before=before,
                                       touching=None if p.is_platform_admin else p.reads)
        return [self._version_dict(p, v) for v in found]

    def version(self, p: Principal, version_id: int) -> dict[str, Any]:
        """One version with each change ``p`` may see: before, after and the unified diff."""
        version = self._visible_version(p, "version", version_id)
        changes = [{"kind": c.kind, "key": c.key, "action": c.action, "before": c.before, "after": c.after,
                    "diff": unified(c)} for c in self.registry_versions.changes(version.id) if p.reads(c.kind, c.key)]
        return {**self._version_dict(p, version), "changes": changes}

    def _version_dict(self, p: Principal, version: Version) -> dict[str, Any]:
        return self.staging.version_dict(p, version)

    def _report(self, p: Principal, report: Mapping[str, Any]) -> dict[str, Any]:
        return self.staging.report(p, report)

    # -- staging --------------------------------------------------------------------------------

    def _stage(self, p: Principal, action: str, changes: Mapping[Key, dict[str, Any] | None], comment: str, *,
               status: str = "staged", restores: int | None = None, activate: bool = False) -> dict[str, Any]:
        for kind, key in changes:
            if not p.writes(kind, key):  # every caller checked already: this is the last line
                self._refuse(p, action, f"{kind}:{key}", Forbidden(f"{kind} {key}: not yours to change"))
        return self.staging.stage(p, action, changes, comment, status=status, restores=restores, activate=activate)

    def _activate(self, p: Principal, action: str, version: Version) -> Version:
        return self.staging.activate(p, action, version.id)

    def stage_tenant(self, p: Principal, tenant_id: str, document: Any, comment: str = "") -> dict[str, Any]:
        """Stage ``document`` as the whole tenant document (a platform admin may add a tenant this way)."""
        tid = self._write_tenant(p, "stage_tenant", tenant_id)
        if not isinstance(document, dict):
            raise BadRequest("document", "a tenant document (a JSON object, as a tenant file holds)")
        if ("tenant", tid) not in self.registry_versions.state().documents and not p.is_platform_admin:
            self._refuse(p, "stage_tenant", f"tenant:{tid}", Forbidden("adding a tenant: a platform admin's action"))
        return self._stage(p, "stage_tenant", {("tenant", tid): document},
                           edits.comment(comment, f"tenant {tid}: document replaced"))

    def remove_tenant(self, p: Principal, tenant_id: str, comment: str = "") -> dict[str, Any]:
        """Stage the removal of a tenant (platform admins only)."""
        tid = self._read_tenant(p, "remove_tenant", tenant_id)
        self._platform(p, "remove_tenant", f"tenant:{tid}")
        self._tenant_document(p, "remove_tenant", tid, write=True)
        return self._stage(p, "remove_tenant", {("tenant", tid): None}, edits.comment(comment, f"remove tenant {tid}"))

    def upload_idp_metadata(self, p: Principal, tenant_id: str, idp_id: str, xml: str, comment: str = "",
                            names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Stage a SAML IdP with inline metadata ``xml``: added (``names`` needed) or its metadata replaced."""
        document = self._tenant_document(p, "upload_idp_metadata", tenant_id, write=True)
        wanted = edits.idp_id(idp_id)
        edited = edits.with_saml_metadata(document, wanted, edits.metadata_xml(xml),
                                          edits.names(names, required=False))
        return self._stage(p, "upload_idp_metadata", {("tenant", tenant_id): edited},
                           edits.comment(comment, f"{tenant_id}/{wanted}: SAML metadata uploaded"))

    def set_idp_metadata_url(self, p: Principal, tenant_id: str, idp_id: str, url: str, pins: Any,
                             comment: str = "", *, entity_id: str | None = None,
                             names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Stage a SAML IdP whose metadata is fetched from ``url``, signed by a certificate in ``pins``.

        ``pins``: one SHA-256 fingerprint, or a list of up to three for a rollover (the
        next certificate pinned ahead, the old one retired later).  ``entity_id``
        defaults to the IdP's recorded or served one.
        """
        document = self._tenant_document(p, "set_idp_metadata_url", tenant_id, write=True)
        wanted = edits.idp_id(idp_id)
        if entity_id is None:
            served = getattr(self.broker.registry, "tenants", None)
            idp = served.idps.get(f"{tenant_id}/{wanted}") if served is not None else None
            entity_id = idp.entity_id if idp is not None else None
        elif not (isinstance(entity_id, str) and 0 < len(entity_id) <= 1000):
            raise BadRequest("entity_id", "the IdP's entityID")
        edited = edits.with_metadata_url(document, wanted, edits.https_url(url, "url"), edits.pins(pins), entity_id,
                                         edits.names(names, required=False))
        return self._stage(p, "set_idp_metadata_url", {("tenant", tenant_id): edited},
                           edits.comment(comment, f"{tenant_id}/{wanted}: SAML metadata from {url}"))

    def add_oidc_idp(self, p: Principal, tenant_id: str, idp_id: str, issuer: str, client_id: str,
                     client_secret: str | None, names: Mapping[str, str] | None, comment: str = "", *,
                     mapping: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Stage an OIDC IdP found by its issuer's discovery document; the client secret is sealed.

        An existing OIDC IdP of that id is updated (``client_secret`` ``None`` keeps its secret).
        The result also holds ``discovery``: the endpoints the issuer published.
        """
        from broker.registry.sealed_secrets import seal_secret

        document = self._tenant_document(p, "add_oidc_idp", tenant_id, write=True)
        wanted = edits.idp_id(idp_id)
        issuer, checked_names = edits.oidc_inputs(issuer, client_id, client_secret, names, mapping)
        discovery = edits.fetch_discovery(self._http or edits.http_session(), issuer)
        sealed = seal_secret(self.settings.master_secret, client_secret, tenant_id=tenant_id) if client_secret else None
        edited = edits.with_oidc(document, wanted, issuer=issuer, client_id=client_id, sealed_secret=sealed,
                                 new_names=checked_names, mapping=mapping)
        result = self._stage(p, "add_oidc_idp", {("tenant", tenant_id): edited},
                             edits.comment(comment, f"{tenant_id}/{wanted}: OIDC IdP {issuer}"))
        return {**result, "discovery": discovery}

    def set_mapping(self, p: Principal, tenant_id: str, idp_id: str, mapping: Any,
                    comment: str = "") -> dict[str, Any]:
        """Stage new mapping rules for one IdP (compiled by validation; errors name the rule)."""
        document = self._tenant_document(p, "set_mapping", tenant_id, write=True)
        if not isinstance(mapping, dict):
            raise BadRequest("mapping", "mapping rules (an object, as under mapping: in a tenant file)")
        edited = edits.with_mapping(document, edits.idp_id(idp_id), mapping)
        if edited is None:
            raise NotFound(f"no identity provider {idp_id} in tenant {tenant_id}")
        return self._stage(p, "set_mapping", {("tenant", tenant_id): edited},
                           edits.comment(comment, f"{tenant_id}/{idp_id}: mapping rules"))

    def explain(self, p: Principal, tenant_id: str, idp_id: str, sample: bytes | str,
                mapping: dict[str, Any] | None = None, version_id: int | None = None) -> dict[str, Any]:
        """Dry-run one IdP's mapping rules on ``sample`` (JSON claims or SAML XML); changes nothing.

        The rules are those of the active version, of staged version ``version_id``, or
        ``mapping`` given here.  Returns :func:`broker.mapping.explain`'s result, with what
        every registered service would receive.
        """
        from broker.admin.views import explain_sample

        tid = self._read_tenant(p, "explain", tenant_id)
        if version_id is not None:
            documents = self.registry_versions.documents(self._visible_version(p, "explain", version_id).id)
        else:
            documents = self.registry_versions.state().documents
        document = documents.get(("tenant", tid))
        if document is None:
            self._refuse(p, "explain", f"tenant:{tid}", NotFound(f"no tenant {tid}"))
        wanted = edits.idp_id(idp_id)
        if mapping is not None:
            if not isinstance(mapping, dict):
                raise BadRequest("mapping", "mapping rules (an object)")
            document = edits.with_mapping(document, wanted, mapping)
        if document is None or edits.find_idp(edits.tenant_copy(document), wanted) is None:
            raise NotFound(f"no identity provider {wanted} in tenant {tid}")
        return explain_sample(self.broker, p, tid, wanted, document, sample)

    def set_allowed_services(self, p: Principal, tenant_id: str, allowed: Any, comment: str = "") -> dict[str, Any]:
        """Stage the tenant's ``allowed_services`` (``None``: every service, the key removed)."""
        document = self._tenant_document(p, "set_allowed_services", tenant_id, write=True)
        return self._stage(p, "set_allowed_services", {("tenant", tenant_id): edits.with_allowed_services(
            document, allowed)}, edits.comment(comment, f"{tenant_id}: allowed services"))

    # -- versions -----------------------------------------------------------------------------

    def activate(self, p: Principal, version_id: int) -> dict[str, Any]:
        """Activate a staged version (pending approval: platform admins only, see :meth:`approve`)."""
        version = self._changeable_version(p, "activate", version_id)
        if version.status == "activated":
            self._platform(p, "activate", f"version:{version.id}")  # activating again restores the whole registry
        elif version.status not in _CHANGEABLE:
            raise StateConflict(f"version {version.id} is {version.status}; only a staged version can be activated")
        activated = self._activate(p, "activate", version)
        return {"version": self._version_dict(p, activated), "report": self._report(p, activated.report or {})}

    def approve(self, p: Principal, version_id: int) -> dict[str, Any]:
        """A platform admin approves a registration awaiting approval: it is activated."""
        version = self._visible_version(p, "approve", version_id)
        self._platform(p, "approve", f"version:{version.id}")
        if version.status != "pending_approval":
            raise StateConflict(f"version {version.id} is {version.status}, not awaiting approval")
        activated = self._activate(p, "approve", version)
        return {"version": self._version_dict(p, activated), "report": self._report(p, activated.report or {})}

    def discard(self, p: Principal, version_id: int) -> dict[str, Any]:
        """Discard a staged version (or withdraw a registration awaiting approval)."""
        version = self._changeable_version(p, "discard", version_id)
        try:
            discarded = self.registry_service.discard(version.id, by=p.name)
        except VersionError as exc:
            raise StateConflict(str(exc)) from None
        logger.info("admin discarded correlation_id=%s principal=%s version=%s", current_correlation_id() or "-",
                    p.name, version.id)
        return {"version": self._version_dict(p, discarded)}

    def rollback(self, p: Principal, tenant_id: str | None, to_version: int | None,
                 comment: str = "") -> dict[str, Any]:
        """Restore, as a new activated version, the state of an earlier activated version.

        With ``tenant_id``: only that tenant's document, as it was right after
        ``to_version`` (city admins).  Without (platform admins): the whole registry,
        ``to_version`` or, when ``None``, the state before the last activation.
        """
        text = edits.comment(comment, "")
        if tenant_id is None:
            self._platform(p, "rollback", "registry")
            if to_version is not None and not (isinstance(to_version, int) and 0 < to_version <= _MAX_ID):
                raise BadRequest("to_version", "an activated version's number")
            version = self.staging.restore(p, to_version, text)
            return {"version": self._version_dict(p, version), "report": self._report(p, version.report or {})}
        tid = self._write_tenant(p, "rollback", tenant_id)
        if not (isinstance(to_version, int) and not isinstance(to_version, bool) and 0 < to_version <= _MAX_ID):
            raise BadRequest("to_version", "the number of an activated version to restore the tenant from")
        try:
            target = self.registry_versions.version(to_version)
        except VersionError:
            raise NotFound(f"no version {to_version}") from None
        if target.activated_seq is None:
            raise StateConflict(f"version {to_version} was never activated: there is no state of it to restore")
        content = self.registry_versions.documents(to_version).get(("tenant", tid))
        if content is None:
            raise BadRequest("to_version", f"a version at which tenant {tid} existed")
        if ("tenant", tid) not in self.registry_versions.state().documents:
            self._platform(p, "rollback", f"tenant:{tid}")  # bringing a removed tenant back adds one
        return self._stage(p, "rollback", {("tenant", tid): content},
                           text or f"roll back tenant {tid} to its content at version {to_version}",
                           restores=to_version, activate=True)

    def test_link(self, p: Principal, version_id: int) -> str:
        """A link that runs a test login through staged version ``version_id`` (it is not active)."""
        version = self._changeable_version(p, "test_link", version_id)
        if version.status not in _CHANGEABLE:
            raise StateConflict(f"version {version.id} is {version.status}: only a staged version has a test link")
        try:
            from broker.registry import preview
        except ImportError:
            raise NotAvailable("test logins through staged versions are not available in this broker yet") from None
        link: str = preview.test_link(self.settings, version.id)
        return link

    # -- services -------------------------------------------------------------------------------

    def services(self, p: Principal) -> list[dict[str, Any]]:
        """Registered services: in full those ``p`` owns (a platform admin: all); ids and names only
        for a city admin or viewer, who choose among them (``allowed_services``)."""
        city = bool(p.tenants())
        out = []
        for (kind, key), doc in sorted(self.registry_versions.state().documents.items()):
            if kind not in ("client", "sp"):
                continue
            sid = service_id(kind, key)
            if p.owns_service(sid):
                out.append(service_summary(kind, key, doc, full=True))
            elif city:
                out.append(service_summary(kind, key, doc, full=False))
        return out

    def service(self, p: Principal, service: str) -> dict[str, Any]:
        """One owned service: its registration and its versions (newest first)."""
        sid = self._own_service(p, "service", service)
        kind, key = service_key(sid)
        doc = self.registry_versions.state().documents.get((kind, key))
        history = self.registry_versions.versions(limit=20, touching=lambda k, name: (k, name) == (kind, key))
        return {"id": sid, "kind": kind, "registered": service_summary(kind, key, doc, full=True) if doc else None,
                "versions": [self._version_dict(p, v) for v in history]}

    def register_client(self, p: Principal, data: Any, comment: str = "") -> dict[str, Any]:
        """Stage an OIDC client registration (see :mod:`broker.admin.registrations` for its status).

        The result holds ``client_secret`` when the broker made one: shown this once only.
        """
        client_id = self._own_service(p, "register_client", data.get("client_id") if isinstance(data, dict) else None)
        if service_key(client_id)[0] != "client":
            raise BadRequest("client_id", "a client id (sp/… names a SAML SP)")
        existing = self.registry_versions.state().documents.get(("client", client_id))
        prepared = registrations.prepare_client(data, existing, comment=edits.comment(comment, ""),
                                                approved_by_author=p.is_platform_admin)
        result = self._stage(p, "register_client", {("client", prepared.key): prepared.document}, prepared.comment,
                             status=prepared.status)
        return {**result, "client_secret": prepared.secret} if prepared.secret else result

    def remove_client(self, p: Principal, client_id: str, comment: str = "") -> dict[str, Any]:
        """Remove an owned OIDC client, at once (removing a service never widens what anyone receives)."""
        cid = self._own_service(p, "remove_client", client_id)
        if service_key(cid)[0] != "client" or ("client", cid) not in self.registry_versions.state().documents:
            raise NotFound(f"no client {cid}")
        return self._stage(p, "remove_client", {("client", cid): None}, edits.comment(comment, f"remove client {cid}"),
                           activate=True)

    def register_sp(self, p: Principal, metadata_xml: str, name: str | None, policy: Any, reason: Any,
                    comment: str = "") -> dict[str, Any]:
        """Stage a SAML SP registration under ``name`` (``sp/<name>`` must be ``p``'s)."""
        if name is not None:   # refused before the metadata is even read
            self._own_service(p, "register_sp", f"sp/{name}" if isinstance(name, str) else name)
        key = registrations.sp_name(metadata_xml, name)     # the name made of its entityID, when not given
        self._own_service(p, "register_sp", f"sp/{key}")
        prepared = registrations.prepare_sp(metadata_xml, key, policy, reason,
                                            self.registry_versions.state().documents.get(("sp", key)),
                                            comment=edits.comment(comment, ""), approved_by_author=p.is_platform_admin)
        return self._stage(p, "register_sp", {("sp", prepared.key): prepared.document}, prepared.comment,
                           status=prepared.status)

    # -- the audit (broker.audit) --------------------------------------------------------------

    def audit_releases(self, p: Principal, school: Any, since: Any, until: Any = None, service: Any = None,
                       limit: Any = 200) -> dict[str, Any]:
        """What services received about people of ``school`` from ``since`` to ``until``
        (:meth:`broker.audit.AuditLog.report`).

        A platform admin asks about any school.  A city admin only about a school their
        tenant's document lists, and sees only releases of that tenant's identities; a school
        of another city answers as one that does not exist (404), and a viewer of the city is
        refused (403): the audit is the admins'.
        """
        from broker.audit.storage import ReleaseQuery, parse_when

        action = "audit_releases"
        if not (isinstance(school, str) and _SCHOOL.fullmatch(school)):
            raise BadRequest("school", "a school code (letters, digits, . _ -; at most 32)")
        tenant = None
        if not p.is_platform_admin:
            listing = [key for (kind, key), doc in sorted(self.registry_versions.state().documents.items())
                       if kind == "tenant" and p.reads_tenant(key) and school in _school_codes(doc)]
            if not listing:
                self._refuse(p, action, f"school:{school}", NotFound(f"no school {school}"))
            tenant = next((t for t in listing if p.writes_tenant(t)), None)
            if tenant is None:
                self._refuse(p, action, f"school:{school}", Forbidden("the audit is for the city's admins"))
        try:
            start = parse_when(since)
        except ValueError as exc:
            raise BadRequest("since", str(exc)) from None
        try:
            end = parse_when(until, end_of_day=True) if until not in (None, "") else None
        except ValueError as exc:
            raise BadRequest("until", str(exc)) from None
        if service in ("", None):
            service = None
        elif not (isinstance(service, str) and len(service) <= 1024):
            raise BadRequest("service", "a client_id or SAML entity id (at most 1024 characters)")
        if not (isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit <= 200):
            raise BadRequest("limit", "a number from 1 to 200")
        logger.info("admin audit read correlation_id=%s principal=%s school=%s", current_correlation_id() or "-",
                    p.name, school)
        return self.registry_service.audit.report(ReleaseQuery(school=school, since=start, until=end,
                                                               service=service, tenant=tenant, limit=limit))

    # -- tokens and grants (platform admins) ------------------------------------------------

    def list_tokens(self, p: Principal, *, include_inactive: bool = False) -> list[dict[str, Any]]:
        self._platform(p, "list_tokens", "tokens")
        return [t.to_dict() for t in self.tokens.entries(include_inactive=include_inactive)]

    def create_token(self, p: Principal, grants: Any, expires: Any, note: Any = "") -> dict[str, Any]:
        """A new API token: ``{"token": …}`` (shown once) and its record."""
        self._platform(p, "create_token", "tokens")
        if not (isinstance(note, str) and len(note) <= 200):
            raise BadRequest("note", "what the token is for (at most 200 characters)")
        try:
            parsed = grants_from_json(grants)
            token, info = self.tokens.create(parsed, lifetime=parse_duration(expires), by=p.name, note=note)
        except GrantError as exc:
            raise BadRequest(exc.field, exc.expected) from None
        self.registry_service.record(p.name, "create_token", documents=(f"token:{info.id}",))
        logger.info("admin token created correlation_id=%s principal=%s token=%s grants=%s",
                    current_correlation_id() or "-", p.name, info.id, ",".join(map(str, info.grants)))
        return {"token": token, **info.to_dict()}

    def revoke_token(self, p: Principal, token_id: Any) -> dict[str, Any]:
        self._platform(p, "revoke_token", f"token:{str(token_id)[:32]}")
        info = self.tokens.revoke(token_id, by=p.name) if isinstance(token_id, str) else None
        if info is None:
            raise NotFound(f"no token {str(token_id)[:32]}")
        self.registry_service.record(p.name, "revoke_token", documents=(f"token:{info.id}",))
        logger.info("admin token revoked correlation_id=%s principal=%s token=%s", current_correlation_id() or "-",
                    p.name, info.id)
        return info.to_dict()

    def list_grants(self, p: Principal) -> list[dict[str, Any]]:
        self._platform(p, "list_grants", "grants")
        return [g.to_dict() for g in self.subjects.entries()]

    def set_grants(self, p: Principal, subject: Any, grants: Any, note: Any = "") -> dict[str, Any]:
        """Make a console subject hold exactly ``grants`` (an empty list takes every grant away)."""
        self._platform(p, "set_grants", "grants")
        if not (isinstance(note, str) and len(note) <= 200):
            raise BadRequest("note", "who the person is (at most 200 characters)")
        try:
            parsed = grants_from_json(grants) if grants != [] else ()
            stored = self.subjects.assign(subject, parsed, by=p.name, note=note)
        except GrantError as exc:
            raise BadRequest(exc.field, exc.expected) from None
        self.registry_service.record(p.name, "set_grants", documents=(f"grant:{str(subject)[:180]}",))
        logger.info("admin grants set correlation_id=%s principal=%s subject=%s grants=%s",
                    current_correlation_id() or "-", p.name, subject, ",".join(map(str, parsed)))
        return stored.to_dict() if stored else {"subject": subject, "grants": [], "note": note}
