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
  request says ``ForceAuthn``; ``IsPassive`` without a session answers ``NoPassive``.

The SP metadata comes from ``sp_metadata()`` on first use, not at start, because
the broker may start after the IdPs; an AuthnRequest from an SP the cached copy
does not know makes it fetch once more (the broker may have new keys).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from flask import Flask, abort, make_response, request, session
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, SAMLError, saml, samlp
from saml2.attribute_converter import AttributeConverter, ac_factory
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from saml2.server import Server
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
"""SSO endpoint suffix -> the binding it accepts."""

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


def idp_config(base_url: str, city: str, key_dir: Path, sp_metadata_xml: str | None = None) -> IdPConfig:
    """The pysaml2 configuration of ``city``'s IdP, trusting the SPs in ``sp_metadata_xml``."""
    base_url = base_url.rstrip("/")
    entry = DEMO_DIRECTORY[city]
    keys = idp_keys(key_dir, city)
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


class _Request(NamedTuple):
    """An accepted AuthnRequest: the city's server that parsed it, and where the answer goes."""

    server: Server
    message: samlp.AuthnRequest
    sp: str
    acs: str
    relay_state: str


class _Refused(Exception):
    """A request this IdP will not answer with a SAML response; shown as an error page."""

    def __init__(self, key: str, detail: str, status: int = 400):
        super().__init__(detail)
        self.key, self.detail, self.status = key, detail, status


class _Servers:
    """One pysaml2 ``Server`` per city, built on first use from one cached SP metadata."""

    def __init__(self, base_url: str, key_dir: Path, sp_metadata: Callable[[], str]):
        self._base_url = base_url
        self._key_dir = key_dir
        self._sp_metadata = sp_metadata
        self._lock = threading.Lock()
        self._xml: str | None = None
        self._servers: dict[str, Server] = {}

    def get(self, city: str) -> Server:
        with self._lock:
            if self._xml is None:
                self._xml = self._fetch()
            if city not in self._servers:
                server = Server(config=idp_config(self._base_url, city, self._key_dir, self._xml))
                configure_signatures(server)
                self._servers[city] = server
            return self._servers[city]

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


def create_app(*, base_url: str, cities: Sequence[str], key_dir: Path, sp_metadata: Callable[[], str]) -> Flask:
    """The demo SAML IdPs of ``cities``, served under ``base_url`` (no trailing path).

    ``sp_metadata`` returns the SAML metadata (an EntityDescriptor or
    EntitiesDescriptor) of the SPs the IdPs may answer; it is called lazily.
    Keys are created in ``key_dir`` if missing.
    """
    base_url = base_url.rstrip("/")
    unknown = [city for city in cities if city not in DEMO_DIRECTORY]
    if unknown:
        raise ValueError(f"cities: not in the demo directory: {', '.join(unknown)}")
    key_dir = Path(key_dir)
    ensure_idp_keys(key_dir, cities)
    servers = _Servers(base_url, key_dir, sp_metadata)

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

    def parse(city: str, binding: str, fields: dict[str, str]) -> _Request:
        try:
            return check(servers.get(city), binding, fields)
        except _Refused as exc:
            if exc.status != 400 or not servers.refresh():
                raise
        # The SP metadata has changed (a new SP, ACS or signing key): one more try.
        return check(servers.get(city), binding, fields)

    def respond(city: str, pending: _Request, user: dict[str, Any] | None, auth_instant: int = 0,
                status: tuple[str, str] | None = None):
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
        fields = {"SAMLResponse": base64.b64encode(str(response).encode()).decode()}
        if pending.relay_state:
            fields["RelayState"] = pending.relay_state
        return pages.auto_post(pending.acs, fields, pages.language())

    def signed_in_user(city: str) -> tuple[dict[str, Any], int] | None:
        entry = session.get("idp", {}).get(city)
        if not entry or time.time() - entry["at"] > SESSION_LIFETIME:
            return None
        user = find_user(city, entry["user"])
        return (user, entry["at"]) if user else None

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
        return pages.error_page(exc.key, idp_name=name, lang=pages.language(), detail=exc.detail, status=exc.status)

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
        now = int(time.time())
        session["idp"] = {**session.get("idp", {}), city: {"user": user["username"], "at": now}}
        return respond(city, pending, user, now)

    return app
