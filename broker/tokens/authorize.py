"""Authorization requests: RFC 6749 §4.1.1, RFC 7636 §4.3 and OpenID Connect Core §3.1.2.

:func:`validate` turns the request parameters into an :class:`AuthorizationRequest` or
refuses them.  The order of the checks is the security property:

1. ``client_id`` and ``redirect_uri`` first.  While either is missing, repeated, unknown or
   not registered (exact string comparison), nothing can be redirected: the error is
   *shown* to the person (:class:`broker.errors.UnknownClient`,
   :class:`broker.errors.InvalidRedirectUri`), whatever else is wrong with the request
   (RFC 6749 §3.1.2.4, §4.1.2.1; RFC 9700 §4.1).
2. Only then every other check, whose failure is *redirected* to that validated URI as
   ``error``/``error_description``/``state``/``iss`` (:class:`RedirectError`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from broker.errors import BrokerError, InvalidRedirectUri, UnknownClient
from broker.tokens.errors import OAuthError
from digione_verify import InvalidToken, PublicKey, verify_jws

#: ``prompt`` values (OIDC Core §3.1.2.1).
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
#: ``acr_values`` entries of this form name the IdP: ``urn:digione:idp:<tenant>[/<idp>]``.
IDP_ACR_PREFIX = "urn:digione:idp:"
#: ... and of this form a school, ``urn:digione:school:<school code or OID>`` (``idp_hint=school:<…>``).
SCHOOL_ACR_PREFIX = "urn:digione:school:"
_IDP_HINT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9][A-Za-z0-9._:-]{0,127})?"
                       r"|school:[0-9][0-9.]{0,63})$")
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}\Z")
_MAX_AGE = re.compile(r"^[0-9]{1,10}\Z")  # ASCII digits only (str.isdigit also accepts "²")
_SINGLE = ("response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "prompt",
           "max_age", "login_hint", "ui_locales", "acr_values", "id_token_hint", "response_mode", "idp_hint",
           "display", "claims_locales")
_LIMITS = {"state": 2048, "nonce": 512, "login_hint": 256, "ui_locales": 128, "acr_values": 1024,
           "idp_hint": 200, "scope": 1024, "id_token_hint": 16 * 1024}


class RedirectError(OAuthError):
    """An error to redirect to the (validated) ``redirect_uri`` (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str | None,
                 client_id: str):
        super().__init__(error, description, status=302)
        self.redirect_uri = redirect_uri
        self.state = state
        self.client_id = client_id


@dataclasses.dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request; JSON-able through :meth:`to_state`."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    login_hint: str | None = None
    ui_locales: str | None = None
    acr_values: tuple[str, ...] = ()
    idp_hint: str | None = None
    id_token_hint_sub: str | None = None

    def to_state(self) -> dict[str, Any]:
        """A JSON-able dict (for SATOSA's state): only what the response needs."""
        # The fields are strings, ints and tuples of strings: no deep copy (dataclasses.asdict) is needed.
        values = ((name, getattr(self, name)) for name in _REQUEST_FIELDS)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values if v not in (None, ())}

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> AuthorizationRequest:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                                  if k in _REQUEST_FIELD_SET}
        return cls(**values)

    def decoration(self) -> dict[str, Any]:
        """What the login path needs to know (the ``digione.authn`` context decoration)."""
        return {"prompt": list(self.prompt), "max_age": self.max_age, "login_hint": self.login_hint,
                "idp_hint": self.idp_hint, "acr_values": list(self.acr_values), "ui_locales": self.ui_locales,
                "client_id": self.client_id, "id_token_hint_sub": self.id_token_hint_sub}

    @property
    def force_authn(self) -> bool:
        """Whether an upstream IdP must re-authenticate rather than reuse its own session.

        ``prompt=login``, and any ``max_age``: the broker reuses its own SSO session only if
        it is young enough, but an IdP's session age is unknown, and an IdP that answers from
        its session reports its old ``AuthnInstant``, which :meth:`Provider.authorization_response`
        would then refuse as older than ``max_age`` (OIDC Core §3.1.2.1).
        """
        return "login" in self.prompt or self.max_age is not None


_REQUEST_FIELDS = tuple(field.name for field in dataclasses.fields(AuthorizationRequest))
_REQUEST_FIELD_SET = frozenset(_REQUEST_FIELDS)


