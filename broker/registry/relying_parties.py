"""Relying parties: OIDC clients and SAML service providers registered with the broker.

Registrations are objects of the versioned registry (:mod:`broker.registry.versions`):
``("client", <client_id>)`` holds :meth:`Client.to_dict`, ``("sp", <name>)`` holds the
SP's metadata and release policy (:func:`sp_document`).  Their file form, for import
and export, is ``clients/<client_id>.json`` and ``sps/<name>.xml`` plus
``sps/<name>.json`` for its release policy and SAML flags (:func:`read_registration_files`).  They
are read when the login path is built, never on the login path.

Client secrets are never stored: only their SHA-256.  A generated secret has 256
bits of entropy, so a fast hash is enough and comparison is constant-time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from broker.saml.sp_encryption import SpEncryption

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
PROFILES = ("digione", "mpassid")
SUBJECT_TYPES = ("pairwise", "public")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
_SP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


class RegistrationError(ValueError):
    """A registration is invalid; the message names the field and what was expected."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class ReleasePolicy:
    """What one relying party may receive.

    ``scopes`` are the claim sets it may request (see ``broker.mapping``); the
    defaults release only a pairwise ``sub`` and roles.
    """

    scopes: tuple[str, ...] = ("openid", "roles")
    profile: str = "digione"
    subject_type: str = "pairwise"
    sector: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Client:
    """An OIDC relying party."""

    client_id: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str = "client_secret_basic"
    secret_sha256: str | None = None
    jwks: dict | None = None
    jwks_uri: str | None = None
    name: str = ""
    policy: ReleasePolicy = ReleasePolicy()
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    #: ES256 (default: cheapest to sign) or RS256 for clients whose libraries lack ES256.
    id_token_signed_response_alg: str = "ES256"
    #: OIDC Back-Channel Logout 1.0 §2.2: where the broker POSTs a logout token when a
    #: session this client took part in ends; with ``..._session_required`` the token
    #: always carries the client's ``sid``.
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = True
    #: OIDC Front-Channel Logout 1.0 §2: rendered in an iframe of the broker's "signed
    #: out" page (with ``iss`` and ``sid`` when ``..._session_required``).
    frontchannel_logout_uri: str | None = None
    frontchannel_logout_session_required: bool = True
    #: The service's logo (https only), shown on the city page next to its name (RFC 7591 §2 ``logo_uri``).
    logo_uri: str | None = None

    @property
    def public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def sector(self) -> str:
        """The pairwise sector: the registered sector identifier, else the redirect host."""
        return self.policy.sector or urlsplit(self.redirect_uris[0]).hostname or self.client_id

    def check_secret(self, secret: str | None) -> bool:
        if not self.secret_sha256 or not secret:
            return False
        return hmac.compare_digest(self.secret_sha256, hash_secret(secret))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["redirect_uris"] = list(self.redirect_uris)
        if data["logo_uri"] is None:   # registrations without a logo keep the shape they had
            del data["logo_uri"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "client") -> Client:
        def fail(field: str, expected: str) -> NoReturn:
            raise RegistrationError(f"{source}: {field}: expected {expected}")

        def need(cond: bool, field: str, expected: str) -> None:
            if not cond:
                fail(field, expected)

        client_id = data.get("client_id")
        if not (isinstance(client_id, str) and _CLIENT_ID.match(client_id)):
            fail("client_id", "1-128 characters of letters, digits, '.', '_', ':' or '-'")
        uris = data.get("redirect_uris")
        if not (isinstance(uris, (list, tuple)) and len(uris) > 0):
            fail("redirect_uris", "a non-empty list of URIs")
        for i, uri in enumerate(uris):
            need(isinstance(uri, str) and _valid_redirect_uri(uri), f"redirect_uris[{i}]",
                 "an absolute https URI (http only for localhost) without a fragment")
        method = data.get("token_endpoint_auth_method", "client_secret_basic")
        need(method in AUTH_METHODS, "token_endpoint_auth_method", f"one of {', '.join(AUTH_METHODS)}")
        if method in ("client_secret_basic", "client_secret_post"):
            need(isinstance(data.get("secret_sha256"), str), "secret_sha256", "the SHA-256 of the client secret")
        if method == "private_key_jwt":
            need(bool(data.get("jwks")) or bool(data.get("jwks_uri")), "jwks", "a JWKS or jwks_uri")
        policy_data = data.get("policy") or {}
        need(isinstance(policy_data, dict), "policy", "a mapping")
        policy = ReleasePolicy(
            scopes=tuple(policy_data.get("scopes", ReleasePolicy.scopes)),
            profile=policy_data.get("profile", "digione"),
            subject_type=policy_data.get("subject_type", "pairwise"),
            sector=policy_data.get("sector", ""),
        )
        need(policy.profile in PROFILES, "policy.profile", f"one of {', '.join(PROFILES)}")
        need(policy.subject_type in SUBJECT_TYPES, "policy.subject_type", "pairwise or public")
        id_token_alg = data.get("id_token_signed_response_alg", "ES256")
        need(id_token_alg in ("ES256", "RS256"), "id_token_signed_response_alg", "ES256 or RS256")
        # RP-Initiated Logout 1.0 §3: redirected to after logout, exactly as registered.
        post_logout = data.get("post_logout_redirect_uris", ())
        need(isinstance(post_logout, (list, tuple)), "post_logout_redirect_uris", "a list of URIs")
        for i, uri in enumerate(post_logout):
            need(isinstance(uri, str) and _valid_redirect_uri(uri), f"post_logout_redirect_uris[{i}]",
                 "an absolute https URI (http only for localhost) without a fragment")
        # Back-Channel Logout 1.0 §2.2: absolute, no fragment (https; http only for localhost).
        backchannel = data.get("backchannel_logout_uri")
        need(backchannel is None or (isinstance(backchannel, str) and _valid_redirect_uri(backchannel)),
             "backchannel_logout_uri", "an absolute https URI (http only for localhost) without a fragment")
        # Front-Channel Logout 1.0 §2: absolute, no fragment, and the scheme, host and port of
        # a registered redirect URI (a query is allowed).
        frontchannel = data.get("frontchannel_logout_uri")
        need(frontchannel is None or (isinstance(frontchannel, str) and _valid_redirect_uri(frontchannel)
                                      and _origin(frontchannel) in {_origin(u) for u in uris}),
             "frontchannel_logout_uri", "an absolute https URI (http only for localhost) without a fragment, "
             "with the scheme, host and port of a registered redirect URI")
        for flag in ("backchannel_logout_session_required", "frontchannel_logout_session_required"):
            need(isinstance(data.get(flag, True), bool), flag, "true or false")
        logo = data.get("logo_uri")
        need(logo is None or (isinstance(logo, str) and len(logo) <= 2048 and _valid_logo_uri(logo)), "logo_uri",
             "an absolute https URL without a fragment")
        return cls(
            client_id=client_id,
            redirect_uris=tuple(uris),
            token_endpoint_auth_method=method,
            secret_sha256=data.get("secret_sha256"),
            jwks=data.get("jwks"),
            jwks_uri=data.get("jwks_uri"),
            name=data.get("name", "") or client_id,
            policy=policy,
            post_logout_redirect_uris=tuple(post_logout),
            grant_types=tuple(data.get("grant_types", ("authorization_code", "refresh_token"))),
            id_token_signed_response_alg=id_token_alg,
            backchannel_logout_uri=backchannel,
            backchannel_logout_session_required=data.get("backchannel_logout_session_required", True),
            frontchannel_logout_uri=frontchannel,
            frontchannel_logout_session_required=data.get("frontchannel_logout_session_required", True),
            logo_uri=logo,
        )


