"""User identifiers: the broker's own, never an upstream's.

``user_id`` is an HMAC of the upstream subject keyed by the deployment's secret
salt and bound to the tenant and the IdP, so

* the same NameID or ``sub`` from two cities (or two IdPs of one city) gives two
  unrelated ids: one city's IdP cannot speak for another city's users;
* an upstream attribute cannot choose what services see: whatever an IdP sends
  is only ever an HMAC input;
* without the salt, an id cannot be linked back to the upstream subject.

The subject a service sees (:func:`subject_for`) is derived once more from
``user_id``: pairwise per sector by default, so two services cannot correlate a
pupil by ``sub``; the same for every service only when registered as ``public``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from broker.mapping.model import PolicyLike

#: Prefix of the MPASSid ``urn:mpass.id:uid`` value format (``MPASSOID.<40 hex>``).
MPASSID_UID_PREFIX = "MPASSOID."


def _mac(salt: bytes, *parts: str) -> bytes:
    if not isinstance(salt, (bytes, bytearray)) or len(salt) < 16:
        raise ValueError("salt: expected at least 16 secret bytes")
    # Length-prefixed so that no choice of parts can collide with another
    # ("ab"+"c" vs "a"+"bc"): a tenant id or IdP id cannot be forged by a subject.
    msg = b"".join(len(b).to_bytes(4, "big") + b for b in (p.encode("utf-8", "surrogatepass") for p in parts))
    # hmac.digest: the same MAC as hmac.new(...).digest(), in one call to OpenSSL.
    return hmac.digest(bytes(salt), msg, "sha256")


def stable_user_id(tenant_id: str, idp_id: str, upstream_subject: str, salt: bytes) -> str:
    """The canonical ``user_id``: 64 hex characters, stable per (tenant, IdP, subject).

    Raises :class:`ValueError` for an empty subject or a salt shorter than 16 bytes.
    """
    if not isinstance(upstream_subject, str) or not upstream_subject:
        raise ValueError("upstream_subject: expected a non-empty string")
    return _mac(salt, "digione-user-v1", tenant_id, idp_id, upstream_subject).hex()


def subject_for(identity: Mapping[str, Any], *, policy: PolicyLike, salt: bytes, sector: str | None = None) -> str:
    """The subject (OIDC ``sub``, SAML NameID, MPASSid ``uid``) one service sees.

    Pairwise unless ``policy.subject_type == "public"``; the pairwise sector is
    ``sector`` (pass ``Client.sector``: the registered sector identifier, else the
    redirect host) or ``policy.sector``.  The format follows the policy's profile:
    ``digione`` gives 40 hex characters, ``mpassid`` gives MPASSid's
    ``MPASSOID.<40 hex>``.  Raises :class:`ValueError` without a ``user_id`` or,
    when pairwise, without a sector.
    """
    user_id = identity.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("identity: expected a user_id")
    if policy.subject_type == "public":
        mac = _mac(salt, "digione-public-v1", user_id)
    else:
        effective = sector or policy.sector
        if not effective:
            raise ValueError("policy.sector: a pairwise subject needs a sector (registered or redirect host)")
        mac = _mac(salt, "digione-pairwise-v1", effective, user_id)
    value = mac[:20].hex()
    return MPASSID_UID_PREFIX + value if policy.profile == "mpassid" else value
