"""Assembling the proxy from the registry: nobody hand-writes per-city SATOSA YAML.

:func:`load_registry` reads and validates tenants, mapping rules and relying
parties (all or nothing).  :func:`assemble` turns a registry into a running
:class:`~broker.proxy.base.BrokerProxy`: it generates SATOSA's configuration
(:func:`satosa_config`, the same dict ``broker config dump`` prints) and builds
the modules in-process — one SAML backend (one SP entity for all SAML IdPs),
one OIDC backend per OIDC IdP, the OIDC provider and SAML IdP frontends, and
the mapping micro-service.  Building is the only place that reads files or the
network; the login path never does.  A later registry change builds a new proxy
object and swaps it in, with no restart.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
from typing import Any, Mapping

import requests
from saml2 import BINDING_HTTP_POST
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT

from broker import mapping
from broker.pki import ensure_keypair
from broker.proxy import cookies
from broker.proxy.base import BrokerProxy
from broker.proxy.mapping_service import MappingService
from broker.proxy.oidc_backend import BrokerOidcBackend
from broker.proxy.saml_backend import BrokerSamlBackend
from broker.proxy.saml_frontend import BrokerSamlFrontend, METADATA_PATH, SSO_PATHS
from broker.proxy.saml_metadata import MetadataUnavailable, pinned_metadata
from broker.proxy.selection import IdpSelector
from broker.proxy.xmlsig import check_libxml2, configure_signatures, pysaml2_config_overrides
from broker.proxy.sessions import SsoSessions
from broker.proxy.state import StateCodec
from broker.proxy.unavailable import UnavailableBackend
from broker.proxy.upstream import ProviderUnavailable, provider_configuration
from broker.registry.relying_parties import RelyingParties
from broker.registry.tenants import IdentityProvider, Tenant, Tenants, load_tenants
from broker.settings import ROOT, Settings
from broker.store import Store

logger = logging.getLogger(__name__)

SP_ENTITY_PATH = "saml2/sp/metadata"
ACS_PATH = "saml2/acs/post"


@dataclasses.dataclass(frozen=True)
class Registry:
    """Everything the proxy is built from, validated."""

    tenants: Tenants
    parties: RelyingParties
    rulesets: Mapping[str, Any]          # compiled mapping rules by "<tenant>/<idp>"


def tenant_scope(tenant: Tenant) -> mapping.TenantScope:
    return mapping.TenantScope(
        tenant_id=tenant.id, provider_oid=tenant.provider_oid, provider_names=dict(tenant.provider_names),
        schools={s.code: mapping.School(code=s.code, oid=s.oid, names=dict(s.names), active=s.active)
                 for s in tenant.schools})


def load_registry(settings: Settings, *, environ: Mapping[str, str] | None = None) -> Registry:
    """Load and validate tenants, their mapping rules and the relying parties.

    Raises :class:`~broker.registry.tenants.TenantError` (every problem, with file
    and field) or :class:`~broker.registry.relying_parties.RegistrationError`.
    """
    rulesets: dict[str, Any] = {}

    def check_mapping(tenant: Tenant, idp: IdentityProvider) -> str | None:
        try:
            rulesets[idp.key] = mapping.Ruleset.from_config(
                dict(idp.mapping), tenant=tenant_scope(tenant), idp_id=idp.id, source=tenant.source)
        except mapping.RuleError as exc:
            return f"{exc.path[len('mapping.'):] if exc.path.startswith('mapping.') else exc.path}: " \
                   f"expected {exc.expected}"
        return None

    tenants = load_tenants(settings.tenants_dir, metadata_dir=settings.metadata_dir, root=ROOT,
                           environ=settings.environ if environ is None else environ, check_mapping=check_mapping)
    parties = RelyingParties.load(settings.registry_dir)
    return Registry(tenants=tenants, parties=parties, rulesets=rulesets)


# -- SATOSA configuration ------------------------------------------------------------

def satosa_config(settings: Settings, registry: Registry, *, providers: Mapping[str, dict] | None = None,
                  remote_metadata: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """SATOSA's whole configuration for ``registry`` (JSON-able; secrets are left out)."""
    base = settings.base_url
    keys = settings.keys_dir
    sp_key, sp_cert = ensure_keypair(keys, "saml-sp", common_name=f"{base}/{SP_ENTITY_PATH}")
    idp_key, idp_cert = ensure_keypair(keys, "saml-idp", common_name=f"{base}/{METADATA_PATH}")
    saml_idps = [idp for t in registry.tenants for idp in t.identity_providers if idp.type == "saml"]
    backends: list[dict[str, Any]] = []
    if saml_idps:
        backends.append({
            "module": f"{BrokerSamlBackend.__module__}.{BrokerSamlBackend.__qualname__}",
            "name": "saml",
            "config": {
                "entityid_endpoint": True,
                "sp_config": {
                    "entityid": f"{base}/{SP_ENTITY_PATH}",
                    "key_file": str(sp_key), "cert_file": str(sp_cert),
                    "encryption_keypairs": [{"key_file": str(sp_key), "cert_file": str(sp_cert)}],
                    "metadata": {
                        "local": sorted({str(i.metadata.file) for i in saml_idps if i.metadata.file}),
                        "inline": [xml for xml in (remote_metadata or {}).values() if xml],
                    },
                    "accepted_time_diff": 60,
                    **pysaml2_config_overrides(settings.signature_backend),
                    "service": {"sp": {
                        "name": "DigiOne Login",
                        "endpoints": {"assertion_consumer_service": [(f"{base}/{ACS_PATH}", BINDING_HTTP_POST)]},
                        "allow_unsolicited": False,
                        "authn_requests_signed": False,
                        "want_response_signed": False,
                        "want_assertions_signed": True,
                        "want_assertions_or_response_signed": True,
                        "name_id_format": [NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT],
                        "name_id_format_allow_create": True,
                    }},
                },
            },
        })
    for idp in (i for t in registry.tenants for i in t.identity_providers if i.type == "oidc"):
        backends.append({
            "module": f"{BrokerOidcBackend.__module__}.{BrokerOidcBackend.__qualname__}",
            "name": idp.backend_name,
            "config": {
                "client_id": idp.client_id,
                "redirect_uri": f"{base}/oidc/{idp.tenant_id}/{idp.id}/callback",
                "scopes": list(idp.scopes),
                "issuer": idp.issuer,
                "provider_metadata": (providers or {}).get(idp.key),
            },
        })
    frontends = [
        {"module": "broker.tokens.frontend.OIDCFrontend", "name": "oidc", "config": {"issuer": base}},
        {"module": f"{BrokerSamlFrontend.__module__}.{BrokerSamlFrontend.__qualname__}", "name": "saml_idp",
         "config": {
             "endpoints": {"single_sign_on_service": {b: p for b, p in SSO_PATHS.items()}},
             "idp_config": {
                 "entityid": f"{base}/{METADATA_PATH}",
                 "key_file": str(idp_key), "cert_file": str(idp_cert),
                 "metadata": {"inline": [sp.metadata_xml for sp in registry.parties.sps.values()]},
                 "accepted_time_diff": 60,
                 **pysaml2_config_overrides(settings.signature_backend),
                 "service": {"idp": {
                     "name": "DigiOne Login",
                     "endpoints": {"single_sign_on_service": [
                         (f"{base}/{path}", binding) for binding, path in SSO_PATHS.items()]},
                     "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                     "policy": {"default": {"sign_response": True, "sign_assertion": True,
                                            "lifetime": {"minutes": 5}}},
                     "want_authn_requests_signed": False,
                 }},
             },
         }},
    ]
    return {
        "BASE": base,
        "COOKIE_STATE_NAME": cookies.FLOW,
        "STATE_ENCRYPTION_KEY": "<derived from the master secret>",
        "CONTEXT_STATE_DELETE": True,
        "INTERNAL_ATTRIBUTES": internal_attributes(),
        "BACKEND_MODULES": backends,
        "FRONTEND_MODULES": frontends,
        "MICRO_SERVICES": [{"module": f"{MappingService.__module__}.{MappingService.__qualname__}",
                            "name": "mapping", "config": {}}],
    }


