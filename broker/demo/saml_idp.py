"""Demo city SAML identity providers: one pysaml2 IdP entity per city, in one Flask app.

Each city ``c`` is its own IdP, as in real life (a Wilma, an ADFS...):

* entityID ``{base_url}/{c}/idp``, metadata at ``GET {base_url}/{c}/metadata``;
* single sign-on at ``/{c}/sso/redirect`` (HTTP-Redirect) and ``/{c}/sso/post``
  (HTTP-POST); the response always goes by HTTP-POST to the AuthnRequest's
  assertion consumer service, and only if the SP's metadata lists that URL;
* the city's demo users (``broker.demo.directory``) sign in with a form and get
  MPASSid-style attributes (``broker.demo.mpassid``) and a persistent NameID;
* the assertion is always signed; the response too, except where the city's
  ``saml.sign_response`` is false (Espoo: ADFS signs only the assertion);
* an IdP session cookie signs a person in again without the form, unless the
  request says ``ForceAuthn``; ``IsPassive`` without a session answers ``NoPassive``;
* single logout at ``/{c}/slo/redirect`` (HTTP-Redirect) and ``/{c}/slo/post``
  (HTTP-POST): a LogoutRequest signed with a key of the SP's metadata ends the IdP
  session it names (NameID and SessionIndex) and is answered with a signed
  LogoutResponse at the SP's SingleLogoutService; ``/{c}/logout`` signs the person
  out at the IdP and sends each SP it asserted to in that session a signed
  LogoutRequest, and shows the outcome when the LogoutResponses come back.

The SP metadata comes from ``sp_metadata()`` on first use, not at start, because
the broker may start after the IdPs; an AuthnRequest from an SP the cached copy
does not know makes it fetch once more (the broker may have new keys).
"""

from __future__ import annotations

import base64
import calendar
import dataclasses
import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask, abort, make_response, redirect, request, session
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, SAMLError, saml, samlp
from saml2.attribute_converter import AttributeConverter, ac_factory
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.response import LogoutResponse
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from saml2.server import Server
from saml2.time_util import in_a_while, str_to_time
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from broker.demo import mpassid, pages
from broker.demo.directory import DEMO_DIRECTORY, find_user
from broker.pki import KeyPair, ensure_keypair
from broker.saml.pysaml2_crypto import configure_signatures, pysaml2_config_overrides

SESSION_COOKIE = "demo_saml_idp_session"
"""Distinct from every other cookie on localhost: cookies ignore the port."""

SESSION_LIFETIME = 8 * 3600
"""Seconds an IdP session signs a person in without the form (a school day)."""

BINDINGS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}
"""SSO and SLO endpoint suffix -> the binding it accepts."""

LOGOUT_LIFETIME = 600
"""Seconds an IdP-initiated logout waits for the SP's LogoutResponse."""

_SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
_DS = "{http://www.w3.org/2000/09/xmldsig#}"

_PERSISTENT_ID_SALT = b"digione-demo-saml-idp"
"""Public on purpose: demo NameIDs need only be stable, not unguessable."""


def entity_id(base_url: str, city: str) -> str:
    """The entityID of ``city``'s demo IdP."""
    return f"{base_url.rstrip('/')}/{city}/idp"


def idp_keys(key_dir: Path, city: str) -> KeyPair:
    """``city``'s signing key pair (each city its own, as separate IdPs would have)."""
    return ensure_keypair(Path(key_dir), f"saml-idp-{city}", common_name=f"{city} demo SAML IdP")


def ensure_idp_keys(key_dir: Path, cities: Iterable[str] = tuple(DEMO_DIRECTORY)) -> None:
    """Create the cities' signing keys and self-signed certificates in ``key_dir`` if missing."""
    for city in cities:
        idp_keys(key_dir, city)


