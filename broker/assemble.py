"""Assembling the login path from the registry: nobody hand-writes per-city SATOSA YAML.

:func:`load_registry` reads and validates tenants, mapping rules and relying
parties (all or nothing).  :func:`assemble` turns a registry into a running
:class:`~broker.login.proxy.Proxy`: the plugins' configuration
(:func:`plugin_config`, which ``broker config dump`` prints), then the plugins
themselves — one SAML backend (one SP entity for all SAML IdPs), one OIDC
backend per OIDC IdP, the OIDC provider and SAML IdP frontends, the operator's
SATOSA micro-services — and the :class:`~broker.login.steps.Login` that runs
them.  Building is the only place that reads files or the network; the login
path never does.  A later registry change builds a new proxy and swaps it in,
with no restart.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
from collections.abc import Mapping
from typing import Any

import requests
from saml2 import BINDING_HTTP_POST
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT

from broker import mapping, ratelimit
from broker.backends.oidc import BrokerOidcBackend
from broker.backends.oidc_discovery import ProviderUnavailable, provider_configuration
from broker.backends.saml import ACS_PATH, SamlBackend
from broker.backends.saml import METADATA_PATH as SP_METADATA_PATH
from broker.backends.saml import SLO_PATHS as SP_SLO_PATHS
from broker.backends.trust import ca_key, session_for
from broker.backends.unavailable import UnavailableBackend
from broker.derive import derive_key
from broker.discovery import DiscoveryPages
from broker.discovery.site import SiteTexts
from broker.errors import UnknownClient
from broker.frontends.oidc import OIDCFrontend
from broker.frontends.saml import METADATA_PATH as IDP_METADATA_PATH
from broker.frontends.saml import SLO_PATHS as IDP_SLO_PATHS
from broker.frontends.saml import SSO_PATHS, SamlIdpFrontend
from broker.home import HomePage
from broker.login import plugins
from broker.login.cookies import Cookies
from broker.login.discovery import DiscoveryEndpoints
from broker.login.proxy import Proxy
from broker.login.router import Router
from broker.login.seal import FlowSeal
from broker.login.steps import Login
from broker.metrics.steps import instrument as instrument_steps
from broker.pki import ensure_keypair
from broker.registry.documents import of_kind, tenant_documents
from broker.registry.expiry import expiry_report, log_expiry_warnings
from broker.registry.relying_parties import RelyingParties, read_registration_files
from broker.registry.services import ServiceNames
from broker.registry.tenants import (
    IdentityProvider,
    Tenant,
    Tenants,
    crypto_warnings,
    display_path,
    read_tenant_files,
    tenants_from_documents,
)
from broker.registry.versions import Documents
from broker.saml.metadata_refresh import documents_for_build
from broker.saml.pysaml2_crypto import configure_signatures, pysaml2_config_overrides
from broker.saml.xml_parsing import check_libxml2
from broker.sessions import Limits, SessionStore
from broker.sessions.logout import Logout
from broker.sessions.logout_flow import Initiator
from broker.settings import ROOT, Settings
from broker.store import Store
from broker.tokens.discovery import PATHS

logger = logging.getLogger(__name__)

SAML_BACKEND = "saml"


@dataclasses.dataclass(frozen=True)
class Registry:
    """Everything the login path is built from, validated."""

    tenants: Tenants
    parties: RelyingParties
    rulesets: Mapping[str, Any]          # compiled mapping rules by "<tenant>/<idp>"


def tenant_scope(tenant: Tenant) -> mapping.TenantScope:
    return mapping.TenantScope(
        tenant_id=tenant.id, provider_oid=tenant.provider_oid, provider_names=dict(tenant.provider_names),
        schools={s.code: mapping.School(code=s.code, oid=s.oid, names=dict(s.names), active=s.active)
                 for s in tenant.schools})


def load_registry(settings: Settings, *, environ: Mapping[str, str] | None = None) -> Registry:
    """Load and validate the registry as ``broker registry import`` would make it (what ``broker check`` checks).

    The tenants are the tenant files; the relying parties are those of the database's
    active version (when it exists: this never creates one) with the registry
    directory's files laid over.  Raises
    :class:`~broker.registry.tenants.TenantError` (every problem, with file and field)
    or :class:`~broker.registry.relying_parties.RegistrationError`.
    """
    tenant_files = read_tenant_files(settings.tenants_dir, root=ROOT)
    clients, sps = registration_documents(settings)
    return build_registry(settings, tenant_files, clients=clients, sps=sps, environ=environ)


def registration_documents(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The registrations :func:`load_registry` validates: ``(clients, sps)`` of the database's
    active version (when it exists: this never creates one) with the registry directory's
    files laid over."""
    from broker.registry.database import existing_state

    active = existing_state(settings.database_url) or {}
    clients, sps = read_registration_files(settings.registry_dir)
    return {**of_kind(active, "client"), **clients}, {**of_kind(active, "sp"), **sps}


