"""The XML security toolkit's former single module: re-exports only.

The code lives in modules with one job each (ADR 0003, ADR 0009):

* :mod:`broker.proxy.xml_parsing` — the hardened parser, unique IDs, ``check_libxml2``;
* :mod:`broker.proxy.xml_keys` — keys and certificates, parsed once;
* :mod:`broker.proxy.xml_signatures` — enveloped signatures, verified and made;
* :mod:`broker.proxy.xml_encryption` — encrypted assertions, decrypted and made;
* :mod:`broker.proxy.crypto_policy` — which algorithms an IdP's responses may use;
* :mod:`broker.proxy.pysaml2_crypto` — pysaml2's ``CryptoBackend`` / ``SecurityContext``
  plugin and its installation on entities.

Import from those; this module keeps the old names working for existing callers.
The ``xmlsec1`` subprocess backend is gone: :func:`configure_signatures` and
:func:`pysaml2_config_overrides` accept ``in-process`` (or ``None``) only.
"""

from __future__ import annotations

from broker.proxy.pysaml2_crypto import (
    DEFAULT_SCHEMA_VALIDATION,
    DEFAULT_SIGNATURE_BACKEND,
    IN_PROCESS,
    SCHEMA_VALIDATIONS,
    CryptoBackendXmlSecInProcess,
    InProcessSecurityContext,
    configure_signatures,
    pysaml2_config_overrides,
    use_in_process_signatures,
)
from broker.proxy.xml_encryption import decrypt, decrypt_node, encrypt_node
from broker.proxy.xml_keys import certificate_key, clear_key_cache, private_key
from broker.proxy.xml_parsing import check_libxml2, check_unique_ids, parse
from broker.proxy.xml_signatures import sign, verify_node, verify_signature

__all__ = [
    "DEFAULT_SCHEMA_VALIDATION",
    "DEFAULT_SIGNATURE_BACKEND",
    "IN_PROCESS",
    "SCHEMA_VALIDATIONS",
    "CryptoBackendXmlSecInProcess",
    "InProcessSecurityContext",
    "certificate_key",
    "check_libxml2",
    "check_unique_ids",
    "clear_key_cache",
    "configure_signatures",
    "decrypt",
    "decrypt_node",
    "encrypt_node",
    "parse",
    "private_key",
    "pysaml2_config_overrides",
    "sign",
    "use_in_process_signatures",
    "verify_node",
    "verify_signature",
]
