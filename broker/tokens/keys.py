"""Signing keys: one key ring shared by every instance, rotated with pre-publication.

The ring is one document in the :class:`~broker.store.Store` (``tok:keyring``), so every
worker and instance on the same Redis sees the same keys.  Private keys are encrypted at
rest with AES-256-GCM under a key derived (HKDF-SHA256) from the deployment's master
secret; the document's AAD binds each ciphertext to its ``kid`` and ``alg``, so a key
cannot be swapped into another slot.  Public keys are stored as JWKs in the clear.

Each algorithm (ES256, RS256) has keys in three states:

``next``
    Published in the JWKS, never signs.  Verifiers that cache the JWKS learn it before
    it is used (pre-publication).
``active``
    Signs every new token of its algorithm; published.
``retiring``
    No longer signs; stays published until ``retire_at`` = rotation time + ``retention``,
    where ``retention`` must exceed the longest token lifetime plus the cache refresh
    interval, so every token it signed has expired before it leaves the JWKS.

:meth:`KeyRing.rotate` (the ``broker keys rotate`` command) promotes ``next`` to
``active`` only once it has been published for ``prepublish`` seconds, moves the old
``active`` key to ``retiring`` and publishes a fresh ``next`` key.  Retired keys are
dropped from the document at the next rotation and from the JWKS as soon as their
``retire_at`` passes.

Request handling never reads the store: each process keeps a snapshot (decrypted active
keys, published public keys, the JWKS bytes) and re-reads the document at most every
``refresh_interval`` seconds, decrypting again only when the document's version changed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.derive import derive_key
from broker.store import Store, StoreError
from broker.tokens.jws import SIGNING_ALGORITHMS, PublicKey, SigningKey, load_jwk

logger = logging.getLogger("broker.tokens.keys")

RING_KEY = "tok:keyring"
LOCK_KEY = "tok:keyring:lock"
#: The ring document's TTL in the store; rewritten at every rotation and every ``ensure``.
RING_TTL = 400 * 86400
_FORMAT = 1


class KeyRingError(RuntimeError):
    """A key-ring operation cannot be done (the message says what to do instead)."""


class KeyRingBusy(KeyRingError):
    """Another process is changing the ring right now."""


class RotationTooEarly(KeyRingError):
    """:meth:`KeyRing.rotate` without ``force``: a ``next`` key has not been published long enough.

    ``waiting`` holds ``(alg, kid, seconds published)`` of every such key; ``ready_at`` is
    when all of them will have been published ``prepublish`` seconds (epoch seconds).
    """

    def __init__(self, waiting: list[tuple[str, str, float]], prepublish: float, ready_at: float, now: float):
        alg, _, age = waiting[0]
        super().__init__(f"the next {alg} key has been published for {int(age)} s; it must be published "
                         f"{int(prepublish)} s before it signs (JWKS caches). Try again in "
                         f"{int(ready_at - now) + 1} s, or force the rotation.")
        self.waiting = waiting
        self.prepublish = prepublish
        self.ready_at = ready_at


def _derive(master_secret: bytes | str) -> AESGCM:
    secret = master_secret.encode() if isinstance(master_secret, str) else bytes(master_secret)
    if len(secret) < 16:
        raise KeyRingError("the key-ring master secret must be at least 16 bytes (32 random bytes recommended)")
    return AESGCM(derive_key(secret, b"keyring"))


class _Snapshot:
    __slots__ = ("version", "loaded_at", "signing", "published", "jwks_json", "doc")

    def __init__(self, version: int, loaded_at: float, signing: dict[str, SigningKey],
                 published: dict[str, PublicKey], jwks_json: bytes, doc: dict[str, Any]):
        self.version = version
        self.loaded_at = loaded_at
        self.signing = signing
        self.published = published
        self.jwks_json = jwks_json
        self.doc = doc


class KeyRing:
    """The signing keys of one issuer.

    :param store: where the ring document lives (shared Redis for several instances).
    :param master_secret: encrypts private keys at rest; the same on every instance, never
        in the repository (environment or a secrets file).
    :param algs: algorithms to keep keys for; the first is the default signing algorithm.
    :param refresh_interval: seconds between re-reads of the ring by each process.
    :param retention: seconds a retiring key stays published after it stopped signing.
    :param prepublish: seconds a ``next`` key must have been published before it may sign.
    :param clock: seconds since the epoch.
    """

    def __init__(self, store: Store, master_secret: bytes | str, *, algs: tuple[str, ...] = SIGNING_ALGORITHMS,
                 refresh_interval: float = 30.0, retention: float = 86400.0, prepublish: float = 3600.0,
                 clock: Callable[[], float] = time.time):
        unknown = set(algs) - set(SIGNING_ALGORITHMS)
        if unknown or not algs:
            raise KeyRingError(f"unsupported signing algorithms: {sorted(unknown)}")
        self.store = store
        self.algs = tuple(algs)
        self.default_alg = self.algs[0]
        self.refresh_interval = refresh_interval
        self.retention = retention
        self.prepublish = prepublish
        self._aead = _derive(master_secret)
        self._clock = clock
        self._snap: _Snapshot | None = None
        self._lock = threading.Lock()
        self._public_cache: dict[str, PublicKey] = {}

    # ------------------------------------------------------------------ reading (request path)

    def _snapshot(self) -> _Snapshot:
        snap = self._snap
        if snap is None or self._clock() - snap.loaded_at >= self.refresh_interval:
            snap = self.refresh(force=False)
        return snap

    def signing_key(self, alg: str | None = None) -> SigningKey:
        """The active key for ``alg`` (default: the first configured algorithm)."""
        alg = alg or self.default_alg
        key = self._snapshot().signing.get(alg)
        if key is None:
            raise KeyRingError(f"no active {alg} key")
        return key

    def public_key(self, kid: str) -> PublicKey | None:
        """A published key by ``kid`` (``next``, ``active`` or not yet retired), else ``None``."""
        return self._snapshot().published.get(kid)

    __call__ = public_key  # a key resolver for digione_verify.verify_jws

    def jwks(self) -> dict[str, Any]:
        """The published JWK Set (RFC 7517 §5)."""
        jwks: dict[str, Any] = json.loads(self._snapshot().jwks_json)
        return jwks

    def jwks_json(self) -> bytes:
        """The published JWK Set, serialized once per refresh."""
        return self._snapshot().jwks_json

    # ------------------------------------------------------------------ loading

    def refresh(self, *, force: bool = True) -> _Snapshot:
        """Re-read the ring from the store (creating it on first use).

        With ``force=False`` a snapshot that another thread refreshed while this one waited
        for the lock is used as is (one store read per interval, not one per thread).
        """
        with self._lock:
            now = self._clock()
            current = self._snap
            if not force and current is not None and now - current.loaded_at < self.refresh_interval:
                return current
            try:
                doc = self.store.get(RING_KEY)
                if doc is None:
                    if current is not None:  # the document vanished (flushed store): restore ours
                        logger.warning("key ring missing from the store; restoring this process's copy")
                        self.store.add(RING_KEY, current.doc, RING_TTL)
                        doc = self.store.get(RING_KEY) or current.doc
                    else:
                        self._create()
                        doc = self.store.get(RING_KEY)
                        if doc is None:
                            raise KeyRingError("the key ring could not be written to the store")
            except StoreError:
                if current is None:
                    raise
                logger.warning("key ring refresh failed (store unavailable); keeping the current keys")
                current.loaded_at = now
                return current
            snap = self._build(doc, now, current)
            self._snap = snap
            return snap

    def _build(self, doc: dict[str, Any], now: float, current: _Snapshot | None) -> _Snapshot:
        if doc.get("format") != _FORMAT:
            raise KeyRingError("unknown key-ring format")
        version = doc["version"]
        signing: dict[str, SigningKey] = {}
        if current is not None and current.version == version:
            signing = current.signing
        else:
            for rec in doc["keys"]:
                if rec["state"] == "active" and rec["alg"] in self.algs:
                    signing[rec["alg"]] = self._decrypt(rec)
        published: dict[str, PublicKey] = {}
        jwks = []
        for rec in doc["keys"]:
            if rec["state"] == "retiring" and rec["retire_at"] <= now:
                continue
            key = self._public_cache.get(rec["kid"])
            if key is None:
                key = self._public_cache[rec["kid"]] = load_jwk(rec["jwk"])
            published[rec["kid"]] = key
            jwks.append(rec["jwk"])
        for kid in set(self._public_cache) - {rec["kid"] for rec in doc["keys"]}:
            del self._public_cache[kid]
        body = json.dumps({"keys": jwks}, separators=(",", ":")).encode()
        return _Snapshot(version, now, signing, published, body, doc)

    def _encrypt(self, key: SigningKey) -> str:
        der = key.private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, der, f"{key.kid}|{key.alg}".encode())
        return base64.b64encode(nonce + sealed).decode()

    def _decrypt(self, rec: dict[str, Any]) -> SigningKey:
        raw = base64.b64decode(rec["enc"])
        aad = f"{rec['kid']}|{rec['alg']}".encode()
        try:
            der = self._aead.decrypt(raw[:12], raw[12:], aad)
        except (InvalidTag, ValueError):  # ValueError: a nonce too short (a truncated ciphertext)
            raise KeyRingError(f"cannot decrypt key {rec['kid']}: wrong master secret or tampered ring") from None
        private = serialization.load_der_private_key(der, password=None)
        if not isinstance(private, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ValueError(f"key {rec['kid']} is neither an EC nor an RSA key")
        return SigningKey(private, rec["alg"], kid=rec["kid"])

    def _record(self, key: SigningKey, state: str, now: float) -> dict[str, Any]:
        return {"kid": key.kid, "alg": key.alg, "state": state, "created": int(now),
                "activated": int(now) if state == "active" else None, "retire_at": None,
                "jwk": key.jwk, "enc": self._encrypt(key)}

    # ------------------------------------------------------------------ writing (admin path)

    def _create(self) -> None:
        now = self._clock()
        keys = []
        for alg in self.algs:
            keys.append(self._record(SigningKey.generate(alg), "active", now))
            keys.append(self._record(SigningKey.generate(alg), "next", now))
        doc = {"format": _FORMAT, "version": 1, "keys": keys}
        if self.store.add(RING_KEY, doc, RING_TTL):  # first writer wins across instances
            logger.info("created key ring (%s)", ", ".join(self.algs))

    def ensure(self) -> None:
        """Create the ring if the store has none, and renew its TTL.  Idempotent.

        Safe when many workers start at once: creation is first-writer-wins, and the TTL
        renewal is skipped if another process holds the ring's lock.
        """
        if self.store.get(RING_KEY) is None:
            self._create()
        else:
            try:
                self._locked_update(lambda doc, now: doc, bump=False)
            except KeyRingBusy:
                pass  # another process is renewing or rotating it
        self._snap = None
        self.refresh()

    def _locked_update(self, change: Callable[[dict[str, Any], float], dict[str, Any]], *,
                       bump: bool = True) -> dict[str, Any]:
        if not self.store.add(LOCK_KEY, {"pid": os.getpid()}, 60):
            raise KeyRingBusy("another key-ring change is in progress; try again in a minute")
        try:
            doc = self.store.get(RING_KEY)
            if doc is None:
                raise KeyRingError("no key ring in the store")
            doc = change(doc, self._clock())
            if bump:
                doc["version"] += 1
            self.store.put(RING_KEY, doc, RING_TTL)
            return doc
        finally:
            self.store.delete(LOCK_KEY)

    def rotate(self, *, force: bool = False) -> list[dict[str, Any]]:
        """Promote each ``next`` key to ``active``, retire the old ``active``, publish a new ``next``.

        Refuses (:class:`RotationTooEarly`, changing nothing) when a ``next`` key has been
        published for less than ``prepublish`` seconds, unless ``force`` (then verifiers that
        cache the JWKS without refreshing on an unknown ``kid`` may briefly reject new
        tokens).  Returns :meth:`describe` of the new ring.
        """
        def change(doc: dict[str, Any], now: float) -> dict[str, Any]:
            keys = [k for k in doc["keys"] if not (k["state"] == "retiring" and k["retire_at"] <= now)]
            waiting = [(k["alg"], k["kid"], now - k["created"]) for k in keys
                       if k["state"] == "next" and k["alg"] in self.algs and now - k["created"] < self.prepublish]
            if waiting and not force:
                ready_at = max(now - age for _, _, age in waiting) + self.prepublish
                raise RotationTooEarly(waiting, self.prepublish, ready_at, now)
            for alg in self.algs:
                nxt = next((k for k in keys if k["alg"] == alg and k["state"] == "next"), None)
                active = next((k for k in keys if k["alg"] == alg and k["state"] == "active"), None)
                if nxt is None:  # nothing pre-published: publish now, promote at the next rotation
                    keys.append(self._record(SigningKey.generate(alg), "next", now))
                    continue
                if active is not None:
                    active["state"] = "retiring"
                    active["retire_at"] = int(now + self.retention)
                nxt["state"] = "active"
                nxt["activated"] = int(now)
                keys.append(self._record(SigningKey.generate(alg), "next", now))
            doc["keys"] = keys
            return doc

        self._locked_update(change)
        self._snap = None
        self.refresh()
        return self.describe()

    def remove(self, kid: str) -> list[dict[str, Any]]:
        """Withdraw a key at once (compromise): it stops signing and leaves the JWKS.

        If it was ``active``, its algorithm's ``next`` key is promoted immediately.
        Tokens it signed stop verifying as soon as verifiers refresh their JWKS.
        """
        def change(doc: dict[str, Any], now: float) -> dict[str, Any]:
            victim = next((k for k in doc["keys"] if k["kid"] == kid), None)
            if victim is None:
                raise KeyRingError(f"no key {kid}")
            doc["keys"] = [k for k in doc["keys"] if k["kid"] != kid]
            if victim["state"] in ("active", "next"):
                alg = victim["alg"]
                if victim["state"] == "active":
                    nxt = next((k for k in doc["keys"] if k["alg"] == alg and k["state"] == "next"), None)
                    if nxt is not None:
                        nxt["state"], nxt["activated"] = "active", int(now)
                    else:
                        doc["keys"].append(self._record(SigningKey.generate(alg), "active", now))
                doc["keys"].append(self._record(SigningKey.generate(alg), "next", now))
            return doc

        self._locked_update(change)
        self._snap = None
        self.refresh()
        return self.describe()

    def describe(self) -> list[dict[str, Any]]:
        """The ring without key material: kid, alg, state, created, activated, retire_at."""
        snap = self._snapshot()
        return [{k: rec[k] for k in ("kid", "alg", "state", "created", "activated", "retire_at")}
                for rec in snap.doc["keys"]]

    def max_lifetime_covered(self) -> float:
        """The longest token lifetime this ring's retention can cover safely."""
        return self.retention - self.refresh_interval
