"""The verifier: access tokens (RFC 9068) and logout tokens (Back-Channel Logout 1.0) of one issuer.

:class:`TokenVerifier` checks signature, type, issuer, audience and times, then what this
request needs: scopes, roles and, where it matters, schools.  The DigiOne broker's access
tokens carry ``roles`` (role names: ``["teacher"]``) and ``role_assignments`` (where each is
held: ``[{"role": "teacher", "code": 2, "school": "03083", "group": "9A"}]``);
``verify(token, roles=("teacher",), schools=("03083",))`` accepts only a teacher *at 03083*.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from digione_verify.errors import (
    ExpiredToken,
    InsufficientScope,
    KeySetUnavailable,
    MalformedToken,
    MissingClaim,
    MissingRole,
    NotYetValid,
    ReplayedToken,
    RevokedToken,
    WrongAudience,
    WrongIssuer,
    WrongSchool,
    WrongTokenType,
)
from digione_verify.introspection import Introspection
from digione_verify.jose import SUPPORTED_ALGORITHMS, verify_jws
from digione_verify.jwks import JWKSCache, default_http_get, fetch_json

__all__ = ["BACKCHANNEL_LOGOUT_EVENT", "TokenVerifier", "roles_of", "schools_of"]

#: The event a logout token carries (Back-Channel Logout 1.0 §2.4).
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def _as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _nonempty_str(claims: Mapping[str, Any], name: str) -> bool:
    value = claims.get(name)
    return isinstance(value, str) and bool(value)


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MissingClaim(f"{name} is not a NumericDate")
    return value


class TokenVerifier:
    """Verify access tokens (RFC 9068 JWTs) issued by one issuer for one audience.

    :param issuer: the broker's issuer URL, exactly as in its discovery document.
    :param audience: this service's audience (a string, or several accepted alternatives).
    :param jwks_uri: where the keys are; by default read from
        ``{issuer}/.well-known/openid-configuration`` on first use (whose ``issuer`` must
        equal ``issuer``, OIDC Discovery §4.3).
    :param leeway: seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    :param required_scopes: scopes every token must carry (more per call via ``verify``).
    :param required_roles: roles every token must carry (in ``roles``).
    :param required_schools: schools (codes) one of which every token's roles must be held
        at (in ``role_assignments``); see :meth:`check_grants`.
    :param allowed_algs: accepted signature algorithms; only asymmetric ones can be named.
    :param typ: expected ``typ`` header (``at+jwt``; ``application/at+jwt`` is the same,
        RFC 9068 §4).  ``None`` skips the check and the RFC 9068 claim checks, e.g. to
        verify ID tokens (then ``audience`` is the client id).
    :param http_get: ``http_get(url) -> bytes``, to use another HTTP client (or a test double).
    :param clock: seconds since the epoch (``time.time``).
    :param introspection: an :class:`Introspection`: :meth:`verify` then also asks the broker
        whether the token is still active (:class:`RevokedToken` if not).  Without it a
        revoked token stays valid here until it expires.
    :param logout_token_max_age: seconds a logout token is accepted after its ``iat``.
    """

    def __init__(self, issuer: str, audience: str | Iterable[str], *, jwks_uri: str | None = None,
                 leeway: float = 30, required_scopes: Iterable[str] = (), required_roles: Iterable[str] = (),
                 required_schools: Iterable[str] = (),
                 allowed_algs: Iterable[str] = ("ES256", "RS256"), typ: str | None = "at+jwt",
                 http_get: Callable[[str], bytes] | None = None, clock: Callable[[], float] = time.time,
                 jwks_min_refresh: float = 30.0, jwks_max_age: float = 300.0,
                 introspection: Introspection | None = None, logout_token_max_age: float = 300.0):
        if not issuer:
            raise ValueError("issuer is required")
        self.issuer = issuer
        self.audiences = _as_tuple(audience)
        if not self.audiences:
            raise ValueError("audience is required: a token for another service must be refused")
        self.allowed_algs = frozenset(allowed_algs)
        bad = self.allowed_algs - SUPPORTED_ALGORITHMS
        if bad or not self.allowed_algs:
            raise ValueError(f"unsupported or symmetric algorithms: {sorted(bad) or 'none given'}")
        self.leeway = leeway
        self.required_scopes = _as_tuple(required_scopes)
        self.required_roles = _as_tuple(required_roles)
        self.required_schools = _as_tuple(required_schools)
        self.typ = typ.lower().removeprefix("application/") if typ else None
        self._clock = clock
        self._http_get = http_get or default_http_get
        self._jwks_uri = jwks_uri
        self.jwks = JWKSCache(self._resolve_jwks_uri, http_get=self._http_get,
                              min_refresh_interval=jwks_min_refresh, max_age=jwks_max_age, clock=clock)
        self.introspection = introspection
        self.logout_token_max_age = logout_token_max_age
        self._logout_jtis: dict[str, float] = {}  # jti -> until when it is remembered
        self._jti_lock = threading.Lock()

    def _resolve_jwks_uri(self) -> str:
        if self._jwks_uri is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = fetch_json(self._http_get, url)
            if doc.get("issuer") != self.issuer:  # OIDC Discovery §4.3
                raise KeySetUnavailable("discovery document names another issuer")
            if not isinstance(doc.get("jwks_uri"), str):
                raise KeySetUnavailable("discovery document has no jwks_uri")
            self._jwks_uri = doc["jwks_uri"]
        return self._jwks_uri

    def verify(self, token: str | bytes, *, scopes: Iterable[str] = (), roles: Iterable[str] = (),
               schools: Iterable[str] = ()) -> dict[str, Any]:
        """Return the token's claims if every check passes; else raise :class:`InvalidToken`.

        ``scopes``, ``roles`` and ``schools`` are needed besides the verifier's own
        ``required_*`` (:meth:`check_grants`): ``roles=("teacher",), schools=("03083",)``
        accepts a teacher at school 03083 and refuses a teacher elsewhere (:class:`WrongSchool`).

        :class:`KeySetUnavailable` means the keys could not be fetched, and
        :class:`IntrospectionUnavailable` that the broker could not be asked (answer 503).
        With ``introspection``, a token the broker no longer considers active (revoked,
        signed out) raises :class:`RevokedToken`; it is asked only about tokens that passed
        every local check.
        """
        header, claims = verify_jws(token, self.jwks.get, self.allowed_algs)
        if self.typ is not None:  # RFC 9068 §4: typ must be at+jwt (or application/at+jwt)
            typ = header.get("typ")
            if not isinstance(typ, str) or typ.lower().removeprefix("application/") != self.typ:
                raise WrongTokenType(f"typ is not {self.typ}")
        self.check_claims(claims)
        self.check_grants(claims, scopes=scopes, roles=roles, schools=schools)
        if self.introspection is not None:
            text = token.decode("ascii") if isinstance(token, bytes) else token  # ASCII: parse_jws checked it
            if not self.introspection.active(text):  # RFC 7662 §2.2
                raise RevokedToken("the token was revoked or its session has ended")
        return claims

    def verify_logout_token(self, token: str | bytes, *, client_id: str | Iterable[str] | None = None,
                            remember_jti: bool = True) -> dict[str, Any]:
        """Validate a logout token the broker POSTed to the ``backchannel_logout_uri``
        (OIDC Back-Channel Logout 1.0 §2.6) and return its claims; else :class:`InvalidToken`.

        The service then ends its sessions with that ``sid`` (or, without one, every session
        of that ``sub``) and answers 200; on :class:`InvalidToken` it answers 400 (§2.8).

        Checks, in the order of §2.6: the signature, with the broker's published keys, as for
        ID tokens; ``typ`` ``logout+jwt`` (§2.4: how a logout token is told from other JWTs);
        ``iss`` the issuer; ``aud`` containing ``client_id`` (default: this verifier's
        audience, i.e. build the verifier with the client id); ``iat`` present, not in the
        future and at most ``logout_token_max_age`` old; ``exp`` present and not past; ``jti``
        present; ``events`` an object with the back-channel-logout member, itself an object;
        ``sid`` and/or ``sub`` present (strings); no ``nonce``; and, with ``remember_jti``,
        a ``jti`` not accepted before by this verifier (step 7; one process — several
        instances behind a load balancer each remember their own).
        """
        header, claims = verify_jws(token, self.jwks.get, self.allowed_algs)
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != "logout+jwt":
            raise WrongTokenType("typ is not logout+jwt")
        if claims.get("iss") != self.issuer:
            raise WrongIssuer("iss is not the expected issuer")
        wanted = self.audiences if client_id is None else _as_tuple(client_id)
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in auds for a in wanted):
            raise WrongAudience("aud does not contain this client")
        now = self._clock()
        iat = _number(claims, "iat")
        if iat is None:
            raise MissingClaim("iat is required")
        if now + self.leeway < iat:
            raise NotYetValid("token was issued in the future (iat)")
        if now - iat > self.logout_token_max_age + self.leeway:
            raise ExpiredToken("logout token was issued too long ago (iat)")
        exp = _number(claims, "exp")
        if exp is None:
            raise MissingClaim("exp is required")
        if now > exp + self.leeway:
            raise ExpiredToken("token has expired")
        if not _nonempty_str(claims, "jti"):
            raise MissingClaim("jti is required")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
            raise MissingClaim("events must hold the back-channel logout event")
        for name in ("sid", "sub"):
            if name in claims and not _nonempty_str(claims, name):
                raise MissingClaim(f"{name} is not a string")
        if not (_nonempty_str(claims, "sid") or _nonempty_str(claims, "sub")):
            raise MissingClaim("sid or sub is required")
        if "nonce" in claims:
            raise MalformedToken("a logout token must not carry a nonce")
        if remember_jti:
            self._remember_logout_jti(claims["jti"], max(exp, iat + self.logout_token_max_age) + self.leeway, now)
        return claims

    def _remember_logout_jti(self, jti: str, until: float, now: float) -> None:
        with self._jti_lock:
            seen = self._logout_jtis.get(jti)
            if seen is not None and seen > now:
                raise ReplayedToken("this logout token was already received")
            if len(self._logout_jtis) >= 10_000:
                for stale in [k for k, t in self._logout_jtis.items() if t <= now]:
                    del self._logout_jtis[stale]
                while len(self._logout_jtis) >= 10_000:
                    del self._logout_jtis[next(iter(self._logout_jtis))]
            self._logout_jtis[jti] = until

    def check_claims(self, claims: Mapping[str, Any]) -> None:
        """The registered-claim checks of RFC 7519 §4.1 and RFC 9068 §4."""
        if claims.get("iss") != self.issuer:  # RFC 9068 §4 / RFC 7519 §4.1.1
            raise WrongIssuer("iss is not the expected issuer")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in auds for a in self.audiences):  # RFC 9068 §4 / RFC 7519 §4.1.3
            raise WrongAudience("aud does not contain this service")
        now = self._clock()
        exp = _number(claims, "exp")
        if exp is None:
            raise MissingClaim("exp is required")
        if now > exp + self.leeway:  # RFC 7519 §4.1.4
            raise ExpiredToken("token has expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and now + self.leeway < nbf:  # RFC 7519 §4.1.5
            raise NotYetValid("token is not valid yet (nbf)")
        iat = _number(claims, "iat")
        if iat is not None and now + self.leeway < iat:  # RFC 7519 §4.1.6 (issued in the future)
            raise NotYetValid("token was issued in the future (iat)")
        if self.typ == "at+jwt":  # RFC 9068 §2.2: required claims
            if iat is None:
                raise MissingClaim("iat is required")
            for name in ("sub", "client_id", "jti"):
                if not _nonempty_str(claims, name):
                    raise MissingClaim(f"{name} is required")

    def check_grants(self, claims: Mapping[str, Any], *, scopes: Iterable[str] = (), roles: Iterable[str] = (),
                     schools: Iterable[str] = ()) -> None:
        """What this request needs: scopes (RFC 9068 §2.2.3), roles (RFC 9068 §2.2.3.1) and schools.

        * every scope of ``required_scopes`` and ``scopes`` is in ``scope``
          (:class:`InsufficientScope`);
        * every role of ``required_roles`` and ``roles`` is in ``roles``, a JSON array of role
          names (:class:`MissingRole`); anything but a string in it counts for nothing;
        * with ``required_schools`` or ``schools``: each required role is held at one of those
          schools, by an entry of ``role_assignments`` with that ``role`` and ``school``; with
          no role required, some role is (:class:`WrongSchool`).  The schools are
          alternatives (a teacher at either school passes), as the audiences are.
        """
        need_scopes = self.required_scopes + _as_tuple(scopes)
        if need_scopes:
            scope = claims.get("scope")
            have = set(scope.split()) if isinstance(scope, str) else set()
            missing = [s for s in need_scopes if s not in have]
            if missing:
                raise InsufficientScope(f"scope {' '.join(missing)} is required")
        need_roles = self.required_roles + _as_tuple(roles)
        if need_roles:
            have_roles = roles_of(claims)
            missing = [r for r in need_roles if r not in have_roles]
            if missing:
                raise MissingRole(f"role {' '.join(missing)} is required")
        need_schools = frozenset(self.required_schools + _as_tuple(schools))
        if need_schools:
            for role in need_roles or (None,):
                if not schools_of(claims, role) & need_schools:
                    what = f"role {role}" if role is not None else "a role"
                    raise WrongSchool(f"{what} at school {' or '.join(sorted(need_schools))} is required")


def roles_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The role names of ``claims["roles"]`` (an array of strings, or one string); else none."""
    raw = claims.get("roles")
    if isinstance(raw, str):
        return frozenset((raw,))
    if isinstance(raw, list):
        return frozenset(r for r in raw if isinstance(r, str))
    return frozenset()


def schools_of(claims: Mapping[str, Any], role: str | None = None) -> frozenset[str]:
    """The school codes at which ``claims["role_assignments"]`` says the person holds ``role``
    (any role when ``None``).  Entries that are not objects with a string ``role`` and
    ``school`` (a role at the education provider has no school) count for nothing."""
    raw = claims.get("role_assignments")
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(entry["school"] for entry in raw
                     if isinstance(entry, dict) and isinstance(entry.get("school"), str)
                     and isinstance(entry.get("role"), str) and (role is None or entry["role"] == role))