def idp_config(base_url: str, city: str, key_dir: Path, sp_metadata_xml: str | None = None, *,
               keys: KeyPair | None = None) -> IdPConfig:
    """The pysaml2 configuration of ``city``'s IdP, trusting the SPs in ``sp_metadata_xml``.

    ``keys`` is the pair it signs with (default: the city's own in ``key_dir``).
    """
    base_url = base_url.rstrip("/")
    entry = DEMO_DIRECTORY[city]
    keys = keys or idp_keys(key_dir, city)
    display_name = [{"text": f"{entry['names'][lang]} (demo)", "lang": lang} for lang in ("fi", "sv", "en")]
    config = IdPConfig()
    config.load(
        {
            "entityid": entity_id(base_url, city),
            "service": {
                "idp": {
                    "name": f"{entry['names']['en']} demo IdP",
                    "endpoints": {
                        "single_sign_on_service": [
                            (f"{base_url}/{city}/sso/{suffix}", binding) for suffix, binding in BINDINGS.items()
                        ],
                        "single_logout_service": [
                            (f"{base_url}/{city}/slo/{suffix}", binding) for suffix, binding in BINDINGS.items()
                        ],
                    },
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "want_authn_requests_signed": False,
                    "sign_assertion": True,
                    "sign_response": entry["saml"]["sign_response"],
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "name_form": mpassid.NAME_FORMAT_URI,
                            # Release what the user has, even if the SP "requires" more
                            # (a teacher has no learner id); the broker decides.
                            "fail_on_missing_requested": False,
                        },
                    },
                    "ui_info": {"display_name": display_name},
                },
            },
            "organization": {
                "name": [(entry["provider"]["names"][lang], lang) for lang in ("fi", "sv", "en")],
                "display_name": [(entry["names"][lang], lang) for lang in ("fi", "sv", "en")],
                "url": [(base_url, "en")],
            },
            "key_file": str(keys.key_path),
            "cert_file": str(keys.cert_path),
            "metadata": {"inline": [sp_metadata_xml]} if sp_metadata_xml else {},
            "accepted_time_diff": 60,
            # Signatures in-process (python-xmlsec), as the broker's own entities do:
            # no xmlsec1 binary, no subprocess per response.
            **pysaml2_config_overrides(),
        }
    )
    # Ours first: pysaml2 turns identity keys into SAML names with the first
    # converter of the policy's NameFormat.
    converter = AttributeConverter()
    converter.from_dict(mpassid.ATTRIBUTE_MAP)
    config.attribute_converters = [converter, *(config.attribute_converters or ac_factory())]
    return config


def metadata_xml(base_url: str, city: str, key_dir: Path) -> str:
    """``city``'s IdP metadata (an unsigned EntityDescriptor)."""
    return str(entity_descriptor(idp_config(base_url, city, key_dir)))


def write_idp_metadata(base_url: str, city: str, key_dir: Path, path: Path) -> None:
    """Write ``city``'s IdP metadata to ``path``: the file a tenant names for its SAML IdP."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(metadata_xml(base_url, city, key_dir), encoding="utf-8")


def persistent_id(idp: str, sp: str, user: dict[str, Any]) -> str:
    """A pairwise persistent NameID, like Shibboleth's computed ids: stable per IdP, SP and user."""
    digest = hashlib.sha256(b"!".join([_PERSISTENT_ID_SALT, idp.encode(), sp.encode(), user["mpass_uid"].encode()]))
    return base64.b64encode(digest.digest()).decode()


def redirect_signature_ok(query: bytes, kind: str, certs: Iterable[str]) -> bool:
    """Whether an HTTP-Redirect message's query signature verifies with one of ``certs``.

    SAML Bindings §3.4.4.1: the signature covers ``kind`` (``SAMLRequest`` or
    ``SAMLResponse``), ``RelayState`` if present and ``SigAlg``, *as they were
    URL-encoded in the query*, so the raw query is used, never a re-encoding.
    RSA-SHA256 only; a parameter given twice is refused.  ``certs`` are base64
    DER certificates (from metadata).
    """
    raw: dict[str, bytes] = {}
    for part in query.split(b"&"):
        if not part:
            continue
        name = unquote_plus(part.partition(b"=")[0].decode("latin-1"))
        if name in raw:
            return False
        raw[name] = part
    if not {kind, "SigAlg", "Signature"} <= raw.keys():
        return False

    def value(name: str) -> str:
        return unquote_plus(raw[name].partition(b"=")[2].decode("latin-1"))

    if value("SigAlg") != SIG_RSA_SHA256:
        return False
    try:
        signature = base64.b64decode(value("Signature"), validate=True)
    except ValueError:
        return False
    signed = b"&".join(raw[name] for name in (kind, "RelayState", "SigAlg") if name in raw)
    for cert in certs:
        try:
            key = x509.load_der_x509_certificate(base64.b64decode("".join(cert.split()))).public_key()
        except ValueError:
            continue
        if not isinstance(key, rsa.RSAPublicKey):
            continue
        try:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return True
    return False


