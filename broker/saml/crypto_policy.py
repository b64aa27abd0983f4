"""Which XML signature and encryption algorithms a SAML IdP's responses may use (ADR 0009).

The default is SHA-256 or better for digests and signatures, RSA-OAEP for key
transport and AES-GCM for the encrypted assertion.  Three weaker families are
accepted only when the IdP's tenant entry lists them under ``legacy_crypto``:

=========  ===========================================================================
``sha1``   SHA-1 ``DigestMethod`` in a ``<ds:Reference>``, ``rsa-sha1`` and ``ecdsa-sha1``
           ``SignatureMethod`` (XML-DSig 1.1 §6.2.1, §6.4: not recommended; NIST SP
           800-131A Rev. 2: disallowed for signature generation)
``rsa-1_5``  RSA PKCS#1 v1.5 key transport (XML-Enc 1.1 §5.5.1: not recommended,
           Bleichenbacher-style padding oracles)
``cbc``    AES-CBC and Triple-DES-CBC data encryption (XML-Enc 1.1 §5.2: AES-GCM
           recommended over CBC, padding oracles on CBC ciphertext)
=========  ===========================================================================

SHA-224 (digest, ``rsa-sha224``, ``ecdsa-sha224``) is below "SHA-256 or better" and
no IdP product we know of emits it: it is refused with no legacy item.  SHA-1 *inside
RSA-OAEP* (its ``DigestMethod`` and MGF1, fixed to SHA-1 by ``rsa-oaep-mgf1p``) is not a
collision-resistance use of the hash and stays accepted (ADR 0009).

:meth:`CryptoPolicy.check_signature` and :meth:`CryptoPolicy.check_encryption` read the
algorithm URIs of the very elements libxmlsec1 will process, before any cryptography
runs, and raise :class:`AlgorithmRefused` naming the algorithm, the setting and the
clause.  Signature verification additionally enables only the policy's algorithms in
the libxmlsec1 context, so a refused digest or signature method cannot be processed
even if a caller skipped the check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from lxml import etree
from saml2.sigver import XmlsecError

DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
DSIG_MORE = "http://www.w3.org/2001/04/xmldsig-more#"

SHA1 = "sha1"
RSA_1_5 = "rsa-1_5"
CBC = "cbc"

#: The ``legacy_crypto`` items, and what each lets an IdP use.
LEGACY_ITEMS: dict[str, str] = {
    SHA1: "SHA-1 digests and rsa-sha1/ecdsa-sha1 signatures",
    RSA_1_5: "RSA PKCS#1 v1.5 key transport",
    CBC: "AES-CBC and Triple-DES-CBC encryption of the assertion",
}

# -- digests and signature methods: URI -> the legacy item it needs (None: accepted by default) --

DIGEST_SHA1 = DS + "sha1"
DIGEST_SHA224 = DSIG_MORE + "sha224"
DIGEST_SHA256 = XENC + "sha256"
DIGEST_SHA384 = DSIG_MORE + "sha384"
DIGEST_SHA512 = XENC + "sha512"

DIGEST_METHODS: dict[str, str | None] = {
    DIGEST_SHA1: SHA1,
    DIGEST_SHA256: None,
    DIGEST_SHA384: None,
    DIGEST_SHA512: None,
}

RSA_SHA1 = DS + "rsa-sha1"
RSA_SHA256 = DSIG_MORE + "rsa-sha256"
RSA_SHA384 = DSIG_MORE + "rsa-sha384"
RSA_SHA512 = DSIG_MORE + "rsa-sha512"
ECDSA_SHA1 = DSIG_MORE + "ecdsa-sha1"
ECDSA_SHA256 = DSIG_MORE + "ecdsa-sha256"
ECDSA_SHA384 = DSIG_MORE + "ecdsa-sha384"
ECDSA_SHA512 = DSIG_MORE + "ecdsa-sha512"

SIGNATURE_METHODS: dict[str, str | None] = {
    RSA_SHA1: SHA1,
    ECDSA_SHA1: SHA1,
    RSA_SHA256: None,
    RSA_SHA384: None,
    RSA_SHA512: None,
    ECDSA_SHA256: None,
    ECDSA_SHA384: None,
    ECDSA_SHA512: None,
}

# -- encryption: key transport and data encryption ---------------------------------------------

RSA_OAEP_MGF1P = XENC + "rsa-oaep-mgf1p"
RSA_OAEP = XENC11 + "rsa-oaep"
RSA_PKCS1_V1_5 = XENC + "rsa-1_5"

KEY_TRANSPORTS: dict[str, str | None] = {
    RSA_OAEP_MGF1P: None,
    RSA_OAEP: None,
    RSA_PKCS1_V1_5: RSA_1_5,
}

AES128_GCM = XENC11 + "aes128-gcm"
AES192_GCM = XENC11 + "aes192-gcm"
AES256_GCM = XENC11 + "aes256-gcm"
AES128_CBC = XENC + "aes128-cbc"
AES192_CBC = XENC + "aes192-cbc"
AES256_CBC = XENC + "aes256-cbc"
TRIPLEDES_CBC = XENC + "tripledes-cbc"

DATA_ENCRYPTIONS: dict[str, str | None] = {
    AES128_GCM: None,
    AES192_GCM: None,
    AES256_GCM: None,
    AES128_CBC: CBC,
    AES192_CBC: CBC,
    AES256_CBC: CBC,
    TRIPLEDES_CBC: CBC,
}

#: The hash of RSA-OAEP (its ``<ds:DigestMethod>``, default SHA-1) and of its mask generation
#: function (``<xenc11:MGF>``, default MGF1 with SHA-1; always SHA-1 for ``rsa-oaep-mgf1p``).
#: OAEP needs no collision resistance from them, so SHA-1 is accepted (ADR 0009).
OAEP_DIGESTS = frozenset({DIGEST_SHA1, DIGEST_SHA224, DIGEST_SHA256, DIGEST_SHA384, DIGEST_SHA512})
MGF_ALGORITHMS = frozenset(XENC11 + f"mgf1sha{bits}" for bits in (1, 224, 256, 384, 512))

_SIGNED_INFO = f"{{{DS}}}SignedInfo"
_SIGNATURE_METHOD = f"{{{DS}}}SignatureMethod"
_REFERENCE = f"{{{DS}}}Reference"
_DIGEST_METHOD = f"{{{DS}}}DigestMethod"
_ENCRYPTION_METHOD = f"{{{XENC}}}EncryptionMethod"
_KEY_SIZE = f"{{{XENC}}}KeySize"
_OAEP_PARAMS = f"{{{XENC}}}OAEPparams"
_MGF = f"{{{XENC11}}}MGF"

_CLAUSES = {
    SHA1: "XML-DSig 1.1 §6.2.1, §6.4",
    RSA_1_5: "XML-Enc 1.1 §5.5.1",
    CBC: "XML-Enc 1.1 §5.2",
}


class AlgorithmRefused(XmlsecError):
    """An algorithm the IdP's crypto policy does not accept; raised before any cryptography."""


