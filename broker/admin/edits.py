"""The document edits behind admin operations, and the checks of their input.

Pure functions on registry documents (a tenant document is a tenant file's content
as parsed; see docs/tenants.md): they check the shape of what a person typed,
raising :class:`~broker.admin.errors.BadRequest` with the field and what was
expected, and return the edited copy.  Whether the result is a valid registry is
decided by the registry's own validation when the change is staged; who may make
the edit is decided in :mod:`broker.admin.operations`.  Also here: the OIDC
discovery fetch of :func:`fetch_discovery` (bounded in time and size).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from broker.admin.errors import BadRequest

LANGS = ("fi", "sv", "en")
IDP_ID = re.compile(r"^[a-z][a-z0-9-]{1,62}\Z")
_FINGERPRINT = re.compile(r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}\Z")
#: Inline IdP metadata: at most this many characters (the guard caps a request at 1 MiB anyway).
MAX_XML = 1024 * 1024
MAX_COMMENT = 2000
#: At most this many pinned signing certificates for a metadata URL (one now, the next, one spare).
MAX_PINS = 3
#: The discovery document: fetched within this many seconds, at most this many bytes.
DISCOVERY_TIMEOUT = 5.0
MAX_DISCOVERY = 256 * 1024
DEFAULT_SAML_MAPPING = {"preset": "mpassid-saml"}
DEFAULT_OIDC_MAPPING = {"preset": "entra"}
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def comment(value: Any, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or len(value) > MAX_COMMENT:
        raise BadRequest("comment", f"a text of at most {MAX_COMMENT} characters saying why")
    return value.strip() or default


def names(value: Any, *, required: bool) -> dict[str, str] | None:
    """Names in fi, sv and en, or ``None`` when absent and not ``required``."""
    if value is None and not required:
        return None
    if not (isinstance(value, dict) and set(value) == set(LANGS)
            and all(isinstance(value[lang], str) and 0 < len(value[lang].strip()) <= 200 for lang in LANGS)):
        raise BadRequest("names", "names in fi, sv and en ({\"fi\": …, \"sv\": …, \"en\": …}, 1-200 characters "
                                  "each)" + (", required for a new identity provider" if required else ""))
    return {lang: value[lang].strip() for lang in LANGS}


def idp_id(value: Any) -> str:
    if not (isinstance(value, str) and IDP_ID.match(value)):
        raise BadRequest("idp_id", "a lowercase id of letters, digits and '-' (2-63 characters, e.g. koulu)")
    return value


def metadata_xml(value: Any) -> str:
    if not (isinstance(value, str) and value.strip() and len(value) <= MAX_XML):
        raise BadRequest("xml", f"the IdP's SAML metadata document (an EntityDescriptor, at most {MAX_XML} "
                                "characters)")
    return value


def https_url(value: Any, field: str, *, localhost: bool = False) -> str:
    """An absolute https URL without fragment (http too for localhost when ``localhost``)."""
    try:
        parts = urlsplit(value) if isinstance(value, str) and len(value) <= 2000 else None
        host = parts.hostname if parts else None
    except ValueError:
        parts, host = None, None
    ok = (parts is not None and host and not parts.fragment and not parts.username and not parts.password
          and (parts.scheme == "https" or (localhost and parts.scheme == "http" and host in _LOCAL_HOSTS)))
    if not ok:
        raise BadRequest(field, "an https URL without user, password or fragment"
                         + (" (http only for localhost)" if localhost else ""))
    assert isinstance(value, str)
    return value


def pins(value: Any) -> str | list[str]:
    """One fingerprint (a string, as every validator reads) or several (a list) for a rollover."""
    items = [value] if isinstance(value, str) else value
    if not (isinstance(items, list) and 0 < len(items) <= MAX_PINS
            and all(isinstance(p, str) and _FINGERPRINT.match(p) for p in items)):
        raise BadRequest("pins", f"1 to {MAX_PINS} SHA-256 fingerprints of the metadata signing certificates "
                                 "(64 hex digits, ':' separators allowed)")
    unique = list(dict.fromkeys(p.replace(":", "").lower() for p in items))
    return unique[0] if len(unique) == 1 else unique


def tenant_copy(document: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy to edit (the registry's documents are never edited in place)."""
    return copy.deepcopy(dict(document))


