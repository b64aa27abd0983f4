"""Tenants as the login path sees them: immutable, validated (by :mod:`broker.registry.tenants`).

One :class:`Tenant` per city, with its schools and identity providers; :class:`Tenants`
holds them all with the dictionary lookups the login path needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from broker.registry.services import ALLOW_ALL, ServiceAccess

LANGS = ("fi", "sv", "en")

LEGACY_CRYPTO = {
    "sha1": "SHA-1 digests and rsa-sha1/ecdsa-sha1 signatures",
    "rsa-1_5": "RSA PKCS#1 v1.5 key transport",
    "cbc": "AES-CBC and 3DES-CBC data encryption",
}


class TenantError(ValueError):
    """One or more tenant files are invalid.  ``problems`` lists each, one line each."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclasses.dataclass(frozen=True)
class School:
    code: str
    oid: str
    names: Mapping[str, str]
    active: bool = True


@dataclasses.dataclass(frozen=True)
class CaFile:
    """A city's own TLS trust anchors for one IdP (``ca_file``), validated by :mod:`broker.registry.ca_files`.

    The certificates (``pem``, the very text checked) replace the public CAs for that IdP's
    fetches only (:mod:`broker.backends.trust`); another city's IdP never trusts them.
    """

    path: Path                               # resolved, inside the CA directory
    relative: str                            # as it is named inside the CA directory (messages, logs)
    digest: str                              # SHA-256 of ``pem``: sessions and cached documents are keyed by it
    pem: str = dataclasses.field(repr=False, compare=False)
    #: ``(subject, not_after)`` of each certificate, for the expiry report.
    certificates: tuple[tuple[str, Any], ...] = dataclasses.field(default=(), repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class SamlMetadataSource:
    """Where a SAML IdP's metadata comes from: a file under ``metadata/`` or a pinned URL."""

    file: Path | None = None                 # resolved, inside the metadata directory
    url: str | None = None
    #: Pins of the certificates that may sign the URL's document (normalized; up to 3 during a rollover).
    signing_cert_sha256: tuple[str, ...] = ()
    #: The metadata text validated by :func:`~broker.registry.metadata.load_idp_metadata`
    #: (files only): start-up gives pysaml2 this text as ``inline`` metadata.
    xml: str | None = dataclasses.field(default=None, repr=False, compare=False)
    #: The city's CA file for fetching ``url`` (``metadata.ca_file``); ``None``: the public CAs.
    ca_file: CaFile | None = None


@dataclasses.dataclass(frozen=True)
class IdentityProvider:
    tenant_id: str
    id: str
    type: str                               # "saml" or "oidc"
    names: Mapping[str, str]
    mapping: Mapping[str, Any]              # raw rules, compiled by broker.mapping
    # SAML
    metadata: SamlMetadataSource | None = None
    entity_id: str | None = None
    #: Weak algorithms this IdP may still use (items of :data:`LEGACY_CRYPTO`); empty by default.
    legacy_crypto: frozenset[str] = frozenset()
    # OIDC
    issuer: str | None = None
    client_id: str | None = None
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    #: When to call the provider's userinfo endpoint (OIDC Core §5.3): ``auto`` (when a claim the
    #: mapping reads is not in the ID token), ``always`` or ``never``.
    userinfo: str = "auto"
    #: The city's CA file for the provider's discovery, JWKS, token and userinfo endpoints.
    ca_file: CaFile | None = None
    # Both
    #: E-mail domains whose ``login_hint=user@<domain>`` picks this IdP (lowercase, unique across cities).
    login_hint_domains: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Globally unique id ``<tenant>/<idp>``, used in hints and routing."""
        return f"{self.tenant_id}/{self.id}"

    @property
    def backend_name(self) -> str:
        """The SATOSA backend serving this IdP (all SAML IdPs share one SP backend)."""
        return "saml" if self.type == "saml" else f"oidc_{self.tenant_id}_{self.id}".replace("-", "_")


@dataclasses.dataclass(frozen=True)
class Tenant:
    id: str
    names: Mapping[str, str]
    municipality_code: str
    provider_oid: str
    provider_names: Mapping[str, str]
    schools: tuple[School, ...]
    identity_providers: tuple[IdentityProvider, ...]
    domains: tuple[str, ...] = ()
    source: str = ""
    #: The city's own limits on broker sessions (seconds), where they differ from config/broker.yaml.
    session_max_lifetime: int | None = None
    session_idle_timeout: int | None = None
    #: Which services the city's schools allow (``allowed_services``; broker.registry.services).
    allowed_services: ServiceAccess = ALLOW_ALL

    def idp(self, idp_id: str) -> IdentityProvider | None:
        return next((i for i in self.identity_providers if i.id == idp_id), None)


@dataclasses.dataclass(frozen=True)
class Tenants:
    """All tenants, with the lookups the login path needs (dictionary reads only)."""

    by_id: Mapping[str, Tenant]
    idps: Mapping[str, IdentityProvider]            # by "<tenant>/<idp>"
    saml_idps_by_entity: Mapping[str, IdentityProvider]
    #: ``login_hint`` e-mail domain -> ``(tenant id, IdP key or None)``: an IdP's ``login_hint_domains``,
    #: else the tenant's ``domains`` (the IdP then only when the tenant has one).
    hint_domains: Mapping[str, tuple[str, str | None]] = dataclasses.field(default_factory=dict)

    def __iter__(self):
        return iter(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)

    def resolve_hint(self, hint: str | None) -> tuple[Tenant | None, IdentityProvider | None]:
        """Resolve ``<tenant>`` or ``<tenant>/<idp>``; unknown parts give ``None``."""
        if not hint:
            return None, None
        tenant_id, _, idp_id = hint.strip().partition("/")
        tenant = self.by_id.get(tenant_id)
        if tenant is None:
            return None, None
        if not idp_id:
            only = tenant.identity_providers[0] if len(tenant.identity_providers) == 1 else None
            return tenant, only
        return tenant, tenant.idp(idp_id)

    def tenant_for_domain(self, domain: str) -> Tenant | None:
        return self.for_login_hint_domain(domain)[0]

    def for_login_hint_domain(self, domain: str) -> tuple[Tenant | None, IdentityProvider | None]:
        """The city (and IdP) a ``login_hint=user@<domain>`` picks: a dictionary read, case-insensitive."""
        found = self.hint_domains.get(domain.strip().lower().rstrip("."))
        if found is None:
            return None, None
        tenant_id, idp_key = found
        return self.by_id.get(tenant_id), self.idps.get(idp_key) if idp_key else None


@dataclasses.dataclass(frozen=True)
class TenantProblem:
    """A tenant document that could not even be parsed: where, and what was expected."""

    where: str
    expected: str


def crypto_warnings(tenants: Iterable[Tenant]) -> list[str]:
    """One warning per IdP that opts into weak cryptography with ``legacy_crypto``.

    ``broker check`` prints them and start-up logs them; they never stop either.
    """
    warnings: list[str] = []
    for tenant in tenants:
        for index, idp in enumerate(tenant.identity_providers):
            if idp.legacy_crypto:
                accepted = "; ".join(f"{LEGACY_CRYPTO[item]} ({item})" for item in LEGACY_CRYPTO
                                     if item in idp.legacy_crypto)
                warnings.append(f"{tenant.source}: identity_providers[{index}].legacy_crypto: {idp.key} accepts weak "
                                f"cryptography: {accepted}. Ask the IdP to move to RSA-OAEP, AES-GCM and SHA-256, "
                                "then remove legacy_crypto")
    return warnings
