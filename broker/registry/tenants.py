"""Validating tenants: one per city, a tenant file (``tenants/<city>.yaml``) or a registry object.

:func:`tenants_from_documents` validates tenant documents completely and returns the
immutable model (:mod:`broker.registry.tenant_model`), or raises :class:`TenantError`
listing *every* problem found (file, field, what was expected); :func:`load_tenants`
does so for a folder of tenant files.  There is no partial result: a registry version
is valid as a whole or not activated, and the broker starts only on a valid one.

Tenant files are written by city administrators and are treated as untrusted
input (decision 8, :mod:`broker.registry.environment`):

* string values may name environment variables as ``${NAME}`` or
  ``${NAME:-default}`` (one tenant file serves the demo, tests and production), but
  only variables on the allow-list; ``BROKER_*`` settings and secrets never;
* secrets (OIDC client secrets) are never inline: a tenant names a variable
  ``TENANT_SECRET_<CITY>_…`` or a file of its own inside the secrets directory, or
  holds one the console sealed (:mod:`broker.registry.tenant_secrets`);
* SAML metadata files are read only inside the metadata directory, and validated
  by :func:`broker.registry.metadata.load_idp_metadata` (the text kept on
  :attr:`SamlMetadataSource.xml` is the text checked);
* ``legacy_crypto`` on a SAML IdP opts into weak algorithms, one by one, and
  :func:`crypto_warnings` says so at every check and start;
* a ``ca_file`` (an OIDC IdP's, or ``metadata.ca_file`` beside a metadata URL) is read only
  inside the CA directory and only the city's own (:mod:`broker.registry.ca_files`);
* ``domains`` and ``login_hint_domains`` claim e-mail domains for ``login_hint``, each domain
  for one city only (:mod:`broker.registry.hint_domains`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from broker.registry.ca_files import resolve_ca_file
from broker.registry.environment import SECRET_PREFIX, TenantEnvironment, never_expandable
from broker.registry.hint_domains import hint_domains, parse_login_hint_domains
from broker.registry.metadata import MetadataError, check_idp_metadata, load_idp_metadata
from broker.registry.pins import signing_pins
from broker.registry.services import parse_allowed_services
from broker.registry.tenant_model import (
    LANGS,
    LEGACY_CRYPTO,
    IdentityProvider,
    SamlMetadataSource,
    School,
    Tenant,
    TenantError,
    TenantProblem,
    Tenants,
    crypto_warnings,
)
from broker.registry.tenant_secrets import MAX_SECRET_BYTES, resolve_secret

__all__ = ["LANGS", "LEGACY_CRYPTO", "MAX_SECRET_BYTES", "IdentityProvider", "SamlMetadataSource", "School", "Tenant",
           "TenantError", "TenantProblem", "Tenants", "crypto_warnings", "display_path", "load_tenants",
           "read_tenant_files", "tenant_without_files", "tenants_from_documents"]

_ID = re.compile(r"^[a-z][a-z0-9-]{1,62}\Z")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+\Z")
_SCHOOL_CODE = re.compile(r"^[0-9]{5,6}\Z")
_MUNICIPALITY = re.compile(r"^[0-9]{3}\Z")
#: libyaml's safe loader when present (ten times faster for 300 tenant files), else PyYAML's.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_USERINFO = ("auto", "always", "never")


class _Checker:
    """Collects problems for one file, each naming the field path and what was expected."""

    def __init__(self, source: str, environ: TenantEnvironment, *, root: Path, tenant_ids: Collection[str] = (),
                 master_secret: bytes | None = None, read_files: bool = True):
        self.source = source
        self.master_secret = master_secret
        #: False: the files IdPs name (SAML metadata, client secrets, CA files) are neither read nor checked.
        self.read_files = read_files
        self.environ = environ
        self.root = root
        self.tenant_ids = tenant_ids
        self.problems: list[str] = []

    def fail(self, path: str, expected: str) -> None:
        self.problems.append(f"{self.source}: {path}: expected {expected}")

    def expand(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            def sub(match: re.Match) -> str:
                name, default = match.group(1), match.group(2)
                if never_expandable(name):
                    self.fail(path or "(top level)", f"no ${{{name}}}: BROKER_* settings and {SECRET_PREFIX}* "
                              "secrets are never expanded in tenant files")
                    return ""
                if not self.environ.expandable(name):
                    self.fail(path or "(top level)", f"only allow-listed environment variables (${{{name}}} is not on "
                              f"the list: {', '.join(sorted(self.environ.allowed))}; the operator adds names with "
                              "tenant_env / BROKER_TENANT_ENV)")
                    return ""
                if name in self.environ:
                    return self.environ[name]
                if default is not None:
                    return default
                self.fail(path, f"environment variable {name} to be set (or a ${{{name}:-default}})")
                return ""
            return _ENV_REF.sub(sub, value)
        if isinstance(value, dict):
            return {k: self.expand(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def string(self, data: Mapping, key: str, path: str, pattern: re.Pattern | None = None,
               expected: str = "a non-empty string", required: bool = True) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip() or (pattern and not pattern.match(value)):
            self.fail(f"{path}{key}", expected)
            return None
        return value.strip()

    def names(self, data: Mapping, key: str, path: str) -> dict[str, str]:
        value = data.get(key)
        if not isinstance(value, dict) or any(not isinstance(value.get(lang), str) or not value[lang].strip()
                                              for lang in LANGS):
            self.fail(f"{path}{key}", "names in fi, sv and en (a mapping with keys fi, sv, en)")
            return {}
        return {lang: value[lang].strip() for lang in LANGS}


def read_tenant_files(directory: Path, *, root: Path | None = None) -> dict[str, tuple[str, Any]]:
    """Parse every ``*.yaml`` in ``directory``: ``{tenant id: (source, content)}``.

    A tenant's id is its file's name.  Content that is not valid YAML is a
    :class:`TenantProblem` (reported by :func:`tenants_from_documents` with the others).
    """
    root = Path(root or Path(directory).parent)
    directory = Path(directory)
    if not directory.is_dir():
        raise TenantError([f"{directory}: expected a directory of tenant files"])
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise TenantError([f"{directory}: expected at least one tenant file (*.yaml)"])
    documents: dict[str, tuple[str, Any]] = {}
    for path in files:
        try:
            content: Any = yaml.load(path.read_text(), Loader=_YAML_LOADER)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            content = TenantProblem(f"line {mark.line + 1}" if mark else "file",
                                    f"valid YAML ({getattr(exc, 'problem', exc)})")
        documents[path.stem] = (display_path(path, root), content)
    return documents


def load_tenants(directory: Path, *, metadata_dir: Path, root: Path | None = None,
                 environ: Mapping[str, str] | None = None,
                 check_mapping: Callable[[Tenant, IdentityProvider], str | None] | None = None,
                 allowed_env: Collection[str] | None = None, secrets_dir: Path | None = None,
                 ca_dir: Path | None = None) -> Tenants:
    """Load and validate every ``*.yaml`` in ``directory`` (:func:`tenants_from_documents`)."""
    root = Path(root or Path(directory).parent)
    return tenants_from_documents(read_tenant_files(directory, root=root), metadata_dir=metadata_dir, root=root,
                                  environ=environ, check_mapping=check_mapping, allowed_env=allowed_env,
                                  secrets_dir=secrets_dir, ca_dir=ca_dir)


def tenants_from_documents(documents: Mapping[str, tuple[str, Any]], *, metadata_dir: Path, root: Path,
                           environ: Mapping[str, str] | None = None,
                           check_mapping: Callable[[Tenant, IdentityProvider], str | None] | None = None,
                           allowed_env: Collection[str] | None = None, secrets_dir: Path | None = None,
                           master_secret: bytes | None = None, ca_dir: Path | None = None) -> Tenants:
    """Validate tenant documents ``{tenant id: (source, content)}`` completely.

    The one validation of tenants, whatever they come from: files (``broker check``,
    ``broker registry import``) or a registry version in the database (start-up,
    every activation).

    ``environ`` is what tenant documents may read: a
    :class:`~broker.registry.environment.TenantEnvironment` (``Settings.environ``
    is one: it carries the allow-list and the secrets directory of the settings), or
    a plain mapping (default ``os.environ``) from which one is made, with
    ``allowed_env`` (default: ``BROKER_TENANT_ENV`` in it) and ``secrets_dir``
    (default: ``BROKER_SECRETS_DIR`` in it, else the demo's secrets folder) and ``ca_dir``
    (default: ``BROKER_CA_DIR`` in it, else none).  Relative secret file paths are taken
    from ``root``, relative CA file names from ``ca_dir``.

    ``check_mapping(tenant, idp)`` returns an error message for an invalid mapping
    section (the registry does not compile rules itself).  ``master_secret`` opens
    client secrets sealed in the registry (:mod:`broker.registry.sealed_secrets`).
    Raises :class:`TenantError` with every problem of every document.
    """
    try:
        tenant_environ = TenantEnvironment.of(environ, allowed=allowed_env, secrets_dir=secrets_dir, root=root,
                                              ca_dir=ca_dir)
    except ValueError as exc:
        raise TenantError([f"tenant_env (BROKER_TENANT_ENV): {exc}"]) from None
    if not documents:
        raise TenantError(["tenants: expected at least one tenant"])
    problems: list[str] = []
    tenants: dict[str, Tenant] = {}
    tenant_ids = frozenset(documents)
    for name, (source, content) in sorted(documents.items()):
        checker = _Checker(source, tenant_environ, root=root, tenant_ids=tenant_ids, master_secret=master_secret)
        tenant = _load_one(name, content, checker, metadata_dir=Path(metadata_dir))
        if tenant is not None and check_mapping is not None:
            for index, idp in enumerate(tenant.identity_providers):
                message = check_mapping(tenant, idp)
                if message:
                    checker.problems.append(f"{checker.source}: identity_providers[{index}].mapping: {message}")
        if tenant is not None and tenant.id in tenants:
            checker.fail("id", f"a unique tenant id ('{tenant.id}' is also in {tenants[tenant.id].source})")
        problems.extend(checker.problems)
        if tenant is not None and not checker.problems:
            tenants[tenant.id] = tenant
    entities: dict[str, IdentityProvider] = {}
    for tenant in tenants.values():
        for idp in tenant.identity_providers:
            if idp.entity_id and idp.entity_id in entities:
                other = entities[idp.entity_id]
                problems.append(f"{tenant.source}: identity_providers[{idp.id}].entity_id: expected an entity id "
                                f"not used by another IdP (also {other.key})")
            elif idp.entity_id:
                entities[idp.entity_id] = idp
    # One city's OIDC client at an issuer is that city's: another city naming the same issuer and
    # client would sign in the first city's people as its own.  Cities may share an issuer (Google
    # Workspace: https://accounts.google.com), each with a client of its own.
    oidc_clients: dict[tuple[str, str], IdentityProvider] = {}
    for tenant in tenants.values():
        for idp in tenant.identity_providers:
            if idp.type != "oidc" or not idp.issuer or not idp.client_id:
                continue
            other = oidc_clients.setdefault((idp.issuer.rstrip("/"), idp.client_id), idp)
            if other.tenant_id != idp.tenant_id:
                problems.append(f"{tenant.source}: identity_providers[{idp.id}].client_id: expected a client id "
                                f"not used by another IdP with the issuer {idp.issuer} (also {other.key})")
    # A login_hint user@<domain> picks the city (or the IdP) claiming the domain: no city may claim another's.
    domains, domain_problems = hint_domains(tenants.values())
    problems.extend(domain_problems)
    if problems:
        raise TenantError(problems)
    return Tenants(
        by_id=tenants,
        idps={idp.key: idp for t in tenants.values() for idp in t.identity_providers},
        saml_idps_by_entity=entities,
        hint_domains=domains,
    )


def tenant_without_files(documents: Mapping[str, tuple[str, Any]], tenant_id: str, *, root: Path,
                         environ: Mapping[str, str] | None = None) -> Tenant:
    """One tenant of ``documents``, validated as :func:`tenants_from_documents` validates it,
    except that the files its IdPs name (SAML metadata, client secrets, CA files) are
    neither read nor checked: IdPs come without metadata and secrets.

    For what needs only the schools and the mapping rules (``broker mapping explain``,
    which verifies no signature): it works on a fresh clone, before ``make demo`` wrote
    the demo's metadata and secrets, and whatever state other tenants are in.  Raises
    :class:`KeyError` for a tenant not in ``documents`` and :class:`TenantError` for
    this tenant's problems.
    """
    source, content = documents[tenant_id]
    tenant_environ = TenantEnvironment.of(environ, root=root)
    checker = _Checker(source, tenant_environ, root=root, tenant_ids=frozenset(documents), read_files=False)
    tenant = _load_one(tenant_id, content, checker, metadata_dir=root)  # (no metadata is read)
    if tenant is None or checker.problems:
        raise TenantError(checker.problems)
    return tenant


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (how problems name a tenant file)."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _load_one(name: str, raw: Any, c: _Checker, *, metadata_dir: Path) -> Tenant | None:
    if isinstance(raw, TenantProblem):
        c.fail(raw.where, raw.expected)
        return None
    if not isinstance(raw, dict):
        c.fail("(top level)", "a mapping with id, names, municipality_code, education_provider, schools, "
                              "identity_providers")
        return None
    data = c.expand(raw, "")
    known = {"id", "names", "municipality_code", "education_provider", "schools", "identity_providers", "domains",
             "sessions", "allowed_services"}
    for key in data:
        if key not in known:
            c.fail(str(key), f"one of the known keys ({', '.join(sorted(known))})")
    tenant_id = c.string(data, "id", "", _ID, "a lowercase id of letters, digits and '-' (e.g. vantaa)")
    if tenant_id and tenant_id != name:
        c.fail("id", f"the tenant's name, which is its file name without .yaml ('{name}')")
    names = c.names(data, "names", "")
    municipality = c.string(data, "municipality_code", "", _MUNICIPALITY, "a 3-digit municipality code (e.g. '092')")
    provider = data.get("education_provider")
    provider_oid, provider_names = None, {}
    if not isinstance(provider, dict):
        c.fail("education_provider", "a mapping with oid and names")
    else:
        provider_oid = c.string(provider, "oid", "education_provider.", _OID,
                                "an OID (e.g. 1.2.246.562.10.12345678901)")
        provider_names = c.names(provider, "names", "education_provider.")
    domains = data.get("domains") or []
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        c.fail("domains", "a list of e-mail domains")
        domains = []
    schools = _schools(data.get("schools"), c)
    idps = _idps(data.get("identity_providers"), c, tenant_id or "", metadata_dir=metadata_dir)
    limits = _session_limits(data.get("sessions"), c)
    access = parse_allowed_services(data.get("allowed_services"), {s.code for s in schools}, c)
    if c.problems:
        return None
    # c.string returns None for a required value only after recording a problem.
    assert tenant_id is not None and municipality is not None and provider_oid is not None
    return Tenant(id=tenant_id, names=names, municipality_code=municipality, provider_oid=provider_oid,
                  provider_names=provider_names, schools=tuple(schools), identity_providers=tuple(idps),
                  domains=tuple(d.lower() for d in domains), source=c.source,
                  session_max_lifetime=limits.get("max_lifetime"), session_idle_timeout=limits.get("idle_timeout"),
                  allowed_services=access)


#: Bounds a city may choose within: at least five minutes, at most a week (max) or a day (idle).
_SESSION_BOUNDS = {"max_lifetime": (300, 7 * 24 * 3600), "idle_timeout": (300, 24 * 3600)}


def _session_limits(raw: Any, c: Any) -> dict[str, int]:
    """``sessions: {max_lifetime, idle_timeout}`` in seconds; absent keys keep the broker's defaults."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        c.fail("sessions", "a mapping with max_lifetime and/or idle_timeout (seconds)")
        return {}
    limits: dict[str, int] = {}
    for key, value in raw.items():
        bounds = _SESSION_BOUNDS.get(key)
        if bounds is None:
            c.fail(f"sessions.{key}", "one of max_lifetime, idle_timeout")
        elif isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
            c.fail(f"sessions.{key}", f"whole seconds from {bounds[0]} to {bounds[1]}")
        else:
            limits[key] = value
    if limits.get("idle_timeout", 0) > limits.get("max_lifetime", 10**9):
        c.fail("sessions.idle_timeout", "at most max_lifetime")
    return limits


def _schools(raw: Any, c: _Checker) -> list[School]:
    if not isinstance(raw, list) or not raw:
        c.fail("schools", "a non-empty list of schools (code, oid, names)")
        return []
    schools, codes = [], set()
    for i, item in enumerate(raw):
        path = f"schools[{i}]."
        if not isinstance(item, dict):
            c.fail(f"schools[{i}]", "a mapping with code, oid and names")
            continue
        code = c.string(item, "code", path, _SCHOOL_CODE, "a 5- or 6-digit school code as a string (e.g. '03083')")
        oid = c.string(item, "oid", path, _OID, "an OID (e.g. 1.2.246.562.10.12345678901)")
        names = c.names(item, "names", path)
        active = item.get("active", True)
        if not isinstance(active, bool):
            c.fail(f"{path}active", "true or false")
        if code in codes:
            c.fail(f"{path}code", f"a school code unique within the tenant ('{code}' repeats)")
        codes.add(code)
        if code and oid and names:
            schools.append(School(code=code, oid=oid, names=names, active=bool(active)))
    return schools


def _idps(raw: Any, c: _Checker, tenant_id: str, *, metadata_dir: Path) -> list[IdentityProvider]:
    if not isinstance(raw, list) or not raw:
        c.fail("identity_providers", "a non-empty list of identity providers")
        return []
    idps, ids = [], set()
    for i, item in enumerate(raw):
        path = f"identity_providers[{i}]."
        if not isinstance(item, dict):
            c.fail(f"identity_providers[{i}]", "a mapping with id, type and names")
            continue
        idp_id = c.string(item, "id", path, _ID, "a lowercase id of letters, digits and '-'")
        if idp_id in ids:
            c.fail(f"{path}id", f"an id unique within the tenant ('{idp_id}' repeats)")
        ids.add(idp_id)
        kind = item.get("type")
        names = c.names(item, "names", path)
        mapping = item.get("mapping") or {}
        if not isinstance(mapping, dict):
            c.fail(f"{path}mapping", "a mapping of attribute rules")
            mapping = {}
        common: dict[str, Any] = {
            "tenant_id": tenant_id, "id": idp_id or "", "names": names, "mapping": mapping,
            "login_hint_domains": parse_login_hint_domains(item.get("login_hint_domains"),
                                                           f"{path}login_hint_domains", c)}
        if kind == "saml":
            allowed = {"id", "type", "names", "mapping", "metadata", "entity_id", "legacy_crypto",
                       "login_hint_domains"}
            _unknown(item, allowed, path, c)
            entity_id = c.string(item, "entity_id", path, required=False, expected="the IdP's entityID")
            metadata, found = _metadata_source(item.get("metadata"), f"{path}metadata", c,
                                               metadata_dir=metadata_dir, entity_id=entity_id,
                                               entity_path=f"{path}entity_id", tenant_id=tenant_id) \
                if c.read_files else (None, None)
            entity_id = entity_id or found
            if metadata and metadata.url and not entity_id:
                c.fail(f"{path}entity_id", "the IdP's entityID (required with metadata.url)")
            legacy = _legacy_crypto(item.get("legacy_crypto"), f"{path}legacy_crypto", c)
            idps.append(IdentityProvider(type="saml", metadata=metadata, entity_id=entity_id, legacy_crypto=legacy,
                                         **common))
        elif kind == "oidc":
            allowed = {"id", "type", "names", "mapping", "issuer", "client_id", "client_secret", "scopes",
                       "login_hint_domains", "userinfo", "ca_file"}
            _unknown(item, allowed, path, c)
            issuer = c.string(item, "issuer", path, expected="the issuer URL (https, or http on localhost)")
            if issuer and not _valid_issuer(issuer):
                c.fail(f"{path}issuer", "an https URL (http only for localhost) without query or fragment")
            client_id = c.string(item, "client_id", path, expected="the client id registered at the IdP")
            secret = resolve_secret(item.get("client_secret"), f"{path}client_secret", c, tenant_id=tenant_id) \
                if c.read_files else None
            scopes = item.get("scopes", ["openid", "profile", "email"])
            if not isinstance(scopes, list) or "openid" not in scopes:
                c.fail(f"{path}scopes", "a list of scopes including openid")
                scopes = ["openid"]
            userinfo = item.get("userinfo", "auto")
            if userinfo not in _USERINFO:
                c.fail(f"{path}userinfo", "auto (call the userinfo endpoint when a claim the mapping reads is not in "
                                          "the ID token), always or never")
                userinfo = "auto"
            ca_file = None
            if "ca_file" in item and c.read_files:
                ca_file = resolve_ca_file(item["ca_file"], f"{path}ca_file", c, tenant_id=tenant_id)
                if ca_file and issuer and urlsplit(issuer).scheme != "https":
                    c.fail(f"{path}ca_file", "an https issuer (a CA file is for TLS; the issuer is http)")
            idps.append(IdentityProvider(type="oidc", issuer=issuer, client_id=client_id, client_secret=secret,
                                         scopes=tuple(scopes), userinfo=userinfo, ca_file=ca_file, **common))
        else:
            c.fail(f"{path}type", "'saml' or 'oidc'")
    return idps


def _unknown(item: Mapping, allowed: set[str], path: str, c: _Checker) -> None:
    for key in item:
        if key not in allowed:
            c.fail(f"{path}{key}", f"one of the known keys ({', '.join(sorted(allowed))})")


def _metadata_source(raw: Any, path: str, c: _Checker, *, metadata_dir: Path, entity_id: str | None,
                     entity_path: str, tenant_id: str) -> tuple[SamlMetadataSource | None, str | None]:
    """The metadata source and, for a file, the entityID it declares (validated)."""
    forms = [form for form in ("file", "url", "xml") if isinstance(raw, dict) and form in raw]
    if len(forms) != 1:
        c.fail(path, "one of {file: NAME under metadata/}, {url: https URL, signing_cert_sha256: FINGERPRINT or a "
                     "list of up to 3[, ca_file: NAME in the CA directory]} or {xml: THE METADATA DOCUMENT}")
        return None, None
    known = {"url", "signing_cert_sha256", "ca_file"} if "url" in raw else {forms[0]}
    for key in raw:
        if key not in known:
            c.fail(f"{path}.{key}", f"one of the keys of metadata.{forms[0]} ({', '.join(sorted(known))})")
    if "xml" in raw:
        text = raw["xml"]
        if not isinstance(text, str) or not text.strip():
            c.fail(f"{path}.xml", "the IdP's SAML metadata document")
            return None, None
        try:
            checked = check_idp_metadata(text.encode(), entity_id=entity_id)
        except MetadataError as exc:
            c.fail(entity_path if exc.field == "entity_id" else f"{path}.xml", exc.expected)
            return None, None
        return SamlMetadataSource(xml=checked.xml), checked.entity_id
    if "file" in raw:
        name = raw["file"]
        if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            c.fail(f"{path}.file", "a relative path under metadata/")
            return None, None
        try:
            loaded = load_idp_metadata(name, metadata_dir=metadata_dir, entity_id=entity_id)
        except MetadataError as exc:
            c.fail(entity_path if exc.field == "entity_id" else f"{path}.file", exc.expected)
            return None, None
        return SamlMetadataSource(file=loaded.path, xml=loaded.xml), loaded.entity_id
    url = raw.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme != "https":
        c.fail(f"{path}.url", "an https URL")
    pins, problems = signing_pins(raw.get("signing_cert_sha256"))
    for suffix, expected in problems:
        c.fail(f"{path}.signing_cert_sha256{suffix}", expected)
    ca_file = resolve_ca_file(raw["ca_file"], f"{path}.ca_file", c, tenant_id=tenant_id) if "ca_file" in raw else None
    return SamlMetadataSource(url=url, signing_cert_sha256=pins, ca_file=ca_file), None


def _legacy_crypto(raw: Any, path: str, c: _Checker) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(item, str) and item in LEGACY_CRYPTO for item in raw):
        c.fail(path, f"a list of weak algorithms the IdP still needs, among {', '.join(LEGACY_CRYPTO)} "
                     "(or no legacy_crypto at all)")
        return frozenset()
    return frozenset(raw)


def _valid_issuer(issuer: str) -> bool:
    parts = urlsplit(issuer)
    if parts.query or parts.fragment or not parts.netloc:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1"))