def _single(params: Mapping[str, Sequence[str]], name: str) -> tuple[str | None, bool]:
    """The value of a parameter and whether it was repeated (RFC 6749 §3.1: at most once)."""
    values = params.get(name)
    if not values:
        return None, False
    if isinstance(values, str):
        return values, False
    return values[0], len(values) > 1


def idp_hint_from(param: str | None, acr_values: Iterable[str]) -> str | None:
    """The IdP the request names: the ``idp_hint`` parameter, else ``urn:digione:idp:...`` in ``acr_values``."""
    if param:
        return param
    for acr in acr_values:
        if acr.startswith(IDP_ACR_PREFIX) and len(acr) > len(IDP_ACR_PREFIX):
            return acr[len(IDP_ACR_PREFIX):]
        if acr.startswith(SCHOOL_ACR_PREFIX) and len(acr) > len(SCHOOL_ACR_PREFIX):
            return "school:" + acr[len(SCHOOL_ACR_PREFIX):]
    return None


def validate(params: Mapping[str, Sequence[str]], *, clients: Any, scopes_supported: Iterable[str],
             id_token_hint: Callable[[str, str], dict[str, Any]]) -> AuthorizationRequest:
    """Validate an authorization request.

    :param params: the request parameters (query for GET, form for POST).
    :param clients: anything with ``.client(client_id) -> Client | None``.
    :param scopes_supported: the scopes the provider offers.
    :param id_token_hint: ``(token, client_id) -> claims``: verifies an ID token we issued,
        raising :class:`digione_verify.InvalidToken`.
    :raises BrokerError: shown to the person (client or redirect URI not trustworthy).
    :raises RedirectError: redirected to the validated ``redirect_uri``.
    """
    # 1. The client and its redirect URI: errors here are shown, never redirected.
    client_id, repeated = _single(params, "client_id")
    if repeated:
        raise BrokerError("client_id repeated (RFC 6749 §3.1)", message_key="error.unknown_client")
    if not client_id:
        raise UnknownClient("client_id is missing (RFC 6749 §4.1.1)")
    client = clients.client(client_id)
    if client is None:
        raise UnknownClient("client_id is not registered (RFC 6749 §4.1.2.1)")
    redirect_uri, repeated = _single(params, "redirect_uri")
    if repeated:
        raise InvalidRedirectUri("redirect_uri repeated (RFC 6749 §3.1)")
    if not redirect_uri:
        raise InvalidRedirectUri("redirect_uri is missing (OIDC Core §3.1.2.1)")
    if redirect_uri not in client.redirect_uris:  # exact match: RFC 6749 §3.1.2.3, RFC 9700 §4.1.3
        raise InvalidRedirectUri("redirect_uri is not registered for this client (RFC 6749 §3.1.2.4)")

    # 2. Everything else is redirected to the validated URI.
    state, state_repeated = _single(params, "state")

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(error, description, redirect_uri=redirect_uri,
                             state=None if state_repeated else state, client_id=client_id)

    for name in _SINGLE:
        if _single(params, name)[1]:
            raise fail("invalid_request", f"{name} repeated (RFC 6749 §3.1)")
    one = {name: _single(params, name)[0] for name in _SINGLE}
    for name, limit in _LIMITS.items():
        value = one.get(name)
        if value is not None and len(value) > limit:
            raise fail("invalid_request", f"{name} longer than {limit} characters")
    # OIDC Core §6.1, §6.2 and §7.2.1: request objects and registration are not supported,
    # so no request object (signed with alg=none or anything else) is ever parsed.
    if "request" in params:
        raise fail("request_not_supported", "request objects are not supported (OIDC Core §6.1)")
    if "request_uri" in params:
        raise fail("request_uri_not_supported", "request_uri is not supported (OIDC Core §6.2)")
    if "registration" in params:
        raise fail("registration_not_supported", "registration is not supported (OIDC Core §7.2.1)")

    response_type = one["response_type"]
    if not response_type:
        raise fail("invalid_request", "response_type is missing (RFC 6749 §4.1.1)")
    if response_type != "code":  # RFC 6749 §4.1.1, OIDC Core §3.1.2.1: code flow only
        raise fail("unsupported_response_type", "only response_type=code is supported")
    if one["response_mode"] not in (None, "query"):  # OAuth 2.0 Multiple Response Types §2.1
        raise fail("invalid_request", "only response_mode=query is supported")
    if "authorization_code" not in client.grant_types:  # RFC 6749 §4.1.2.1 unauthorized_client
        raise fail("unauthorized_client", "this client may not use the authorization code grant")

    requested = (one["scope"] or "").split()
    if "openid" not in requested:  # OIDC Core §3.1.2.1: scope MUST contain openid
        raise fail("invalid_scope", "scope must contain openid (OIDC Core §3.1.2.1)")
    allowed = set(scopes_supported) & ({"openid"} | set(client.policy.scopes))
    scopes = tuple(dict.fromkeys(s for s in requested if s in allowed))  # RFC 6749 §3.3: may narrow

    # RFC 7636 §4.3/§4.4.1 and RFC 9700 §2.1.1: S256 only; required for public clients.
    challenge, method = one["code_challenge"], one["code_challenge_method"]
    if challenge is None:
        if method is not None:
            raise fail("invalid_request", "code_challenge_method without code_challenge (RFC 7636 §4.3)")
        if client.public:
            raise fail("invalid_request", "public clients must use PKCE with S256 (RFC 7636 §4.4.1)")
    else:
        if method != "S256":  # an absent method means plain (RFC 7636 §4.3): refused too
            raise fail("invalid_request", "code_challenge_method must be S256 (plain is not supported)")
        if not _S256_CHALLENGE.fullmatch(challenge):
            raise fail("invalid_request", "code_challenge is not a base64url SHA-256 (RFC 7636 §4.2)")

    prompt = tuple((one["prompt"] or "").split())
    unknown = set(prompt) - PROMPTS
    if unknown:
        raise fail("invalid_request", "unsupported prompt value (OIDC Core §3.1.2.1)")
    if "none" in prompt and len(prompt) > 1:
        raise fail("invalid_request", "prompt=none cannot be combined (OIDC Core §3.1.2.1)")

    max_age = None
    if one["max_age"] is not None:
        if not _MAX_AGE.fullmatch(one["max_age"]):
            raise fail("invalid_request", "max_age must be a non-negative integer (OIDC Core §3.1.2.1)")
        max_age = int(one["max_age"])

    acr_values = tuple((one["acr_values"] or "").split())
    idp_hint = idp_hint_from(one["idp_hint"], acr_values)
    if idp_hint is not None and not _IDP_HINT.fullmatch(idp_hint):
        raise fail("invalid_request", "idp_hint must be <tenant>, <tenant>/<idp> or school:<code>")

    hint_sub = None
    if one["id_token_hint"]:
        try:
            hint_sub = id_token_hint(one["id_token_hint"], client_id).get("sub")
        except InvalidToken as exc:
            raise fail("invalid_request", f"id_token_hint is not valid: {exc.reason}") from None

    return AuthorizationRequest(
        client_id=client_id, redirect_uri=redirect_uri, scopes=scopes, state=state, nonce=one["nonce"],
        code_challenge=challenge, prompt=prompt, max_age=max_age, login_hint=one["login_hint"],
        ui_locales=one["ui_locales"], acr_values=acr_values, idp_hint=idp_hint, id_token_hint_sub=hint_sub)