def _valid_logo_uri(uri: str) -> bool:
    """https with a host, no fragment, no credentials, no quotes or spaces (it goes into an ``<img src>``)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        return False
    return (parts.scheme == "https" and bool(parts.hostname) and not parts.fragment and "#" not in uri
            and "@" not in parts.netloc and not any(c in uri for c in " \"'<>\\") and uri.isprintable())


def _valid_redirect_uri(uri: str) -> bool:
    """Absolute, no fragment (not even an empty one), https or http on localhost."""
    if _origin(uri) is None:
        return False
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri or not parts.netloc or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")


def _origin(uri: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of a URI, the default port made explicit (RFC 6454 §4)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port if port is not None else {"https": 443, "http": 80}.get(scheme)


#: Keys of an SP's ``policy`` object that say how the broker's SAML IdP answers it (ADR 0013), next to
#: the release policy's fields: ``encrypt_assertions`` (its metadata must publish an encryption key)
#: and ``release_authenticating_authority`` (its assertions name the city IdP, not the broker).
SP_FLAGS = ("encrypt_assertions", "release_authenticating_authority")


@dataclasses.dataclass(frozen=True)
class ServiceProvider:
    """A SAML service provider: its metadata, its release policy and how its assertions are made.

    ``encryption`` is derived from the metadata when ``encrypt_assertions`` is set
    (:func:`broker.saml.sp_encryption.sp_encryption`): a registration that asks for
    encryption without a usable key is refused.
    """

    name: str
    entity_id: str
    metadata_xml: str
    policy: ReleasePolicy = ReleasePolicy(profile="mpassid")
    encrypt_assertions: bool = False
    release_authenticating_authority: bool = False
    encryption: SpEncryption | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def sector(self) -> str:
        """The pairwise sector: the registered sector identifier, else the entity id."""
        return self.policy.sector or self.entity_id

    @classmethod
    def from_document(cls, name: str, data: Mapping[str, Any]) -> ServiceProvider:
        """The SP registered as ``name``: ``{metadata_xml, policy}`` (:func:`sp_document`)."""
        xml = data.get("metadata_xml")
        if not isinstance(xml, str):
            raise RegistrationError(f"sp {name}: metadata_xml: expected the SP's SAML metadata")
        raw = data.get("policy") or {}
        allowed = {f.name for f in dataclasses.fields(ReleasePolicy)} | set(SP_FLAGS)
        if not isinstance(raw, dict) or not set(raw) <= allowed:
            raise RegistrationError(f"sp {name}: policy: expected scopes, profile, subject_type, sector, "
                                    f"{' and '.join(SP_FLAGS)}")
        flags = {k: raw[k] for k in SP_FLAGS if k in raw}
        for flag, value in flags.items():
            if not isinstance(value, bool):
                raise RegistrationError(f"sp {name}: policy.{flag}: expected true or false")
        try:
            fields: dict[str, Any] = {k: tuple(v) if k == "scopes" else v for k, v in raw.items() if k not in SP_FLAGS}
            policy = ReleasePolicy(**fields)
        except TypeError as exc:
            raise RegistrationError(f"sp {name}: policy: expected a release policy ({exc})") from None
        if policy.profile not in PROFILES or policy.subject_type not in SUBJECT_TYPES:
            raise RegistrationError(f"sp {name}: policy: expected profile {' or '.join(PROFILES)} and subject_type "
                                    f"{' or '.join(SUBJECT_TYPES)}")
        entity_id = _entity_id(xml, source=f"sp {name}")
        encryption = None
        if flags.get("encrypt_assertions"):
            from broker.saml.sp_encryption import EncryptionUnavailable, sp_encryption

            try:
                encryption = sp_encryption(xml)
            except EncryptionUnavailable as exc:
                raise RegistrationError(f"sp {name}: policy.encrypt_assertions: expected the SP's metadata to "
                                        f"publish an RSA encryption key the broker can use ({exc})") from None
        return cls(name=name, entity_id=entity_id, metadata_xml=xml, policy=policy,
                   encrypt_assertions=bool(flags.get("encrypt_assertions")),
                   release_authenticating_authority=bool(flags.get("release_authenticating_authority")),
                   encryption=encryption)


class RelyingParties:
    """The registered relying parties of one registry version, with dictionary lookups."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.sps: dict[str, ServiceProvider] = {}
        self._sps_by_entity: dict[str, ServiceProvider] = {}

    @classmethod
    def from_documents(cls, clients: Mapping[str, Mapping[str, Any]],
                       sps: Mapping[str, Mapping[str, Any]]) -> RelyingParties:
        """Validate registration documents by key; raises :class:`RegistrationError` naming the first fault."""
        parties = cls()
        for client_id, data in sorted(clients.items()):
            client = Client.from_dict(dict(data), source=f"client {client_id}")
            if client.client_id != client_id:
                raise RegistrationError(f"client {client_id}: client_id: expected '{client_id}'")
            parties.clients[client_id] = client
        for name, data in sorted(sps.items()):
            sp = ServiceProvider.from_document(name, data)
            other = parties._sps_by_entity.get(sp.entity_id)
            if other is not None:
                raise RegistrationError(f"sp {name}: entityID: expected one not registered by another SP "
                                        f"('{sp.entity_id}' is also {other.name})")
            parties._keep_sp(sp)
        return parties

    def _keep_sp(self, sp: ServiceProvider) -> None:
        self.sps[sp.name] = sp
        self._sps_by_entity[sp.entity_id] = sp

    def client(self, client_id: str | None) -> Client | None:
        return self.clients.get(client_id) if client_id else None

    def sp_for_entity(self, entity_id: str) -> ServiceProvider | None:
        return self._sps_by_entity.get(entity_id)

    def add_client(self, data: dict[str, Any]) -> tuple[Client, str | None]:
        """Add (or replace) a client here, in memory; return it and its new secret, if it has one."""
        client, secret = client_document(data)
        self.clients[client.client_id] = client
        return client, secret

    def add_sp(self, metadata_xml: str, *, name: str | None = None, policy: ReleasePolicy | None = None,
               **flags: bool) -> ServiceProvider:
        """Add (or replace) a SAML SP here, in memory (``flags``: :data:`SP_FLAGS`)."""
        sp = ServiceProvider.from_document(*sp_document(metadata_xml, name=name, policy=policy, **flags))
        self._keep_sp(sp)
        return sp