@dataclasses.dataclass(frozen=True)
class CryptoPolicy:
    """The algorithms one IdP's responses may use: the defaults, plus the ``legacy`` items listed.

    ``CryptoPolicy()`` is the default (no legacy item); ``CryptoPolicy({"cbc"})`` also accepts
    AES-CBC for that IdP.  Any iterable of item names is accepted; an unknown name is a
    :class:`ValueError` (so a tenant file naming one is refused at load).
    """

    legacy: frozenset[str] = frozenset()

    def __post_init__(self):
        if isinstance(self.legacy, str):
            raise TypeError("legacy is a collection of item names, not one string")
        items = frozenset(self.legacy)
        unknown = sorted(items - LEGACY_ITEMS.keys())
        if unknown:
            raise ValueError(f"unknown legacy_crypto item(s) {', '.join(map(repr, unknown))}: "
                             f"expected some of {', '.join(LEGACY_ITEMS)}")
        object.__setattr__(self, "legacy", items)

    # -- what is accepted -------------------------------------------------------------------

    def _accepts(self, table: dict[str, str | None], uri: str | None) -> bool:
        return uri in table and (table[uri] is None or table[uri] in self.legacy)

    def signature_methods(self) -> frozenset[str]:
        """The ``SignatureMethod`` URIs accepted."""
        return frozenset(uri for uri in SIGNATURE_METHODS if self._accepts(SIGNATURE_METHODS, uri))

    def digest_methods(self) -> frozenset[str]:
        """The ``<ds:Reference>`` ``DigestMethod`` URIs accepted."""
        return frozenset(uri for uri in DIGEST_METHODS if self._accepts(DIGEST_METHODS, uri))

    def warnings(self) -> list[str]:
        """One sentence per legacy item, for ``broker check`` and the start-up log."""
        risks = {
            SHA1: "SHA-1 signatures: a chosen-prefix collision lets a forged document reuse a genuine "
                  "signature",
            RSA_1_5: "RSA PKCS#1 v1.5 key transport: a padding oracle on the broker's one decryption key, "
                     "which every IdP encrypts to (and which also signs)",
            CBC: "CBC encryption: a padding oracle on the ciphertext; it also exposes GCM ciphertexts of "
                 "other IdPs whose session keys are replayed into a CBC EncryptedData",
        }
        return [f"legacy_crypto {item}: accepts {LEGACY_ITEMS[item]} ({risks[item]}; {_CLAUSES[item]})"
                for item in LEGACY_ITEMS if item in self.legacy]

    # -- the checks -------------------------------------------------------------------------

    def _refuse(self, what: str, uri: str | None, table: dict[str, str | None], clause: str) -> AlgorithmRefused:
        item = table.get(uri) if uri is not None else None
        if item is not None:
            return AlgorithmRefused(
                f"{what} {uri} ({LEGACY_ITEMS[item]}) is refused unless the IdP's legacy_crypto lists "
                f"{item} (ADR 0009; {_CLAUSES[item]})")
        return AlgorithmRefused(f"{what} {uri!r} is not accepted: SHA-256 or better, RSA-OAEP and AES-GCM "
                                f"only (ADR 0009; {clause})")

    def check_signature(self, signature: etree._Element) -> None:
        """The ``SignatureMethod`` and every ``Reference``'s ``DigestMethod`` of *signature*."""
        signed_info = signature.findall(_SIGNED_INFO)
        if len(signed_info) != 1:
            raise AlgorithmRefused("a <ds:Signature> needs exactly one <ds:SignedInfo> (XML-DSig §4.2)")
        method = _algorithm(signed_info[0], _SIGNATURE_METHOD, "SignatureMethod")
        if not self._accepts(SIGNATURE_METHODS, method):
            raise self._refuse("SignatureMethod", method, SIGNATURE_METHODS, "XML-DSig 1.1 §6.4")
        for reference in signed_info[0].iterfind(_REFERENCE):
            digest = _algorithm(reference, _DIGEST_METHOD, "DigestMethod")
            if not self._accepts(DIGEST_METHODS, digest):
                raise self._refuse("DigestMethod", digest, DIGEST_METHODS, "XML-DSig 1.1 §6.2")

    def check_encryption(self, encrypted_data: etree._Element, encrypted_key: etree._Element) -> None:
        """The data cipher of *encrypted_data* and the key transport of *encrypted_key* (its key)."""
        data = _algorithm(encrypted_data, _ENCRYPTION_METHOD, "EncryptedData EncryptionMethod")
        if not self._accepts(DATA_ENCRYPTIONS, data):
            raise self._refuse("EncryptedData EncryptionMethod", data, DATA_ENCRYPTIONS, "XML-Enc 1.1 §5.2")
        for child in encrypted_data.find(_ENCRYPTION_METHOD):
            if isinstance(child.tag, str) and child.tag != _KEY_SIZE:  # a block cipher has no other parameter
                raise AlgorithmRefused(f"unexpected {child.tag!r} in the EncryptedData EncryptionMethod "
                                       "(XML-Enc 1.1 §3.2)")
        transport = _algorithm(encrypted_key, _ENCRYPTION_METHOD, "EncryptedKey EncryptionMethod")
        if not self._accepts(KEY_TRANSPORTS, transport):
            raise self._refuse("EncryptedKey EncryptionMethod", transport, KEY_TRANSPORTS, "XML-Enc 1.1 §5.5")
        _check_key_transport_parameters(encrypted_key.find(_ENCRYPTION_METHOD), transport)


