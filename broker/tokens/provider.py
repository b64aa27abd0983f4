"""The OpenID Connect provider: pure protocol over :class:`Request` and :class:`Response`.

:class:`Provider` knows no web framework.  An adapter (the SATOSA frontend in
:mod:`broker.frontends.oidc`, or a test harness) turns HTTP into a
:class:`~broker.tokens.http.Request` and calls:

* :meth:`Provider.authorize` at the authorization endpoint.  It returns either a validated
  :class:`~broker.tokens.authorize.AuthorizationRequest` (go and authenticate the person)
  or a :class:`Response` (an error shown, or redirected to a validated ``redirect_uri``);
* :meth:`Provider.authorization_response` once the person is authenticated (or
  :meth:`Provider.authorization_error` if not): the redirect carrying the code;
* :meth:`Provider.logout_request` at the logout endpoint: what the request proves, for the
  broker's sessions to act on (:class:`~broker.tokens.logout.LogoutRequest`), then
  :func:`~broker.tokens.logout.logged_out_response`; at logout also
  :meth:`Provider.revoke_grants`, :meth:`Provider.logout_token` (back-channel) and
  :meth:`Provider.frontchannel_logout_url`;
* :meth:`Provider.handle` for every other endpoint (discovery, JWKS, token, userinfo,
  introspection, revocation).

Each request costs O(1) store operations and no store call for keys (the key ring is
cached in the process); see ``docs/decisions/0002-oidc-provider.md``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from broker.errors import BrokerError, InvalidRedirectUri, UnknownClient, log, new_correlation_id, render, wants_json
from broker.store import Store, StoreError
from broker.tokens import discovery as discovery_doc
from broker.tokens.authorize import AuthorizationRequest, RedirectError, check_id_token_hint, validate
from broker.tokens.client_auth import ClientAuthenticator
from broker.tokens.errors import NO_STORE, OAuthError, invalid_request, json_error
from broker.tokens.grants import GrantHook, Grants, access_token_audience
from broker.tokens.http import Request, Response, json_response, redirect
from broker.tokens.introspection import introspect
from broker.tokens.keys import KeyRing, KeyRingError
from broker.tokens.lifetimes import Lifetimes
from broker.tokens.logout import LogoutRequest, logout_request
from broker.tokens.logout_token import frontchannel_logout_url, mint_logout_token
from broker.tokens.revocation import revoke
from broker.tokens.userinfo import userinfo

if TYPE_CHECKING:
    from broker.ratelimit.limits import LockGate
    from broker.registry.relying_parties import Client

logger = logging.getLogger("broker.tokens")

DEFAULT_SCOPES = ("openid", "profile", "email", "roles")
#: Client authentication by a shared secret: the methods a brute force can guess (rate limited).
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})

#: ``release(client, identity, granted_scopes) -> claims`` (without ``sub``).
Release = Callable[[Any, dict[str, Any], set[str]], dict[str, Any]]
#: ``subject(client, identity) -> sub``.
Subject = Callable[[Any, dict[str, Any]], str]
#: ``access_claims(client, identity, granted_scopes) -> claims``: the identity claims of access
#: tokens (the broker's: ``roles`` and ``role_assignments``, :func:`broker.mapping.access_token_claims`).
AccessClaims = Callable[[Any, dict[str, Any], set[str]], dict[str, Any]]


def released_roles_only(claims: Mapping[str, Any], identity: Mapping[str, Any], scopes: set[str]) -> dict[str, Any]:
    """Access-token claims without an ``access_claims`` callback: the released ``roles`` (else,
    with the ``roles`` scope, the identity's) as they are."""
    if "roles" in claims:
        return {"roles": claims["roles"]}
    if "roles" in scopes and "roles" in identity:
        return {"roles": identity["roles"]}
    return {}


class Provider:
    """The OpenID Connect provider of one issuer.  Build it with :func:`build_provider`."""

    def __init__(self, *, issuer: str, store: Store, clients: Any, keyring: KeyRing, release: Release,
                 subject: Subject, scopes_supported: Iterable[str] = DEFAULT_SCOPES,
                 claims_supported: Iterable[str] = (), lifetimes: Lifetimes | Mapping[str, int] | None = None,
                 resource_audiences: Iterable[str] = (), introspection_clients: Iterable[str] = (),
                 acr_values_supported: Iterable[str] = (), http_get: Callable[[str], bytes] | None = None,
                 clock: Callable[[], float] = time.time, claims_in_id_token: bool = True,
                 jwks_max_age: int = 300, subject_types_supported: Iterable[str] = ("pairwise", "public"),
                 grant_hook: GrantHook | None = None, claims_by_scope: Mapping[str, Iterable[str]] | None = None,
                 registration_endpoint: str | None = None, access_claims: AccessClaims | None = None,
                 limiter: Any = None, audit: Any = None):
        parts = urlsplit(issuer)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("issuer: expected an https URL without query or fragment (OIDC Discovery §3)")
        self.issuer = issuer.rstrip("/")
        self.store = store
        self.clients = clients
        self.keyring = keyring
        self.release = release
        self.access_claims = access_claims
        self.subject = subject
        self.lifetimes = Lifetimes.coerce(lifetimes)
        self.scopes_supported = tuple(scopes_supported)
        if "openid" not in self.scopes_supported:
            raise ValueError("scopes_supported must contain openid")
        self.clock = clock
        self.introspection_clients = frozenset(introspection_clients)
        self.jwks_max_age = jwks_max_age
        self.base_path = urlsplit(self.issuer).path
        self.urls = {name: self.issuer + path for name, path in discovery_doc.PATHS.items()}
        self.grants = Grants(issuer=self.issuer, store=store, keyring=keyring, lifetimes=self.lifetimes,
                             audience=access_token_audience(resource_audiences),
                             claims_in_id_token=claims_in_id_token, clock=clock, grant_hook=grant_hook,
                             claims_by_scope=claims_by_scope, audit=audit)
        self.audit = audit
        self.client_auth = ClientAuthenticator(clients, store, issuer=self.issuer, token_endpoint=self.urls["token"],
                                               http_get=http_get, clock=clock, leeway=self.lifetimes.leeway,
                                               max_assertion_lifetime=self.lifetimes.client_assertion,
                                               limiter=limiter)
        #: Rate limits (:class:`broker.ratelimit.RateLimiter`): token requests per client, wrong secrets.
        self.limiter = limiter
        self.discovery = discovery_doc.document(
            self.issuer, signing_algs=keyring.algs, scopes_supported=self.scopes_supported,
            claims_supported=claims_supported, acr_values_supported=acr_values_supported,
            subject_types_supported=subject_types_supported, registration_endpoint=registration_endpoint)
        self._discovery_json = json.dumps(self.discovery, separators=(",", ":")).encode()
        self._handlers: dict[str, Callable[[Request], Response]] = {
            self.base_path + discovery_doc.PATHS["discovery"]: self._discovery,
            self.base_path + discovery_doc.PATHS["jwks"]: self._jwks,
            self.base_path + discovery_doc.PATHS["token"]: self._token,
            self.base_path + discovery_doc.PATHS["userinfo"]: self._userinfo,
            self.base_path + discovery_doc.PATHS["introspect"]: self._introspect,
            self.base_path + discovery_doc.PATHS["revoke"]: self._revoke,
        }

    # ------------------------------------------------------------------ routing

    def endpoint(self, path: str) -> str | None:
        """The endpoint name (``token``, ``authorize``...) of ``path``, else ``None``."""
        path = "/" + path.lstrip("/")
        for name, suffix in discovery_doc.PATHS.items():
            if path == self.base_path + suffix:
                return name
        return None

    def handle(self, request: Request) -> Response:
        """Answer a request to any endpoint except ``authorize`` and ``end_session``."""
        handler = self._handlers.get("/" + request.path.lstrip("/"))
        if handler is None:
            return json_error(OAuthError("not_found", "no such endpoint", status=404))
        try:
            return handler(request)
        except OAuthError as exc:
            return json_error(exc, endpoint=self.endpoint(request.path))
        except (StoreError, KeyRingError) as exc:
            logger.error("token service unavailable: %s", exc.__class__.__name__)
            return json_error(OAuthError("temporarily_unavailable", "try again shortly", status=503),
                              endpoint=self.endpoint(request.path))

    @staticmethod
    def _method(request: Request, *allowed: str) -> None:
        if request.method not in allowed:
            raise OAuthError("invalid_request", f"use {' or '.join(allowed)}", status=405)

    @staticmethod
    def _form_body(request: Request) -> None:
        """RFC 6749 §3.2 (and RFC 7009 §2.1, RFC 7662 §2.1): parameters are form-encoded."""
        content_type = request.header("content-type")
        if content_type is not None and not content_type.lower().startswith("application/x-www-form-urlencoded"):
            raise invalid_request("the body must be application/x-www-form-urlencoded")

    # ------------------------------------------------------------------ public metadata

    def _discovery(self, request: Request) -> Response:
        self._method(request, "GET", "HEAD")
        return Response(200, [("Content-Type", "application/json"), ("Cache-Control", "public, max-age=3600"),
                              ("Access-Control-Allow-Origin", "*")], self._discovery_json)

    def _jwks(self, request: Request) -> Response:
        self._method(request, "GET", "HEAD")
        return Response(200, [("Content-Type", "application/json"),
                              ("Cache-Control", f"public, max-age={self.jwks_max_age}"),
                              ("Access-Control-Allow-Origin", "*")], self.keyring.jwks_json())

    # ------------------------------------------------------------------ authorization endpoint

    def _check_hint(self, token: str, client_id: str | None) -> dict[str, Any]:
        return check_id_token_hint(token, client_id, issuer=self.issuer, resolve_key=self.keyring.public_key,
                                   algs=self.keyring.algs)

    def authorize(self, request: Request) -> AuthorizationRequest | Response:
        """Validate an authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1-§3.1.2.2)."""
        if request.method not in ("GET", "POST"):  # OIDC Core §3.1.2.1
            return self.shown_error(BrokerError("use GET or POST", status=405, message_key="error.method_not_allowed"),
                                    request)
        try:
            return validate(request.params, clients=self.clients, scopes_supported=self.scopes_supported,
                            id_token_hint=self._check_hint)
        except RedirectError as exc:
            log(exc, new_correlation_id(), endpoint="authorize", client_id=exc.client_id)
            return self._error_redirect(exc.redirect_uri, exc.state, exc.code, exc.detail)
        except BrokerError as exc:
            return self.shown_error(exc, request)

    def shown_error(self, error: BrokerError, request: Request | None = None, *, lang: str | None = None,
                    endpoint: str = "authorize") -> Response:
        """A refusal shown to the person (never a redirect), logged with its correlation id."""
        cid = new_correlation_id()
        log(error, cid, endpoint=endpoint)
        accept = request.header("accept") if request else None
        if request is not None and lang is None:
            values = request.params.get("ui_locales") or ()
            lang = values[0] if len(values) == 1 else None
        status, content_type, body = render(error, cid, lang=lang, as_json=wants_json(accept),
                                            accept_language=request.header("accept-language") if request else None)
        return Response(status, [("Content-Type", content_type), ("Cache-Control", "no-store")], body)

    def _error_redirect(self, redirect_uri: str, state: str | None, error: str, description: str) -> Response:
        params = {"error": error, "error_description": description}
        if state is not None:
            params["state"] = state
        params["iss"] = self.issuer  # RFC 9207 §2: also on error responses
        return redirect(_with_query(redirect_uri, params))

    def authorization_error(self, authz: AuthorizationRequest, error: str, description: str = "") -> Response:
        """Redirect an error (``login_required``, ``access_denied``...) to the validated redirect URI."""
        client = self.clients.client(authz.client_id)
        if client is None or authz.redirect_uri not in client.redirect_uris:  # registry changed mid-flow
            return self.shown_error(InvalidRedirectUri("redirect_uri no longer registered"), lang=authz.ui_locales)
        log(OAuthError(error, description or error, status=302), new_correlation_id(), endpoint="authorize",
            client_id=authz.client_id)
        return self._error_redirect(authz.redirect_uri, authz.state, error, description or error)

    def authorization_response(self, authz: AuthorizationRequest, identity: dict[str, Any], *,
                               auth_time: float | str | None = None, acr: str | None = None,
                               amr: list[str] | None = None, sid: str | None = None,
                               session: str | None = None) -> Response:
        """Issue the code and redirect to the client (RFC 6749 §4.1.2, RFC 9207, OIDC Core §3.1.2.5).

        ``identity`` is the canonical identity (opaque here): ``subject`` derives ``sub``
        and ``release`` the claims, both now.  ``auth_time`` is when the person actually
        authenticated (epoch seconds or ISO 8601).  ``sid`` is the session id *this client*
        sees (in its ID and access tokens, logout tokens and front-channel logout URL): the
        caller derives a different one per client, so that ``sid`` never links one client's
        pairwise subject to another's.  ``session`` is the broker session's own id: kept
        with the code and the grant (the ``grant_hook`` gets it when the code is redeemed),
        never sent to a client.
        """
        client = self.clients.client(authz.client_id)
        if client is None:  # the registry changed while the person was signing in
            return self.shown_error(UnknownClient("client no longer registered"), lang=authz.ui_locales)
        if authz.redirect_uri not in client.redirect_uris:
            return self.shown_error(InvalidRedirectUri("redirect_uri no longer registered"), lang=authz.ui_locales)
        now = self.clock()
        at = _epoch(auth_time, now)
        if authz.max_age is not None and now - at > authz.max_age + self.lifetimes.leeway:
            # OIDC Core §3.1.2.1: the authentication is older than max_age allows.
            return self.authorization_error(authz, "login_required", "authentication is older than max_age")
        try:
            sub = self.subject(client, identity)
            if authz.id_token_hint_sub is not None and "none" in authz.prompt and sub != authz.id_token_hint_sub:
                # OIDC Core §3.1.2.1: the signed-in user is not the one the hint names.
                return self.authorization_error(authz, "login_required",
                                                "the signed-in user differs from id_token_hint")
            scopes = set(authz.scopes)
            claims = {k: v for k, v in dict(self.release(client, identity, scopes) or {}).items() if k != "sub"}
            access = (self.access_claims(client, identity, scopes) if self.access_claims is not None
                      else released_roles_only(claims, identity, scopes))
            # The audit record of this release, recorded when the code is redeemed (broker.audit.records).
            audit = None if self.audit is None else self.audit.oidc(client.client_id, identity, claims, access)
            code = self.grants.issue_code(authz, sub=sub, claims=claims, access_claims=access, auth_time=at,
                                          acr=acr, amr=amr, sid=sid, session=session, audit=audit)
        except (StoreError, KeyRingError) as exc:
            logger.error("could not issue a code: %s", exc.__class__.__name__)
            return self.authorization_error(authz, "temporarily_unavailable", "try again shortly")
        params = {"code": code}
        if authz.state is not None:
            params["state"] = authz.state
        params["iss"] = self.issuer  # RFC 9207 §2: mix-up defence
        return redirect(_with_query(authz.redirect_uri, params))

    # ------------------------------------------------------------------ logout

    def logout_request(self, request: Request) -> LogoutRequest | Response:
        """RP-initiated logout (RP-Initiated Logout 1.0 §2-§4): what the request proves.

        A :class:`~broker.tokens.logout.LogoutRequest` for the caller to act on (ask the
        person unless ``confirmed``; end the broker session; notify the clients; answer with
        :func:`~broker.tokens.logout.logged_out_response`), or a :class:`Response` for an
        outright refusal, shown.  Ends nothing itself.
        """
        return logout_request(request, clients=self.clients, check_hint=self._check_hint,
                              shown_error=lambda error, req: self.shown_error(error, req, endpoint="end_session"))

    def revoke_grants(self, gids: Iterable[str]) -> None:
        """End a session's grants (one store round trip): refresh fails, access tokens go inactive."""
        self.grants.revoke_grants(gids)

    def logout_token(self, client: Client, *, sub: str | None, sid: str | None, lifetime: int = 120) -> str:
        """A Back-Channel Logout 1.0 §2.4 logout token for ``client``, issued now by this issuer."""
        return mint_logout_token(self.keyring, issuer=self.issuer, client=client, sub=sub, sid=sid,
                                 now=self.clock(), lifetime=lifetime)

    def frontchannel_logout_url(self, client: Client, sid: str | None) -> str | None:
        """The Front-Channel Logout 1.0 iframe URL of ``client`` (None if it registered none)."""
        return frontchannel_logout_url(client, issuer=self.issuer, sid=sid)

    # ------------------------------------------------------------------ token, userinfo, introspection, revocation

    def _token(self, request: Request) -> Response:
        """The token endpoint (RFC 6749 §3.2, §4.1.3, §6)."""
        self._method(request, "POST")
        self._form_body(request)
        client, gate = self._authenticated(request, "token", defer_lock=True)
        try:
            data = self._grant(request, client, gate)
        except OAuthError:
            if gate is not None:
                gate.settle()   # the lock's 429 before any other answer (LockGate)
            raise
        if gate is not None:
            gate.settle()   # a grant reads it beside its take; never hand tokens out unjudged
        return json_response(data, headers=NO_STORE)

    def _grant(self, request: Request, client: Client, gate: LockGate | None) -> dict[str, Any]:
        grant_types = request.form.get("grant_type") or []
        if len(grant_types) != 1:
            raise invalid_request("exactly one grant_type is required (RFC 6749 §4.1.3)")
        grant_type = grant_types[0]
        if grant_type not in ("authorization_code", "refresh_token"):
            raise OAuthError("unsupported_grant_type", "use authorization_code or refresh_token")
        if grant_type not in client.grant_types:
            raise OAuthError("unauthorized_client", f"this client may not use {grant_type}")
        if grant_type == "authorization_code":
            return self.grants.authorization_code(client, request.form, gate=gate)
        return self.grants.refresh_token(client, request.form, gate=gate)

    def _authenticate(self, request: Request, endpoint: str, *, allow_public: bool = True) -> Client:
        """The authenticated client, unless the rate limits refuse it (429): locked from this source after
        wrong secrets, or over its token requests (``endpoint == "token"``)."""
        return self._authenticated(request, endpoint, allow_public=allow_public)[0]

    def _authenticated(self, request: Request, endpoint: str, *, allow_public: bool = True,
                       defer_lock: bool = False) -> tuple[Client, LockGate | None]:
        """:meth:`_authenticate`; with ``defer_lock``, the lock check may come back unread, as a gate."""
        client = self.client_auth.authenticate(request, endpoint_url=self.urls[endpoint], allow_public=allow_public)
        gate = None
        if self.limiter is not None:
            gate = self.limiter.authenticated(
                client.client_id, secret=client.token_endpoint_auth_method in SECRET_METHODS,
                token=endpoint == "token", remote_addr=request.remote_addr,
                forwarded_for=request.header("x-forwarded-for"), defer_lock=defer_lock)
        return client, gate

    def _userinfo(self, request: Request) -> Response:
        self._method(request, "GET", "POST")
        if request.method == "POST":
            self._form_body(request)
        data = userinfo(request, keyring=self.keyring, issuer=self.issuer, grants=self.grants, clock=self.clock,
                        leeway=self.lifetimes.leeway)
        return json_response(data, headers=NO_STORE)

    def _introspect(self, request: Request) -> Response:
        self._method(request, "POST")
        self._form_body(request)
        client = self._authenticate(request, "introspect", allow_public=False)
        data = introspect(client, request.form, keyring=self.keyring, issuer=self.issuer, grants=self.grants,
                          clock=self.clock, leeway=self.lifetimes.leeway, trusted=self.introspection_clients)
        return json_response(data, headers=NO_STORE)

    def _revoke(self, request: Request) -> Response:
        self._method(request, "POST")
        self._form_body(request)
        client = self._authenticate(request, "revoke")
        revoke(client, request.form, keyring=self.keyring, issuer=self.issuer, grants=self.grants)
        return Response(200, [("Content-Type", "application/json"), *NO_STORE], b"{}")


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    """Append parameters, keeping the registered URI's own query (RFC 6749 §3.1.2)."""
    sep = "&" if urlsplit(uri).query else "" if uri.endswith("?") else "?"
    return uri + sep + urlencode(params)


def _epoch(value: float | str | None, default: float) -> int:
    if value is None or value == "":
        return int(default)
    if isinstance(value, (int, float)):
        return int(value)
    try:
        return int(float(value))
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        logger.warning("unparseable auth_time; using now")
        return int(default)


def build_provider(*, issuer: str, store: Store, clients: Any, keyring: KeyRing, release: Release, subject: Subject,
                   scopes_supported: Iterable[str] = DEFAULT_SCOPES, claims_supported: Iterable[str] = (),
                   lifetimes: Lifetimes | Mapping[str, int] | None = None, resource_audiences: Iterable[str] = (),
                   introspection_clients: Iterable[str] = (), acr_values_supported: Iterable[str] = (),
                   http_get: Callable[[str], bytes] | None = None, clock: Callable[[], float] = time.time,
                   claims_in_id_token: bool = True, jwks_max_age: int = 300,
                   subject_types_supported: Iterable[str] = ("pairwise", "public"),
                   grant_hook: GrantHook | None = None,
                   claims_by_scope: Mapping[str, Iterable[str]] | None = None,
                   registration_endpoint: str | None = None, access_claims: AccessClaims | None = None,
                   limiter: Any = None, audit: Any = None) -> Provider:
    """Build the provider, checking that the parts fit together.

    :param issuer: the issuer URL (= SATOSA's ``BASE``); endpoints live at its root.
    :param store: codes, grants, refresh tokens, deny-list, assertion ``jti`` values.
    :param clients: ``.client(client_id) -> Client | None`` (a :class:`RelyingParties`).
    :param keyring: the signing keys; its ``retention`` must cover the token lifetimes.
    :param release: ``(client, identity, granted_scopes) -> claims`` released to the client.
    :param subject: ``(client, identity) -> sub`` (pairwise or public, the lead's policy).
    :param lifetimes: a :class:`Lifetimes` or a mapping of its fields.
    :param resource_audiences: added to every access token's ``aud`` (next to the client id).
    :param introspection_clients: client ids of resource servers that may introspect any token.
    :param http_get: fetches clients' ``jwks_uri`` (``url -> bytes``); default urllib.
    :param jwks_max_age: ``Cache-Control: max-age`` of the JWKS; must not exceed the key
        ring's ``prepublish`` (a cached JWKS must learn the next key before it signs).
    :param grant_hook: ``(session, client_id, gid) -> bool``, asked when a code issued in a
        broker session is redeemed: False (the session has ended) refuses the code with
        ``invalid_grant`` and leaves no grant; True records ``gid`` with the session for its
        logout.  ``None``: codes are not checked against sessions.
    :param claims_by_scope: scope -> the claims it releases (``broker.mapping.SCOPES``); a
        refresh that narrows ``scope`` then carries only the claims of the scopes it kept, in
        the ID token, the access token (its ``access_claims`` only with ``roles``) and at
        userinfo.  ``None``: a narrowed refresh keeps every claim released at code time.
    :param registration_endpoint: published in discovery when dynamic client registration
        (RFC 7591, :mod:`broker.admin.dynamic_registration`) is on.
    :param access_claims: ``(client, identity, granted_scopes) -> claims`` that access tokens
        carry besides the RFC 9068 ones (the broker: ``roles`` and ``role_assignments``);
        ``None``: the released ``roles`` claim (:func:`released_roles_only`).
    :param limiter: rate limits (:class:`broker.ratelimit.RateLimiter`); ``None``: none.
    :param audit: a :class:`~broker.audit.ReleaseAudit`: the release record is prepared when
        the code is issued and recorded when it is redeemed at the token endpoint.
    """
    lifetimes = Lifetimes.coerce(lifetimes)
    needed = lifetimes.longest_signed + keyring.refresh_interval + lifetimes.leeway
    if keyring.retention < needed:
        raise ValueError(f"keyring.retention is {keyring.retention} s; it must be at least {needed} s "
                         "(longest token lifetime + key-ring refresh interval + leeway)")
    if jwks_max_age > keyring.prepublish:
        raise ValueError(f"jwks_max_age ({jwks_max_age} s) must not exceed keyring.prepublish "
                         f"({keyring.prepublish} s)")
    return Provider(issuer=issuer, store=store, clients=clients, keyring=keyring, release=release, subject=subject,
                    scopes_supported=scopes_supported, claims_supported=claims_supported, lifetimes=lifetimes,
                    resource_audiences=resource_audiences, introspection_clients=introspection_clients,
                    acr_values_supported=acr_values_supported, http_get=http_get, clock=clock,
                    claims_in_id_token=claims_in_id_token, jwks_max_age=jwks_max_age,
                    subject_types_supported=subject_types_supported, grant_hook=grant_hook,
                    claims_by_scope=claims_by_scope, registration_endpoint=registration_endpoint,
                    access_claims=access_claims, limiter=limiter, audit=audit)