@dataclasses.dataclass
class _Issued:
    """What this IdP asserted to one SP in one session: the NameID and the SessionIndexes."""

    name_id: str
    session_indexes: list[str]


@dataclasses.dataclass
class _IdpSession:
    """A person's session at one city's IdP; the cookie names it by ``id``."""

    id: str
    city: str
    username: str
    at: int
    services: dict[str, _Issued] = dataclasses.field(default_factory=dict)


class _IdpSessions:
    """The IdP sessions, server-side, so that a LogoutRequest can end one wherever it comes from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, _IdpSession] = {}

    def start(self, city: str, username: str) -> _IdpSession:
        record = _IdpSession(secrets.token_urlsafe(24), city, username, int(time.time()))
        with self._lock:
            now = time.time()
            for stale in [k for k, v in self._sessions.items() if now - v.at > SESSION_LIFETIME]:
                del self._sessions[stale]
            self._sessions[record.id] = record
        return record

    def get(self, session_id: str) -> _IdpSession | None:
        with self._lock:
            record = self._sessions.get(session_id)
        return record if record and time.time() - record.at <= SESSION_LIFETIME else None

    def issued(self, session_id: str, sp: str, name_id: str, session_index: str) -> None:
        """Remember that the session asserted ``name_id`` with ``session_index`` to ``sp``."""
        with self._lock:
            record = self._sessions.get(session_id)
            if record is None:
                return
            entry = record.services.setdefault(sp, _Issued(name_id, []))
            entry.name_id = name_id
            if session_index and session_index not in entry.session_indexes:
                entry.session_indexes.append(session_index)

    def end(self, session_id: str) -> _IdpSession | None:
        with self._lock:
            return self._sessions.pop(session_id, None)

    def end_matching(self, city: str, sp: str, name_id: str, session_indexes: Sequence[str]) -> list[_IdpSession]:
        """End the sessions of ``city`` that asserted ``name_id`` to ``sp`` (with one of ``session_indexes``,
        if any are given: SAML Core §3.7.1); return them."""
        with self._lock:
            ended = [record for record in self._sessions.values()
                     if record.city == city and sp in record.services
                     and hmac.compare_digest(record.services[sp].name_id, name_id)
                     and (not session_indexes
                          or set(session_indexes) & set(record.services[sp].session_indexes))]
            for record in ended:
                del self._sessions[record.id]
        return ended


@dataclasses.dataclass
class _PendingLogout:
    """An IdP-initiated logout: the LogoutRequest sent (``request_id``), and the SPs still to go."""

    city: str
    sp: str
    relay_state: str
    remaining: list[tuple[str, _Issued]]
    results: list[tuple[str, str]]
    """(SP, status) of the SPs that have answered (or could not be asked)."""
    at: float


class _Request(NamedTuple):
    """An accepted AuthnRequest: the city's server that parsed it, and where the answer goes."""

    server: Server
    message: samlp.AuthnRequest
    sp: str
    acs: str
    relay_state: str


class _Refused(Exception):
    """A request this IdP will not answer with a SAML response; shown as an error page."""

    def __init__(self, key: str, detail: str, status: int = 400, title: str = "error_title"):
        super().__init__(detail)
        self.key, self.detail, self.status, self.title = key, detail, status, title


