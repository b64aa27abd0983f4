"""The admin API's routes: one table that the blueprint is built from and the OpenAPI document describes.

Each :class:`Route` names its method, its path (OpenAPI template, under ``/admin/api``),
its request body schema (:mod:`broker.admin.schema`: published and enforced), its
query parameters and the :class:`~broker.admin.operations.AdminOperations` call it
makes.  :mod:`broker.admin.api` registers exactly these rules with Flask and
:mod:`broker.admin.openapi` describes exactly these, so neither can drift (a test
compares Flask's URL map with the document).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from broker.admin.edits import MAX_COMMENT, MAX_PINS, MAX_XML

Handler = Callable[[Any, Any, Mapping[str, Any], Any, Mapping[str, Any]], Any]

#: Path parameters: their schema, shared by every route that has them.
PARAMETERS: dict[str, dict[str, Any]] = {
    "tenant_id": {"type": "string", "maxLength": 63, "description": "a tenant id (e.g. vantaa)"},
    "idp_id": {"type": "string", "maxLength": 63, "description": "an identity provider id within the tenant"},
    "version_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1, "description": "a version number"},
    "client_id": {"type": "string", "maxLength": 128, "description": "an OIDC client id"},
    "sp_name": {"type": "string", "maxLength": 128, "description": "a SAML SP's registration name"},
    "token_id": {"type": "string", "maxLength": 32, "description": "a token's public id (t…)"},
    "subject": {"type": "string", "maxLength": 200, "description": "the broker's sub for a console user"},
}
QUERY: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "description": "how many (default 50)"},
    "before": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1, "description": "only versions below this"},
    "all": {"type": "boolean", "description": "include revoked and expired tokens"},
    "school": {"type": "string", "maxLength": 32, "description": "a school code (e.g. 90921)"},
    "since": {"type": "string", "maxLength": 40, "description": "from this date (2026-05-01) or ISO 8601 time"},
    "until": {"type": "string", "maxLength": 40, "description": "up to this date (inclusive) or time (exclusive)"},
    "service": {"type": "string", "maxLength": 1024, "description": "an OIDC client_id or a SAML SP entity id"},
}

_COMMENT = {"type": "string", "maxLength": MAX_COMMENT, "description": "why (kept with the version)"}
_NAMES = {"type": "object", "description": "names in fi, sv and en",
          "properties": {lang: {"type": "string", "minLength": 1, "maxLength": 200} for lang in ("fi", "sv", "en")},
          "required": ["fi", "sv", "en"], "additionalProperties": False}
_RULES = {"type": "object", "description": "mapping rules, as under mapping: in a tenant file (docs/mapping.md)"}
_GRANT = {"type": "object", "properties": {
    "role": {"type": "string", "enum": ["platform_admin", "city_admin", "city_viewer", "service_owner"]},
    "tenant": {"type": "string", "maxLength": 63}, "service": {"type": "string", "maxLength": 140}},
    "required": ["role"], "additionalProperties": False}
_URI_LIST = {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 2000}}
_POLICY = {"type": "object", "description": "the release policy: scopes asked, profile, subject type, sector",
           "properties": {"scopes": {"type": "array", "minItems": 1, "maxItems": 20,
                                     "items": {"type": "string", "minLength": 1, "maxLength": 100}},
                          "profile": {"type": "string", "enum": ["digione", "mpassid"]},
                          "subject_type": {"type": "string", "enum": ["pairwise", "public"]},
                          "sector": {"type": "string", "maxLength": 200}},
           "additionalProperties": False}
_REASONS = {"type": ["object", "string"], "description": "why the service needs each scope: {scope: reason} or "
                                                         "one reason for all"}


def body(properties: Mapping[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties), "required": list(required),
            "additionalProperties": False}


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation: str
    summary: str
    call: Handler
    body: dict[str, Any] | None = None
    query: tuple[str, ...] = ()
    #: 201: the call staged or activated a version (a new resource).
    status: int = 200
    public: bool = False
    tag: str = "registry"

    @property
    def params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


def _q(query: Mapping[str, Any], name: str, default: Any = None) -> Any:
    return query.get(name, default)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/whoami", "whoami", "The caller: its grants, tenants and services",
          lambda ops, p, a, b, q: ops.whoami(p), tag="principals"),
    Route("GET", "/tenants", "listTenants", "Tenants the caller may read",
          lambda ops, p, a, b, q: ops.tenants(p)),
    Route("GET", "/tenants/{tenant_id}", "getTenant", "A tenant's document, what is served of it, staged versions",
          lambda ops, p, a, b, q: ops.tenant(p, a["tenant_id"])),
    Route("PUT", "/tenants/{tenant_id}", "stageTenant", "Stage a whole tenant document (platform admins may add one)",
          lambda ops, p, a, b, q: ops.stage_tenant(p, a["tenant_id"], b["document"], b.get("comment", "")),
          body=body({"document": {"type": "object", "description": "the tenant document (docs/tenants.md)"},
                     "comment": _COMMENT}, "document"), status=201),
    Route("DELETE", "/tenants/{tenant_id}", "removeTenant", "Stage the removal of a tenant (platform admins)",
          lambda ops, p, a, b, q: ops.remove_tenant(p, a["tenant_id"]), status=201),
    Route("POST", "/tenants/{tenant_id}/idps/{idp_id}/metadata", "uploadIdpMetadata",
          "Stage a SAML IdP with uploaded metadata (added, or its metadata replaced)",
          lambda ops, p, a, b, q: ops.upload_idp_metadata(p, a["tenant_id"], a["idp_id"], b["xml"],
                                                          b.get("comment", ""), names=b.get("names")),
          body=body({"xml": {"type": "string", "minLength": 1, "maxLength": MAX_XML,
                             "description": "the IdP's SAML metadata (EntityDescriptor)"},
                     "names": _NAMES, "comment": _COMMENT}, "xml"), status=201),
    Route("POST", "/tenants/{tenant_id}/idps/{idp_id}/metadata-url", "setIdpMetadataUrl",
          "Stage a SAML IdP whose metadata is fetched from an https URL, signed by a pinned certificate",
          lambda ops, p, a, b, q: ops.set_idp_metadata_url(p, a["tenant_id"], a["idp_id"], b["url"], b["pins"],
                                                           b.get("comment", ""), entity_id=b.get("entity_id"),
                                                           names=b.get("names")),
          body=body({"url": {"type": "string", "maxLength": 2000, "description": "an https URL"},
                     "pins": {"type": ["string", "array"], "maxItems": MAX_PINS, "items": {"type": "string"},
                              "description": f"1-{MAX_PINS} SHA-256 fingerprints of signing certificates"},
                     "entity_id": {"type": "string", "minLength": 1, "maxLength": 1000},
                     "names": _NAMES, "comment": _COMMENT}, "url", "pins"), status=201),
    Route("POST", "/tenants/{tenant_id}/idps/{idp_id}/oidc", "addOidcIdp",
          "Stage an OIDC IdP found by its issuer (discovery fetched and checked, client secret sealed)",
          lambda ops, p, a, b, q: ops.add_oidc_idp(p, a["tenant_id"], a["idp_id"], b["issuer"], b["client_id"],
                                                   b.get("client_secret"), b.get("names"), b.get("comment", ""),
                                                   mapping=b.get("mapping")),
          body=body({"issuer": {"type": "string", "maxLength": 2000}, "client_id": {"type": "string", "maxLength": 200},
                     "client_secret": {"type": "string", "minLength": 1, "maxLength": 1000},
                     "names": _NAMES, "mapping": _RULES, "comment": _COMMENT}, "issuer", "client_id"), status=201),
    Route("PUT", "/tenants/{tenant_id}/idps/{idp_id}/mapping", "setMapping", "Stage an IdP's mapping rules",
          lambda ops, p, a, b, q: ops.set_mapping(p, a["tenant_id"], a["idp_id"], b["mapping"], b.get("comment", "")),
          body=body({"mapping": _RULES, "comment": _COMMENT}, "mapping"), status=201),
    Route("POST", "/tenants/{tenant_id}/idps/{idp_id}/explain", "explainMapping",
          "Dry-run an IdP's mapping rules on a sample response (changes nothing)",
          lambda ops, p, a, b, q: ops.explain(p, a["tenant_id"], a["idp_id"], b["sample"], b.get("mapping"),
                                              b.get("version")),
          body=body({"sample": {"type": "string", "minLength": 1, "maxLength": MAX_XML,
                                "description": "JSON claims, a JSON attribute map or SAML XML"},
                     "mapping": _RULES, "version": PARAMETERS["version_id"]}, "sample")),
    Route("PUT", "/tenants/{tenant_id}/allowed-services", "setAllowedServices",
          "Stage which services the tenant's schools allow (null: every service)",
          lambda ops, p, a, b, q: ops.set_allowed_services(p, a["tenant_id"], b["allowed_services"],
                                                           b.get("comment", "")),
          body=body({"allowed_services": {"type": ["object", "null"], "description": "{default, schools} "
                                                                                     "(docs/tenants.md)"},
                     "comment": _COMMENT}, "allowed_services"), status=201),
    Route("POST", "/tenants/{tenant_id}/rollback", "rollbackTenant",
          "Restore the tenant's document as it was at an earlier activated version (activated at once)",
          lambda ops, p, a, b, q: ops.rollback(p, a["tenant_id"], b["to_version"], b.get("comment", "")),
          body=body({"to_version": PARAMETERS["version_id"], "comment": _COMMENT}, "to_version"), status=201),
    Route("GET", "/versions", "listVersions", "Versions, newest first, that change what the caller may read",
          lambda ops, p, a, b, q: ops.versions(p, _q(q, "limit", 50), _q(q, "before")), query=("limit", "before")),
    Route("GET", "/versions/{version_id}", "getVersion", "A version with its changes and diffs",
          lambda ops, p, a, b, q: ops.version(p, a["version_id"])),
    Route("POST", "/versions/{version_id}/activate", "activateVersion", "Activate a staged version",
          lambda ops, p, a, b, q: ops.activate(p, a["version_id"])),
    Route("POST", "/versions/{version_id}/approve", "approveVersion",
          "Approve a registration awaiting approval (platform admins): it is activated",
          lambda ops, p, a, b, q: ops.approve(p, a["version_id"])),
    Route("POST", "/versions/{version_id}/discard", "discardVersion", "Discard a staged version",
          lambda ops, p, a, b, q: ops.discard(p, a["version_id"])),
    Route("GET", "/versions/{version_id}/test-link", "versionTestLink",
          "A link for a test login through a staged version",
          lambda ops, p, a, b, q: {"url": ops.test_link(p, a["version_id"])}),
    Route("POST", "/rollback", "rollbackRegistry",
          "Restore the whole registry as at an activated version, default the one before (platform admins)",
          lambda ops, p, a, b, q: ops.rollback(p, None, b.get("to_version"), b.get("comment", "")),
          body=body({"to_version": PARAMETERS["version_id"], "comment": _COMMENT}), status=201),
    Route("GET", "/services", "listServices", "Registered services the caller owns (city roles: ids and names)",
          lambda ops, p, a, b, q: ops.services(p), tag="services"),
    Route("GET", "/services/clients/{client_id}", "getClient", "An owned OIDC client and its versions",
          lambda ops, p, a, b, q: ops.service(p, a["client_id"]), tag="services"),
    Route("GET", "/services/sps/{sp_name}", "getSp", "An owned SAML SP and its versions",
          lambda ops, p, a, b, q: ops.service(p, f"sp/{a['sp_name']}"), tag="services"),
    Route("POST", "/services/clients", "registerClient",
          "Register or update an OIDC client (a new release policy awaits a platform admin's approval)",
          lambda ops, p, a, b, q: ops.register_client(p, {k: v for k, v in b.items() if k != "comment"},
                                                      b.get("comment", "")),
          body=body({"client_id": {"type": "string", "maxLength": 128}, "redirect_uris": _URI_LIST,
                     "name": {"type": "string", "maxLength": 200},
                     "token_endpoint_auth_method": {"type": "string", "enum": [
                         "client_secret_basic", "client_secret_post", "private_key_jwt", "none"]},
                     "jwks": {"type": "object"}, "jwks_uri": {"type": "string", "maxLength": 2000},
                     "policy": _POLICY, "post_logout_redirect_uris": _URI_LIST,
                     "id_token_signed_response_alg": {"type": "string", "enum": ["ES256", "RS256"]},
                     "backchannel_logout_uri": {"type": "string", "maxLength": 2000},
                     "backchannel_logout_session_required": {"type": "boolean"},
                     "frontchannel_logout_uri": {"type": "string", "maxLength": 2000},
                     "frontchannel_logout_session_required": {"type": "boolean"},
                     "reasons": _REASONS, "rotate_secret": {"type": "boolean"}, "comment": _COMMENT},
                    "client_id", "redirect_uris", "reasons"), status=201, tag="services"),
    Route("POST", "/services/sps", "registerSp",
          "Register or update a SAML SP (a new release policy awaits a platform admin's approval)",
          lambda ops, p, a, b, q: ops.register_sp(p, b["metadata_xml"], b.get("name"), b.get("policy"),
                                                  b["reasons"], b.get("comment", "")),
          body=body({"metadata_xml": {"type": "string", "minLength": 1, "maxLength": MAX_XML},
                     "name": {"type": "string", "minLength": 1, "maxLength": 128}, "policy": _POLICY,
                     "reasons": _REASONS, "comment": _COMMENT}, "metadata_xml", "reasons"),
          status=201, tag="services"),
    Route("GET", "/tokens", "listTokens", "API tokens (platform admins; never the tokens themselves)",
          lambda ops, p, a, b, q: ops.list_tokens(p, include_inactive=bool(_q(q, "all", False))), query=("all",),
          tag="principals"),
    Route("POST", "/tokens", "createToken", "Create an API token: shown once in the answer (platform admins)",
          lambda ops, p, a, b, q: ops.create_token(p, b["grants"], b["expires"], b.get("note", "")),
          body=body({"grants": {"type": "array", "minItems": 1, "maxItems": 50, "items": _GRANT},
                     "expires": {"type": "string", "maxLength": 10, "description": "a lifetime: 30d, 12h, 90m"},
                     "note": {"type": "string", "maxLength": 200}}, "grants", "expires"), status=201,
          tag="principals"),
    Route("DELETE", "/tokens/{token_id}", "revokeToken", "Revoke an API token (platform admins)",
          lambda ops, p, a, b, q: ops.revoke_token(p, a["token_id"]), tag="principals"),
    Route("GET", "/grants", "listGrants", "Console users' grants (platform admins)",
          lambda ops, p, a, b, q: ops.list_grants(p), tag="principals"),
    Route("PUT", "/grants/{subject}", "setGrants",
          "Set exactly the grants of a console user ([] takes them all away) (platform admins)",
          lambda ops, p, a, b, q: ops.set_grants(p, a["subject"], b["grants"], b.get("note", "")),
          body=body({"grants": {"type": "array", "maxItems": 50, "items": _GRANT},
                     "note": {"type": "string", "maxLength": 200}}, "grants"), tag="principals"),
    Route("GET", "/audit/releases", "auditReleases",
          "What services received about people of one school, and when (names of claims, never values)",
          lambda ops, p, a, b, q: ops.audit_releases(p, _q(q, "school"), _q(q, "since"), _q(q, "until"),
                                                     _q(q, "service"), _q(q, "limit", 200)),
          query=("school", "since", "until", "service", "limit"), tag="audit"),
)


def _openapi(ops: Any, p: Any, a: Mapping[str, Any], b: Any, q: Mapping[str, Any]) -> Any:
    from broker.admin.openapi import document

    return document()


#: The published description of the API itself (no token needed).
OPENAPI = Route("GET", "/openapi.json", "openapi", "This API's OpenAPI 3.1 document", _openapi, public=True,
                tag="meta")
ROUTES = (*ROUTES, OPENAPI)
