"""XML encryption of SAML assertions (XML-Enc 1.1), with python-xmlsec.

* **Decryption with our key only**: the ``<xenc:EncryptedKey>`` of an
  ``<xenc:EncryptedData>`` (in its ``<ds:KeyInfo>`` or named there by a
  same-document ``<ds:RetrievalMethod>``) is unwrapped with the private key
  given, and the data decrypted with the result; no key is looked up from the
  document.  With a :class:`~broker.saml.crypto_policy.CryptoPolicy` the data
  cipher and the key transport are checked *before* either decryption runs, so a
  refused algorithm (RSA PKCS#1 v1.5, CBC) never reaches the cryptography and
  cannot serve as a padding oracle.
* **Encryption** fills an ``<xenc:EncryptedData>`` template:
  :class:`AssertionEncryption` builds one, by default RSA-OAEP (``rsa-oaep-mgf1p``)
  key transport and AES-256-GCM data encryption (pysaml2's own default,
  ``pre_encryption_part``, is Triple-DES-CBC).
"""

from __future__ import annotations

import dataclasses
import os

import xmlsec
from lxml import etree
from saml2.sigver import DecryptError, EncryptError

from broker.saml import crypto_policy as algorithms
from broker.saml.crypto_policy import CryptoPolicy
from broker.saml.xml_parsing import parse_document, serialize

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
XENC11_NS = "http://www.w3.org/2009/xmlenc11#"

_KEY_INFO = f"{{{DS_NS}}}KeyInfo"
_RETRIEVAL_METHOD = f"{{{DS_NS}}}RetrievalMethod"
_ENCRYPTED_DATA = f"{{{XENC_NS}}}EncryptedData"
_ENCRYPTED_KEY = f"{{{XENC_NS}}}EncryptedKey"
_ENCRYPTION_METHOD = f"{{{XENC_NS}}}EncryptionMethod"
_ENCRYPTED_KEY_TYPE = XENC_NS + "EncryptedKey"
_ELEMENT_TYPE = XENC_NS + "Element"

#: Block ciphers of ``<xenc:EncryptedData>`` libxmlsec1 can process: (key data class, key size in bytes).
BLOCK_CIPHERS = {
    algorithms.TRIPLEDES_CBC: (xmlsec.constants.KeyDataDes, 24),
    algorithms.AES128_CBC: (xmlsec.constants.KeyDataAes, 16),
    algorithms.AES192_CBC: (xmlsec.constants.KeyDataAes, 24),
    algorithms.AES256_CBC: (xmlsec.constants.KeyDataAes, 32),
    algorithms.AES128_GCM: (xmlsec.constants.KeyDataAes, 16),
    algorithms.AES192_GCM: (xmlsec.constants.KeyDataAes, 24),
    algorithms.AES256_GCM: (xmlsec.constants.KeyDataAes, 32),
}
#: Key transports of ``<xenc:EncryptedKey>`` with an RSA key (symmetric key wraps need a shared key).
KEY_TRANSPORTS = frozenset({algorithms.RSA_OAEP_MGF1P, algorithms.RSA_OAEP, algorithms.RSA_PKCS1_V1_5})

DEFAULT_DATA_ENCRYPTION = algorithms.AES256_GCM
DEFAULT_KEY_TRANSPORT = algorithms.RSA_OAEP_MGF1P


def encrypted_key_for(root: etree._Element, encrypted_data: etree._Element) -> etree._Element:
    """The ``<xenc:EncryptedKey>`` carrying the session key of *encrypted_data*.

    Either inside its ``<ds:KeyInfo>`` (XML-Enc §3.5.1) or named there by a
    same-document ``<ds:RetrievalMethod>`` (XML-Enc §3.5.1, XML-DSig §4.5.3).
    """
    key_info = encrypted_data.find(_KEY_INFO)
    if key_info is not None:
        encrypted_key = key_info.find(_ENCRYPTED_KEY)
        if encrypted_key is not None:
            return encrypted_key
        for method in key_info.findall(_RETRIEVAL_METHOD):
            uri = method.get("URI") or ""
            if method.get("Type") == _ENCRYPTED_KEY_TYPE and uri.startswith("#"):
                keys = [k for k in root.iter(_ENCRYPTED_KEY) if k.get("Id") == uri[1:]]
                if len(keys) == 1:
                    return keys[0]
    raise DecryptError("no <xenc:EncryptedKey> for the <xenc:EncryptedData>")