def idps_of(document: dict[str, Any]) -> list[Any]:
    idps = document.get("identity_providers")
    if idps is None:
        idps = document["identity_providers"] = []
    if not isinstance(idps, list):
        raise BadRequest("identity_providers", "a list in the tenant document (fix the document first)")
    return idps


def find_idp(document: dict[str, Any], wanted: str) -> dict[str, Any] | None:
    return next((i for i in idps_of(document) if isinstance(i, dict) and i.get("id") == wanted), None)


def _existing_of_type(document: dict[str, Any], wanted: str, kind: str) -> dict[str, Any] | None:
    found = find_idp(document, wanted)
    if found is not None and found.get("type") != kind:
        raise BadRequest("idp_id", f"an id not used by another kind of identity provider ('{wanted}' is a "
                                   f"{found.get('type')} IdP of this city)")
    return found


def with_saml_metadata(document: Mapping[str, Any], wanted: str, xml: str,
                       new_names: dict[str, str] | None) -> dict[str, Any]:
    """Add SAML IdP ``wanted`` with inline metadata ``xml``, or replace the metadata of the existing one.

    An existing ``entity_id`` is kept: it pins the entity the new metadata must describe.
    """
    doc = tenant_copy(document)
    idp = _existing_of_type(doc, wanted, "saml")
    if idp is None:
        if new_names is None:
            names(None, required=True)
        idps_of(doc).append({"id": wanted, "type": "saml", "names": new_names, "metadata": {"xml": xml},
                             "mapping": dict(DEFAULT_SAML_MAPPING)})
        return doc
    idp["metadata"] = {"xml": xml}
    if new_names is not None:
        idp["names"] = new_names
    return doc


def with_metadata_url(document: Mapping[str, Any], wanted: str, url: str, pinned: str | list[str],
                      entity_id: str | None, new_names: dict[str, str] | None) -> dict[str, Any]:
    """Point SAML IdP ``wanted`` at a metadata URL with pinned signing certificates (added if new)."""
    doc = tenant_copy(document)
    idp = _existing_of_type(doc, wanted, "saml")
    metadata = {"url": url, "signing_cert_sha256": pinned}
    if idp is None:
        if new_names is None:
            names(None, required=True)
        idp = {"id": wanted, "type": "saml", "names": new_names, "mapping": dict(DEFAULT_SAML_MAPPING)}
        idps_of(doc).append(idp)
    elif new_names is not None:
        idp["names"] = new_names
    previous = idp.get("metadata")
    if isinstance(previous, Mapping) and "url" in previous and "ca_file" in previous:
        metadata["ca_file"] = previous["ca_file"]   # the operator's trust for this host stays with the URL
    idp["metadata"] = metadata
    entity = entity_id or idp.get("entity_id")
    if not (isinstance(entity, str) and entity.strip()):
        raise BadRequest("entity_id", "the IdP's entityID (required with a metadata URL)")
    idp["entity_id"] = entity
    return doc


