"""Sealing the login flow into its cookie: AES-256-GCM, with its age inside.

SATOSA keeps a login's state in a cookie encrypted with AES-CBC and no integrity
check, compressed twice with LZMA (about 15 ms per encoding).  Ours is AES-256-GCM
(an AEAD: any change to the cookie makes opening fail) over compact JSON, with
the seal time inside the sealed payload so an old cookie is refused even if the
browser kept it.  The key is derived (HKDF) from the master secret that every
instance shares, so any instance can open a flow another sealed.

Format: ``v1.`` + base64url(nonce(12) || ciphertext || tag(16)); the cookie name
is bound as associated data, so a value cannot be moved to another cookie.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.derive import derive_key
from broker.login.flow import LoginFlow

_PREFIX = "v1."
_MAX_COOKIE = 8192


class SealError(ValueError):
    """The cookie was tampered with, is malformed, or was sealed with another key."""


class SealExpired(SealError):
    """The cookie is authentic but its flow is older than the flow lifetime."""


class FlowSeal:
    """Seal and open :class:`LoginFlow` values for the cookie named ``name``."""

    def __init__(self, master_secret: bytes, *, name: str, max_age: int, clock: Callable[[], float] = time.time):
        self._aead = AESGCM(derive_key(master_secret, b"state-cookie"))
        self._aad = name.encode()
        self.name = name
        self.max_age = max_age
        self._clock = clock

    def seal(self, flow: LoginFlow) -> str:
        return self.seal_data(flow.to_dict())

    def open(self, value: str) -> LoginFlow:
        """The flow in ``value``; :class:`SealError` (or :class:`SealExpired`) if it is not one of ours."""
        data = self.open_data(value)
        try:
            flow = LoginFlow.from_dict(data)
        except ValueError as exc:
            raise SealError(str(exc)) from None
        # Resealing refreshes the seal time, never the flow's own age.
        if self._clock() - flow.created > self.max_age:
            raise SealExpired("the flow is older than the flow lifetime")
        return flow

    # The raw layer, kept separate so tests can seal what a forger would.

    def seal_data(self, data: dict[str, Any]) -> str:
        nonce = os.urandom(12)
        payload = orjson.dumps({"t": int(self._clock()), "s": data})
        sealed = nonce + self._aead.encrypt(nonce, payload, self._aad)
        return _PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open_data(self, value: str) -> dict[str, Any]:
        if not value.startswith(_PREFIX) or len(value) > _MAX_COOKIE:
            raise SealError("unknown flow cookie format")
        raw = value[len(_PREFIX):]
        try:
            sealed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (ValueError, TypeError):
            raise SealError("flow cookie is not base64url") from None
        if len(sealed) < 12 + 16:
            raise SealError("flow cookie too short")
        try:
            payload = self._aead.decrypt(sealed[:12], sealed[12:], self._aad)
        except InvalidTag:
            raise SealError("flow cookie failed its integrity check") from None
        data = orjson.loads(payload)   # ours: it passed the integrity check
        if self._clock() - data["t"] > self.max_age:
            raise SealExpired("the flow is older than the flow lifetime")
        sealed_data = data.get("s")
        if not isinstance(sealed_data, dict):
            raise SealError("flow cookie holds no flow")
        return sealed_data
