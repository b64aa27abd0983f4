"""A demo OpenID provider shaped like Microsoft Entra ID (v2.0 endpoints), one per city tenant.

URLs follow Entra's, under ``base_url`` instead of ``https://login.microsoftonline.com``:

* issuer ``{base_url}/{tenant}/v2.0`` and discovery at
  ``{issuer}/.well-known/openid-configuration``;
* ``/{tenant}/oauth2/v2.0/authorize`` (authorization code flow; ``response_mode``
  ``query`` or ``form_post``; ``prompt=login|none``; PKCE ``S256`` when a
  ``code_challenge`` is sent), ``/{tenant}/oauth2/v2.0/token``
  (``client_secret_basic`` or ``client_secret_post``; codes are single-use),
  ``/{tenant}/discovery/v2.0/keys``, and ``{base_url}/oidc/userinfo`` (Graph's,
  tenant-independent);
* ``/{tenant}/oauth2/v2.0/logout`` (the ``end_session_endpoint``, RP-Initiated Logout
  1.0) ends the browser's session at the tenant, loads the front-channel logout URL of
  every client that got tokens in it in hidden iframes (Front-Channel Logout 1.0, with
  ``iss`` and ``sid``: ID tokens carry a ``sid`` per session), then returns to the
  registered ``post_logout_redirect_uri`` with ``state``; ``/{tenant}/logout`` is the
  same for a person who signs out at the IdP itself.

ID tokens are RS256 with Entra's claim names and shapes: a pairwise ``sub`` per
application, ``oid`` and ``tid`` GUIDs, ``preferred_username`` as the UPN, ``groups``
as group object GUIDs (see ``DEMO_DIRECTORY[city]["groups"]``), app ``roles``, and,
as tenants configure them in real life, an extension claim ``extn_learnerId`` and
``schoolIds`` as one ``;``-joined string.  Unlike Entra, every claim is sent
whatever the scopes (Entra needs ``profile``/``email`` for some), so that a
misconfigured scope cannot hide a mapping problem in the demo.

Errors come back as Entra's do: ``AADSTS`` codes in ``error_description``; an
unknown client or an unregistered redirect URI gets an error page, never a redirect.
Codes, tokens and sessions live in this process's memory.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

from flask import Flask, abort, jsonify, redirect, request, session

from broker.demo import jws, pages
from broker.demo.directory import DEMO_DIRECTORY, ROLES, find_user
from broker.pki import ensure_keypair
from broker.tokens.grants import s256
from digione_verify import InvalidToken, load_jwk, verify_jws

SESSION_COOKIE = "demo_entra_session"
"""Distinct from every other cookie on localhost: cookies ignore the port."""

SESSION_LIFETIME = 8 * 3600
CODE_LIFETIME = 600
TOKEN_LIFETIME = 3600

AUTHORIZE_PARAMS = (
    "client_id", "redirect_uri", "response_type", "response_mode", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method", "prompt", "login_hint",
)
"""The authorize parameters the login form carries through as hidden fields."""


def issuer(base_url: str, tenant_id: str) -> str:
    """The issuer of ``tenant_id``'s tokens (also the prefix of its discovery URL)."""
    return f"{base_url.rstrip('/')}/{tenant_id}/v2.0"


def pairwise_sub(tenant_id: str, object_id: str, client_id: str) -> str:
    """Entra's ``sub``: one opaque value per user and application (43 base64url characters)."""
    return jws.b64url(hashlib.sha256(f"{tenant_id}|{object_id}|{client_id}".encode()).digest())


class _Error(Exception):
    """An OAuth error; Entra-style: ``AADSTS<code>: <text>`` in the description."""

    def __init__(self, error: str, aadsts: int, text: str, status: int = 400):
        super().__init__(text)
        self.error, self.aadsts, self.text, self.status = error, aadsts, text, status

    @property
    def description(self) -> str:
        return f"AADSTS{self.aadsts}: {self.text}"

    def json(self, challenge: str = 'Basic realm="token"'):
        body = {
            "error": self.error,
            "error_description": self.description,
            "error_codes": [self.aadsts],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }
        response = jsonify(body)
        response.status_code = self.status
        response.headers["Cache-Control"] = "no-store"
        if self.status == 401:
            response.headers["WWW-Authenticate"] = challenge
        return response