def _algorithm(parent: etree._Element, tag: str, what: str) -> str:
    """The ``Algorithm`` of *parent*'s one *tag* child (exactly one, as libxmlsec1 reads the first)."""
    found = parent.findall(tag)
    if len(found) != 1 or not found[0].get("Algorithm"):
        raise AlgorithmRefused(f"expected exactly one {what} with an Algorithm, found {len(found)}")
    return found[0].get("Algorithm")


def _check_key_transport_parameters(method: etree._Element, transport: str) -> None:
    """RSA-OAEP's hash and mask generation function (XML-Enc 1.1 §5.5.2); nothing else, and nothing for v1.5."""
    for child in method:
        if not isinstance(child.tag, str):
            continue  # comments are refused for the whole message by the SAML processor
        if transport == RSA_PKCS1_V1_5 or child.tag not in (_DIGEST_METHOD, _MGF, _OAEP_PARAMS):
            raise AlgorithmRefused(f"unexpected {child.tag!r} in the EncryptedKey EncryptionMethod "
                                   "(XML-Enc 1.1 §5.5)")
        if child.tag == _DIGEST_METHOD and child.get("Algorithm") not in OAEP_DIGESTS:
            raise AlgorithmRefused(f"RSA-OAEP DigestMethod {child.get('Algorithm')!r} is not a SHA-1/SHA-2 "
                                   "digest (XML-Enc 1.1 §5.5.2)")
        if child.tag == _MGF and (transport != RSA_OAEP or child.get("Algorithm") not in MGF_ALGORITHMS):
            # rsa-oaep-mgf1p fixes MGF1 with SHA-1; only xmlenc11#rsa-oaep names its MGF.
            raise AlgorithmRefused(f"RSA-OAEP MGF {child.get('Algorithm')!r} is not accepted with {transport} "
                                   "(XML-Enc 1.1 §5.5.2)")


DEFAULT_POLICY = CryptoPolicy()


def policy_for(legacy: Iterable[str] | None) -> CryptoPolicy:
    """The policy of an IdP whose tenant entry lists *legacy* (``None`` or empty: the default)."""
    return CryptoPolicy(frozenset(legacy)) if legacy else DEFAULT_POLICY


__all__ = [
    "CBC",
    "DEFAULT_POLICY",
    "LEGACY_ITEMS",
    "RSA_1_5",
    "SHA1",
    "AlgorithmRefused",
    "CryptoPolicy",
    "policy_for",
]