def decrypt(xml: str | bytes, key: xmlsec.Key, *, policy: CryptoPolicy | None = None) -> str:
    """Decrypt the first ``<xenc:EncryptedData>`` of the document with *key* (ours).

    As ``xmlsec1 --decrypt``: the decrypted element replaces the
    ``EncryptedData`` and the whole document is returned.
    """
    root = parse_document(xml)
    encrypted_data = next(root.iter(_ENCRYPTED_DATA), None)
    if encrypted_data is None:
        raise DecryptError("no <xenc:EncryptedData> in the document")
    decrypt_node(root, encrypted_data, key, policy=policy)
    return serialize(root)


def decrypt_node(root: etree._Element, encrypted_data: etree._Element, key: xmlsec.Key, *,
                 policy: CryptoPolicy | None = None) -> None:
    """Decrypt *encrypted_data* of the parsed document *root* in place (see :func:`decrypt`).

    *policy* (the IdP's) is checked on the ``EncryptedData`` and on the
    ``EncryptedKey`` that will be unwrapped before any decryption; it raises
    :class:`~broker.saml.crypto_policy.AlgorithmRefused`.
    """
    method = encrypted_data.find(_ENCRYPTION_METHOD)
    cipher = BLOCK_CIPHERS.get(method.get("Algorithm")) if method is not None else None
    if cipher is None:
        raise DecryptError("unsupported or missing EncryptedData EncryptionMethod (XML-Enc §5.2)")
    klass, size = cipher
    encrypted_key = encrypted_key_for(root, encrypted_data)
    transport = encrypted_key.find(_ENCRYPTION_METHOD)
    if transport is None or transport.get("Algorithm") not in KEY_TRANSPORTS:
        raise DecryptError("unsupported or missing EncryptedKey EncryptionMethod (XML-Enc §5.5)")
    if policy is not None:
        policy.check_encryption(encrypted_data, encrypted_key)
    try:
        key_ctx = xmlsec.EncryptionContext()
        key_ctx.key = key
        session_key = key_ctx.decrypt(encrypted_key)
        if not isinstance(session_key, bytes) or len(session_key) != size:
            raise DecryptError("the unwrapped session key does not fit the block cipher")
        data_ctx = xmlsec.EncryptionContext()
        data_ctx.key = xmlsec.Key.from_binary_data(klass, session_key)
        data_ctx.decrypt(encrypted_data)
    except xmlsec.Error as exc:
        raise DecryptError(f"decryption failed: {exc}") from None


def encrypt_node(root: etree._Element, node: etree._Element, template: etree._Element,
                 recipient: xmlsec.Key) -> etree._Element:
    """Encrypt *node* in place after the ``<xenc:EncryptedData>`` *template* (XML-Enc §4.1).

    A fresh session key of the template's block cipher encrypts the node, and
    the template's ``<xenc:EncryptedKey>`` receives it encrypted for
    *recipient*: the only key of the keys manager, so no other key can be used.
    """
    try:
        klass, size = BLOCK_CIPHERS[template.find(_ENCRYPTION_METHOD).get("Algorithm")]
    except (AttributeError, KeyError):
        raise EncryptError("unsupported or missing EncryptionMethod in the template") from None
    try:
        manager = xmlsec.KeysManager()
        manager.add_key(recipient)
        ctx = xmlsec.EncryptionContext(manager)
        ctx.key = xmlsec.Key.from_binary_data(klass, os.urandom(size))
        return ctx.encrypt_xml(template, node)
    except xmlsec.Error as exc:
        raise EncryptError(f"encryption failed: {exc}") from None


