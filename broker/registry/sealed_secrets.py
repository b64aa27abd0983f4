"""Client secrets stored in the registry, encrypted: ``client_secret: {encrypted: …}``.

A city admin who adds an OIDC IdP in the console types its client secret once; the
registry keeps it sealed with AES-256-GCM under a key derived from the master
secret (:func:`broker.derive.derive_key`), so the database, its backups and every
export hold only ciphertext.  The tenant id is the associated data: a sealed secret
copied into another city's document does not open there.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.derive import derive_key

_PURPOSE = b"registry-secret"
_VERSION = "v1."
#: At most this many characters of sealed text (a secret, not a document).
MAX_SEALED = 8192


class SealedSecretError(ValueError):
    """The sealed secret is malformed, or was sealed for another tenant or deployment."""


def seal_secret(master_secret: bytes, secret: str, *, tenant_id: str) -> dict[str, str]:
    """The registry form of ``secret`` for ``tenant_id``."""
    nonce = os.urandom(12)
    sealed = AESGCM(derive_key(master_secret, _PURPOSE)).encrypt(nonce, secret.encode(), tenant_id.encode())
    return {"encrypted": _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")}


def open_secret(master_secret: bytes, sealed: object, *, tenant_id: str) -> str:
    if not isinstance(sealed, str) or not sealed.startswith(_VERSION) or len(sealed) > MAX_SEALED:
        raise SealedSecretError("a sealed secret made by this broker (v1.…)")
    body = sealed[len(_VERSION):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return AESGCM(derive_key(master_secret, _PURPOSE)).decrypt(raw[:12], raw[12:], tenant_id.encode()).decode()
    except (ValueError, InvalidTag, UnicodeDecodeError):
        raise SealedSecretError("a secret sealed for this city by this deployment (it does not open with this "
                                "broker's master secret)") from None
