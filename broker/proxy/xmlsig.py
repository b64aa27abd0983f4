"""In-process XML signatures and encryption for pysaml2, on python-xmlsec.

pysaml2 signs, verifies, encrypts and decrypts by writing the document, keys and
certificates to temporary files and spawning the ``xmlsec1`` program: three
processes per signature check (two of them ``xmlsec1 --version``).  This module
does the same work inside the process with python-xmlsec (which bundles
libxmlsec1 and links the same libxml2 as lxml), keeping the subprocess path's
semantics and enforcing itself what that path left to pysaml2's pre-checks:

* **The signed node is the node pysaml2 uses.**  The node verified is the one
  element named *node_name* whose ``ID`` is *node_id* (``xmlsec1 --id-attr:ID
  <node_name> --node-id <node_id>``).  ``ID`` values must be unique in the
  document and only that element's ``ID`` is registered for reference
  resolution, so the element pysaml2 parsed with that ID is the one whose
  digest was checked.
* **One enveloped signature, one same-document reference to that node.**  The
  ``<ds:Signature>`` is a child of the node, with exactly one
  ``<ds:Reference>`` whose URI is ``#<node_id>``, or empty when the node is the
  document element (``--enabled-reference-uris empty,same-doc``).
* **Allow-listed algorithms**: enveloped-signature and exclusive
  canonicalization transforms only; SHA-1/SHA-2 digests; RSA or ECDSA
  signatures.  No ``<ds:Object>``, no DTD.
* **Keys come from metadata only** (SAML Metadata §2.4.1.1 ``<KeyDescriptor>``).
  The key is set on the signature context before verification, so libxmlsec1
  never reads ``<ds:KeyInfo>``; a certificate the sender embeds is ignored (the
  subprocess path: ``--enabled-key-data raw-x509-cert``).
* **Decryption with the SP key only**: the ``<xenc:EncryptedKey>`` is
  unwrapped with our private key and the ``<xenc:EncryptedData>`` decrypted
  with the result; no key is looked up from the document.
* **Schema validation kept**, against pysaml2's XSD files, on libxml2
  (:mod:`broker.proxy.xmlsig_schema`) or pysaml2's ``xmlschema`` validator.

No temporary files, no processes: keys and certificates are parsed once and
cached by content, and :class:`InProcessSecurityContext` reads the configured
key files when it is built, so the login path reads no file.

Entry points: :func:`configure_signatures` (``signature_backend: in-process |
xmlsec1``), :func:`use_in_process_signatures`, :func:`use_xmlsec1_signatures`,
and :func:`pysaml2_config_overrides` for building the entities.

Specifications cited: XML-DSig = XML Signature Syntax and Processing Version
1.1; XML-Enc = XML Encryption Syntax and Processing (2002); SAML Core = SAML
V2.0 Assertions and Protocols (saml-core-2.0-os); SAML Metadata =
saml-metadata-2.0-os; XML = Extensible Markup Language 1.0.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import threading
import types
from typing import Any, Union

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from saml2 import SamlBase
from saml2.cert import CertificateError
from saml2.sigver import (
    ASSERT_XPATH,
    NODE_NAME,
    CryptoBackend,
    CryptoBackendXmlSec1,
    DecryptError,
    EncryptError,
    MissingKey,
    RSACrypto,
    SecurityContext,
    SignatureError,
    SigverError,
    XmlsecError,
    get_pem_wrapped_unwrapped,
    get_xmlsec_binary,
    import_rsa_key_from_file,
    pem_format,
    pre_encrypt_assertion,
    pre_encryption_part,
)
from saml2.xml.schema import XMLSchemaError
from saml2.xml.schema import validate as validate_with_xmlschema
from saml2.xmldsig import (
    ALLOWED_CANONICALIZATIONS,
    ALLOWED_TRANSFORMS,
    TRANSFORM_ENVELOPED,
)

from broker.proxy import xmlsig_schema

logger = logging.getLogger(__name__)

IN_PROCESS = "in-process"
XMLSEC1 = "xmlsec1"
SIGNATURE_BACKENDS = (IN_PROCESS, XMLSEC1)
DEFAULT_SIGNATURE_BACKEND = IN_PROCESS

#: Schema validation of each signed item, against pysaml2's XSD files:
#: ``libxml2`` — pysaml2's re-serialization of the item (``str(item)``, as pysaml2 does), libxml2 engine;
#: ``xmlschema`` — the same document, pysaml2's own (pure Python) validator: pysaml2 exactly, ~40x slower;
#: ``signed-node`` — the element libxmlsec1 verified, as received, libxml2 engine: no re-serialization,
#: and stricter (pysaml2's re-serialization puts misplaced children back in schema order).
SCHEMA_VALIDATIONS = ("libxml2", "xmlschema", "signed-node")
DEFAULT_SCHEMA_VALIDATION = "libxml2"

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"

_SIGNATURE = f"{{{DS_NS}}}Signature"
_SIGNED_INFO = f"{{{DS_NS}}}SignedInfo"
_C14N_METHOD = f"{{{DS_NS}}}CanonicalizationMethod"
_SIGNATURE_METHOD = f"{{{DS_NS}}}SignatureMethod"
_REFERENCE = f"{{{DS_NS}}}Reference"
_TRANSFORMS = f"{{{DS_NS}}}Transforms"
_TRANSFORM = f"{{{DS_NS}}}Transform"
_DIGEST_METHOD = f"{{{DS_NS}}}DigestMethod"
_OBJECT = f"{{{DS_NS}}}Object"
_KEY_INFO = f"{{{DS_NS}}}KeyInfo"
_RETRIEVAL_METHOD = f"{{{DS_NS}}}RetrievalMethod"
_ENCRYPTED_DATA = f"{{{XENC_NS}}}EncryptedData"
_ENCRYPTED_KEY = f"{{{XENC_NS}}}EncryptedKey"
_ENCRYPTION_METHOD = f"{{{XENC_NS}}}EncryptionMethod"
_ENCRYPTED_KEY_TYPE = "http://www.w3.org/2001/04/xmlenc#EncryptedKey"

# Exclusive canonicalization, with or without comments (SAML Core §5.4.3).
_C14N_ALGORITHMS = {
    "http://www.w3.org/2001/10/xml-exc-c14n#": xmlsec.Transform.EXCL_C14N,
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments": xmlsec.Transform.EXCL_C14N_COMMENTS,
}
# Enveloped signature plus exclusive canonicalization (SAML Core §5.4.4).
_REFERENCE_TRANSFORMS = {TRANSFORM_ENVELOPED: xmlsec.Transform.ENVELOPED, **_C14N_ALGORITHMS}
_DIGEST_ALGORITHMS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": xmlsec.Transform.SHA1,
    "http://www.w3.org/2001/04/xmldsig-more#sha224": xmlsec.Transform.SHA224,
    "http://www.w3.org/2001/04/xmlenc#sha256": xmlsec.Transform.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": xmlsec.Transform.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": xmlsec.Transform.SHA512,
}
# Public-key signatures only: an HMAC "signature" keyed with a public value is forgeable.
_SIGNATURE_ALGORITHMS = {
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": xmlsec.Transform.RSA_SHA1,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha224": xmlsec.Transform.RSA_SHA224,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": xmlsec.Transform.RSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": xmlsec.Transform.RSA_SHA384,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": xmlsec.Transform.RSA_SHA512,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1": xmlsec.Transform.ECDSA_SHA1,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha224": xmlsec.Transform.ECDSA_SHA224,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": xmlsec.Transform.ECDSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": xmlsec.Transform.ECDSA_SHA384,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": xmlsec.Transform.ECDSA_SHA512,
}
# Block ciphers of <xenc:EncryptedData>: (key data class, key size in bytes).
_BLOCK_CIPHERS = {
    "http://www.w3.org/2001/04/xmlenc#tripledes-cbc": (xmlsec.KeyData.DES, 24),
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc": (xmlsec.KeyData.AES, 16),
    "http://www.w3.org/2001/04/xmlenc#aes192-cbc": (xmlsec.KeyData.AES, 24),
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc": (xmlsec.KeyData.AES, 32),
    "http://www.w3.org/2009/xmlenc11#aes128-gcm": (xmlsec.KeyData.AES, 16),
    "http://www.w3.org/2009/xmlenc11#aes192-gcm": (xmlsec.KeyData.AES, 24),
    "http://www.w3.org/2009/xmlenc11#aes256-gcm": (xmlsec.KeyData.AES, 32),
}

# XML Schema NCName (the lexical space of xs:ID), as far as same-document references need.
_NCNAME = re.compile(r"[^\W\d][\w.\-]*\Z")

#: Key or certificate material: PEM/DER bytes, a PEM string, or a file path.
KeyMaterial = Union[bytes, str, "os.PathLike[str]"]


# -- parsing -------------------------------------------------------------------------------


_parsers = threading.local()


def _parser() -> etree.XMLParser:
    """A hardened lxml parser (one per thread: lxml parsers are not thread-safe).

    No DTD loading, no entity substitution, no network.  ``collect_ids=False``
    keeps libxml2 from registering IDs on its own (``xml:id`` attributes would
    otherwise become targets of same-document references): the only registered
    ID is the one :func:`verify_signature` registers on the verified node.
    """
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
            collect_ids=False, remove_comments=False, remove_pis=False,
        )
        _parsers.parser = parser
    return parser


def _as_bytes(xml: str | bytes | SamlBase) -> bytes:
    if isinstance(xml, SamlBase):
        xml = str(xml)
    if isinstance(xml, str):
        return xml.encode("utf-8")
    if isinstance(xml, (bytes, bytearray)):
        return bytes(xml)
    raise TypeError(f"expected XML text, got {type(xml).__name__}")


def _parse(xml: str | bytes | SamlBase) -> etree._Element:
    """Parse a SAML document; documents with a DTD are refused.

    XML §3.3.1 (Validity constraint: ID): a document type declaration can make
    any attribute an ID and so change what a same-document reference resolves
    to; no SAML message carries one.
    """
    try:
        root = etree.fromstring(_as_bytes(xml), _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlsecError(f"not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise XmlsecError("document type declarations are not accepted in SAML messages")
    return root


def parse(xml: str | bytes) -> etree._Element:
    """Parse a SAML message with the hardened parser and check its IDs are unique.

    The one parse of a message: :func:`verify_node` and :func:`decrypt_node` then
    work on its elements.
    """
    root = _parse(xml)
    _ids_are_unique(root)
    return root


def check_unique_ids(root: etree._Element) -> None:
    """Refuse a document in which two elements share an ID (after a decryption, say)."""
    _ids_are_unique(root)


def _serialize(root: etree._Element) -> str:
    return etree.tostring(root.getroottree(), encoding="unicode")


def _split_node_name(node_name: str) -> str:
    """``urn:...:assertion:Assertion`` → ``{urn:...:assertion}Assertion`` (pysaml2's class_name)."""
    namespace, _, local = node_name.rpartition(":")
    return f"{{{namespace}}}{local}" if namespace else local


def _ids_are_unique(root: etree._Element) -> None:
    """SAML Core §1.3.4: identifiers are unique; an ID attribute is an xs:ID (unique per document).

    Signature wrapping relies on two elements carrying the same ID, one signed
    and one used; with unique IDs, "the element with this ID" is one element.
    """
    values = root.xpath("//@ID | //@xml:id")
    if len(values) != len(set(values)):
        raise SignatureError("duplicate ID attribute values in the document (SAML Core §1.3.4)")


def _find_node(root: etree._Element, node_name: str, node_id: str | None) -> tuple[etree._Element, str | None]:
    """The node *node_id* of type *node_name*; the document element when *node_id* is None.

    Mirrors ``xmlsec1 --id-attr:ID <node_name> --node-id <node_id>``: only the
    ``ID`` of elements named *node_name* counts.  Returns the node and the ID a
    same-document reference to it must name.
    """
    tag = _split_node_name(node_name)
    if node_id is None:
        return root, (root.get("ID") if root.tag == tag else None)
    if not isinstance(node_id, str) or not _NCNAME.match(node_id):
        raise SignatureError("the node ID is not an NCName (XML Schema xs:ID)")
    matches = [element for element in root.xpath("//*[@ID=$id]", id=node_id) if element.tag == tag]
    if len(matches) != 1:
        raise SignatureError(f"no single {node_name} element with ID {node_id!r}")
    return matches[0], node_id


def _algorithm(element: etree._Element | None, allowed: dict[str, Any], what: str, clause: str):
    algorithm = element.get("Algorithm") if element is not None else None
    if algorithm not in allowed:
        raise SignatureError(f"{what} {algorithm!r} is not allowed ({clause})")
    return allowed[algorithm]


def _enveloped_signature(node: etree._Element, node_ref_id: str | None) -> etree._Element:
    """The node's own ``<ds:Signature>``, checked against the SAML signature profile.

    Every check here is made on the very elements libxmlsec1 will process.
    """
    signatures = node.findall(_SIGNATURE)
    if len(signatures) != 1:
        # SAML Core §5.4.1: enveloped signatures; the signature is a child of the signed element.
        raise SignatureError(f"expected one enveloped <ds:Signature> child, found {len(signatures)}")
    signature = signatures[0]

    signed_info = signature.find(_SIGNED_INFO)
    if signed_info is None or signature.index(signed_info) != 0:
        raise SignatureError("<ds:SignedInfo> must be the first child of <ds:Signature> (XML-DSig §4.2)")
    if len(signature.findall(_SIGNED_INFO)) != 1:
        raise SignatureError("more than one <ds:SignedInfo> (XML-DSig §4.2)")
    if signature.find(_OBJECT) is not None:
        # XML-DSig §4.6: <ds:Object> holds enveloping content, which SAML Core §5.4.1 excludes;
        # it only ever carries unsigned data next to a SAML signature (XSW8).
        raise SignatureError("<ds:Object> is not allowed in SAML signatures (SAML Core §5.4.1, XML-DSig §4.6)")

    _algorithm(signed_info.find(_C14N_METHOD), _C14N_ALGORITHMS, "canonicalization method", "SAML Core §5.4.3")
    _algorithm(signed_info.find(_SIGNATURE_METHOD), _SIGNATURE_ALGORITHMS, "signature method", "XML-DSig §4.4.2, §6.4")

    references = signed_info.findall(_REFERENCE)
    if len(references) != 1:
        raise SignatureError(f"expected exactly one <ds:Reference>, found {len(references)} (SAML Core §5.4.2)")
    reference = references[0]
    uri = reference.get("URI")
    if uri is None or uri == "":
        # XML-DSig §4.4.3.3: URI="" identifies the whole document (an absent URI, to xmlsec, too).
        if node.getparent() is not None:
            raise SignatureError("an empty Reference URI signs the whole document, not this node (SAML Core §5.4.2)")
    elif node_ref_id is None or uri != "#" + node_ref_id:
        # XML-DSig §4.4.3.3 same-document reference; SAML Core §5.4.2: it names the signed element's ID.
        raise SignatureError(f"Reference URI {uri!r} does not point at the signed node (SAML Core §5.4.2)")

    transforms = reference.find(_TRANSFORMS)
    algorithms = [t.get("Algorithm") for t in transforms.findall(_TRANSFORM)] if transforms is not None else []
    for algorithm in algorithms:
        if algorithm not in _REFERENCE_TRANSFORMS:
            raise SignatureError(f"transform {algorithm!r} is not allowed (SAML Core §5.4.4)")
    if len(set(algorithms)) != len(algorithms) or TRANSFORM_ENVELOPED not in algorithms:
        raise SignatureError("transforms must be enveloped-signature plus at most one c14n (SAML Core §5.4.4)")
    _algorithm(reference.find(_DIGEST_METHOD), _DIGEST_ALGORITHMS, "digest method", "XML-DSig §4.4.3.5, §6.2")
    return signature


def _signature_context(key: xmlsec.Key) -> xmlsec.SignatureContext:
    """A verification context with the allow-listed algorithms and a preset key.

    With the key preset, libxmlsec1 skips ``<ds:KeyInfo>`` altogether
    (xmlSecDSigCtxProcessKeyInfoNode), so no key can come from the document.
    """
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.set_enabled_key_data([xmlsec.KeyData.RAWX509CERT])
    for transform in (*_C14N_ALGORITHMS.values(), *_SIGNATURE_ALGORITHMS.values()):
        ctx.enable_signature_transform(transform)
    for transform in (*_REFERENCE_TRANSFORMS.values(), *_DIGEST_ALGORITHMS.values()):
        ctx.enable_reference_transform(transform)
    return ctx


# -- keys ----------------------------------------------------------------------------------


def _read_material(material: KeyMaterial) -> bytes:
    """Bytes of key or certificate *material*: content as given, or the file it names."""
    if isinstance(material, (bytes, bytearray)):
        return bytes(material)
    if isinstance(material, str) and material.lstrip().startswith("-----BEGIN"):
        return material.encode("ascii")
    if isinstance(material, (str, os.PathLike)):
        with open(material, "rb") as handle:
            return handle.read()
    raise TypeError(f"expected key material (bytes, PEM text or a path), got {type(material).__name__}")


@functools.lru_cache(maxsize=512)
def _certificate_key(content: bytes, der: bool) -> xmlsec.Key:
    """The certificate's public key as a bare xmlsec key.

    Loading the SubjectPublicKeyInfo rather than the certificate keeps X.509
    data out of the key, which makes the per-verification key copy ~60x
    cheaper; the subprocess path does not use the certificate beyond its key
    either (no chain or validity check: metadata is the trust anchor).
    """
    try:
        cert = x509.load_der_x509_certificate(content) if der else x509.load_pem_x509_certificate(content)
        spki = cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        return xmlsec.Key.from_memory(spki, xmlsec.KeyFormat.PEM)
    except (ValueError, TypeError, xmlsec.Error) as exc:
        raise XmlsecError(f"cannot load certificate: {exc}") from None


@functools.lru_cache(maxsize=64)
def _private_key(content: bytes) -> xmlsec.Key:
    try:
        return xmlsec.Key.from_memory(content, xmlsec.KeyFormat.PEM)
    except xmlsec.Error as exc:
        raise XmlsecError(f"cannot load private key: {exc}") from None


def certificate_key(material: KeyMaterial, cert_type: str = "pem") -> xmlsec.Key:
    """The public key of an X.509 certificate (``pem`` or ``der``), cached by content."""
    if cert_type not in ("pem", "der"):
        raise XmlsecError(f"unsupported certificate type {cert_type!r}")
    return _certificate_key(_read_material(material), cert_type == "der")


def private_key(material: KeyMaterial) -> xmlsec.Key:
    """A PEM private key (PKCS#1 or PKCS#8, unencrypted), cached by content."""
    return _private_key(_read_material(material))


def clear_key_cache() -> None:
    """Forget every parsed key and certificate (tests; key rotation without restart)."""
    _certificate_key.cache_clear()
    _private_key.cache_clear()


# -- the four operations -------------------------------------------------------------------


def verify_signature(xml: str | bytes, key: xmlsec.Key, node_name: str = NODE_NAME,
                     node_id: str | None = None) -> etree._Element:
    """Verify the enveloped signature of node *node_id* (type *node_name*) with *key*.

    Returns the verified element; raises :class:`~saml2.sigver.SignatureError`
    (an ``XmlsecError``, as the subprocess path does) on any failure.
    """
    root = _parse(xml)
    _ids_are_unique(root)
    node, node_ref_id = _find_node(root, node_name, node_id)
    return verify_node(node, node_ref_id, key)


def verify_node(node: etree._Element, node_ref_id: str | None, key: xmlsec.Key) -> etree._Element:
    """Verify the enveloped signature of *node*, an element of an already parsed document.

    For callers that parsed (and checked ID uniqueness of) the document once, with
    :func:`parse`; *node_ref_id* is the node's ``ID`` (``None`` for the document element
    signed with an empty reference).  Same checks and errors as :func:`verify_signature`.
    """
    signature = _enveloped_signature(node, node_ref_id)
    ctx = _signature_context(key)
    if node_ref_id is not None:
        # XML-DSig §4.4.3.3: "#id" resolves through registered IDs; this node's is the only one.
        ctx.register_id(node, "ID")
    try:
        ctx.verify(signature)
    except (xmlsec.VerificationError, xmlsec.Error) as exc:
        raise SignatureError(f"signature verification failed: {exc}") from None
    return node


def sign(xml: str | bytes | SamlBase, key: xmlsec.Key, node_name: str = NODE_NAME,
         node_id: str | None = None) -> str:
    """Fill in the ``<ds:Signature>`` template of node *node_id* (type *node_name*).

    pysaml2 places the template (``pre_signature_part``: algorithms, the
    ``#<ID>`` reference and the signer certificate) before calling; the result
    is the whole document, as ``xmlsec1 --sign`` writes it.
    """
    root = _parse(xml)
    node, node_ref_id = _find_node(root, node_name, node_id)
    signature = node.find(_SIGNATURE)
    if signature is None:
        raise SignatureError(f"no <ds:Signature> template in {node_name} {node_id!r}")
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    if node_ref_id is not None:
        ctx.register_id(node, "ID")
    try:
        ctx.sign(signature)
    except xmlsec.Error as exc:
        raise SignatureError(f"signing failed: {exc}") from None
    return _serialize(root)


def _encrypted_key_for(root: etree._Element, encrypted_data: etree._Element) -> etree._Element:
    """The ``<xenc:EncryptedKey>`` carrying the session key of *encrypted_data*.

    Either inside its ``<ds:KeyInfo>`` (XML-Enc §3.5.1) or named there by a
    same-document ``<ds:RetrievalMethod>`` (XML-Enc §3.5.1, XML-DSig §4.5.3;
    ``xmlsec1 --id-attr:Id EncryptedKey``).
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


def decrypt(xml: str | bytes, key: xmlsec.Key) -> str:
    """Decrypt the first ``<xenc:EncryptedData>`` of the document with *key* (ours).

    As ``xmlsec1 --decrypt``: the decrypted element replaces the
    ``EncryptedData`` and the whole document is returned.  The session key is
    unwrapped from the ``<xenc:EncryptedKey>`` with our private key only.
    """
    root = _parse(xml)
    encrypted_data = next(root.iter(_ENCRYPTED_DATA), None)
    if encrypted_data is None:
        raise DecryptError("no <xenc:EncryptedData> in the document")
    decrypt_node(root, encrypted_data, key)
    return _serialize(root)


def decrypt_node(root: etree._Element, encrypted_data: etree._Element, key: xmlsec.Key) -> None:
    """Decrypt *encrypted_data* of the parsed document *root* in place (see :func:`decrypt`)."""
    try:
        klass, size = _BLOCK_CIPHERS[encrypted_data.find(_ENCRYPTION_METHOD).get("Algorithm")]
    except (AttributeError, KeyError):
        raise DecryptError("unsupported or missing EncryptedData EncryptionMethod (XML-Enc §5.2)") from None
    encrypted_key = _encrypted_key_for(root, encrypted_data)
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
        klass, size = _BLOCK_CIPHERS[template.find(_ENCRYPTION_METHOD).get("Algorithm")]
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


def _single_xpath_node(root: etree._Element, xpath: str) -> etree._Element:
    found = root.xpath(xpath)
    if not isinstance(found, list) or len(found) != 1 or not isinstance(found[0], etree._Element):
        raise EncryptError(f"{xpath!r} does not select exactly one element")
    return found[0]


# -- the pysaml2 crypto backend ------------------------------------------------------------


class CryptoBackendXmlSecInProcess(CryptoBackend):
    """pysaml2's :class:`~saml2.sigver.CryptoBackendXmlSec1` interface, in process.

    Arguments named ``*_file`` accept what pysaml2 passes (a path) and also the
    key or certificate content (bytes or PEM text), which is what
    :class:`InProcessSecurityContext` passes so that no file is read per call.
    Failures raise the subprocess path's exceptions: ``SignatureError``,
    ``DecryptError``, ``EncryptError`` (all ``XmlsecError``).
    """

    @property
    def version(self) -> str:
        """The libxmlsec1 version (``1.3.x``), as ``xmlsec1 --version`` reports it."""
        return ".".join(str(part) for part in xmlsec.get_libxmlsec_version())

    def validate_signature(self, signedtext, cert_file, cert_type, node_name, node_id):
        """``xmlsec1 --verify --enabled-reference-uris empty,same-doc --enabled-key-data
        raw-x509-cert --pubkey-cert-<type> <cert> --id-attr:ID <node_name> --node-id <id>``.

        Returns True; raises ``SignatureError`` when the signature does not verify.
        """
        self.verify(signedtext, cert_file, cert_type, node_name, node_id)
        return True

    def verify(self, signedtext, cert_file, cert_type, node_name, node_id) -> etree._Element:
        """As :meth:`validate_signature`, returning the verified element."""
        return verify_signature(signedtext, certificate_key(cert_file, cert_type), node_name, node_id)

    def sign_statement(self, statement, node_name, key_file, node_id):
        """``xmlsec1 --sign --privkey-pem <key> --id-attr:ID <node_name> --node-id <id>``."""
        return sign(statement, private_key(key_file), node_name, node_id)

    def decrypt(self, enctext, key_file):
        """``xmlsec1 --decrypt --privkey-pem <key> --id-attr:Id EncryptedKey``."""
        return decrypt(enctext, private_key(key_file))

    def encrypt_assertion(self, statement, enc_key, template, key_type="des-192", node_xpath=None, node_id=None):
        """Encrypt the assertion of a Response for the holder of certificate *enc_key*.

        *statement* is a ``samlp.Response`` (its assertion is first moved into an
        ``<saml:EncryptedAssertion>``, SAML Core §2.3.4) or its XML; the node is
        chosen by *node_id* (an ``ID``) or *node_xpath* (default: the Response's
        ``EncryptedAssertion/Assertion``).  The session key type follows the
        template's EncryptionMethod (*key_type* is accepted for compatibility).
        """
        if isinstance(statement, SamlBase):
            statement = pre_encrypt_assertion(statement)
        root = _parse(statement)
        if node_id:
            nodes = root.xpath("//*[@ID=$id]", id=node_id)
            if len(nodes) != 1:
                raise EncryptError(f"no single element with ID {node_id!r}")
            node = nodes[0]
        else:
            node = _single_xpath_node(root, node_xpath or ASSERT_XPATH)
        encrypt_node(root, node, _parse(template), certificate_key(enc_key))
        return _serialize(root)

    def encrypt(self, text, recv_key, template, session_key_type, xpath=""):
        """``xmlsec1 --encrypt --pubkey-cert-pem <recv_key> --xml-data <text> <template>``."""
        root = _parse(text)
        node = _single_xpath_node(root, xpath) if xpath else root
        if isinstance(template, (str, os.PathLike)) and not str(template).lstrip().startswith("<"):
            template = _read_material(template)
        encrypted = encrypt_node(root, node, _parse(template), certificate_key(recv_key))
        return _serialize(encrypted if node is root else root)


# -- the pysaml2 security context ----------------------------------------------------------


def _saml_profile_violations(item) -> dict[str, bool]:
    """pysaml2's own SAML Core §5.4 checks on its parsed view of the signed item.

    Kept verbatim in meaning (see ``SecurityContext._check_signature``) so that
    both backends refuse the same messages before any cryptography runs.
    """
    signed_info = item.signature.signed_info
    references = signed_info.reference
    single_reference = len(references) == 1
    uri = references[0].uri if single_reference else None
    has_uri = single_reference and uri is not None
    anchor = has_uri and uri.startswith("#") and len(uri) > 1
    points_to_item = anchor and uri == f"#{item.id}"
    c14n_ok = signed_info.canonicalization_method.algorithm in ALLOWED_CANONICALIZATIONS
    transforms = references[0].transforms if single_reference else None
    algorithms = [t.algorithm for t in transforms.transform] if transforms is not None else []
    one_or_two = single_reference and 1 <= len(algorithms) <= 2
    all_allowed = one_or_two and len(algorithms) == len(ALLOWED_TRANSFORMS.intersection(algorithms))
    enveloped = one_or_two and TRANSFORM_ENVELOPED in algorithms
    return {
        "signatures must have a single reference element": single_reference,
        "the Reference element must have a URI attribute": has_uri,
        "the URI attribute contains an anchor": anchor,
        "the anchor points to the enclosing element ID attribute": points_to_item,
        "canonicalization method is c14n": c14n_ok,
        "the number of transforms is one or two": one_or_two,
        "all transform algs are allowed": all_allowed,
        "the enveloped signature transform is defined": enveloped,
        "object element is not present": not item.signature.object,
    }


class InProcessSecurityContext(SecurityContext):
    """pysaml2's SecurityContext without temporary files.

    The base class writes every metadata certificate (and every decryption or
    signing key passed as content) to a temporary file for each check.  This
    subclass passes key material in memory to :class:`CryptoBackendXmlSecInProcess`
    and reads the configured key files once, at construction.

    Signed items are schema-validated as in the base class; :attr:`schema_validation`
    picks how (see :data:`SCHEMA_VALIDATIONS`; default ``libxml2``).

    Deliberate differences from the base class (both fail closed):

    * certificates embedded in a message are never used, even with
      ``only_use_keys_in_metadata: false``: no metadata key, no trust
      (:class:`~saml2.sigver.MissingKey`);
    * a signature that does not verify is refused even with
      ``want_authn_requests_only_with_valid_cert`` (the base class then only
      checks the certificate).
    """

    schema_validation = DEFAULT_SCHEMA_VALIDATION

    def __init__(self, crypto: CryptoBackendXmlSecInProcess, key_file: str = "", *args, **kwargs):
        if not isinstance(crypto, CryptoBackendXmlSecInProcess):
            raise TypeError("InProcessSecurityContext needs a CryptoBackendXmlSecInProcess")
        super().__init__(crypto, key_file, *args, **kwargs)
        self._key_source = self.key_file
        self._key_content = _read_material(self.key_file) if self.key_file else None
        self._enc_key_contents = [_read_material(path) for path in (self.enc_key_files or []) if path]
        if not self.only_use_keys_in_metadata:
            logger.warning("only_use_keys_in_metadata is false: ignored, signatures verify with metadata keys only")

    @classmethod
    def from_config(cls, conf, crypto: CryptoBackendXmlSecInProcess | None = None) -> InProcessSecurityContext:
        """Build from a pysaml2 Config, as :func:`saml2.sigver.security_context` does."""
        return _build_security_context(conf, crypto or CryptoBackendXmlSecInProcess(), cls)

    # -- signing ---------------------------------------------------------------------------

    def _signing_key(self) -> KeyMaterial:
        # CertHandler may switch key_file to a generated key (generate_cert_info); follow it.
        if self.key_file == self._key_source and self._key_content is not None:
            return self._key_content
        return self.key_file

    def sign_statement(self, statement, node_name, key=None, key_file=None, node_id=None):
        """Sign node *node_id*; *key* is base64 of the PEM key, as in the base class."""
        if not key_file and key:
            material: KeyMaterial = base64.b64decode(str(key).encode())
        elif key_file:
            material = key_file
        else:
            material = self._signing_key()
        return self.crypto.sign_statement(statement, node_name, material, node_id)

    # -- verification ----------------------------------------------------------------------

    def _metadata_certificates(self, issuer: str | None) -> list[bytes]:
        if not self.metadata:
            return []
        try:
            entries = self.metadata.certs(issuer, "any", "signing")
        except KeyError:
            return []
        certs: list[bytes] = []
        for _name, cert in entries:
            pem = pem_format(cert) if isinstance(cert, str) else _read_material(cert)
            if pem not in certs:
                certs.append(pem)
        return certs

    def _check_signature(self, decoded_xml, item, node_name=NODE_NAME, origdoc=None, must=False,
                         only_valid_cert=False, issuer=None):
        try:
            _issuer = item.issuer.text.strip()
        except AttributeError:
            try:
                _issuer = issuer.text.strip()
            except AttributeError:
                _issuer = None

        certs = self._metadata_certificates(_issuer)
        if not certs:
            raise MissingKey(_issuer)

        if self.schema_validation != "signed-node":
            self._validate_schema(str(item), item, _issuer, node_name)

        validators = _saml_profile_violations(item)
        if not all(validators.values()):
            raise SignatureError({
                "message": "Signature failed to meet constraints on xmldsig",
                "validators": validators, "item ID": item.id, "issuer": _issuer, "node name": node_name,
            })

        verified_with = node = None
        for cert in certs:
            try:
                node = self.crypto.verify(decoded_xml, cert, "pem", node_name, item.id)
            except XmlsecError as exc:
                logger.info("signature of %s %s not verified with a key of %s: %s", node_name, item.id, _issuer, exc)
            else:
                verified_with = cert
                break
        if verified_with is None:
            raise SignatureError("Failed to verify signature")
        if self.schema_validation == "signed-node":
            self._validate_schema(node, item, _issuer, node_name)
        if not self._certificate_acceptable(verified_with):
            raise CertificateError("Invalid certificate!")
        return item

    def _validate_schema(self, document, item, issuer, node_name) -> None:
        validate = validate_with_xmlschema if self.schema_validation == "xmlschema" else xmlsig_schema.validate
        try:
            validate(document)
        except XMLSchemaError as exc:
            raise SignatureError({
                "message": "Signature verification failed. Invalid document format.",
                "reason": str(exc), "ID": item.id, "issuer": issuer, "type": node_name,
            }) from exc

    def _certificate_acceptable(self, cert_pem: bytes) -> bool:
        """``validate_certificate``: the signer certificate chains to our own (CertHandler.verify_cert)."""
        handler = self.cert_handler
        if not getattr(handler, "_verify_cert", False):
            return True
        cert_str = cert_pem.decode("ascii")
        extra = getattr(handler, "_cert_handler_extra_class", None)
        if extra is not None and extra.use_validate_cert_func():
            return bool(extra.validate_cert(cert_str, handler._cert_str, handler._key_str))
        valid, message = handler._osw.verify(handler._cert_str, cert_str)
        logger.info("CertHandler.verify_cert: %s", message)
        return bool(valid)

    def verify_signature(self, signedtext, cert_file=None, cert_type="pem", node_name=NODE_NAME, node_id=None):
        if not cert_file:
            cert_file, cert_type = self.cert_file, self.cert_type
        return self.crypto.validate_signature(signedtext, cert_file=cert_file, cert_type=cert_type,
                                              node_name=node_name, node_id=node_id)

    # -- decryption ------------------------------------------------------------------------

    def decrypt_keys(self, enctext, keys=None):
        """Decrypt with *keys* (PEM content, e.g. from ``outstanding_certs``), then our keys."""
        if not isinstance(keys, list):
            keys = [keys]
        return self.decrypt(enctext, key_file=[key for key in keys if key])

    def decrypt(self, enctext, key_file=None):
        candidates: list[KeyMaterial] = list(key_file) if isinstance(key_file, list) else [key_file]
        candidates = [key for key in candidates if key] + self._enc_key_contents
        for material in candidates:
            try:
                decrypted = self.crypto.decrypt(enctext, material)
            except XmlsecError:
                continue
            if decrypted:
                return decrypted
        raise DecryptError(f"No key was able to decrypt the ciphertext ({len(candidates)} keys tried)")


def _build_security_context(conf, crypto: CryptoBackend, cls: type[SecurityContext] = SecurityContext):
    """:func:`saml2.sigver.security_context` with a given crypto backend and class."""
    sec_backend = None
    if conf.getattr("key_file", ""):
        sec_backend = RSACrypto(import_rsa_key_from_file(conf.key_file))  # HTTP-Redirect signatures
    enc_key_files = [pair["key_file"] for pair in (conf.encryption_keypairs or []) if "key_file" in pair]
    return cls(
        crypto,
        conf.key_file,
        cert_file=conf.cert_file,
        metadata=getattr(conf, "metadata", None),
        only_use_keys_in_metadata=conf.only_use_keys_in_metadata,
        cert_handler_extra_class=conf.cert_handler_extra_class,
        generate_cert_info=conf.generate_cert_info,
        tmp_cert_file=conf.tmp_cert_file,
        tmp_key_file=conf.tmp_key_file,
        validate_certificate=conf.validate_certificate,
        enc_key_files=enc_key_files,
        encryption_keypairs=conf.encryption_keypairs,
        sec_backend=sec_backend,
        delete_tmpfiles=conf.delete_tmpfiles,
    )


# -- installing a backend on a pysaml2 entity ----------------------------------------------


def check_libxml2() -> tuple[int, int, int]:
    """Refuse to run when lxml and python-xmlsec use different libxml2 versions.

    lxml hands its libxml2 trees to libxmlsec1 as they are; with two different
    libxml2 builds in the process, structures and ID tables do not match
    (python-xmlsec documents this as unsupported).  Returns the version.
    """
    lxml_version = tuple(etree.LIBXML_VERSION)
    xmlsec_version = tuple(xmlsec.get_libxml_version())
    if lxml_version != xmlsec_version:
        raise RuntimeError(
            f"lxml uses libxml2 {'.'.join(map(str, lxml_version))} but python-xmlsec uses "
            f"{'.'.join(map(str, xmlsec_version))}: install matching wheels "
            "(pip install --no-binary lxml,xmlsec, or pin versions built against the same libxml2)")
    return lxml_version



def _encrypt_assertion_in_memory(self, encrypt_cert, sp_entity_id, response, node_xpath=None):
    """``Entity._encrypt_assertion`` without the temporary certificate file."""
    if encrypt_cert:
        certs = [(None, encrypt_cert)]
    elif sp_entity_id is not None:
        certs = self.metadata.certs(sp_entity_id, "any", "encryption")
    else:
        certs = []
    exception = None
    for cert_name, cert in certs:
        wrapped, unwrapped = get_pem_wrapped_unwrapped(cert)
        try:
            return self.sec.encrypt_assertion(
                response, wrapped.encode("ascii"),
                pre_encryption_part(key_name=cert_name, encrypt_cert=unwrapped), node_xpath=node_xpath,
            )
        except Exception as exc:  # noqa: BLE001 - as Entity._encrypt_assertion: try the next certificate
            exception = exc
    if exception:
        raise exception
    return response


def _install(entity, context: SecurityContext) -> SecurityContext:
    """Make *context* the entity's, and its metadata store's (signed metadata, MDQ)."""
    entity.sec = context
    store = getattr(entity, "metadata", None)
    if store is not None and hasattr(store, "security"):
        store.security = context
        for source in getattr(store, "metadata", {}).values():
            if getattr(source, "security", None) is not None:
                source.security = context
    return context


def use_in_process_signatures(entity, *, schema_validation: str = DEFAULT_SCHEMA_VALIDATION
                              ) -> InProcessSecurityContext:
    """Switch a pysaml2 entity to in-process signatures; returns the new security context.

    *entity* is a :class:`saml2.entity.Entity`: SATOSA's ``SAMLBackend.sp``
    (a ``Saml2Client``) or ``SAMLFrontend.idp`` (a ``Server``).  Call it once,
    after construction.  Key files are read here, never afterwards.
    *schema_validation* is one of :data:`SCHEMA_VALIDATIONS`.
    """
    if schema_validation not in SCHEMA_VALIDATIONS:
        raise ValueError(f"schema_validation must be one of {', '.join(SCHEMA_VALIDATIONS)}")
    check_libxml2()
    context = InProcessSecurityContext.from_config(entity.config)
    context.schema_validation = schema_validation
    if schema_validation != "xmlschema":
        xmlsig_schema.prepare()
    _install(entity, context)
    entity._encrypt_assertion = types.MethodType(_encrypt_assertion_in_memory, entity)
    return context


def use_xmlsec1_signatures(entity, xmlsec_binary: str | None = None) -> SecurityContext:
    """Switch a pysaml2 entity to pysaml2's own ``xmlsec1`` subprocess path.

    Raises :class:`~saml2.sigver.SigverError` when the binary cannot be found.
    """
    conf = entity.config
    binary = xmlsec_binary or conf.xmlsec_binary or get_xmlsec_binary(getattr(conf, "xmlsec_path", None) or [])
    if not os.path.exists(binary):
        raise SigverError(f"xmlsec binary not found: {binary}")
    crypto = CryptoBackendXmlSec1(binary, delete_tmpfiles=conf.delete_tmpfiles)
    context = _install(entity, _build_security_context(conf, crypto))
    entity.__dict__.pop("_encrypt_assertion", None)
    return context


def configure_signatures(entity, backend_name: str | None = DEFAULT_SIGNATURE_BACKEND, *,
                         schema_validation: str = DEFAULT_SCHEMA_VALIDATION) -> SecurityContext:
    """Apply the ``signature_backend`` setting (``in-process``, the default, or ``xmlsec1``).

    *schema_validation* applies to ``in-process`` (the ``xmlsec1`` path is
    pysaml2's, unchanged, and always uses its own validator).
    """
    name = backend_name or DEFAULT_SIGNATURE_BACKEND
    if name == IN_PROCESS:
        return use_in_process_signatures(entity, schema_validation=schema_validation)
    if name == XMLSEC1:
        return use_xmlsec1_signatures(entity)
    raise ValueError(f"signature_backend must be one of {', '.join(SIGNATURE_BACKENDS)}, not {backend_name!r}")


def pysaml2_config_overrides(backend_name: str | None = DEFAULT_SIGNATURE_BACKEND) -> dict[str, Any]:
    """Settings to merge into a pysaml2 entity configuration before it is built.

    pysaml2 builds a security context while loading its configuration (for the
    entity and its metadata store), and with ``crypto_backend: xmlsec1`` that
    requires the binary.  For ``in-process`` the placeholder ``XMLSecurity``
    backend is used during construction (it needs nothing), and
    :func:`configure_signatures` replaces it before any message is handled; a
    message handled by the placeholder fails, it is never accepted.
    """
    name = backend_name or DEFAULT_SIGNATURE_BACKEND
    if name not in SIGNATURE_BACKENDS:
        raise ValueError(f"signature_backend must be one of {', '.join(SIGNATURE_BACKENDS)}, not {backend_name!r}")
    return {"crypto_backend": "XMLSecurity" if name == IN_PROCESS else "xmlsec1"}


__all__ = [
    "check_unique_ids",
    "decrypt_node",
    "parse",
    "verify_node",
    "DEFAULT_SCHEMA_VALIDATION",
    "DEFAULT_SIGNATURE_BACKEND",
    "IN_PROCESS",
    "SCHEMA_VALIDATIONS",
    "SIGNATURE_BACKENDS",
    "XMLSEC1",
    "CryptoBackendXmlSecInProcess",
    "InProcessSecurityContext",
    "certificate_key",
    "check_libxml2",
    "clear_key_cache",
    "configure_signatures",
    "decrypt",
    "encrypt_node",
    "private_key",
    "pysaml2_config_overrides",
    "sign",
    "use_in_process_signatures",
    "use_xmlsec1_signatures",
    "verify_signature",
]