def single_xpath_node(root: etree._Element, xpath: str) -> etree._Element:
    found = root.xpath(xpath)
    if not isinstance(found, list) or len(found) != 1 or not isinstance(found[0], etree._Element):
        raise EncryptError(f"{xpath!r} does not select exactly one element")
    return found[0]


@dataclasses.dataclass(frozen=True)
class AssertionEncryption:
    """The algorithms of the assertions an entity encrypts (the broker's SAML IdP, the demo IdPs).

    *oaep_digest* and *mgf* add ``<ds:DigestMethod>`` / ``<xenc11:MGF>`` to the key
    transport (XML-Enc 1.1 §5.5.2; ``mgf`` only with ``xmlenc11#rsa-oaep``).
    """

    data: str = DEFAULT_DATA_ENCRYPTION
    key_transport: str = DEFAULT_KEY_TRANSPORT
    oaep_digest: str | None = None
    mgf: str | None = None

    def __post_init__(self):
        if self.data not in BLOCK_CIPHERS:
            raise ValueError(f"unsupported data encryption {self.data!r}")
        if self.key_transport not in KEY_TRANSPORTS:
            raise ValueError(f"unsupported key transport {self.key_transport!r}")
        if self.mgf is not None and self.key_transport != algorithms.RSA_OAEP:
            raise ValueError("an MGF is named only with xmlenc11#rsa-oaep (XML-Enc 1.1 §5.5.2)")

    def template(self, *, certificate_b64: str | None = None, key_name: str | None = None) -> str:
        """An ``<xenc:EncryptedData>`` template for one element, its key in an ``<xenc:EncryptedKey>``.

        *certificate_b64* (the recipient's certificate) and *key_name* go into the
        EncryptedKey's ``<ds:KeyInfo>`` to tell the recipient which of its keys was used.
        """
        nsmap = {"xenc": XENC_NS, "ds": DS_NS}
        data = etree.Element(_ENCRYPTED_DATA, nsmap=nsmap, Type=_ELEMENT_TYPE, Id="ED_" + os.urandom(16).hex())
        etree.SubElement(data, _ENCRYPTION_METHOD, Algorithm=self.data)
        key = etree.SubElement(etree.SubElement(data, _KEY_INFO), _ENCRYPTED_KEY, Id="EK_" + os.urandom(16).hex())
        method = etree.SubElement(key, _ENCRYPTION_METHOD, Algorithm=self.key_transport)
        if self.oaep_digest:
            etree.SubElement(method, f"{{{DS_NS}}}DigestMethod", Algorithm=self.oaep_digest)
        if self.mgf:
            etree.SubElement(method, f"{{{XENC11_NS}}}MGF", nsmap={"xenc11": XENC11_NS}, Algorithm=self.mgf)
        if certificate_b64 or key_name:
            key_info = etree.SubElement(key, _KEY_INFO)
            if key_name:
                etree.SubElement(key_info, f"{{{DS_NS}}}KeyName").text = key_name
            if certificate_b64:
                x509_data = etree.SubElement(key_info, f"{{{DS_NS}}}X509Data")
                etree.SubElement(x509_data, f"{{{DS_NS}}}X509Certificate").text = certificate_b64
        etree.SubElement(etree.SubElement(key, f"{{{XENC_NS}}}CipherData"), f"{{{XENC_NS}}}CipherValue")
        etree.SubElement(etree.SubElement(data, f"{{{XENC_NS}}}CipherData"), f"{{{XENC_NS}}}CipherValue")
        return etree.tostring(data, encoding="unicode")


__all__ = [
    "BLOCK_CIPHERS",
    "DEFAULT_DATA_ENCRYPTION",
    "DEFAULT_KEY_TRANSPORT",
    "KEY_TRANSPORTS",
    "AssertionEncryption",
    "decrypt",
    "decrypt_node",
    "encrypt_node",
    "encrypted_key_for",
    "single_xpath_node",
]