class _Servers:
    """One pysaml2 ``Server`` per city, built on first use from one cached SP metadata.

    ``signing_key(city)`` names the key pair a city signs with now; a city whose pair
    changes (a certificate rollover) gets a new ``Server``.
    """

    def __init__(self, base_url: str, key_dir: Path, sp_metadata: Callable[[], str],
                 signing_key: Callable[[str], KeyPair] | None = None):
        self._base_url = base_url
        self._key_dir = key_dir
        self._sp_metadata = sp_metadata
        self._signing_key = signing_key or (lambda city: idp_keys(key_dir, city))
        self._lock = threading.Lock()
        self._xml: str | None = None
        self._servers: dict[str, tuple[KeyPair, Server]] = {}

    def get(self, city: str) -> Server:
        with self._lock:
            if self._xml is None:
                self._xml = self._fetch()
            keys = self._signing_key(city)
            if city not in self._servers or self._servers[city][0] != keys:
                server = Server(config=idp_config(self._base_url, city, self._key_dir, self._xml, keys=keys))
                configure_signatures(server)
                self._servers[city] = (keys, server)
            return self._servers[city][1]

    def refresh(self) -> bool:
        """Fetch the SP metadata again; true if it changed (and the servers were dropped)."""
        with self._lock:
            xml = self._fetch()
            if xml == self._xml:
                return False
            self._xml, self._servers = xml, {}
            return True

    def _fetch(self) -> str:
        try:
            return self._sp_metadata()
        except Exception as exc:  # the broker not up yet, a bad file: a 503, not a crash
            raise _Refused("unavailable", f"SP metadata unavailable: {type(exc).__name__}", 503) from exc