def internal_attributes() -> dict[str, Any]:
    """Identity mapping for every SAML attribute we release: the release policy already chose them."""
    return {"attributes": {name: {"saml": [name]} for name in sorted(mapping.SAML_FRIENDLY_NAMES)}}


# -- building ------------------------------------------------------------------------

def upstream_providers(registry: Registry, store: Store, http: requests.Session) -> dict[str, dict | None]:
    """Discovery documents of every OIDC IdP; ``None`` for those unavailable now.

    Fetched once per issuer and concurrently: 300 cities' Entra tenants must not
    make start-up wait for 300 round trips in a row.
    """
    oidc = [i for t in registry.tenants for i in t.identity_providers if i.type == "oidc"]

    def fetch(issuer: str) -> dict | None:
        try:
            return provider_configuration(issuer, store=store, http=http)
        except ProviderUnavailable as exc:
            logger.error("upstream IdP unavailable issuer=%s reason=%s", issuer, exc)
            return None

    issuers = sorted({idp.issuer for idp in oidc})
    if not issuers:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(issuers))) as pool:
        documents = dict(zip(issuers, pool.map(fetch, issuers)))
    return {idp.key: documents[idp.issuer] for idp in oidc}


def remote_saml_metadata(registry: Registry, store: Store, http: requests.Session) -> dict[str, str | None]:
    """Metadata of SAML IdPs named by URL, verified against their pins; ``None`` if unavailable."""
    documents: dict[str, str | None] = {}
    for idp in (i for t in registry.tenants for i in t.identity_providers if i.type == "saml"):
        if idp.metadata and idp.metadata.url:
            try:
                documents[idp.key] = pinned_metadata(idp.metadata.url, idp.metadata.signing_cert_sha256,
                                                     store=store, http=http)
            except MetadataUnavailable as exc:
                logger.error("upstream IdP unavailable idp=%s reason=%s", idp.key, exc)
                documents[idp.key] = None
    return documents


