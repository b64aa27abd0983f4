"""Tenants: one per city, declared in ``tenants/<city>.yaml``.

:func:`load_tenants` reads every tenant file, validates it completely and returns
immutable :class:`Tenant` objects, or raises :class:`TenantError` listing *every*
problem found (file, field, what was expected).  There is no partial result: the
broker either starts with all tenants valid or refuses to start.

String values may name environment variables as ``${NAME}`` or
``${NAME:-default}`` so one tenant file serves the demo, tests and production.
Secrets (OIDC client secrets) are never inline: a tenant names an environment
variable or a file that holds them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import yaml

LANGS = ("fi", "sv", "en")
_ID = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_SCHOOL_CODE = re.compile(r"^[0-9]{5,6}$")
_MUNICIPALITY = re.compile(r"^[0-9]{3}$")
_FINGERPRINT = re.compile(r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$")
#: libyaml's safe loader when present (ten times faster for 300 tenant files), else PyYAML's.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
class SamlMetadataSource:
    """Where a SAML IdP's metadata comes from: a file under ``metadata/`` or a pinned URL."""

    file: Path | None = None
    url: str | None = None
    signing_cert_sha256: str | None = None


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
    # OIDC
    issuer: str | None = None
    client_id: str | None = None
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
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

    def idp(self, idp_id: str) -> IdentityProvider | None:
        return next((i for i in self.identity_providers if i.id == idp_id), None)


@dataclasses.dataclass(frozen=True)
class Tenants:
    """All tenants, with the lookups the login path needs (dictionary reads only)."""

    by_id: Mapping[str, Tenant]
    idps: Mapping[str, IdentityProvider]            # by "<tenant>/<idp>"
    saml_idps_by_entity: Mapping[str, IdentityProvider]

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
        domain = domain.lower()
        return next((t for t in self.by_id.values() if domain in t.domains), None)


