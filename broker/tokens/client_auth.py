"""Client authentication at the token, introspection and revocation endpoints.

Methods (OIDC Core §9, RFC 6749 §2.3):

``client_secret_basic``
    ``Authorization: Basic`` with the form-urlencoded id and secret (RFC 6749 §2.3.1).
``client_secret_post``
    ``client_id`` and ``client_secret`` in the form body (RFC 6749 §2.3.1).
``private_key_jwt``
    a JWT signed with the client's registered key (``jwks`` or ``jwks_uri``) in
    ``client_assertion`` (RFC 7523 §2.2, §3; OIDC Core §9).
``none``
    a public client names itself with ``client_id``; it proves nothing, so the grants
    make up for it (PKCE is mandatory for its codes; refresh tokens rotate).

A client must use the method it registered (OIDC Dynamic Registration §2
``token_endpoint_auth_method``) and exactly one method per request (RFC 6749 §2.3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from broker.store import Store
from broker.tokens.errors import OAuthError, invalid_client, invalid_request
from broker.tokens.http import Params, Request, first
from digione_verify import (
    InvalidToken,
    JWKSCache,
    KeySetUnavailable,
    PublicKey,
    decode_json_object,
    load_jwks,
    parse_jws,
    verify_signature,
)

if TYPE_CHECKING:
    from broker.registry.relying_parties import Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Algorithms accepted in client assertions: asymmetric only (never ``none`` or ``HS*``).
ASSERTION_ALGS = ("ES256", "ES384", "ES512", "RS256", "PS256")


class ClientAuthenticator:
    """Authenticates clients; one instance per provider (it caches client key sets).

    :param clients: anything with ``.client(client_id)``.
    :param store: remembers client-assertion ``jti`` values (replay protection).
    :param issuer: the provider's issuer (an accepted assertion ``aud``).
    :param token_endpoint: the token endpoint URL (the preferred assertion ``aud``).
    :param http_get: fetches a client's ``jwks_uri`` (``url -> bytes``).
    :param limiter: counts wrong secrets per client and source, refusing the one over the
        count (:meth:`broker.ratelimit.limits.RateLimiter.failed_secret`); ``None``: no limit.
    """

    def __init__(self, clients: Any, store: Store, *, issuer: str, token_endpoint: str,
                 http_get: Callable[[str], bytes] | None = None, clock: Callable[[], float] = time.time,
                 leeway: int = 30, max_assertion_lifetime: int = 600, limiter: Any = None):
        self.clients = clients
        self.limiter = limiter
        self.store = store
        self.issuer = issuer
        self.token_endpoint = token_endpoint
        self.http_get = http_get
        self.clock = clock
        self.leeway = leeway
        self.max_assertion_lifetime = max_assertion_lifetime
        self._static: dict[str, tuple[int, dict[str, PublicKey]]] = {}
        self._remote: dict[tuple[str, str], JWKSCache] = {}

    def authenticate(self, request: Request, *, endpoint_url: str, allow_public: bool = True) -> Client:
        """Return the authenticated client or raise :class:`OAuthError` (``invalid_client``, 401)."""
        form = request.form
        authorization = request.header("authorization") or ""
        basic = authorization[:6].lower() == "basic "
        has_secret = "client_secret" in form
        has_assertion = "client_assertion" in form or "client_assertion_type" in form
        if basic + has_secret + has_assertion > 1:  # RFC 6749 §2.3: one method per request
            raise invalid_request("more than one client authentication method (RFC 6749 §2.3)")
        for name in ("client_id", "client_secret", "client_assertion", "client_assertion_type"):
            if len(form.get(name, ())) > 1:
                raise invalid_request(f"{name} repeated (RFC 6749 §3.2)")
        form_client_id = first(form, "client_id")

        if basic:
            client_id, secret = _parse_basic(authorization)
            if form_client_id is not None and form_client_id != client_id:
                raise invalid_client("client_id in the body differs from the Authorization header", basic=True)
            client = self._registered(client_id, "client_secret_basic", basic=True)
            return self._check_secret(client, secret, request, basic=True)
        if has_secret:
            client = self._registered(form_client_id, "client_secret_post")
            return self._check_secret(client, form["client_secret"][0], request)
        if has_assertion:
            return self._private_key_jwt(form, form_client_id, endpoint_url)
        if not form_client_id:
            raise invalid_client("no client authentication (RFC 6749 §2.3)")
        client = self._registered(form_client_id, "none")
        if not allow_public:
            raise invalid_client("public clients cannot use this endpoint")
        return client

    def _check_secret(self, client: Client, secret: str, request: Request, *, basic: bool = False) -> Client:
        """``client`` if ``secret`` is its secret; a wrong one is counted per client and source (429 when over)."""
        if client.check_secret(secret):
            return client
        if self.limiter is not None:
            self.limiter.failed_secret(client.client_id, request.remote_addr, request.header("x-forwarded-for"))
        raise invalid_client("client authentication failed", basic=basic)

    def _registered(self, client_id: str | None, method: str, *, basic: bool = False) -> Client:
        client: Client | None = self.clients.client(client_id) if client_id else None
        if client is None:
            raise invalid_client("unknown client", basic=basic)
        if client.token_endpoint_auth_method != method:  # OIDC Registration §2
            raise invalid_client(f"client is registered for {client.token_endpoint_auth_method}, not {method}",
                                 basic=basic)
        return client

    # ------------------------------------------------------------------ private_key_jwt

    def _private_key_jwt(self, form: Params, form_client_id: str | None, endpoint_url: str) -> Client:
        """RFC 7523 §3 and OIDC Core §9, check by check."""
        if first(form, "client_assertion_type") != ASSERTION_TYPE:  # RFC 7523 §2.2
            raise invalid_client("client_assertion_type must be " + ASSERTION_TYPE)
        assertion = first(form, "client_assertion") or ""
        try:
            header, payload, signing_input, signature = parse_jws(assertion)
        except InvalidToken as exc:
            raise invalid_client(f"client_assertion: {exc.reason}") from None
        alg = header["alg"]
        if alg not in ASSERTION_ALGS:  # RFC 8725 §3.1: never none, never HMAC
            raise invalid_client(f"client_assertion alg {alg!r} is not accepted")
        try:  # before the signature is checked: bounded in size and depth like the header
            claims = decode_json_object(payload, "client_assertion payload")
        except InvalidToken as exc:
            raise invalid_client(exc.reason) from None
        iss, sub = claims.get("iss"), claims.get("sub")
        if not isinstance(iss, str) or iss != sub:  # RFC 7523 §3 items 1-2 (OIDC Core §9)
            raise invalid_client("client_assertion iss and sub must both be the client_id")
        if form_client_id is not None and form_client_id != iss:  # RFC 7521 §4.2
            raise invalid_client("client_id differs from the assertion's iss")
        client = self._registered(iss, "private_key_jwt")

        key = self._client_key(client, header.get("kid"), alg)
        try:
            verify_signature(alg, key, signing_input, signature)  # RFC 7523 §3 item 9
        except InvalidToken as exc:
            raise invalid_client(f"client_assertion: {exc.reason}") from None

        aud = claims.get("aud")  # RFC 7523 §3 item 3: our identity must be an audience
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not {self.token_endpoint, self.issuer, endpoint_url} & set(a for a in auds if isinstance(a, str)):
            raise invalid_client("client_assertion aud must be the token endpoint or the issuer")
        now = self.clock()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):  # RFC 7523 §3 item 4
            raise invalid_client("client_assertion needs exp")
        if now > exp + self.leeway:
            raise invalid_client("client_assertion has expired")
        if exp - now > self.max_assertion_lifetime:
            raise invalid_client(f"client_assertion lives longer than {self.max_assertion_lifetime} s")
        for name in ("nbf", "iat"):  # RFC 7523 §3 items 5-6
            value = claims.get(name)
            if value is not None and (not isinstance(value, (int, float)) or value > now + self.leeway):
                raise invalid_client(f"client_assertion {name} is in the future")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:  # OIDC Core §9: jti required
            raise invalid_client("client_assertion needs jti")
        digest = hashlib.sha256(jti.encode()).hexdigest()
        ttl = int(exp - now + self.leeway) + 1
        if not self.store.add(f"tok:jti:{client.client_id}:{digest}", 1, max(ttl, 1)):  # RFC 7523 §3 item 7
            raise invalid_client("client_assertion was already used (jti replay)")
        return client

    def _client_key(self, client: Client, kid: Any, alg: str) -> PublicKey:
        if client.jwks:
            cached = self._static.get(client.client_id)
            if cached is None or cached[0] != id(client.jwks):
                cached = self._static[client.client_id] = (id(client.jwks), load_jwks(client.jwks))
            keys = cached[1]
            key = keys.get(kid) if isinstance(kid, str) else _only(keys, alg)
        elif client.jwks_uri:
            cache = self._remote.get((client.client_id, client.jwks_uri))
            if cache is None:
                cache = self._remote[(client.client_id, client.jwks_uri)] = JWKSCache(
                    client.jwks_uri, http_get=self.http_get)
            try:
                key = cache.get(kid) if isinstance(kid, str) else _only(cache.all(), alg)
            except KeySetUnavailable:
                raise OAuthError("invalid_client", "the client's jwks_uri could not be fetched", status=401) from None
        else:
            key = None
        if key is None:
            raise invalid_client("no registered key of the client matches the assertion's kid")
        return key


def _only(keys: dict[str, PublicKey], alg: str) -> PublicKey | None:
    """Without a ``kid``, the client's key is unambiguous only if exactly one fits ``alg``."""
    family = "EC" if alg.startswith("ES") else "RSA"
    fitting = [k for k in keys.values() if k.kty == family and k.alg in (None, alg)]
    return fitting[0] if len(fitting) == 1 else None


def _parse_basic(authorization: str) -> tuple[str, str]:
    """RFC 7617 credentials whose parts are form-urlencoded (RFC 6749 §2.3.1)."""
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("malformed Basic credentials", basic=True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id:
        raise invalid_client("malformed Basic credentials", basic=True)
    return unquote_plus(client_id), unquote_plus(secret)
