"""Codes, grants and tokens: RFC 6749 §4.1.3 and §6, RFC 7636 §4.6, RFC 9068, OIDC Core §3.1.3.

Store layout (every key has a TTL; every operation is O(1)).  Codes, ``gid``, ``jti`` and refresh
tokens carry their login's tag in front (``<t>~<random>``, :mod:`broker.store.slots`), and each
key below is ``tok:<kind>:{<t>}<rest>``: a login's code, grant and tokens share its broker
session's Redis Cluster slot, so its writes go in one round trip to one node.  A value
without a tag has the key it always had (``tok:<kind>:<rest>``).

``tok:code:<sha256(code)>``       the authorization code (single use: :meth:`Store.take`)
``tok:codegrant:<sha256(code)>``  which grant and first access token a code leads to, kept
                                  past the code so a replay can revoke them
``tok:grant:<gid>``               the grant (refresh-token family): client, sub, scopes,
                                  released claims, the client's ``sid`` and the broker
                                  session it belongs to; deleting it revokes the family
                                  and, at introspection and userinfo, every access token
                                  from it (:meth:`Grants.revoke_grants` at logout)
``tok:rt:<sha256(token)>``        the current refresh token of a family (single use)
``tok:rtused:<sha256(token)>``    a rotated refresh token: presenting it again revokes the family
``tok:deny:<jti>``                a revoked access token, until it would have expired

Codes and refresh tokens are stored only as SHA-256 hashes: a store dump yields nothing
that can be redeemed.  Nothing here logs a code or a token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from broker.store import Store, StoreError, slots
from broker.tokens.authorize import AuthorizationRequest
from broker.tokens.errors import OAuthError, invalid_grant, invalid_request
from broker.tokens.http import Params
from broker.tokens.jws import half_hash
from broker.tokens.keys import KeyRing
from broker.tokens.lifetimes import Lifetimes
from digione_verify import b64url_encode

if TYPE_CHECKING:
    from broker.registry.relying_parties import Client

#: ``audience(client, scopes) -> aud`` of an access token.
Audience = Callable[["Client", tuple[str, ...]], list[str]]
#: ``grant_hook(session, client_id, gid) -> bool``: may a grant of the broker session
#: ``session`` be issued to ``client_id``?  False once the session has ended.  Called inside
#: the store batch that writes the grant: its writes join it, and a read that must follow them
#: uses ``Store.get_after_writes`` (the same round trip).
GrantHook = Callable[[str, str, str], bool]

logger = logging.getLogger("broker.tokens.grants")

#: Claims the provider sets itself; released claims never override them.
#: ``events`` too, so that no ID token or access token can ever pass for a logout token.
PROTECTED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "auth_time", "nonce", "acr",
                              "amr", "azp", "sid", "at_hash", "c_hash", "client_id", "scope", "gid", "cnf",
                              "events"})
_VERIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Gate(Protocol):
    """A check read beside a grant's take and passed before it is used (broker.ratelimit.limits.LockGate)."""

    key: str

    def check(self, value: Any) -> None: ...


def issued_token_hash(token: str) -> str:
    """What a grant records of the access token it was issued with (``ath``): its SHA-256, base64url."""
    return b64url_encode(hashlib.sha256(token.encode()).digest())


def _key(kind: str, tagged: str, rest: str | None = None) -> str:
    """``tok:<kind>:{<tag of tagged>}<rest>`` (``rest`` defaults to ``tagged`` itself)."""
    return slots.key(f"tok:{kind}:", slots.tag_of(tagged), tagged if rest is None else rest)


#: A code record that says "replayed" (Grants._replayed): the code stays refused.
_REPLAYED = "replayed"


def code_key(code: str) -> str:
    """The key of an authorization code (its SHA-256; never the code)."""
    return _key("code", code, _h(code))


def grant_key(gid: str) -> str:
    return _key("grant", gid)


def _rt_key(kind: str, token: str) -> str:
    return _key(kind, token, _h(token))