def registry_of(settings: Settings, documents: Documents, *, environ: Mapping[str, str] | None = None) -> Registry:
    """Validate a registry version's documents into a :class:`Registry`; raises as :func:`load_registry`."""
    # A tenant is named as its file would be (what export writes, what import read): one message, both forms.
    sources = {key: display_path(settings.tenants_dir / f"{key}.yaml", ROOT) for (kind, key) in documents
               if kind == "tenant"}
    return build_registry(settings, tenant_documents(documents, sources), clients=of_kind(documents, "client"),
                          sps=of_kind(documents, "sp"), environ=environ)


def build_registry(settings: Settings, tenant_docs: Mapping[str, tuple[str, Any]], *,
                   clients: Mapping[str, Any], sps: Mapping[str, Any],
                   environ: Mapping[str, str] | None = None) -> Registry:
    """The one validation of a whole registry, whatever form it comes in (all or nothing)."""
    rulesets: dict[str, Any] = {}

    def check_mapping(tenant: Tenant, idp: IdentityProvider) -> str | None:
        try:
            rulesets[idp.key] = mapping.Ruleset.from_config(
                dict(idp.mapping), tenant=tenant_scope(tenant), idp_id=idp.id, source=tenant.source)
        except mapping.RuleError as exc:
            return f"{exc.path[len('mapping.'):] if exc.path.startswith('mapping.') else exc.path}: " \
                   f"expected {exc.expected}"
        return None

    tenants = tenants_from_documents(tenant_docs, metadata_dir=settings.metadata_dir, root=ROOT,
                                     environ=settings.environ if environ is None else environ,
                                     check_mapping=check_mapping, allowed_env=settings.tenant_env,
                                     secrets_dir=settings.secrets_dir, master_secret=settings.master_secret,
                                     ca_dir=settings.ca_dir)
    parties = RelyingParties.from_documents(clients, sps)
    return Registry(tenants=tenants, parties=parties, rulesets=rulesets)


def _saml_idps(registry: Registry) -> list[IdentityProvider]:
    return [idp for t in registry.tenants for idp in t.identity_providers if idp.type == "saml"]


def _oidc_idps(registry: Registry) -> list[IdentityProvider]:
    return [idp for t in registry.tenants for idp in t.identity_providers if idp.type == "oidc"]


# -- the plugins' configuration ------------------------------------------------------------------

