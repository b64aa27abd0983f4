"""Keys derived from the deployment's master secret, one per purpose.

Every instance holds the same master secret (``BROKER_SECRET``), so every
instance derives the same keys: the flow-cookie key, the salts of user ids and
pairwise subjects.  HKDF with a distinct ``info`` per purpose means one secret
never serves two uses, and rotating one purpose's key needs a new purpose name.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(master_secret: bytes, purpose: bytes) -> bytes:
    """A 256-bit key for ``purpose``."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"digione/" + purpose).derive(master_secret)