def check_id_token_hint(token: str, client_id: str | None, *, issuer: str,
                        resolve_key: Callable[[str], PublicKey | None], algs: Iterable[str]) -> dict[str, Any]:
    """Verify an ID token we issued, used as a hint (OIDC Core §3.1.2.1; RP-Initiated Logout §2).

    Signature with one of our published keys (so ``alg=none`` and HMAC forgeries fail, RFC
    8725 §3.1), ``iss`` is us, ``aud`` contains ``client_id`` (when given), and it is not an
    access token (``typ`` ``at+jwt``) nor a logout token (``typ`` ``logout+jwt``, or an
    ``events`` claim: Back-Channel Logout 1.0 §2.4) — our ID tokens are typed ``JWT``.
    ``exp`` is not checked: an expired ID token is still a valid hint.
    """
    header, claims = verify_jws(token, resolve_key, algs)
    typ = str(header.get("typ", "JWT")).lower().removeprefix("application/")
    if typ == "at+jwt":
        raise InvalidToken("an access token is not an ID token")
    if typ != "jwt" or "events" in claims:
        raise InvalidToken("not an ID token (typ)")
    if claims.get("iss") != issuer:
        raise InvalidToken("not issued by this provider")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id is not None and client_id not in auds:
        raise InvalidToken("not issued to this client")
    if not isinstance(claims.get("sub"), str):
        raise InvalidToken("no sub")
    return claims