def s256(verifier: str) -> str:
    """``BASE64URL(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2)."""
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def _param(form: Params, name: str) -> str | None:
    values = form.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise invalid_request(f"{name} repeated (RFC 6749 §3.2)")
    return values[0]


class Grants:
    """Issues codes and tokens and redeems grants.  Pure protocol over a :class:`Store`."""

    def __init__(self, *, issuer: str, store: Store, keyring: KeyRing, lifetimes: Lifetimes,
                 audience: Audience, claims_in_id_token: bool = True,
                 clock: Callable[[], float] = time.time, grant_hook: GrantHook | None = None,
                 claims_by_scope: Mapping[str, Iterable[str]] | None = None, audit: Any = None):
        self.issuer = issuer
        #: A broker.audit.ReleaseAudit: a redeemed code's release record joins the grant's batch.
        self.audit = audit
        self.store = store
        self.keyring = keyring
        self.lifetimes = lifetimes
        self.audience = audience
        self.claims_in_id_token = claims_in_id_token
        self.clock = clock
        self.grant_hook = grant_hook
        self.claims_by_scope: dict[str, frozenset[str]] | None = None
        if claims_by_scope is not None:
            self.claims_by_scope = {scope: frozenset(claims) for scope, claims in claims_by_scope.items()}

    # ------------------------------------------------------------------ the code (authorization response)

    def issue_code(self, authz: AuthorizationRequest, *, sub: str, claims: dict[str, Any],
                   access_claims: Mapping[str, Any] | None, auth_time: int, acr: str | None,
                   amr: list[str] | None, sid: str | None, session: str | None = None,
                   audit: str | None = None) -> str:
        """Store a fresh authorization code (RFC 6749 §4.1.2) and return it.

        What tokens will say is fixed now: ``sub``, the released ``claims`` (ID token,
        userinfo) and ``access_claims`` (the identity claims of access tokens: ``roles`` and
        ``role_assignments``, RFC 9068 §2.2.3.1) are computed from the identity at code
        time; the identity itself is not stored.
        ``sid`` is this client's session id (in its ID and access tokens); ``session`` the
        broker session's own id, kept with the code and the grant, never put in a token.
        """
        # On Redis Cluster, the broker session's login tag (its keys and these share a slot); for a
        # session id without one, a tag derived from it; a fresh one without a session.  Services see
        # codes and access tokens (gid, jti), and a tag shared by every service of a session (or one
        # derived from a NameID) would link a pupil across them: only a cluster, which needs one slot
        # per login, pays that (ADR 0015, "Known gap"); elsewhere the values carry no tag.
        tag = "" if not self.store.one_slot_batches else \
            slots.tag_of(session) or (slots.tag_of_hash(_h(session)) if session else slots.new_tag())
        code = slots.with_tag(tag, secrets.token_urlsafe(32))
        gid, jti = slots.with_tag(tag, secrets.token_urlsafe(16)), slots.with_tag(tag, secrets.token_urlsafe(16))
        lt = self.lifetimes
        self.store.put(code_key(code), {
            "c": authz.client_id, "r": authz.redirect_uri, "s": list(authz.scopes), "n": authz.nonce,
            "cc": authz.code_challenge, "sub": sub, "cl": claims, "ro": dict(access_claims or {}), "at": auth_time,
            "acr": acr, "amr": amr, "sid": sid, "ses": session, "gid": gid, "jti": jti,
            **({"au": audit} if audit is not None else {}),   # the release record: names and a reference only
        }, lt.code)
        # Outlives the code so that a replay (RFC 6749 §4.1.2, §10.5) can revoke what it produced.
        self.store.put(_key("codegrant", code, _h(code)), {"gid": gid, "jti": jti},
                       lt.code + lt.access_token + lt.leeway)
        return code

    # ------------------------------------------------------------------ grant_type=authorization_code

    def _take(self, key: str, gate: Gate | None) -> tuple[Any, float] | None:
        """Take ``key`` (with its time left); with a ``gate``, read it in the same round trip and pass it
        first: a refusal puts back what was taken, so the gate's answer leaves nothing spent."""
        if gate is None:
            return self.store.take_with_ttl(key)
        taken, value = self.store.take_beside(key, gate.key)
        try:
            gate.check(value)
        except BaseException:
            if taken is not None:
                self.store.put_back(key, *taken)
            raise
        return taken

    def authorization_code(self, client: Client, form: Params, *, gate: Gate | None = None) -> dict[str, Any]:
        """Redeem a code (RFC 6749 §4.1.3, RFC 7636 §4.6, OIDC Core §3.1.3.2).

        A code issued in a broker session is redeemed only while that session lasts: the
        ``grant_hook`` (the broker's sessions) is asked, and records the grant so that the
        session's logout can revoke it.  It is asked once the grant is written, and a
        refusal deletes it again before any token leaves: a logout that runs between the
        hook's answer and the grant's write would otherwise miss a grant written after it
        revoked the session's grants.  So a refused code leaves no grant behind.

        A redemption that fails instead (the store or the key ring: 503) leaves no grant either,
        and puts the code back for the time it had left: the client's retry is a redemption,
        not a replay (which would revoke the login).
        """
        code = _param(form, "code")
        if not code:
            raise invalid_request("code is missing (RFC 6749 §4.1.3)")
        redirect_uri = _param(form, "redirect_uri")
        verifier = _param(form, "code_verifier")
        taken = self._take(code_key(code), gate)  # single use, atomically (RFC 6749 §4.1.2)
        if taken is None:
            used = self.store.get(_key("codegrant", code, _h(code)))
            if used is not None:
                self._replayed(code, used, client.client_id)
            raise invalid_grant("authorization code is invalid or expired")
        record, left = taken
        if record.get(_REPLAYED):
            self.store.put(code_key(code), record, self.lifetimes.code)   # it stays burnt
            raise invalid_grant("authorization code was already used; its tokens are revoked")
        if record["c"] != client.client_id:  # RFC 6749 §4.1.3: code bound to the client
            logger.warning("authorization code presented by another client client_id=%s", client.client_id)
            raise invalid_grant("authorization code was issued to another client")
        if redirect_uri != record["r"]:  # RFC 6749 §4.1.3: identical redirect_uri
            raise invalid_grant("redirect_uri does not match the authorization request")
        challenge = record["cc"]
        if challenge is not None:  # RFC 7636 §4.6
            if verifier is None:
                raise invalid_grant("code_verifier is required (RFC 7636 §4.5)")
            if not (43 <= len(verifier) <= 128) or not set(verifier) <= _VERIFIER_CHARS:
                raise invalid_grant("code_verifier is malformed (RFC 7636 §4.1)")
            if not hmac.compare_digest(s256(verifier), challenge):
                raise invalid_grant("code_verifier does not match the code_challenge (RFC 7636 §4.6)")
        elif verifier is not None:  # RFC 9700 §4.8.2: a verifier without a challenge is a downgrade
            raise invalid_grant("code_verifier sent but no code_challenge was in the authorization request")
        elif client.public:  # unreachable (authorize requires PKCE of public clients), kept as a guard
            raise invalid_grant("public clients must use PKCE")

        now = self.clock()
        refresh = "refresh_token" in client.grant_types
        lt = self.lifetimes
        grant_exp = int(now) + (lt.refresh_family if refresh else lt.access_token + lt.leeway)
        gid = record["gid"]
        session = record.get("ses")
        grant = {"c": client.client_id, "sub": record["sub"], "s": record["s"], "cl": record["cl"],
                 "ro": record["ro"], "at": record["at"], "acr": record["acr"], "amr": record["amr"],
                 "sid": record["sid"], "ses": session, "exp": grant_exp}
        tokens: dict[str, Any] = {}
        allowed, audited = True, None
        try:
            # The grant, its refresh token and the hook's record and check: one round trip (the
            # hook's writes join the batch; its read goes after them, Store.get_after_writes).  Durable:
            # a replicated store confirms the grant reached a replica before its tokens leave (ADR 0015).
            with self.store.batch(durable=True):
                tokens = self._tokens(client, gid, grant, tuple(record["s"]), now, jti=record["jti"],
                                      nonce=record["n"], refresh=refresh)
                # The access token it was issued with, by hash: userinfo and introspection know it
                # without verifying its signature again (broker.tokens.access.active_access_token).
                grant["ath"] = issued_token_hash(tokens["access_token"])
                self.store.put(grant_key(gid), grant, grant_exp - int(now))
                # The release happens now (docs/decisions/0017-audit.md); queued before the hook's read
                # so that it goes in the same round trip, and taken back below if the code is refused.
                audited = self.audit.record(record["au"]) if self.audit is not None and record.get("au") else None
                if session is not None and self.grant_hook is not None:
                    allowed = self.grant_hook(session, client.client_id, gid)
        except BaseException:
            # 503 (or 500): the code is redeemable again, or the retry would be taken for a replay
            # and revoke the login.  The release record the batch added is already taken back
            # (Store.batch); a failed confirmation left the grant on the primary: deleted here.
            self._unwrite(client.client_id, grant_key(gid), *_refresh_keys(tokens),
                          put_back=(code_key(code), record, left))
            raise
        if not allowed:
            self._unwrite(client.client_id, grant_key(gid), *_refresh_keys(tokens), audited=audited)
            logger.info("code redeemed after its sign-in session ended client_id=%s", client.client_id)
            raise invalid_grant("the sign-in session has ended")
        return tokens

    def _replayed(self, code: str, used: dict[str, Any], client_id: str) -> NoReturn:
        """RFC 6749 §4.1.2 / §10.5: a code used twice revokes every token issued from it.

        The code's key is left burnt (a tombstone for the code's lifetime). A first redemption
        of it that is failing at this moment puts the code back only where nothing is
        (``Store.put_back``), so its retry meets the tombstone: a replay stays a replay.
        """
        self.store.put(code_key(code), {_REPLAYED: True}, self.lifetimes.code)
        self.revoke_grant(used["gid"])
        self.deny(used["jti"], self.clock() + self.lifetimes.access_token + self.lifetimes.leeway)
        logger.warning("authorization code replayed: grant revoked client_id=%s", client_id)
        raise invalid_grant("authorization code was already used; its tokens are revoked")

    def _unwrite(self, client_id: str, *keys: str, audited: str | None = None,
                 put_back: tuple[str, Any, float] | None = None) -> None:
        """Undo what a redemption did but never handed out, in one round trip: delete ``keys``
        (a grant, a refresh token, a tombstone), retract the release record ``audited`` (unless a
        flusher took it in the moment between) and :meth:`~Store.put_back` what it took
        (``(key, record, seconds it had left)``), unless a racing request wrote that key since.

        Best effort: if it fails, the request's own error stands and the keys expire with
        their TTLs (nobody holds their tokens); what was taken stays spent.
        """
        try:
            with self.store.batch():
                self.store.delete(*keys)
                if audited is not None and self.audit is not None:
                    self.audit.retract(audited)
                if put_back is not None:
                    self.store.put_back(*put_back)
        except StoreError:
            logger.warning("could not undo a refused or failed redemption client_id=%s", client_id)

    # ------------------------------------------------------------------ grant_type=refresh_token

    def refresh_token(self, client: Client, form: Params, *, gate: Gate | None = None) -> dict[str, Any]:
        """Redeem and rotate a refresh token (RFC 6749 §6, §10.4; RFC 9700 §4.14.2).

        A rotation that fails (the store or the key ring: 503) deletes the tombstone and the
        successor and puts the token back for the time it had left: the client's retry rotates
        it, where the tombstone would have revoked the family.
        """
        token = _param(form, "refresh_token")
        if not token:
            raise invalid_request("refresh_token is missing (RFC 6749 §6)")
        if "refresh_token" not in client.grant_types:
            raise OAuthError("unauthorized_client", "this client may not use refresh tokens")
        taken = self._take(_rt_key("rt", token), gate)  # claims the token atomically
        if taken is None:
            used = self.store.get(_rt_key("rtused", token))
            if used is not None:  # RFC 9700 §4.14.2: reuse of a rotated token revokes the family
                self.revoke_grant(used["gid"])
                logger.warning("rotated refresh token reused: family revoked client_id=%s", client.client_id)
                raise invalid_grant("refresh token was already used; the session is revoked")
            raise invalid_grant("refresh token is invalid, expired or revoked")
        record, left = taken
        gid = record["gid"]
        if record["c"] != client.client_id:  # RFC 6749 §6, §10.4: bound to its client
            # A refresh token in another client's hands has leaked: end the family.
            self.revoke_grant(gid)
            logger.warning("refresh token presented by another client: family revoked client_id=%s",
                           client.client_id)
            raise invalid_grant("refresh token was issued to another client")
        tokens: dict[str, Any] = {}
        try:
            grant = self.store.get(grant_key(gid))
            if grant is None or grant["c"] != client.client_id:
                raise invalid_grant("refresh token is invalid, expired or revoked")
            now = self.clock()
            scopes = tuple(grant["s"])
            requested = _param(form, "scope")
            if requested is not None:  # RFC 6749 §6: may narrow, never widen
                wanted = tuple(dict.fromkeys(requested.split()))
                if not set(wanted) <= set(scopes):
                    self.store.put(_rt_key("rtused", token), {"gid": gid}, max(int(grant["exp"] - now), 1))
                    raise OAuthError("invalid_scope", "scope exceeds the original grant (RFC 6749 §6)")
                scopes = wanted
            # The rotated token's tombstone and its successor: one round trip, confirmed (ADR 0015).
            with self.store.batch(durable=True):
                self.store.put(_rt_key("rtused", token), {"gid": gid}, max(int(grant["exp"] - now), 1))
                tokens = self._tokens(client, gid, grant, scopes, now,
                                      jti=slots.with_tag(slots.tag_of(gid), secrets.token_urlsafe(16)),
                                      nonce=None, refresh=True, refreshed=True)
        except OAuthError:   # an answer about the token: it stays spent
            raise
        except BaseException:
            # 503 (or 500): the token is as before, or the retry would meet its tombstone and
            # revoke the family.  A failed confirmation left the tombstone and the successor on
            # the primary: deleted here.
            self._unwrite(client.client_id, _rt_key("rtused", token), *_refresh_keys(tokens),
                          put_back=(_rt_key("rt", token), record, left))
            raise
        return tokens

    # ------------------------------------------------------------------ minting

    def _tokens(self, client: Client, gid: str, grant: dict[str, Any], scopes: tuple[str, ...], now: float, *,
                jti: str, nonce: str | None, refresh: bool, refreshed: bool = False) -> dict[str, Any]:
        lt = self.lifetimes
        iat = int(now)
        at_exp = min(iat + lt.access_token, int(grant["exp"]))  # never outlive the grant
        access_claims = {
            "iss": self.issuer, "sub": grant["sub"], "aud": self._aud(client, scopes),
            "client_id": client.client_id, "scope": " ".join(scopes), "iat": iat, "exp": at_exp, "jti": jti,
            "auth_time": grant["at"], "gid": gid,
        }
        if grant.get("acr"):
            access_claims["acr"] = grant["acr"]
        if grant.get("sid"):
            access_claims["sid"] = grant["sid"]
        for name, value in self.released_access_claims(grant, scopes).items():  # RFC 9068 §2.2.3.1
            access_claims.setdefault(name, value)  # never in place of a claim the token itself defines
        access_token = self.keyring.signing_key().sign(access_claims, typ="at+jwt")  # RFC 9068 §2.1
        response: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer",
                                    "expires_in": at_exp - iat, "scope": " ".join(scopes)}
        if "openid" in scopes:
            response["id_token"] = self.id_token(client, grant, iat=iat, nonce=nonce, access_token=access_token,
                                                 scopes=scopes)
        if refresh and (int(grant["exp"]) - iat) > 0:
            token = slots.with_tag(slots.tag_of(gid), secrets.token_urlsafe(32))   # the grant's slot
            ttl = min(lt.refresh_token, int(grant["exp"]) - iat)
            self.store.put(_rt_key("rt", token), {"gid": gid, "c": client.client_id}, ttl)
            response["refresh_token"] = token
        return response

    def _aud(self, client: Client, scopes: tuple[str, ...]) -> str | list[str]:
        aud = self.audience(client, scopes)
        return aud[0] if len(aud) == 1 else aud

    def id_token(self, client: Client, grant: dict[str, Any], *, iat: int, nonce: str | None,
                 access_token: str | None, scopes: Iterable[str] | None = None) -> str:
        """An ID token (OIDC Core §2, §3.1.3.6; §12.2 on refresh: same auth_time, no new nonce).

        ``scopes``: those granted for this token (a refresh may narrow them); default the grant's.
        """
        key = self.keyring.signing_key(_id_token_alg(client, self.keyring))
        claims: dict[str, Any] = {}
        if self.claims_in_id_token:
            claims.update(self.released_claims(grant, grant["s"] if scopes is None else scopes))
        claims.update({"iss": self.issuer, "sub": grant["sub"], "aud": client.client_id, "azp": client.client_id,
                       "iat": iat, "exp": iat + self.lifetimes.id_token, "auth_time": grant["at"]})
        if nonce is not None:
            claims["nonce"] = nonce
        if grant.get("acr"):
            claims["acr"] = grant["acr"]
        if grant.get("amr"):
            claims["amr"] = grant["amr"]
        if grant.get("sid"):
            claims["sid"] = grant["sid"]
        if access_token is not None:
            claims["at_hash"] = half_hash(access_token, key.alg)
        return key.sign(claims, typ="JWT")

    # ------------------------------------------------------------------ claims by scope

    def _narrowed(self, grant: dict[str, Any], scopes: Iterable[str]) -> bool:
        """Whether ``scopes`` leave out some of the grant's scopes (a narrowing refresh, RFC 6749 §6)."""
        return self.claims_by_scope is not None and not set(grant["s"]) <= set(scopes)

    def released_claims(self, grant: dict[str, Any], scopes: Iterable[str]) -> dict[str, Any]:
        """The grant's released claims that tokens granted ``scopes`` may carry.

        At the grant's own scopes: everything released at code time.  Narrowed by a refresh
        (RFC 6749 §6: "scope … MUST NOT include any scope not originally granted", and what a
        scope was left out for must not come anyway): only the claims that ``claims_by_scope``
        lists for a remaining scope; a claim no remaining scope lists is left out.
        """
        scopes = tuple(scopes)
        released = {k: v for k, v in (grant.get("cl") or {}).items() if k not in PROTECTED_CLAIMS}
        if self.claims_by_scope is None or not self._narrowed(grant, scopes):
            return released
        allowed = frozenset().union(*(self.claims_by_scope.get(scope, frozenset()) for scope in scopes))
        return {k: v for k, v in released.items() if k in allowed}

    def released_access_claims(self, grant: dict[str, Any], scopes: Iterable[str]) -> dict[str, Any]:
        """The access token's identity claims (``roles``, ``role_assignments``; RFC 9068 §2.2.3.1).

        After a narrowing refresh, only with ``roles``: nothing a left-out scope released.  A
        grant stored before access claims were a mapping held the bare ``roles`` value (a
        list of role objects or names): it is read as its role names and assignments.
        """
        scopes = tuple(scopes)
        if self._narrowed(grant, scopes) and "roles" not in scopes:
            return {}
        stored = grant.get("ro")
        if isinstance(stored, list):
            return _legacy_roles(stored)
        return {k: v for k, v in (stored or {}).items() if k not in PROTECTED_CLAIMS}

    # ------------------------------------------------------------------ revocation primitives

    def revoke_grant(self, gid: str) -> None:
        """End a grant: its refresh tokens stop working, its access tokens stop introspecting."""
        self.store.delete(grant_key(gid))

    def revoke_grants(self, gids: Iterable[str]) -> None:
        """End every grant in ``gids`` (a session's, at logout) in one store round trip.

        Their refresh tokens stop working and their access tokens are inactive at
        introspection and userinfo (each names its grant in ``gid``).  Services that verify
        access tokens offline learn it only by introspection (``digione_verify.Introspection``)
        or when the tokens expire.
        """
        by_tag: dict[str, list[str]] = {}   # a session's grants share its tag: one round trip
        for gid in dict.fromkeys(gids):
            by_tag.setdefault(slots.tag_of(gid), []).append(grant_key(gid))
        for tag, keys in by_tag.items():
            if tag or not self.store.one_slot_batches:
                self.store.delete(*keys)
            else:   # untagged grants on a cluster: each in a slot of its own
                for key in keys:
                    self.store.delete(key)

    def deny(self, jti: str, exp: float) -> None:
        """Deny-list one access token until it would have expired anyway."""
        ttl = int(exp - self.clock()) + self.lifetimes.leeway + 1
        if ttl > 0:
            self.store.put(_key("deny", jti), 1, ttl)

    def denied(self, jti: str) -> bool:
        return self.store.get(_key("deny", jti)) is not None

    def grant(self, gid: str) -> dict[str, Any] | None:
        return self.store.get(grant_key(gid))

    def token_state(self, jti: str, gid: str) -> tuple[bool, dict[str, Any] | None]:
        """``(deny-listed, grant)`` of an access token, in one round trip."""
        if self.store.one_slot_batches and (not slots.tag_of(gid) or slots.tag_of(jti) != slots.tag_of(gid)):
            # on a cluster, not one slot: two reads
            return self.denied(jti), self.grant(gid)
        denied, grant = self.store.get_many(_key("deny", jti), grant_key(gid))
        return denied is not None, grant

    def refresh_record(self, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The live refresh token's record and its grant, or ``None``."""
        record = self.store.get(_rt_key("rt", token))
        if record is None:
            return None
        grant = self.grant(record["gid"])
        return (record, grant) if grant is not None else None

    def revoke_refresh_token(self, token: str, client_id: str) -> bool:
        """RFC 7009 §2.1: revoke a refresh token of ``client_id`` and its whole grant."""
        record = self.store.get(_rt_key("rt", token))
        if record is None or record["c"] != client_id:
            return False
        self.store.delete(_rt_key("rt", token))
        self.revoke_grant(record["gid"])
        return True


def _refresh_keys(tokens: Mapping[str, Any]) -> list[str]:
    """The key of the refresh token in a token response, if it has one."""
    return [_rt_key("rt", tokens["refresh_token"])] if "refresh_token" in tokens else []


def _id_token_alg(client: Client, keyring: KeyRing) -> str:
    alg = getattr(client, "id_token_signed_response_alg", None)
    return alg if alg in keyring.algs else keyring.default_alg


def access_token_audience(resource_audiences: Iterable[str] = ()) -> Audience:
    """The default ``aud`` of access tokens: the client and the configured resource servers."""
    extra = tuple(resource_audiences)

    def audience(client: Client, scopes: tuple[str, ...]) -> list[str]:
        return [client.client_id, *extra]

    return audience


def _legacy_roles(roles: list[Any]) -> dict[str, Any]:
    """``roles`` and ``role_assignments`` of a grant that stored ``roles`` as role objects or names."""
    objects = [r for r in roles if isinstance(r, dict) and isinstance(r.get("role"), str)]
    names = [r for r in roles if isinstance(r, str)] + [r["role"] for r in objects]
    out: dict[str, Any] = {"roles": list(dict.fromkeys(names))}
    if objects:
        out["role_assignments"] = [{k: r[k] for k in ("role", "code", "school", "group") if k in r} for r in objects]
    return out
