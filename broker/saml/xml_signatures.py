"""Enveloped XML signatures of SAML elements, verified and made with python-xmlsec.

What is verified is exactly what SAML Core §5.4 allows, checked on the very
elements libxmlsec1 will process:

* **The signed node is the node the caller uses.**  The node verified is the
  one element named *node_name* whose ``ID`` is *node_id*; ``ID`` values are
  unique in the document and only that element's ``ID`` is registered for
  reference resolution.
* **One enveloped signature, one same-document reference to that node**
  (SAML Core §5.4.1, §5.4.2): the ``<ds:Signature>`` is a child of the node,
  with exactly one ``<ds:Reference>`` whose URI is ``#<node_id>``, or empty
  when the node is the document element.  No ``<ds:Object>``.
* **Allow-listed algorithms**: exclusive canonicalization (§5.4.3), the
  enveloped-signature and exclusive c14n transforms (§5.4.4), SHA-1/SHA-2
  digests, RSA or ECDSA signatures.  With a
  :class:`~broker.saml.crypto_policy.CryptoPolicy` (the SAML response
  processor always passes the IdP's) only the policy's digests and signature
  methods are accepted, both by a check before any cryptography and in the
  libxmlsec1 context itself.
* **Keys come from metadata only** (SAML Metadata §2.4.1.1): the key is set on
  the signature context before verification, so libxmlsec1 never reads
  ``<ds:KeyInfo>`` and a certificate the sender embeds is ignored.

Without a policy (pysaml2's crypto backend, pinned metadata) the allow-list
above applies as it is, SHA-1 included (ADR 0003, ADR 0009).
"""

from __future__ import annotations

import functools
from typing import Any

import xmlsec
from lxml import etree
from saml2 import SamlBase
from saml2.sigver import NODE_NAME, SignatureError
from saml2.xmldsig import TRANSFORM_ENVELOPED

from broker.saml import crypto_policy as algorithms
from broker.saml.crypto_policy import CryptoPolicy
from broker.saml.xml_parsing import check_unique_ids, find_node, parse_document, serialize

DS_NS = "http://www.w3.org/2000/09/xmldsig#"

_SIGNATURE = f"{{{DS_NS}}}Signature"
_SIGNED_INFO = f"{{{DS_NS}}}SignedInfo"
_C14N_METHOD = f"{{{DS_NS}}}CanonicalizationMethod"
_SIGNATURE_METHOD = f"{{{DS_NS}}}SignatureMethod"
_REFERENCE = f"{{{DS_NS}}}Reference"
_TRANSFORMS = f"{{{DS_NS}}}Transforms"
_TRANSFORM = f"{{{DS_NS}}}Transform"
_DIGEST_METHOD = f"{{{DS_NS}}}DigestMethod"
_OBJECT = f"{{{DS_NS}}}Object"

# Exclusive canonicalization, with or without comments (SAML Core §5.4.3).
C14N_ALGORITHMS = {
    "http://www.w3.org/2001/10/xml-exc-c14n#": xmlsec.constants.TransformExclC14N,
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments": xmlsec.constants.TransformExclC14NWithComments,
}
# Enveloped signature plus exclusive canonicalization (SAML Core §5.4.4).
REFERENCE_TRANSFORMS = {TRANSFORM_ENVELOPED: xmlsec.constants.TransformEnveloped, **C14N_ALGORITHMS}
DIGEST_ALGORITHMS = {
    algorithms.DIGEST_SHA1: xmlsec.constants.TransformSha1,
    algorithms.DIGEST_SHA224: xmlsec.constants.TransformSha224,
    algorithms.DIGEST_SHA256: xmlsec.constants.TransformSha256,
    algorithms.DIGEST_SHA384: xmlsec.constants.TransformSha384,
    algorithms.DIGEST_SHA512: xmlsec.constants.TransformSha512,
}
# Public-key signatures only: an HMAC "signature" keyed with a public value is forgeable.
SIGNATURE_ALGORITHMS = {
    algorithms.RSA_SHA1: xmlsec.constants.TransformRsaSha1,
    algorithms.DSIG_MORE + "rsa-sha224": xmlsec.constants.TransformRsaSha224,
    algorithms.RSA_SHA256: xmlsec.constants.TransformRsaSha256,
    algorithms.RSA_SHA384: xmlsec.constants.TransformRsaSha384,
    algorithms.RSA_SHA512: xmlsec.constants.TransformRsaSha512,
    algorithms.ECDSA_SHA1: xmlsec.constants.TransformEcdsaSha1,
    algorithms.DSIG_MORE + "ecdsa-sha224": xmlsec.constants.TransformEcdsaSha224,
    algorithms.ECDSA_SHA256: xmlsec.constants.TransformEcdsaSha256,
    algorithms.ECDSA_SHA384: xmlsec.constants.TransformEcdsaSha384,
    algorithms.ECDSA_SHA512: xmlsec.constants.TransformEcdsaSha512,
}