def create_app(*, base_url: str, cities: Sequence[str], key_dir: Path, sp_metadata: Callable[[], str],
               signing_key: Callable[[str], KeyPair] | None = None) -> Flask:
    """The demo SAML IdPs of ``cities``, served under ``base_url`` (no trailing path).

    ``sp_metadata`` returns the SAML metadata (an EntityDescriptor or
    EntitiesDescriptor) of the SPs the IdPs may answer; it is called lazily.
    Keys are created in ``key_dir`` if missing.  ``signing_key(city)``, if given, names the
    key pair each city signs with at the moment (a certificate rollover in the tests).
    """
    base_url = base_url.rstrip("/")
    unknown = [city for city in cities if city not in DEMO_DIRECTORY]
    if unknown:
        raise ValueError(f"cities: not in the demo directory: {', '.join(unknown)}")
    key_dir = Path(key_dir)
    ensure_idp_keys(key_dir, cities)
    servers = _Servers(base_url, key_dir, sp_metadata, signing_key)
    sessions = _IdpSessions()
    logouts: dict[str, _PendingLogout] = {}   # IdP-initiated logouts by LogoutRequest ID
    logouts_lock = threading.Lock()

    app = pages.demo_app(SESSION_COOKIE)

    def idp_name(city: str) -> str:
        return f"{DEMO_DIRECTORY[city]['provider']['names'][pages.language()]} · demo SAML IdP"

    def check(server: Server, binding: str, fields: dict[str, str]) -> _Request:
        """Parse an AuthnRequest and find where its answer may go, or refuse it."""
        try:
            message = server.parse_authn_request(
                fields["SAMLRequest"],
                BINDINGS[binding],
                relay_state=fields.get("RelayState"),
                sigalg=fields.get("SigAlg"),
                signature=fields.get("Signature"),
            ).message
        except Exception as exc:  # pysaml2 raises many types for a bad request
            raise _Refused("bad_request", f"AuthnRequest rejected: {type(exc).__name__}") from exc
        issuer = message.issuer.text.strip() if message.issuer is not None and message.issuer.text else ""
        if issuer not in server.metadata.with_descriptor("spsso"):
            raise _Refused("unknown_service", "The requesting SP is not in the SP metadata")
        try:
            # Only an ACS the SP metadata lists (by URL or index) is ever a destination;
            # checked before the form, so nobody types a password for a bad request.
            args = server.response_args(message, [BINDING_HTTP_POST])
        except SAMLError as exc:
            raise _Refused("unknown_return_address", "AssertionConsumerService not in the SP metadata") from exc
        return _Request(server, message, args["sp_entity_id"], args["destination"], fields.get("RelayState", ""))

    def with_fresh_metadata(city: str, check_with: Callable[[Server], Any]) -> Any:
        """``check_with(server)``; if it refuses, fetch the SP metadata again and, if it changed, retry once."""
        try:
            return check_with(servers.get(city))
        except _Refused as exc:
            if exc.status != 400 or not servers.refresh():
                raise
        # The SP metadata has changed (a new SP, ACS or signing key): one more try.
        return check_with(servers.get(city))

    def parse(city: str, binding: str, fields: dict[str, str]) -> _Request:
        return with_fresh_metadata(city, lambda server: check(server, binding, fields))

    def respond(city: str, pending: _Request, user: dict[str, Any] | None, auth_instant: int = 0,
                session_id: str = "", status: tuple[str, str] | None = None):
        """POST a response to the request's ACS: an assertion for ``user``, else ``status``."""
        server, message = pending.server, pending.message
        sign_response = DEMO_DIRECTORY[city]["saml"]["sign_response"]
        if user is None:
            response = server.create_error_response(
                message.id, pending.acs, status, sign=sign_response, sign_alg=SIG_RSA_SHA256,
                digest_alg=DIGEST_SHA256,
            )
        else:
            released = mpassid.attributes(city, user)
            identity = {mpassid.FRIENDLY_NAMES[name]: values for name, values in released.items()}
            idp = entity_id(base_url, city)
            name_id = saml.NameID(
                format=NAMEID_FORMAT_PERSISTENT,
                text=persistent_id(idp, pending.sp, user),
                name_qualifier=idp,
                sp_name_qualifier=pending.sp,
            )
            response = server.create_authn_response(
                identity,
                in_response_to=message.id,
                destination=pending.acs,
                sp_entity_id=pending.sp,
                name_id=name_id,
                authn={"class_ref": PASSWORDPROTECTEDTRANSPORT, "authn_instant": auth_instant},
                sign_assertion=True,
                sign_response=sign_response,
                sign_alg=SIG_RSA_SHA256,
                digest_alg=DIGEST_SHA256,
            )
            # pysaml2 picks the SessionIndex: read it back, for single logout to name this session.
            statement = etree.fromstring(str(response).encode()).find(f".//{_SAML}AuthnStatement")
            sessions.issued(session_id, pending.sp, name_id.text,
                            statement.get("SessionIndex", "") if statement is not None else "")
        fields = {"SAMLResponse": base64.b64encode(str(response).encode()).decode()}
        if pending.relay_state:
            fields["RelayState"] = pending.relay_state
        return pages.auto_post(pending.acs, fields, pages.language())

    def signed_in_user(city: str) -> tuple[dict[str, Any], int, str] | None:
        """The person this browser's session at ``city`` names, when, and the session id."""
        record = sessions.get(session.get("idp", {}).get(city, ""))
        if record is None or record.city != city:
            return None
        user = find_user(city, record.username)
        return (user, record.at, record.id) if user else None

    def forget_in_cookie(city: str) -> None:
        """Drop ``city`` from this browser's cookie (its session was ended)."""
        if city in session.get("idp", {}):
            session["idp"] = {c: v for c, v in session["idp"].items() if c != city}

    def login_form(city: str, fields: dict[str, str], *, username: str = "", error: bool = False):
        return pages.login_page(
            idp_name=idp_name(city),
            action=f"{base_url}/{city}/login",
            hidden=fields,
            demo_users=[user["username"] for user in DEMO_DIRECTORY[city]["users"]],
            lang=pages.language(),
            username=username,
            error=error,
        )

    def pending_fields(binding: str, values) -> dict[str, str]:
        """The request, as the hidden fields that carry it through the login form."""
        names = ("SAMLRequest", "RelayState", "SigAlg", "Signature") if binding == "redirect" else (
            "SAMLRequest", "RelayState")
        fields = {name: values[name] for name in names if values.get(name)}
        fields["binding"] = binding
        return fields

    def known_city(city: str) -> None:
        if city not in cities:
            abort(404)

    @app.errorhandler(_Refused)
    def refused(exc: _Refused):
        # pages.language() needs a request; the city is the first path segment.
        city = request.view_args.get("city", "") if request.view_args else ""
        name = idp_name(city) if city in DEMO_DIRECTORY else "demo SAML IdP"
        return pages.error_page(exc.key, idp_name=name, lang=pages.language(), detail=exc.detail, status=exc.status,
                                title=exc.title)

    @app.get("/")
    def index():
        links = "".join(f'<li><a href="{base_url}/{c}/metadata">{entity_id(base_url, c)}</a></li>' for c in cities)
        return f"<!doctype html><title>Demo SAML IdPs</title><h1>Demo SAML IdPs</h1><ul>{links}</ul>"

    metadata_of = functools.cache(lambda city: metadata_xml(base_url, city, key_dir))

    @app.get("/<city>/metadata")
    def metadata(city: str):
        known_city(city)
        response = make_response(metadata_of(city))
        response.mimetype = "application/samlmetadata+xml"
        return response

    @app.get("/<city>/sso/redirect")
    def sso_redirect(city: str):
        return sso(city, "redirect", request.args)

    @app.post("/<city>/sso/post")
    def sso_post(city: str):
        return sso(city, "post", request.form)

    def sso(city: str, binding: str, values):
        known_city(city)
        if not values.get("SAMLRequest"):
            raise _Refused("bad_request", "SAMLRequest missing")
        fields = pending_fields(binding, values)
        pending = parse(city, binding, fields)
        signed_in = signed_in_user(city)
        if signed_in and pending.message.force_authn not in ("true", "1"):
            return respond(city, pending, *signed_in)
        if pending.message.is_passive in ("true", "1"):
            return respond(city, pending, None, status=(samlp.STATUS_NO_PASSIVE, "No session at the IdP"))
        return login_form(city, fields)

    @app.post("/<city>/login")
    def login(city: str):
        known_city(city)
        binding = request.form.get("binding", "")
        if binding not in BINDINGS or not request.form.get("SAMLRequest"):
            raise _Refused("bad_request", "The login form was posted without its request")
        fields = pending_fields(binding, request.form)
        pending = parse(city, binding, fields)
        if request.form.get("switch_lang"):
            return login_form(city, fields, username=request.form.get("username", ""))
        if request.form.get("cancel"):
            return respond(city, pending, None, status=(samlp.STATUS_AUTHN_FAILED, "The user cancelled the sign-in"))
        username = request.form.get("username", "")
        user = find_user(city, username)
        # Compare in constant time even in a demo: this code gets copied.
        password = request.form.get("password", "").encode()
        if user is None or not hmac.compare_digest(password, user["password"].encode()):
            return login_form(city, fields, username=username, error=True)
        record = sessions.start(city, user["username"])
        session["idp"] = {**session.get("idp", {}), city: record.id}
        return respond(city, pending, user, record.at, record.id)

    # --- single logout ---------------------------------------------------------------

    def logout_refused(key: str, detail: str, status: int = 400) -> _Refused:
        return _Refused(key, detail, status, title="logout_error_title")

    def sp_certs(server: Server, sp: str) -> list[str]:
        try:
            return [cert for _name, cert in server.metadata.certs(sp, "spsso", "signing")]
        except KeyError:
            return []

    def slo_endpoint(server: Server, sp: str) -> tuple[str, str] | None:
        """The SP's SingleLogoutService for requests we send: HTTP-Redirect if it has one, else HTTP-POST."""
        for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
            try:
                services = server.metadata.single_logout_service(sp, binding, "spsso")
            except Exception:  # noqa: BLE001, S112 - pysaml2 raises several types for a missing binding
                continue
            if services:
                return binding, services[0]["location"]
        return None

    def send(server: Server, binding: str, xml: str, destination: str, relay_state: str, *, response: bool):
        """Send a SAML message through the browser: a signed query (HTTP-Redirect) or an auto-POST page
        (the XML itself is signed then)."""
        if binding == BINDING_HTTP_REDIRECT:
            info = server.apply_binding(BINDING_HTTP_REDIRECT, xml, destination, relay_state, response=response,
                                        sign=True, sigalg=SIG_RSA_SHA256)
            answer = redirect(dict(info["headers"])["Location"], 303)
            answer.headers["Cache-Control"] = "no-store"
            return answer
        fields = {"SAMLResponse" if response else "SAMLRequest": base64.b64encode(xml.encode()).decode()}
        if relay_state:
            fields["RelayState"] = relay_state
        return pages.auto_post(destination, fields, pages.language())

    def check_logout_request(server: Server, binding: str, values: Mapping[str, str]):
        """A LogoutRequest from an SP of the metadata, signed with a key of its metadata, for us, in time;
        and where its answer goes (the SP's SingleLogoutService, from metadata only)."""
        try:
            parsed = server.parse_logout_request(values["SAMLRequest"], BINDINGS[binding],
                                                 relay_state=values.get("RelayState"))
        except Exception as exc:  # pysaml2 raises many types for a bad request (a bad XML signature too)
            raise logout_refused("bad_logout_request", f"LogoutRequest rejected: {type(exc).__name__}") from exc
        message = parsed.message if parsed else None
        if message is None:
            raise logout_refused("bad_logout_request", "LogoutRequest rejected: not for this IdP, or out of time")
        sp = message.issuer.text.strip() if message.issuer is not None and message.issuer.text else ""
        if sp not in server.metadata.with_descriptor("spsso"):
            raise logout_refused("unknown_service", "The requesting SP is not in the SP metadata")
        # pysaml2 has verified an XML signature if there is one. One is required: in the XML
        # (HTTP-POST) or over the query (HTTP-Redirect), with a key of the SP's metadata.
        if binding == "redirect":
            signed = redirect_signature_ok(request.query_string, "SAMLRequest", sp_certs(server, sp))
        else:
            signed = message.signature is not None
        if not signed:
            raise logout_refused("unsigned", "The LogoutRequest is not signed with a key of the SP's metadata")
        if message.not_on_or_after and calendar.timegm(str_to_time(message.not_on_or_after)) < time.time() - 60:
            raise logout_refused("bad_logout_request", "LogoutRequest expired (NotOnOrAfter)")
        if message.name_id is None or not message.name_id.text:
            raise logout_refused("bad_logout_request", "LogoutRequest without a (plain) NameID")
        try:
            answer = server.response_args(message, [BINDING_HTTP_REDIRECT, BINDING_HTTP_POST])
        except SAMLError as exc:
            raise logout_refused("unknown_return_address", "No SingleLogoutService in the SP metadata") from exc
        return server, message, answer["binding"], answer["destination"]

    def logout_request(city: str, binding: str, values: Mapping[str, str]):
        """SP-initiated logout (SAML Core §3.7): end the sessions the request names, answer at the SP."""
        server, message, answer_binding, destination = with_fresh_metadata(
            city, lambda server: check_logout_request(server, binding, values))
        sp = message.issuer.text.strip()
        indexes = [index.text.strip() for index in message.session_index or () if index.text]
        ended = sessions.end_matching(city, sp, message.name_id.text.strip(), indexes)
        if session.get("idp", {}).get(city) in {record.id for record in ended}:
            forget_in_cookie(city)
        # Success even when no session matched: the principal has no session here any more.
        response = server.create_logout_response(
            message, [answer_binding], sign=answer_binding == BINDING_HTTP_POST, sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256)
        return send(server, answer_binding, str(response), destination, values.get("RelayState", ""), response=True)

    def start_logouts(city: str, remaining: list[tuple[str, _Issued]], results: list[tuple[str, str]]):
        """IdP-initiated logout: a LogoutRequest to the next SP; the outcome page once none are left."""
        server = servers.get(city)
        idp = entity_id(base_url, city)
        while remaining:
            sp, issued = remaining.pop(0)
            endpoint = slo_endpoint(server, sp)
            if endpoint is None:
                results.append((sp, "no SingleLogoutService in its metadata"))
                continue
            binding, destination = endpoint
            name_id = saml.NameID(format=NAMEID_FORMAT_PERSISTENT, text=issued.name_id, name_qualifier=idp,
                                  sp_name_qualifier=sp)
            request_id, message = server.create_logout_request(
                destination, sp, name_id=name_id, session_indexes=issued.session_indexes,
                expire=in_a_while(minutes=5), sign=binding == BINDING_HTTP_POST, sign_alg=SIG_RSA_SHA256,
                digest_alg=DIGEST_SHA256)
            relay_state = secrets.token_urlsafe(16)
            with logouts_lock:
                now = time.time()
                for stale in [k for k, v in logouts.items() if now - v.at > LOGOUT_LIFETIME]:
                    del logouts[stale]
                logouts[request_id] = _PendingLogout(city, sp, relay_state, remaining, results, now)
            return send(server, binding, str(message), destination, relay_state, response=False)
        failed = [f"{sp}: {status}" for sp, status in results if status != samlp.STATUS_SUCCESS]
        return pages.logout_page(idp_name=idp_name(city), lang=pages.language(),
                                 message="signed_out_partly" if failed else "signed_out", detail="; ".join(failed))

    def check_logout_response(server: Server, city: str, binding: str, values: Mapping[str, str]):
        """A LogoutResponse to a LogoutRequest we sent, from that SP, signed with a key of its metadata."""
        try:
            xml = server.unravel(values["SAMLResponse"], BINDINGS[binding], LogoutResponse.msgtype)
            parsed = LogoutResponse(server.sec, return_addrs=[f"{base_url}/{city}/slo/{suffix}" for suffix in BINDINGS],
                                    timeslack=60)
            parsed.require_response_signature = binding == "post"
            parsed.loads(xml, False, origxml=xml)
        except Exception as exc:  # pysaml2 raises many types for a bad response (a bad XML signature too)
            raise logout_refused("bad_logout_request", f"LogoutResponse rejected: {type(exc).__name__}") from exc
        message = parsed.response
        if message is None or message.version != "2.0" or not parsed.issue_instant_ok() or (
                message.destination and message.destination not in parsed.return_addrs):
            raise logout_refused("bad_logout_request", "LogoutResponse rejected: not for this IdP, or out of time")
        sp = message.issuer.text.strip() if message.issuer is not None and message.issuer.text else ""
        if binding == "redirect" and not redirect_signature_ok(request.query_string, "SAMLResponse",
                                                               sp_certs(server, sp)):
            raise logout_refused("unsigned", "The LogoutResponse is not signed with a key of the SP's metadata")
        return message, sp

    def logout_response(city: str, binding: str, values: Mapping[str, str]):
        """The answer to an IdP-initiated logout: its status; then the next SP, or the outcome page."""
        message, sp = with_fresh_metadata(city, lambda server: check_logout_response(server, city, binding, values))
        with logouts_lock:
            pending = logouts.get(message.in_response_to or "")
            if pending is not None and pending.city == city and pending.sp == sp and hmac.compare_digest(
                    pending.relay_state, values.get("RelayState", "")):
                del logouts[message.in_response_to]
            else:
                pending = None
        if pending is None or time.time() - pending.at > LOGOUT_LIFETIME:
            raise logout_refused("unexpected", "LogoutResponse to no logout this IdP has under way")
        code = message.status.status_code if message.status is not None else None
        status = code.value if code is not None else ""
        if code is not None and code.status_code is not None:
            status += " / " + code.status_code.value
        if message.status is not None and message.status.status_message is not None:
            status += f" ({message.status.status_message.text})"
        pending.results.append((sp, status))
        return start_logouts(city, pending.remaining, pending.results)

    @app.get("/<city>/slo/redirect")
    def slo_redirect(city: str):
        return slo(city, "redirect", request.args)

    @app.post("/<city>/slo/post")
    def slo_post(city: str):
        return slo(city, "post", request.form)

    def slo(city: str, binding: str, values: Mapping[str, str]):
        known_city(city)
        if values.get("SAMLRequest"):
            return logout_request(city, binding, values)
        if values.get("SAMLResponse"):
            return logout_response(city, binding, values)
        raise logout_refused("bad_logout_request", "SAMLRequest or SAMLResponse missing")

    @app.get("/<city>/logout")
    def logout_form(city: str):
        """The person's own sign-out page at the IdP."""
        known_city(city)
        signed_in = signed_in_user(city)
        if signed_in is None:
            return pages.logout_page(idp_name=idp_name(city), lang=pages.language(), message="not_signed_in")
        user = signed_in[0]
        return pages.logout_page(idp_name=idp_name(city), lang=pages.language(), message="logout_confirm",
                                 who=f"{user['display_name']} ({user['username']})", action=f"{base_url}/{city}/logout")

    @app.post("/<city>/logout")
    def logout(city: str):
        """IdP-initiated logout: end the session here, then tell each SP it asserted to in it."""
        known_city(city)
        record = sessions.end(session.get("idp", {}).get(city, ""))
        forget_in_cookie(city)
        if record is None or record.city != city:
            return pages.logout_page(idp_name=idp_name(city), lang=pages.language(), message="signed_out")
        return start_logouts(city, list(record.services.items()), [])

    return app