def plugin_config(settings: Settings, registry: Registry, *,
                  providers: Mapping[str, dict[str, Any] | None] | None = None,
                  remote_metadata: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """The configuration of every plugin for ``registry`` (JSON-able; secrets are left out)."""
    base = settings.base_url
    keys = settings.keys_dir
    sp_key, sp_cert = ensure_keypair(keys, "saml-sp", common_name=f"{base}/{SP_METADATA_PATH}")
    idp_key, idp_cert = ensure_keypair(keys, "saml-idp", common_name=f"{base}/{IDP_METADATA_PATH}")
    saml_idps = _saml_idps(registry)
    backends: list[dict[str, Any]] = []
    if saml_idps:
        backends.append({
            "module": f"{SamlBackend.__module__}.{SamlBackend.__qualname__}",
            "name": SAML_BACKEND,
            "config": {"sp_config": {
                "entityid": f"{base}/{SP_METADATA_PATH}",
                "key_file": str(sp_key), "cert_file": str(sp_cert),
                "encryption_keypairs": [{"key_file": str(sp_key), "cert_file": str(sp_cert)}],
                # The very text the tenant loader validated (broker.registry.metadata): start-up and
                # `broker check` cannot disagree about a metadata file.
                "metadata": {"inline": [i.metadata.xml for i in saml_idps if i.metadata and i.metadata.xml]
                             + [xml for xml in (remote_metadata or {}).values() if xml]},
                "accepted_time_diff": 60,
                **pysaml2_config_overrides(),
                "service": {"sp": {
                    "name": "DigiOne Login",
                    "endpoints": {
                        "assertion_consumer_service": [(f"{base}/{ACS_PATH}", BINDING_HTTP_POST)],
                        "single_logout_service": [(f"{base}/{path}", binding) for binding, path in
                                                  SP_SLO_PATHS.items()]},
                    "allow_unsolicited": False,
                    "authn_requests_signed": False,
                    "want_response_signed": False,
                    "want_assertions_signed": True,
                    "want_assertions_or_response_signed": True,
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT],
                    "name_id_format_allow_create": True,
                }},
            }},
        })
    for idp in _oidc_idps(registry):
        backends.append({
            "module": f"{BrokerOidcBackend.__module__}.{BrokerOidcBackend.__qualname__}",
            "name": idp.backend_name,
            "config": {
                "client_id": idp.client_id,
                "redirect_uri": f"{base}/oidc/{idp.tenant_id}/{idp.id}/callback",
                "scopes": list(idp.scopes),
                "issuer": idp.issuer,
                "idp_key": idp.key,
                "provider_metadata": (providers or {}).get(idp.key),
                "userinfo": idp.userinfo,
                "claims_read": [list(group) for group in registry.rulesets[idp.key].reads()]
                if idp.key in registry.rulesets else [],
                "ca_file": idp.ca_file.relative if idp.ca_file else None,
            },
        })
    frontends = [
        {"module": f"{OIDCFrontend.__module__}.{OIDCFrontend.__qualname__}", "name": "oidc",
         "config": {"issuer": base}},
        {"module": f"{SamlIdpFrontend.__module__}.{SamlIdpFrontend.__qualname__}", "name": "saml_idp",
         "config": {"idp_config": {
             "entityid": f"{base}/{IDP_METADATA_PATH}",
             "key_file": str(idp_key), "cert_file": str(idp_cert),
             "metadata": {"inline": [sp.metadata_xml for sp in registry.parties.sps.values()]},
             "accepted_time_diff": 60,
             **pysaml2_config_overrides(),
             "service": {"idp": {
                 "name": "DigiOne Login",
                 "endpoints": {
                     "single_sign_on_service": [(f"{base}/{path}", binding) for binding, path in SSO_PATHS.items()],
                     "single_logout_service": [(f"{base}/{path}", binding) for binding, path in
                                               IDP_SLO_PATHS.items()]},
                 "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                 # The release policy decides what an SP gets; a RequestedAttribute with isRequired
                 # (Metadata §2.4.4.1) narrows it but never turns a login into an error Response.
                 "policy": {"default": {"sign_response": True, "sign_assertion": True,
                                        "lifetime": {"minutes": 5}, "fail_on_missing_requested": False}},
                 "want_authn_requests_signed": False,
             }},
         },
         "encryption": {sp.entity_id: sp.encryption.to_dict() for sp in registry.parties.sps.values()
                        if sp.encryption is not None},
         "release_authenticating_authority": sorted(sp.entity_id for sp in registry.parties.sps.values()
                                                    if sp.release_authenticating_authority)}},
    ]
    return {"frontends": frontends, "backends": backends,
            "micro_services": list(settings.extra.get("micro_services") or ())}


# -- what the build reads from the network ----------------------------------------------------------

def upstream_providers(registry: Registry, store: Store,
                       http: requests.Session) -> dict[str, dict[str, Any] | None]:
    """Discovery documents of every OIDC IdP; ``None`` for those unavailable now.

    Fetched once per issuer and trust (an IdP's ``ca_file``, else the public CAs) and
    concurrently: 300 cities' Entra tenants must not make start-up wait for 300 round
    trips in a row.
    """
    oidc = [idp for idp in _oidc_idps(registry) if idp.issuer]
    sources = {(idp.issuer, ca_key(idp.ca_file)): idp.ca_file for idp in oidc}

    def fetch(source: tuple[str, str]) -> dict[str, Any] | None:
        issuer, trust = source
        try:
            return provider_configuration(issuer, store=store, http=session_for(sources[source], http), trust=trust)
        except ProviderUnavailable as exc:
            logger.error("upstream IdP unavailable issuer=%s reason=%s", issuer, exc)
            return None

    keys = sorted(sources)
    if not keys:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
        documents = dict(zip(keys, pool.map(fetch, keys), strict=True))
    return {idp.key: documents[(idp.issuer, ca_key(idp.ca_file))] for idp in oidc}


def remote_saml_metadata(registry: Registry, store: Store, http: requests.Session) -> dict[str, str | None]:
    """Metadata of SAML IdPs named by URL, verified against their pins; ``None`` if unavailable.

    The stored copy the background refresher keeps current, else a fetch (:mod:`broker.saml.metadata_refresh`).
    """
    return documents_for_build(registry.tenants, store=store, http=http)


# -- building ---------------------------------------------------------------------------------------