def assemble(settings: Settings, registry: Registry, store: Store, *, http: requests.Session | None = None,
             keyring=None) -> BrokerProxy:
    """Build the proxy for ``registry``; reads keys and upstream metadata, once."""
    from broker.tokens import build_provider, KeyRing

    if settings.signature_backend == "in-process":
        check_libxml2()
    http = http or requests.Session()
    providers = upstream_providers(registry, store, http)
    config = satosa_config(settings, registry, providers=providers,
                           remote_metadata=remote_saml_metadata(registry, store, http))
    pairwise_salt, user_id_salt = settings.pairwise_salt, settings.user_id_salt
    secrets_by_backend = {i.backend_name: i.client_secret for t in registry.tenants for i in t.identity_providers}
    signature_setup = functools.partial(configure_signatures, backend_name=settings.signature_backend)
    keyring = keyring or KeyRing(store, settings.master_secret)
    keyring.ensure()

    def subject(client, identity):
        return mapping.subject_for(identity, policy=client.policy, salt=pairwise_salt, sector=client.sector)

    def release_claims(client, identity, granted_scopes):
        return mapping.release_claims(identity, policy=client.policy, granted_scopes=set(granted_scopes),
                                      subject=subject(client, identity))

    def release_saml(sp_entity_id, identity):
        sp = registry.parties.sp_for_entity(sp_entity_id)  # the frontend only answers registered SPs
        name_id = mapping.subject_for(identity, policy=sp.policy, salt=pairwise_salt, sector=sp.sector)
        return mapping.release_saml_attributes(identity, policy=sp.policy, subject=name_id), name_id

    token_lifetimes = {name: getattr(settings.lifetimes, name)
                       for name in ("code", "access_token", "id_token", "refresh_token")}
    proxy_ref: list[BrokerProxy] = []

    def build_frontends(callback):
        frontends = []
        for spec in config["FRONTEND_MODULES"]:
            if spec["name"] == "oidc":
                from broker.tokens.frontend import OIDCFrontend

                provider = build_provider(
                    issuer=settings.base_url, store=store, clients=registry.parties, keyring=keyring,
                    release=release_claims, subject=subject, lifetimes=token_lifetimes,
                    scopes_supported=tuple(mapping.SCOPES),
                    resource_audiences=settings.resource_audiences,
                    introspection_clients=settings.introspection_clients,
                    claims_supported=sorted({c for claims in mapping.SCOPES.values() for c in claims}))
                frontends.append(OIDCFrontend(callback, config["INTERNAL_ATTRIBUTES"],
                                              {**spec["config"], "provider": provider,
                                               "end_session": lambda context: proxy_ref[0].end_session(context)},
                                              settings.base_url, spec["name"]))
            else:
                frontends.append(BrokerSamlFrontend(callback, config["INTERNAL_ATTRIBUTES"], spec["config"],
                                                    settings.base_url, spec["name"], release=release_saml,
                                                    configure_entity=signature_setup))
        return frontends

    def build_backends(callback):
        backends = []
        for spec in config["BACKEND_MODULES"]:
            if spec["name"] == "saml":
                backend = BrokerSamlBackend(callback, config["INTERNAL_ATTRIBUTES"], spec["config"],
                                            settings.base_url, spec["name"], store=store,
                                            flow_ttl=settings.lifetimes.flow,
                                            in_process=settings.signature_backend == "in-process")
                signature_setup(backend.sp)
            elif spec["config"]["provider_metadata"] is None:
                backend = UnavailableBackend(callback, config["INTERNAL_ATTRIBUTES"], spec["config"],
                                             settings.base_url, spec["name"])
            else:
                backend = BrokerOidcBackend(callback, config["INTERNAL_ATTRIBUTES"],
                                            {**spec["config"], "client_secret": secrets_by_backend[spec["name"]]},
                                            settings.base_url, spec["name"], http=http)
            backends.append(backend)
        return backends

    from broker.discovery import DiscoveryPages

    mapping_service = MappingService({}, config["INTERNAL_ATTRIBUTES"], "mapping", settings.base_url,
                                     rulesets=registry.rulesets, salt=user_id_salt)
    proxy = BrokerProxy(
        config=config, build_frontends=build_frontends, build_backends=build_backends,
        request_services=[], response_services=[mapping_service], tenants=registry.tenants,
        state_codec=StateCodec(settings.master_secret, name=cookies.FLOW, max_age=settings.lifetimes.flow),
        sessions=SsoSessions(store, ttl=settings.lifetimes.sso_session),
        selector=IdpSelector(registry.tenants, store, remember_ttl=settings.lifetimes.discovery_choice),
        secure_cookies=settings.secure_cookies, discovery=DiscoveryPages(registry.tenants, settings.base_url))
    proxy_ref.append(proxy)
    return proxy