class _Page(Exception):
    """An authorize error that must not go back to the client: shown as a page."""

    def __init__(self, key: str, error: _Error):
        super().__init__(error.text)
        self.key, self.error = key, error


@dataclasses.dataclass
class _Session:
    """A browser's session at one tenant; ``id`` is also the ``sid`` of the ID tokens issued in it."""

    id: str
    tenant: str
    username: str
    at: int
    clients: dict[str, str] = dataclasses.field(default_factory=dict)
    """client id -> the redirect URI it got its code at (its front-channel logout URL is derived from it)."""


class _Sessions:
    """The sessions, server-side: the cookie names one per tenant; logout ends it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def start(self, tenant: str, username: str) -> _Session:
        record = _Session(str(uuid.uuid4()), tenant, username, int(time.time()))
        with self._lock:
            now = time.time()
            for stale in [k for k, v in self._sessions.items() if now - v.at > SESSION_LIFETIME]:
                del self._sessions[stale]
            self._sessions[record.id] = record
        return record

    def get(self, session_id: str) -> _Session | None:
        with self._lock:
            record = self._sessions.get(session_id)
        return record if record and time.time() - record.at <= SESSION_LIFETIME else None

    def joined(self, session_id: str, client_id: str, redirect_uri: str) -> None:
        """``client_id`` got tokens in the session (so it hears of its end)."""
        with self._lock:
            record = self._sessions.get(session_id)
            if record is not None:
                record.clients[client_id] = redirect_uri

    def end(self, session_id: str) -> _Session | None:
        with self._lock:
            return self._sessions.pop(session_id, None)


def frontchannel_logout_uri(client: Mapping[str, Any], redirect_uri: str) -> str | None:
    """Where ``client`` wants front-channel logout: its registered ``frontchannel_logout_uri``, else
    its redirect URI with ``/callback`` turned into ``/frontchannel_logout`` (the broker's
    convention: ``/oidc/<tenant>/<idp>/callback`` -> ``/oidc/<tenant>/<idp>/frontchannel_logout``)."""
    if client.get("frontchannel_logout_uri"):
        return str(client["frontchannel_logout_uri"])
    parts = urlsplit(redirect_uri)
    if not parts.path.endswith("/callback"):
        return None
    return urlunsplit(parts._replace(path=parts.path.removesuffix("/callback") + "/frontchannel_logout"))


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added after any query of its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="&".join(filter(None, [parts.query, urlencode(params)]))))


class _Expiring:
    """Random handles for grants (codes, access tokens), in memory, with expiry."""

    def __init__(self, lifetime: int):
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, Any]] = {}

    def issue(self, grant: dict[str, Any]) -> str:
        handle = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            for stale in [k for k, v in self._items.items() if v["exp"] < now]:
                del self._items[stale]
            self._items[handle] = {**grant, "exp": now + self._lifetime}
        return handle

    def get(self, handle: str) -> dict[str, Any] | None:
        with self._lock:
            grant = self._items.get(handle)
        return grant if grant and grant["exp"] >= time.time() else None

    def pop(self, handle: str) -> dict[str, Any] | None:
        """The grant, once: whatever happens next, the handle is spent."""
        with self._lock:
            grant = self._items.pop(handle, None)
        return grant if grant and grant["exp"] >= time.time() else None


def create_app(
    *,
    base_url: str,
    tenants: Mapping[str, str],
    clients: Mapping[str, Mapping[str, Any]],
    key_dir: Path,
) -> Flask:
    """The demo Entra ID for ``tenants`` (city -> tenant GUID), trusting ``clients``.

    ``clients`` maps a client id to ``{"secret": str, "redirect_uris": [str, ...]}``,
    optionally with ``post_logout_redirect_uris`` (where the end-session endpoint may
    return, besides the redirect URIs) and ``frontchannel_logout_uri`` (else derived
    from the redirect URI used, see :func:`frontchannel_logout_uri`); every client may
    use every tenant, like a multi-tenant app registration.
    The signing key is created in ``key_dir`` if missing (one key for all tenants,
    as Entra's keys are shared).
    """
    base_url = base_url.rstrip("/")
    unknown = [city for city in tenants if city not in DEMO_DIRECTORY]
    if unknown:
        raise ValueError(f"tenants: not in the demo directory: {', '.join(unknown)}")
    city_of = {str(tid).lower(): city for city, tid in tenants.items()}
    keypair = ensure_keypair(Path(key_dir), "entra-idp", common_name="demo Entra ID token signing")
    signing_key = keypair.private_key()
    certificate = keypair.certificate()
    kid = jws.thumbprint(certificate)
    codes, access_tokens = _Expiring(CODE_LIFETIME), _Expiring(TOKEN_LIFETIME)
    sessions = _Sessions()
    public_key = load_jwk(jws.public_jwk(certificate))

    app = pages.demo_app(SESSION_COOKIE)

    def tenant_city(tenant: str) -> str:
        city = city_of.get(tenant.lower())
        if city is None:
            abort(404)
        return city

    def idp_name(city: str) -> str:
        return f"{DEMO_DIRECTORY[city]['provider']['names'][pages.language()]} · Entra ID (demo)"

    # --- authorize -------------------------------------------------------------------

    def check_client(params: Mapping[str, str]) -> None:
        """Errors that must not be sent to the redirect URI, since it is not trusted yet."""
        client = clients.get(params.get("client_id", ""))
        if client is None:
            raise _Page("unknown_service", _Error(
                "unauthorized_client", 700016,
                "Application with identifier was not found in the directory."))
        if params.get("redirect_uri", "") not in client["redirect_uris"]:
            raise _Page("unknown_return_address", _Error(
                "invalid_request", 50011,
                "The redirect URI specified in the request does not match the redirect URIs "
                "configured for the application."))

    def check_request(params: Mapping[str, str]) -> None:
        """Errors the client hears about at its redirect URI."""
        if params.get("response_type") != "code":
            raise _Error("unsupported_response_type", 70000, "Only response_type=code is supported here.")
        if params.get("response_mode", "query") not in ("query", "form_post"):
            raise _Error("invalid_request", 900144, "response_mode must be query or form_post.")
        if params.get("code_challenge") and params.get("code_challenge_method") != "S256":
            raise _Error("invalid_request", 501491, "code_challenge_method must be S256.")

    def reply(params: Mapping[str, str], fields: dict[str, str]):
        """Send ``fields`` (+ state) to the registered redirect URI, as response_mode says."""
        if params.get("state"):
            fields["state"] = params["state"]
        target = params["redirect_uri"]
        if params.get("response_mode") == "form_post":
            return pages.auto_post(target, fields, pages.language())
        response = redirect(with_query(target, fields), 302)
        response.headers["Cache-Control"] = "no-store"
        return response

    def reply_error(params: Mapping[str, str], error: _Error):
        return reply(params, {"error": error.error, "error_description": error.description})

    def issue_code(tenant: str, city: str, params: Mapping[str, str], user: dict[str, Any], sid: str):
        code = codes.issue({
            "tenant": tenant, "city": city, "username": user["username"], "sid": sid,
            "client_id": params["client_id"], "redirect_uri": params["redirect_uri"],
            "scope": params.get("scope", ""), "nonce": params.get("nonce"),
            "code_challenge": params.get("code_challenge"),
        })
        return reply(params, {"code": code})

    def login_form(tenant: str, city: str, params: Mapping[str, str], *, username: str = "", error: bool = False):
        return pages.login_page(
            idp_name=idp_name(city),
            action=f"{base_url}/{tenant}/oauth2/v2.0/login",
            hidden={name: params[name] for name in AUTHORIZE_PARAMS if params.get(name)},
            demo_users=[user["upn"] for user in DEMO_DIRECTORY[city]["users"]],
            lang=pages.language(),
            username=username or params.get("login_hint", ""),
            error=error,
        )

    def browser_session(tenant: str) -> _Session | None:
        record = sessions.get(session.get("tenants", {}).get(tenant, ""))
        return record if record is not None and record.tenant == tenant else None

    def signed_in_user(tenant: str, city: str) -> tuple[dict[str, Any], str] | None:
        """The user this browser's session at ``tenant`` names, and the session's id (``sid``)."""
        record = browser_session(tenant)
        user = find_user(city, record.username) if record is not None else None
        return (user, record.id) if user is not None and record is not None else None

    @app.errorhandler(_Page)
    def page(exc: _Page):
        tenant = (request.view_args or {}).get("tenant", "")
        city = city_of.get(tenant.lower())
        name = idp_name(city) if city else "Entra ID (demo)"
        return pages.error_page(exc.key, idp_name=name, lang=pages.language(), detail=exc.error.description)

    @app.route("/<tenant>/oauth2/v2.0/authorize", methods=["GET", "POST"])
    def authorize(tenant: str):
        city = tenant_city(tenant)
        params = request.values
        check_client(params)
        try:
            check_request(params)
        except _Error as exc:
            return reply_error(params, exc)
        prompt = params.get("prompt", "")
        signed_in = signed_in_user(tenant, city)
        if signed_in and prompt != "login":
            return issue_code(tenant, city, params, *signed_in)
        if prompt == "none":
            return reply_error(params, _Error(
                "login_required", 50058, "A silent sign-in request was sent but no user is signed in."))
        return login_form(tenant, city, params)

    @app.post("/<tenant>/oauth2/v2.0/login")
    def login(tenant: str):
        city = tenant_city(tenant)
        params = request.form
        check_client(params)
        try:
            check_request(params)
        except _Error as exc:
            return reply_error(params, exc)
        if params.get("switch_lang"):
            return login_form(tenant, city, params, username=params.get("username", ""))
        if params.get("cancel"):
            return reply_error(params, _Error("access_denied", 50126, "The user cancelled the sign-in."))
        username = params.get("username", "")
        user = find_user(city, username)
        if user is None or not hmac.compare_digest(params.get("password", "").encode(), user["password"].encode()):
            return login_form(tenant, city, params, username=username, error=True)
        record = sessions.start(tenant, user["username"])
        session["tenants"] = {**session.get("tenants", {}), tenant: record.id}
        return issue_code(tenant, city, params, user, record.id)

    # --- token -----------------------------------------------------------------------

    def authenticate_client() -> str:
        """The client id, if the request carries exactly one valid set of credentials."""
        header = request.headers.get("Authorization", "")
        posted = request.form.get("client_secret")
        if header.lower().startswith("basic "):
            if posted is not None:
                raise _Error("invalid_request", 90023, "Only one client authentication method may be used.")
            try:
                raw_id, _, raw_secret = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
            except ValueError:
                raise _Error("invalid_client", 7000215, "Invalid client secret provided.", 401) from None
            # RFC 6749 2.3.1 form-encodes both before base64, but many clients (Authlib
            # among them) send them raw: accept either reading, as servers commonly do.
            candidates = [(raw_id, raw_secret), (unquote_plus(raw_id), unquote_plus(raw_secret))]
        else:
            candidates = [(request.form.get("client_id", ""), posted or "")]
        for client_id, secret in candidates:
            client = clients.get(client_id)
            if client and hmac.compare_digest(secret.encode(), str(client["secret"]).encode()):
                return client_id
        if not any(client_id in clients for client_id, _ in candidates):
            raise _Error("invalid_client", 700016, "Application with identifier was not found in the directory.", 401)
        raise _Error("invalid_client", 7000215, "Invalid client secret provided.", 401)

    def id_token(tenant: str, city: str, user: dict[str, Any], grant: dict[str, Any]) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": grant["client_id"],
            "iss": issuer(base_url, tenant),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "aio": secrets.token_urlsafe(24),
            "email": user["email"],
            "family_name": user["family_name"],
            "given_name": user["given_name"],
            "groups": list(user["groups"]),
            "name": user["display_name"],
            "oid": user["entra_object_id"],
            "preferred_username": user["upn"],
            "rh": secrets.token_urlsafe(16),
            "roles": [ROLES[user["role"]]["app_role"]],
            "schoolIds": ";".join(user["schools"]),
            "sid": grant["sid"],
            "sub": pairwise_sub(tenant, user["entra_object_id"], grant["client_id"]),
            "tid": tenant,
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        if grant["nonce"]:
            claims["nonce"] = grant["nonce"]
        if user["learner_id"]:
            claims["extn_learnerId"] = user["learner_id"]
        return jws.sign_rs256(claims, signing_key, kid)

    @app.post("/<tenant>/oauth2/v2.0/token")
    def token(tenant: str):
        city = tenant_city(tenant)
        try:
            client_id = authenticate_client()
            if request.form.get("grant_type") != "authorization_code":
                raise _Error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
            grant = codes.pop(request.form.get("code", ""))
            if grant is None or grant["tenant"] != tenant or grant["client_id"] != client_id:
                raise _Error("invalid_grant", 70008, "The provided authorization code or refresh token has "
                             "expired, was already redeemed or is not valid for this client.")
            if request.form.get("redirect_uri") != grant["redirect_uri"]:
                raise _Error("invalid_grant", 500112, "The reply address does not match the one in the request.")
            if grant["code_challenge"]:
                verifier = request.form.get("code_verifier", "")
                if not verifier or not hmac.compare_digest(s256(verifier), grant["code_challenge"]):
                    raise _Error("invalid_grant", 501481, "The Code_Verifier does not match the code_challenge.")
        except _Error as exc:
            return exc.json()
        user = find_user(city, grant["username"])
        assert user is not None  # codes are only issued to directory users
        access_token = access_tokens.issue({
            "tenant": tenant, "city": city, "username": user["username"], "client_id": client_id,
        })
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": grant["scope"],
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": access_token,
        }
        if "openid" in grant["scope"].split():
            body["id_token"] = id_token(tenant, city, user, grant)
        sessions.joined(grant["sid"], client_id, grant["redirect_uri"])
        response = jsonify(body)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.route("/oidc/userinfo", methods=["GET", "POST"])
    def userinfo():
        header = request.headers.get("Authorization", "")
        grant = access_tokens.get(header[7:].strip()) if header.lower().startswith("bearer ") else None
        if grant is None:
            return _Error("invalid_token", 50058, "Access token is missing, invalid or expired.", 401).json(
                challenge='Bearer error="invalid_token"')
        user = find_user(grant["city"], grant["username"])
        assert user is not None
        return jsonify({
            "sub": pairwise_sub(grant["tenant"], user["entra_object_id"], grant["client_id"]),
            "name": user["display_name"],
            "family_name": user["family_name"],
            "given_name": user["given_name"],
            "email": user["email"],
        })

    # --- logout ----------------------------------------------------------------------

    def hinted_client(tenant: str, params: Mapping[str, str]) -> str | None:
        """The client the end-session request is from: the ``id_token_hint``'s audience (an ID token
        of this tenant, signature checked; expired is fine) and/or ``client_id``, which must agree."""
        client_id = params.get("client_id") or None
        hint = params.get("id_token_hint")
        if hint:
            try:
                _, claims = verify_jws(hint, lambda name: public_key if name == kid else None, {"RS256"})
            except InvalidToken as exc:
                raise _Page("bad_request", _Error("invalid_request", 90008, f"id_token_hint: {exc.reason}")) from exc
            aud = claims.get("aud")
            if claims.get("iss") != issuer(base_url, tenant) or not isinstance(aud, str):
                raise _Page("bad_request", _Error("invalid_request", 90008,
                                                  "id_token_hint was not issued by this tenant."))
            if client_id is not None and client_id != aud:
                raise _Page("bad_request", _Error("invalid_request", 90008,
                                                  "client_id does not match the id_token_hint."))
            client_id = aud
        if client_id is not None and client_id not in clients:
            raise _Page("unknown_service", _Error(
                "unauthorized_client", 700016, "Application with identifier was not found in the directory."))
        return client_id

    def check_post_logout_redirect(client_id: str | None, target: str) -> None:
        """RP-Initiated Logout §3: only a URI registered for the client that asks."""
        client = clients.get(client_id or "")
        registered = [*client.get("post_logout_redirect_uris", ()), *client["redirect_uris"]] if client else []
        if target not in registered:
            raise _Page("unknown_return_address", _Error(
                "invalid_request", 50011, "The post logout redirect URI specified in the request does not match "
                "the URIs configured for the application."))

    def end_browser_session(tenant: str) -> list[str]:
        """End this browser's session at ``tenant``; the front-channel logout URLs of its clients."""
        record = sessions.end(session.get("tenants", {}).get(tenant, ""))
        if tenant in session.get("tenants", {}):
            session["tenants"] = {t: v for t, v in session["tenants"].items() if t != tenant}
        if record is None or record.tenant != tenant:
            return []
        frames = []
        for client_id, redirect_uri in record.clients.items():
            uri = frontchannel_logout_uri(clients.get(client_id, {}), redirect_uri)
            if uri:  # Front-Channel Logout §2: iss and sid, so the client knows which session ended
                frames.append(with_query(uri, {"iss": issuer(base_url, tenant), "sid": record.id}))
        return frames

    @app.route("/<tenant>/oauth2/v2.0/logout", methods=["GET", "POST"])
    def end_session(tenant: str):
        """RP-Initiated Logout 1.0: sign the browser out, tell the clients (front-channel), go back."""
        city = tenant_city(tenant)
        params = request.values
        client_id = hinted_client(tenant, params)
        target = params.get("post_logout_redirect_uri", "")
        if target:
            check_post_logout_redirect(client_id, target)
            if params.get("state"):
                target = with_query(target, {"state": params["state"]})
        frames = end_browser_session(tenant)
        return pages.logout_page(idp_name=idp_name(city), lang=pages.language(),
                                 message="signing_out" if target else "signed_out", frames=frames, target=target)

    @app.get("/<tenant>/logout")
    def logout_form(tenant: str):
        """The person's own sign-out page at the tenant."""
        city = tenant_city(tenant)
        signed_in = signed_in_user(tenant, city)
        if signed_in is None:
            return pages.logout_page(idp_name=idp_name(city), lang=pages.language(), message="not_signed_in")
        user = signed_in[0]
        return pages.logout_page(idp_name=idp_name(city), lang=pages.language(), message="logout_confirm",
                                 who=f"{user['display_name']} ({user['upn']})", action=f"{base_url}/{tenant}/logout")

    @app.post("/<tenant>/logout")
    def logout(tenant: str):
        city = tenant_city(tenant)
        frames = end_browser_session(tenant)
        return pages.logout_page(idp_name=idp_name(city), lang=pages.language(), message="signed_out", frames=frames)

    # --- discovery -------------------------------------------------------------------

    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def discovery(tenant: str):
        tenant_city(tenant)
        prefix = f"{base_url}/{tenant}"
        return jsonify({
            "issuer": issuer(base_url, tenant),
            "authorization_endpoint": f"{prefix}/oauth2/v2.0/authorize",
            "token_endpoint": f"{prefix}/oauth2/v2.0/token",
            "jwks_uri": f"{prefix}/discovery/v2.0/keys",
            "userinfo_endpoint": f"{base_url}/oidc/userinfo",
            "end_session_endpoint": f"{prefix}/oauth2/v2.0/logout",
            "frontchannel_logout_supported": True,
            "frontchannel_logout_session_supported": True,
            "http_logout_supported": True,
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "preferred_username", "name", "tid", "oid",
                "ver", "email", "given_name", "family_name", "groups", "roles", "sid",
            ],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        })

    @app.get("/<tenant>/discovery/v2.0/keys")
    def jwks(tenant: str):
        tenant_city(tenant)
        return jsonify({"keys": [jws.public_jwk(certificate, issuer=issuer(base_url, tenant))]})

    @app.get("/")
    def index():
        links = "".join(
            f'<li>{city}: <a href="{issuer(base_url, tid)}/.well-known/openid-configuration">'
            f"{issuer(base_url, tid)}</a></li>"
            for city, tid in tenants.items()
        )
        return f"<!doctype html><title>Demo Entra ID</title><h1>Demo Entra ID tenants</h1><ul>{links}</ul>"

    return app