def client_document(data: Mapping[str, Any]) -> tuple[Client, str | None]:
    """Validate a client registration; hash its secret (generated unless given) into it.

    Returns the client (whose :meth:`Client.to_dict` is the registry object) and the
    secret in clear, which is shown once and never stored.
    """
    data = dict(data)
    secret = None
    if data.get("token_endpoint_auth_method", "client_secret_basic") in ("client_secret_basic", "client_secret_post"):
        secret = data.pop("client_secret", None) or secrets.token_urlsafe(32)
        data["secret_sha256"] = hash_secret(secret)
    else:
        data.pop("client_secret", None)
    return Client.from_dict(data), secret


def sp_document(metadata_xml: str, *, name: str | None = None, policy: ReleasePolicy | None = None,
                encrypt_assertions: bool = False,
                release_authenticating_authority: bool = False) -> tuple[str, dict[str, Any]]:
    """``(name, registry object)`` of a SAML SP registration; the name defaults to one made of its entityID.

    The flags (:data:`SP_FLAGS`) are written into the policy object only when set, so a
    registration without them is the document it always was.
    """
    entity_id = _entity_id(metadata_xml, source=name or "metadata")
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "_",
                          urlsplit(entity_id).netloc + urlsplit(entity_id).path).strip("_")
    if not _SP_NAME.match(name):
        raise RegistrationError(f"{name}: name: expected 1-128 letters, digits, '.', '_' or '-'")
    policy = policy or ReleasePolicy(profile="mpassid")
    flags = {"encrypt_assertions": encrypt_assertions,
             "release_authenticating_authority": release_authenticating_authority}
    return name, {"metadata_xml": metadata_xml, "policy": {**policy.to_dict(), **{k: v for k, v in flags.items() if v}}}