def service_logo(parties: Any, service: Any) -> str | None:
    """The registered logo of the OIDC client signing in (``logo_uri``), shown on the city page."""
    client = parties.client(service.requester) if service.protocol == "oidc" else None
    return getattr(client, "logo_uri", None)


def assemble(settings: Settings, registry: Registry, store: Store, *, http: requests.Session | None = None,
             keyring: Any = None, delivery: Any = None, cookie_suffix: str = "", audit: Any = None) -> Proxy:
    """Build the login path for ``registry``; reads keys and upstream metadata, once.

    ``keyring`` and ``delivery`` (the back-channel logout queue) outlive a registry version:
    the application passes the same ones to every rebuild.  ``cookie_suffix`` names the
    cookies of a test login through a staged version (:mod:`broker.registry.preview`).
    ``audit`` (a :class:`~broker.audit.ReleaseAudit`, also outliving versions) records every release.
    """
    from broker.sessions.delivery import BackchannelDelivery
    from broker.tokens import KeyRing, build_provider
    from broker.tokens.logout_token import frontchannel_logout_url, mint_logout_token

    check_libxml2()
    for warning in crypto_warnings(registry.tenants):
        logger.warning("%s", warning)
    http = http or requests.Session()
    remote = remote_saml_metadata(registry, store, http)
    config = plugin_config(settings, registry, providers=upstream_providers(registry, store, http),
                           remote_metadata=remote)
    log_expiry_warnings(expiry_report(registry.tenants, remote=remote, keys_dir=settings.keys_dir), store=store)
    pairwise_salt = settings.pairwise_salt
    keyring = keyring or KeyRing(store, settings.master_secret)
    keyring.ensure()

    def subject(client: Any, identity: Mapping[str, Any]) -> str:
        return mapping.subject_for(identity, policy=client.policy, salt=pairwise_salt, sector=client.sector)

    def release_claims(client: Any, identity: Mapping[str, Any], granted_scopes: Any) -> dict[str, Any]:
        return mapping.release_claims(identity, policy=client.policy, granted_scopes=set(granted_scopes),
                                      subject=subject(client, identity))

    def access_claims(client: Any, identity: Mapping[str, Any], granted_scopes: Any) -> dict[str, Any]:
        return mapping.access_token_claims(identity, policy=client.policy, granted_scopes=set(granted_scopes))

    def release_saml(sp_entity_id: str, identity: Mapping[str, Any]) -> tuple[dict[str, list[str]], str]:
        sp = registry.parties.sp_for_entity(sp_entity_id)
        if sp is None:  # the frontend only answers registered SPs; the registry changed mid-flow
            raise UnknownClient("the service provider is no longer registered")
        name_id = mapping.subject_for(identity, policy=sp.policy, salt=pairwise_salt, sector=sp.sector)
        return mapping.release_saml_attributes(identity, policy=sp.policy, subject=name_id), name_id

    cookies = Cookies(secure=settings.secure_cookies, suffix=cookie_suffix)
    sessions = SessionStore(store, limits=Limits(settings.lifetimes.sso_session, settings.lifetimes.sso_idle),
                            per_tenant={t.id: Limits(t.session_max_lifetime or settings.lifetimes.sso_session,
                                                     t.session_idle_timeout or settings.lifetimes.sso_idle)
                                        for t in registry.tenants
                                        if t.session_max_lifetime or t.session_idle_timeout})
    request_services, response_services = plugins.load(config["micro_services"], settings.base_url)
    login = Login(base_url=settings.base_url, request_services=request_services,
                  response_services=response_services, tenants=registry.tenants, rulesets=registry.rulesets,
                  user_id_salt=settings.user_id_salt, log_salt=derive_key(settings.master_secret, b"log-user-ref"),
                  sessions=sessions, cookies=cookies, remember_ttl=settings.lifetimes.discovery_choice,
                  services=ServiceNames(registry.parties))

    internal_attributes: dict[str, Any] = {"attributes": {}}
    limiter = ratelimit.for_settings(settings, store)
    frontends: dict[str, Any] = {}
    for spec in config["frontends"]:
        if spec["module"].endswith(OIDCFrontend.__qualname__):
            provider = build_provider(
                issuer=settings.base_url, store=store, clients=registry.parties, keyring=keyring,
                release=release_claims, subject=subject,
                lifetimes={name: getattr(settings.lifetimes, name)
                           for name in ("code", "access_token", "id_token", "refresh_token")},
                scopes_supported=tuple(mapping.SCOPES), resource_audiences=settings.resource_audiences,
                introspection_clients=settings.introspection_clients,
                claims_supported=mapping.OIDC_CLAIMS, access_claims=access_claims,
                grant_hook=sessions.add_grant, claims_by_scope=mapping.CLAIMS_BY_SCOPE,
                registration_endpoint=f"{settings.base_url}/register" if settings.dynamic_registration else None,
                limiter=limiter, audit=audit)
            frontends[spec["name"]] = OIDCFrontend(login.begin, internal_attributes, {"provider": provider},
                                                   settings.base_url, spec["name"])
        else:
            frontends[spec["name"]] = SamlIdpFrontend(login.begin, internal_attributes, spec["config"],
                                                      settings.base_url, spec["name"], release=release_saml,
                                                      configure_entity=configure_signatures, audit=audit)

    secrets_by_backend = {i.backend_name: i.client_secret for t in registry.tenants for i in t.identity_providers}
    oidc_by_backend = {i.backend_name: i for i in _oidc_idps(registry)}
    backends: dict[str, Any] = {}
    for spec in config["backends"]:
        name = spec["name"]
        if name == SAML_BACKEND:
            backends[name] = SamlBackend(login.upstream_answered, internal_attributes, spec["config"],
                                         settings.base_url, name, idps={i.key: i for i in _saml_idps(registry)},
                                         store=store, flow_ttl=settings.lifetimes.flow,
                                         configure_entity=configure_signatures)
        elif spec["config"]["provider_metadata"] is None:
            backends[name] = UnavailableBackend(login.upstream_answered, internal_attributes, spec["config"],
                                                settings.base_url, name)
        else:
            backends[name] = BrokerOidcBackend(login.upstream_answered, internal_attributes,
                                               {**spec["config"], "client_secret": secrets_by_backend[name]},
                                               settings.base_url, name,
                                               http=session_for(oidc_by_backend[name].ca_file, http))
    login.plug(frontends=frontends, backends=backends)

    logout = Logout(
        base_url=settings.base_url, sessions=sessions, cookies=cookies, master_secret=settings.master_secret,
        flow_ttl=settings.lifetimes.flow, delivery=delivery or BackchannelDelivery(store, http=http),
        tenants=registry.tenants, clients=registry.parties, sps=registry.parties,
        mint_logout_token=functools.partial(mint_logout_token, keyring, issuer=settings.base_url),
        frontchannel_url=functools.partial(frontchannel_logout_url, issuer=settings.base_url),
        revoke_grants=provider.grants.revoke_grants)
    saml_idp = next((f for f in frontends.values() if isinstance(f, SamlIdpFrontend)), None)
    logout.plug(saml_idp=saml_idp, backends=backends)
    for plugin in (*frontends.values(), *backends.values()):
        plugin.logout = logout
    login.on_session_replaced = lambda session_id: logout.end_quietly(session_id, Initiator(kind="broker"))

    router = Router()
    HomePage(settings.base_url).register(router)
    # The city search's index is built here, once per registry version (never on a request).
    pages = DiscoveryPages(registry.tenants, settings.base_url, site=SiteTexts.load(settings.config_dir))
    DiscoveryEndpoints(login, pages, logo=functools.partial(service_logo, registry.parties)).register(router)
    logout.register(router)
    for name, frontend in frontends.items():
        router.add_endpoints(frontend.register_endpoints(list(backends)), owner=("frontend", name))
    for name, backend in backends.items():
        router.add_endpoints(backend.register_endpoints(), owner=("backend", name))
    for service in (*request_services, *response_services):
        router.add_endpoints(service.register_endpoints(), owner=("micro_service", service.name))
    # Per-step latency, token grants and upstream errors (docs/operations.md, "Metrics").
    instrument_steps(router, frontends, backends, login.metrics)
    seal = FlowSeal(settings.master_secret, name=cookies.flow, max_age=settings.lifetimes.flow)
    return Proxy(login=login, router=router, seal=seal, cookies=cookies, base_url=settings.base_url, logout=logout,
                 limiter=limiter, login_starts=login_start_paths(frontends))


def login_start_paths(frontends: Mapping[str, Any]) -> frozenset[str]:
    """The paths (no leading slash) where a service starts a login: ``/authorize``, the SAML SSO endpoints."""
    paths: set[str] = set()
    for frontend in frontends.values():
        if isinstance(frontend, OIDCFrontend):
            paths.add((frontend.provider.base_path + PATHS["authorize"]).lstrip("/"))
        elif isinstance(frontend, SamlIdpFrontend):
            paths.update(path.lstrip("/") for path in SSO_PATHS.values())
    return frozenset(paths)