def _algorithm(element: etree._Element | None, allowed: dict[str, Any], what: str, clause: str):
    algorithm = element.get("Algorithm") if element is not None else None
    if algorithm not in allowed:
        raise SignatureError(f"{what} {algorithm!r} is not allowed ({clause})")
    return allowed[algorithm]


def enveloped_signature(node: etree._Element, node_ref_id: str | None) -> etree._Element:
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

    _algorithm(signed_info.find(_C14N_METHOD), C14N_ALGORITHMS, "canonicalization method", "SAML Core §5.4.3")
    _algorithm(signed_info.find(_SIGNATURE_METHOD), SIGNATURE_ALGORITHMS, "signature method", "XML-DSig §4.4.2, §6.4")

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
    names = [t.get("Algorithm") for t in transforms.findall(_TRANSFORM)] if transforms is not None else []
    for name in names:
        if name not in REFERENCE_TRANSFORMS:
            raise SignatureError(f"transform {name!r} is not allowed (SAML Core §5.4.4)")
    if len(set(names)) != len(names) or TRANSFORM_ENVELOPED not in names:
        raise SignatureError("transforms must be enveloped-signature plus at most one c14n (SAML Core §5.4.4)")
    _algorithm(reference.find(_DIGEST_METHOD), DIGEST_ALGORITHMS, "digest method", "XML-DSig §4.4.3.5, §6.2")
    return signature


def signature_context(key: xmlsec.Key, policy: CryptoPolicy | None = None) -> xmlsec.SignatureContext:
    """A verification context with the allow-listed (or the policy's) algorithms and a preset key.

    With the key preset, libxmlsec1 skips ``<ds:KeyInfo>`` altogether
    (xmlSecDSigCtxProcessKeyInfoNode), so no key can come from the document.
    """
    signature_transforms, reference_transforms = _enabled_transforms(policy)
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.set_enabled_key_data([xmlsec.constants.KeyDataRawX509Cert])
    for transform in signature_transforms:
        ctx.enable_signature_transform(transform)
    for transform in reference_transforms:
        ctx.enable_reference_transform(transform)
    return ctx


@functools.lru_cache(maxsize=64)
def _enabled_transforms(policy: CryptoPolicy | None) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The signature and reference transforms a context enables under ``policy``, computed once per
    policy (a frozen value: at most one per combination of legacy items)."""
    signature_methods = SIGNATURE_ALGORITHMS
    digests = DIGEST_ALGORITHMS
    if policy is not None:
        accepted_methods, accepted_digests = policy.signature_methods(), policy.digest_methods()
        signature_methods = {uri: t for uri, t in SIGNATURE_ALGORITHMS.items() if uri in accepted_methods}
        digests = {uri: t for uri, t in DIGEST_ALGORITHMS.items() if uri in accepted_digests}
    return ((*C14N_ALGORITHMS.values(), *signature_methods.values()),
            (*REFERENCE_TRANSFORMS.values(), *digests.values()))


def verify_signature(xml: str | bytes, key: xmlsec.Key, node_name: str = NODE_NAME,
                     node_id: str | None = None, *, policy: CryptoPolicy | None = None) -> etree._Element:
    """Verify the enveloped signature of node *node_id* (type *node_name*) with *key*.

    Returns the verified element; raises :class:`~saml2.sigver.SignatureError`
    (an ``XmlsecError``, as pysaml2's subprocess backend did) on any failure, or
    :class:`~broker.saml.crypto_policy.AlgorithmRefused` for an algorithm *policy* refuses.
    """
    root = parse_document(xml)
    check_unique_ids(root)
    node, node_ref_id = find_node(root, node_name, node_id)
    return verify_node(node, node_ref_id, key, policy=policy)


def verify_node(node: etree._Element, node_ref_id: str | None, key: xmlsec.Key, *,
                policy: CryptoPolicy | None = None) -> etree._Element:
    """Verify the enveloped signature of *node*, an element of an already parsed document.

    For callers that parsed (and checked ID uniqueness of) the document once, with
    :func:`~broker.saml.xml_parsing.parse`; *node_ref_id* is the node's ``ID`` (``None`` for
    the document element signed with an empty reference).  Same checks and errors as
    :func:`verify_signature`; *policy* is checked before any cryptography.
    """
    signature = enveloped_signature(node, node_ref_id)
    if policy is not None:
        policy.check_signature(signature)
    ctx = signature_context(key, policy)
    try:
        if node_ref_id is not None:
            # XML-DSig §4.4.3.3: "#id" resolves through registered IDs; this node's is the only one.
            ctx.register_id(node, "ID")
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
    root = parse_document(xml)
    node, node_ref_id = find_node(root, node_name, node_id)
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
    return serialize(root)


__all__ = [
    "C14N_ALGORITHMS",
    "DIGEST_ALGORITHMS",
    "REFERENCE_TRANSFORMS",
    "SIGNATURE_ALGORITHMS",
    "enveloped_signature",
    "sign",
    "signature_context",
    "verify_node",
    "verify_signature",
]
