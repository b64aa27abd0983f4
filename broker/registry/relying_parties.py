"""Relying parties: OIDC clients and SAML service providers registered with the broker.

Registrations are files under the registry directory (``BROKER_REGISTRY_DIR``,
``var/registry`` by default): ``clients/<client_id>.json`` and ``sps/<name>.xml``
plus ``sps/<name>.json`` for its release policy.  Files survive restarts and can be
shipped to every instance (a volume, a ConfigMap); they are read once when the
configuration is built, never on the login path.

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
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
PROFILES = ("digione", "mpassid")
SUBJECT_TYPES = ("pairwise", "public")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


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
        )


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


@dataclasses.dataclass(frozen=True)
class ServiceProvider:
    """A SAML service provider: its metadata and its release policy."""

    name: str
    entity_id: str
    metadata_xml: str
    policy: ReleasePolicy = ReleasePolicy(profile="mpassid")

    @property
    def sector(self) -> str:
        """The pairwise sector: the registered sector identifier, else the entity id."""
        return self.policy.sector or self.entity_id


class RelyingParties:
    """The registered relying parties, loaded from the registry directory.

    Lookups are dictionary reads; :meth:`add_client` and :meth:`add_sp` write the
    file first, so a registration that fails validation leaves nothing behind.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.clients: dict[str, Client] = {}
        self.sps: dict[str, ServiceProvider] = {}
        self._sps_by_entity: dict[str, ServiceProvider] = {}

    @classmethod
    def load(cls, directory: Path) -> RelyingParties:
        parties = cls(directory)
        for path in sorted((parties.directory / "clients").glob("*.json")):
            client = Client.from_dict(_read_json(path), source=str(path))
            parties.clients[client.client_id] = client
        for path in sorted((parties.directory / "sps").glob("*.xml")):
            parties._keep_sp(_load_sp(path))
        return parties

    def _keep_sp(self, sp: ServiceProvider) -> None:
        self.sps[sp.name] = sp
        self._sps_by_entity[sp.entity_id] = sp

    def client(self, client_id: str | None) -> Client | None:
        return self.clients.get(client_id) if client_id else None

    def sp_for_entity(self, entity_id: str) -> ServiceProvider | None:
        return self._sps_by_entity.get(entity_id)

    def add_client(self, data: dict[str, Any]) -> tuple[Client, str | None]:
        """Register (or replace) a client; return it and its new secret, if it has one."""
        data = dict(data)
        secret = None
        if data.get("token_endpoint_auth_method", "client_secret_basic") in ("client_secret_basic",
                                                                             "client_secret_post"):
            secret = data.pop("client_secret", None) or secrets.token_urlsafe(32)
            data["secret_sha256"] = hash_secret(secret)
        client = Client.from_dict(data)
        _write_atomic(self.directory / "clients" / f"{client.client_id}.json",
                      json.dumps(client.to_dict(), indent=2, sort_keys=True))
        self.clients[client.client_id] = client
        return client, secret

    def add_sp(self, metadata_xml: str, *, name: str | None = None,
               policy: ReleasePolicy | None = None) -> ServiceProvider:
        entity_id = _entity_id(metadata_xml, source=name or "metadata")
        name = name or re.sub(r"[^A-Za-z0-9._-]+", "_",
                              urlsplit(entity_id).netloc + urlsplit(entity_id).path).strip("_")
        policy = policy or ReleasePolicy(profile="mpassid")
        sp = ServiceProvider(name=name, entity_id=entity_id, metadata_xml=metadata_xml, policy=policy)
        _write_atomic(self.directory / "sps" / f"{name}.json", json.dumps(policy.to_dict(), indent=2))
        _write_atomic(self.directory / "sps" / f"{name}.xml", metadata_xml)
        self._keep_sp(sp)
        return sp


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


def _load_sp(path: Path) -> ServiceProvider:
    xml = path.read_text()
    policy_path = path.with_suffix(".json")
    policy = ReleasePolicy(profile="mpassid")
    if policy_path.exists():
        raw = _read_json(policy_path)
        fields: dict[str, Any] = {k: tuple(v) if k == "scopes" else v for k, v in raw.items()}
        policy = ReleasePolicy(**fields)
    return ServiceProvider(name=path.stem, entity_id=_entity_id(xml, source=str(path)), metadata_xml=xml,
                           policy=policy)


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
