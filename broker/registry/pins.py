"""``signing_cert_sha256``: the pins that decide which key may sign a city's metadata.

A SAML IdP whose metadata is named by URL (``metadata: {url, signing_cert_sha256}``)
is trusted through the SHA-256 fingerprint of the certificate that signs the document.
For a rollover of that signing certificate the city lists the new certificate's pin
*next to* the old one ahead of time, and removes the old one once the document is
signed with the new key: one fingerprint, or a list of up to :data:`MAX_PINS`.

:func:`signing_pins` validates and normalizes the value (lower-case hex, no ``:``);
every problem names the field (``signing_cert_sha256`` or ``signing_cert_sha256[1]``)
in the tenant checker's words.
"""

from __future__ import annotations

import re
from typing import Any

#: At most this many pins at once: the current signer, the next one, and one spare.
MAX_PINS = 3
FINGERPRINT = re.compile(r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}\Z")
_EXPECTED = "the SHA-256 fingerprint of the metadata signing certificate (64 hex digits, ':' separators allowed)"


def normalize(fingerprint: str) -> str:
    """The pin as compared: lower-case hex without separators."""
    return fingerprint.replace(":", "").strip().lower()


def signing_pins(raw: Any) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """The normalized pins of a ``signing_cert_sha256`` value, and its problems.

    Each problem is ``(suffix, expected)``: the suffix goes after the field name (``""``
    or ``"[1]"``).  A value with any problem gives no pins.
    """
    either = _EXPECTED + f", or a list of up to {MAX_PINS} of them (a rollover of the signing certificate)"
    if isinstance(raw, str):
        if not FINGERPRINT.match(raw.strip()):
            return (), [("", either)]
        return (normalize(raw),), []
    if not isinstance(raw, list) or not raw:
        return (), [("", either)]
    if len(raw) > MAX_PINS:
        return (), [("", f"at most {MAX_PINS} fingerprints (found {len(raw)}): remove a retired signing "
                         "certificate's pin")]
    problems: list[tuple[str, str]] = []
    pins: list[str] = []
    for index, item in enumerate(raw):
        if not isinstance(item, str) or not FINGERPRINT.match(item.strip()):
            problems.append((f"[{index}]", _EXPECTED))
            continue
        pin = normalize(item)
        if pin in pins:
            problems.append((f"[{index}]", f"distinct fingerprints (this one is also item {pins.index(pin)})"))
            continue
        pins.append(pin)
    return (() if problems else tuple(pins)), problems


__all__ = ["FINGERPRINT", "MAX_PINS", "normalize", "signing_pins"]