def with_oidc(document: Mapping[str, Any], wanted: str, *, issuer: str, client_id: str,
              sealed_secret: dict[str, str] | None, new_names: dict[str, str] | None,
              mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """Add OIDC IdP ``wanted`` or change the existing one's issuer, client id and (when given) secret."""
    doc = tenant_copy(document)
    idp = _existing_of_type(doc, wanted, "oidc")
    if idp is None:
        if new_names is None:
            names(None, required=True)
        if sealed_secret is None:
            raise BadRequest("client_secret", "the client secret the IdP issued (required for a new IdP)")
        idp = {"id": wanted, "type": "oidc", "names": new_names, "scopes": ["openid", "profile", "email"],
               "mapping": dict(mapping or DEFAULT_OIDC_MAPPING)}
        idps_of(doc).append(idp)
    else:
        if new_names is not None:
            idp["names"] = new_names
        if mapping is not None:
            idp["mapping"] = dict(mapping)
    idp["issuer"] = issuer
    idp["client_id"] = client_id
    if sealed_secret is not None:
        idp["client_secret"] = sealed_secret
    return doc


def with_mapping(document: Mapping[str, Any], wanted: str, mapping: Mapping[str, Any]) -> dict[str, Any] | None:
    """The document with IdP ``wanted``'s mapping rules replaced; ``None`` when it has no such IdP."""
    doc = tenant_copy(document)
    idp = find_idp(doc, wanted)
    if idp is None:
        return None
    idp["mapping"] = copy.deepcopy(dict(mapping))
    return doc


def with_allowed_services(document: Mapping[str, Any], allowed: Any) -> dict[str, Any]:
    """The document with ``allowed_services`` set (``None`` removes the key: every service is allowed)."""
    doc = tenant_copy(document)
    if allowed is None:
        doc.pop("allowed_services", None)
    else:
        doc["allowed_services"] = copy.deepcopy(allowed)
    return doc


def oidc_inputs(issuer: Any, client_id: Any, client_secret: Any, new_names: Any,
                mapping: Any) -> tuple[str, dict[str, str] | None]:
    """Check what a person typed for an OIDC IdP; returns the issuer and the names (``None``: keep)."""
    checked = https_url(issuer, "issuer", localhost=True)
    if not (isinstance(client_id, str) and 0 < len(client_id) <= 200):
        raise BadRequest("client_id", "the client id the IdP issued to the broker (1-200 characters)")
    if client_secret is not None and not (isinstance(client_secret, str) and 0 < len(client_secret) <= 1000):
        raise BadRequest("client_secret", "the client secret the IdP issued (1-1000 characters)")
    if mapping is not None and not isinstance(mapping, dict):
        raise BadRequest("mapping", "mapping rules (an object)")
    return checked, names(new_names, required=False)


def http_session() -> Any:
    """The session of discovery fetches (one per process; requests' own defaults, no proxy magic added)."""
    global _SESSION
    if _SESSION is None:
        import requests

        _SESSION = requests.Session()
    return _SESSION


_SESSION: Any = None


def fetch_discovery(http: Any, issuer: str) -> dict[str, Any]:
    """Fetch and check ``<issuer>/.well-known/openid-configuration`` (OIDC Discovery 1.0 §4).

    One GET, no redirects followed, within :data:`DISCOVERY_TIMEOUT` seconds and
    :data:`MAX_DISCOVERY` bytes; the document must be a JSON object whose ``issuer`` is
    exactly ``issuer`` (§4.3) and which names https (or localhost) authorization, token
    and JWKS endpoints.  What the server answered is never echoed back: a failure says
    only which check failed, so the fetch cannot be used to read other servers.
    """
    import requests

    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with http.get(url, timeout=DISCOVERY_TIMEOUT, allow_redirects=False, stream=True,
                      headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise BadRequest("issuer", f"an issuer whose discovery document answers 200 at {url} (it answered "
                                           f"{response.status_code})")
            body = b""
            for chunk in response.iter_content(16 * 1024):
                body += chunk
                if len(body) > MAX_DISCOVERY:
                    raise BadRequest("issuer", f"a discovery document of at most {MAX_DISCOVERY // 1024} KiB")
    except requests.RequestException as exc:
        raise BadRequest("issuer", f"an issuer whose discovery document can be fetched from {url} "
                                   f"({exc.__class__.__name__})") from None
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("issuer", "a discovery document in JSON") from None
    if not isinstance(document, dict):
        raise BadRequest("issuer", "a discovery document that is a JSON object")
    if document.get("issuer") != issuer:
        raise BadRequest("issuer", "the issuer exactly as its discovery document names it (OIDC Discovery §4.3)")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        https_url(document.get(key), f"issuer: discovery {key}", localhost=True)
    return {key: document[key] for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
                                           "userinfo_endpoint", "end_session_endpoint") if key in document}
