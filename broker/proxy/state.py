"""The flow-state cookie: authenticated encryption instead of SATOSA's AES-CBC + LZMA.

SATOSA keeps a login's state in a cookie encrypted with AES-CBC and no integrity
check, compressed twice with LZMA (about 15 ms per encoding).  Ours is AES-256-GCM
(an AEAD: any change to the cookie makes decryption fail) over compact JSON,
with the issue time inside the sealed payload so an old cookie is refused even
if the browser kept it.  The key is derived (HKDF) from the master secret that
every instance shares, so any instance can read a state another wrote.

Format: ``v1.`` + base64url(nonce(12) || ciphertext || tag(16)); the cookie
name is bound as associated data, so a value cannot be moved to another cookie.
"""

from __future__ import annotations

import base64
import json
import os
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.derive import derive_key

_PREFIX = "v1."
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class StateError(ValueError):
    """The state cookie was tampered with, is malformed or sealed with another key."""


class StateExpired(StateError):
    """The state cookie is authentic but older than the flow lifetime."""


class StateCodec:
    """Seal and open flow state (a JSON-able dict) for the cookie named ``name``."""

    def __init__(self, master_secret: bytes, *, name: str, max_age: int, clock=time.time):
        self._aead = AESGCM(derive_key(master_secret, b"state-cookie"))
        self._aad = name.encode()
        self.name = name
        self.max_age = max_age
        self._clock = clock

    def seal(self, state: dict) -> str:
        nonce = os.urandom(12)
        payload = _dumps({"t": int(self._clock()), "s": state}).encode()
        sealed = nonce + self._aead.encrypt(nonce, payload, self._aad)
        return _PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, value: str) -> dict:
        if not value.startswith(_PREFIX):
            raise StateError("unknown state format")
        raw = value[len(_PREFIX):]
        try:
            sealed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (ValueError, TypeError):
            raise StateError("state is not base64url") from None
        if len(sealed) < 12 + 16:
            raise StateError("state too short")
        try:
            payload = self._aead.decrypt(sealed[:12], sealed[12:], self._aad)
        except InvalidTag:
            raise StateError("state failed its integrity check") from None
        data = json.loads(payload)
        if self._clock() - data["t"] > self.max_age:
            raise StateExpired("state is older than the flow lifetime")
        return data["s"]