def read_registration_files(directory: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The file form: ``(clients by id, SPs by name)`` from ``clients/*.json`` and ``sps/*.xml`` (+ ``.json``)."""
    directory = Path(directory)
    clients = {path.stem: _read_json(path) for path in sorted((directory / "clients").glob("*.json"))}
    sps: dict[str, dict[str, Any]] = {}
    for path in sorted((directory / "sps").glob("*.xml")):
        policy_path = path.with_suffix(".json")
        policy = _read_json(policy_path) if policy_path.exists() else ReleasePolicy(profile="mpassid").to_dict()
        sps[path.stem] = {"metadata_xml": path.read_text(), "policy": policy}
    return clients, sps


def write_registration_files(directory: Path, clients: Mapping[str, Mapping[str, Any]],
                             sps: Mapping[str, Mapping[str, Any]]) -> None:
    """Write registrations in their file form (``broker registry export``)."""
    directory = Path(directory)
    for client_id, data in clients.items():
        _write_atomic(directory / "clients" / f"{client_id}.json", json.dumps(data, indent=2, sort_keys=True))
    for name, data in sps.items():
        _write_atomic(directory / "sps" / f"{name}.json", json.dumps(data.get("policy") or {}, indent=2))
        _write_atomic(directory / "sps" / f"{name}.xml", data["metadata_xml"])


def _entity_id(metadata_xml: str, *, source: str) -> str:
    from lxml import etree  # local: only registration parses SP metadata

    try:
        root = etree.fromstring(metadata_xml.encode(), parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise RegistrationError(f"{source}: not well-formed XML: {exc}") from None
    if etree.QName(root).localname != "EntityDescriptor" or not root.get("entityID"):
        raise RegistrationError(f"{source}: expected an md:EntityDescriptor with an entityID")
    if not root.findall(".//{urn:oasis:names:tc:SAML:2.0:metadata}SPSSODescriptor"):
        raise RegistrationError(f"{source}: expected an SPSSODescriptor (a SAML service provider)")
    return root.get("entityID")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RegistrationError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RegistrationError(f"{path}: expected a JSON object")
    return data


def _write_atomic(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    tmp.replace(path)