class _Checker:
    """Collects problems for one file, each naming the field path and what was expected."""

    def __init__(self, source: str, environ: Mapping[str, str]):
        self.source = source
        self.environ = environ
        self.problems: list[str] = []

    def fail(self, path: str, expected: str) -> None:
        self.problems.append(f"{self.source}: {path}: expected {expected}")

    def expand(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            def sub(match: re.Match) -> str:
                name, default = match.group(1), match.group(2)
                if name in self.environ:
                    return self.environ[name]
                if default is not None:
                    return default
                self.fail(path, f"environment variable {name} to be set (or a ${{{name}:-default}})")
                return ""
            return _ENV_REF.sub(sub, value)
        if isinstance(value, dict):
            return {k: self.expand(v, f"{path}.{k}") for k, v in value.items()}
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
        if not isinstance(value, dict) or any(not isinstance(value.get(l), str) or not value.get(l).strip()
                                              for l in LANGS):
            self.fail(f"{path}{key}", "names in fi, sv and en (a mapping with keys fi, sv, en)")
            return {}
        return {l: value[l].strip() for l in LANGS}


def load_tenants(directory: Path, *, metadata_dir: Path, root: Path | None = None,
                 environ: Mapping[str, str] | None = None,
                 check_mapping: Callable[[Tenant, IdentityProvider], str | None] | None = None) -> Tenants:
    """Load and validate every ``*.yaml`` in ``directory``.

    ``check_mapping(tenant, idp)`` returns an error message for an invalid mapping
    section (the registry does not compile rules itself).  Raises
    :class:`TenantError` with every problem of every file.
    """
    environ = dict(os.environ if environ is None else environ)
    root = Path(root or Path(directory).parent)
    directory = Path(directory)
    problems: list[str] = []
    tenants: dict[str, Tenant] = {}
    if not directory.is_dir():
        raise TenantError([f"{directory}: expected a directory of tenant files"])
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise TenantError([f"{directory}: expected at least one tenant file (*.yaml)"])
    for path in files:
        checker = _Checker(_display(path, root), environ)
        tenant = _load_one(path, checker, metadata_dir=Path(metadata_dir), root=root)
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
    if problems:
        raise TenantError(problems)
    return Tenants(
        by_id=tenants,
        idps={idp.key: idp for t in tenants.values() for idp in t.identity_providers},
        saml_idps_by_entity=entities,
    )


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _load_one(path: Path, c: _Checker, *, metadata_dir: Path, root: Path) -> Tenant | None:
    try:
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        c.fail(where, f"valid YAML ({getattr(exc, 'problem', exc)})")
        return None
    if not isinstance(raw, dict):
        c.fail("(top level)", "a mapping with id, names, municipality_code, education_provider, schools, "
                              "identity_providers")
        return None
    data = c.expand(raw, "")
    known = {"id", "names", "municipality_code", "education_provider", "schools", "identity_providers", "domains"}
    for key in data:
        if key not in known:
            c.fail(str(key), f"one of the known keys ({', '.join(sorted(known))})")
    tenant_id = c.string(data, "id", "", _ID, "a lowercase id of letters, digits and '-' (e.g. vantaa)")
    if tenant_id and tenant_id != path.stem:
        c.fail("id", f"the file name without .yaml ('{path.stem}')")
    names = c.names(data, "names", "")
    municipality = c.string(data, "municipality_code", "", _MUNICIPALITY, "a 3-digit municipality code (e.g. '092')")
    provider = data.get("education_provider")
    provider_oid, provider_names = None, {}
    if not isinstance(provider, dict):
        c.fail("education_provider", "a mapping with oid and names")
    else:
        provider_oid = c.string(provider, "oid", "education_provider.", _OID, "an OID (e.g. 1.2.246.562.10.12345678901)")
        provider_names = c.names(provider, "names", "education_provider.")
    domains = data.get("domains") or []
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        c.fail("domains", "a list of e-mail domains")
        domains = []
    schools = _schools(data.get("schools"), c)
    idps = _idps(data.get("identity_providers"), c, tenant_id or "", metadata_dir=metadata_dir, root=root)
    if c.problems:
        return None
    return Tenant(id=tenant_id, names=names, municipality_code=municipality, provider_oid=provider_oid,
                  provider_names=provider_names, schools=tuple(schools), identity_providers=tuple(idps),
                  domains=tuple(d.lower() for d in domains), source=c.source)


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


def _idps(raw: Any, c: _Checker, tenant_id: str, *, metadata_dir: Path, root: Path) -> list[IdentityProvider]:
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
        common = dict(tenant_id=tenant_id, id=idp_id or "", names=names, mapping=mapping)
        if kind == "saml":
            allowed = {"id", "type", "names", "mapping", "metadata", "entity_id"}
            _unknown(item, allowed, path, c)
            metadata = _metadata_source(item.get("metadata"), f"{path}metadata", c, metadata_dir=metadata_dir)
            entity_id = c.string(item, "entity_id", path, required=False, expected="the IdP's entityID")
            if metadata and metadata.file and metadata.file.exists():
                found = _metadata_entity_id(metadata.file)
                if found is None:
                    c.fail(f"{path}metadata.file", "SAML metadata with one IDPSSODescriptor EntityDescriptor")
                elif entity_id and found != entity_id:
                    c.fail(f"{path}entity_id", f"the entityID in the metadata ('{found}')")
                entity_id = entity_id or found
            elif metadata and metadata.url and not entity_id:
                c.fail(f"{path}entity_id", "the IdP's entityID (required with metadata.url)")
            idps.append(IdentityProvider(type="saml", metadata=metadata, entity_id=entity_id, **common))
        elif kind == "oidc":
            allowed = {"id", "type", "names", "mapping", "issuer", "client_id", "client_secret", "scopes",
                       "login_hint_domains"}
            _unknown(item, allowed, path, c)
            issuer = c.string(item, "issuer", path, expected="the issuer URL (https, or http on localhost)")
            if issuer and not _valid_issuer(issuer):
                c.fail(f"{path}issuer", "an https URL (http only for localhost) without query or fragment")
            client_id = c.string(item, "client_id", path, expected="the client id registered at the IdP")
            secret = _secret(item.get("client_secret"), f"{path}client_secret", c, root=root)
            scopes = item.get("scopes", ["openid", "profile", "email"])
            if not isinstance(scopes, list) or "openid" not in scopes:
                c.fail(f"{path}scopes", "a list of scopes including openid")
                scopes = ["openid"]
            idps.append(IdentityProvider(type="oidc", issuer=issuer, client_id=client_id, client_secret=secret,
                                         scopes=tuple(scopes), **common))
        else:
            c.fail(f"{path}type", "'saml' or 'oidc'")
    return idps


def _unknown(item: Mapping, allowed: set[str], path: str, c: _Checker) -> None:
    for key in item:
        if key not in allowed:
            c.fail(f"{path}{key}", f"one of the known keys ({', '.join(sorted(allowed))})")


def _metadata_source(raw: Any, path: str, c: _Checker, *, metadata_dir: Path) -> SamlMetadataSource | None:
    if not isinstance(raw, dict) or ("file" in raw) == ("url" in raw):
        c.fail(path, "either {file: NAME under metadata/} or {url: https URL, signing_cert_sha256: FINGERPRINT}")
        return None
    if "file" in raw:
        name = raw["file"]
        if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            c.fail(f"{path}.file", "a relative path under metadata/")
            return None
        file = metadata_dir / name
        if not file.is_file():
            c.fail(f"{path}.file", f"an existing metadata file ({file} not found)")
        return SamlMetadataSource(file=file)
    url, fingerprint = raw.get("url"), raw.get("signing_cert_sha256")
    if not isinstance(url, str) or urlsplit(url).scheme != "https":
        c.fail(f"{path}.url", "an https URL")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.match(fingerprint):
        c.fail(f"{path}.signing_cert_sha256", "the SHA-256 fingerprint of the metadata signing certificate "
                                              "(64 hex digits, ':' separators allowed)")
    return SamlMetadataSource(url=url, signing_cert_sha256=(fingerprint or "").replace(":", "").lower())


def _metadata_entity_id(path: Path) -> str | None:
    from lxml import etree  # local: only start-up parses metadata

    try:
        root = etree.parse(str(path), parser=etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    except (etree.XMLSyntaxError, OSError):
        return None
    md = "{urn:oasis:names:tc:SAML:2.0:metadata}"
    if root.tag != f"{md}EntityDescriptor" or root.find(f"{md}IDPSSODescriptor") is None:
        return None
    return root.get("entityID")


def _valid_issuer(issuer: str) -> bool:
    parts = urlsplit(issuer)
    if parts.query or parts.fragment or not parts.netloc:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1"))


def _secret(raw: Any, path: str, c: _Checker, *, root: Path) -> str | None:
    if isinstance(raw, str):
        c.fail(path, "{env: VARIABLE} or {file: PATH}; a secret is never written in a tenant file")
        return None
    if not isinstance(raw, dict) or len(raw) != 1 or not ({"env", "file"} & raw.keys()):
        c.fail(path, "{env: VARIABLE} or {file: PATH}")
        return None
    if "env" in raw:
        value = c.environ.get(str(raw["env"]))
        if not value:
            c.fail(f"{path}.env", f"environment variable {raw['env']} to be set")
        return value
    file = Path(str(raw["file"]))
    file = file if file.is_absolute() else root / file
    if not file.is_file():
        c.fail(f"{path}.file", f"a readable file ({file} not found)")
        return None
    value = file.read_text().strip()
    if not value:
        c.fail(f"{path}.file", f"a non-empty secret in {file}")
    return value or None
