"""Encrypted assertions for the service providers that ask for them (SAML Core §2.3.4, §6; XML-Enc 1.1).

A service provider gets its assertions encrypted when its registration says
``encrypt_assertions: true`` (ADR 0013).  The key comes from its metadata only:
the first ``<md:KeyDescriptor>`` of its ``<md:SPSSODescriptor>`` whose ``use`` is
``encryption`` or absent (an absent ``use`` means both, Metadata §2.4.1.1) and
whose ``<ds:X509Certificate>`` holds an RSA key of 2048 bits or more.  The
algorithms are the broker's (ADR 0009): AES-GCM for the data, RSA-OAEP for the
key.  When the descriptor lists ``<md:EncryptionMethod>`` elements (the
algorithms the SP supports, Metadata §2.4.1.1) the broker picks from that list,
AES-256-GCM and ``rsa-oaep-mgf1p`` first; a list that names only CBC ciphers or
only RSA PKCS#1 v1.5 is refused, as the broker never sends those.

:func:`sp_encryption` runs when the registration is validated (a registration
that asks for encryption without a usable key is refused then, never at
login); :class:`SpAssertionEncryption` is the pysaml2 hook that encrypts each
assertion for its SP, and :func:`check_encrypted` makes sure what leaves the
broker has no plaintext assertion.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from saml2.sigver import EncryptError

from broker.saml import crypto_policy as algorithms
from broker.saml.xml_encryption import AssertionEncryption
from broker.saml.xml_parsing import parse_document

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
XENC = "http://www.w3.org/2001/04/xmlenc#"

MIN_RSA_BITS = 2048

#: The data ciphers the broker encrypts with, in order of preference (AES-GCM only: XML-Enc 1.1 §5.2).
DATA_PREFERENCE = (algorithms.AES256_GCM, algorithms.AES128_GCM, algorithms.AES192_GCM)
#: The key transports, in order of preference (RSA-OAEP only: XML-Enc 1.1 §5.5.1 does not recommend v1.5).
KEY_TRANSPORT_PREFERENCE = (algorithms.RSA_OAEP_MGF1P, algorithms.RSA_OAEP)


class EncryptionUnavailable(ValueError):
    """The SP's metadata offers no key and algorithms the broker can encrypt its assertions with."""


@dataclasses.dataclass(frozen=True)
class SpEncryption:
    """How one SP's assertions are encrypted: its certificate (base64 DER) and the algorithms."""

    certificate: str
    data: str = algorithms.AES256_GCM
    key_transport: str = algorithms.RSA_OAEP_MGF1P
    oaep_digest: str | None = None
    mgf: str | None = None
    key_name: str | None = None

    def algorithms(self) -> AssertionEncryption:
        return AssertionEncryption(data=self.data, key_transport=self.key_transport, oaep_digest=self.oaep_digest,
                                   mgf=self.mgf)

    def pem(self) -> bytes:
        body = "\n".join(self.certificate[i:i + 64] for i in range(0, len(self.certificate), 64))
        return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n".encode("ascii")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpEncryption:
        return cls(**dict(data))


def sp_encryption(metadata_xml: str | bytes) -> SpEncryption:
    """The key and algorithms for the SP of ``metadata_xml``; raises :class:`EncryptionUnavailable` saying why."""
    try:
        root = parse_document(metadata_xml)
    except Exception as exc:  # noqa: BLE001 - XmlsecError or ValueError: either way no key
        raise EncryptionUnavailable(f"the metadata is not well-formed XML ({exc.__class__.__name__})") from None
    reasons: list[str] = []
    for descriptor in root.iter(f"{{{MD}}}SPSSODescriptor"):
        for key_descriptor in descriptor.findall(f"{{{MD}}}KeyDescriptor"):
            if key_descriptor.get("use") not in (None, "encryption"):
                continue
            try:
                return _from_key_descriptor(key_descriptor)
            except EncryptionUnavailable as exc:
                reasons.append(str(exc))
    if not reasons:
        raise EncryptionUnavailable('the SP\'s metadata publishes no encryption key (an md:KeyDescriptor with '
                                    'use="encryption" or no use, Metadata §2.4.1.1)')
    raise EncryptionUnavailable("no usable encryption key in the SP's metadata: " + "; ".join(reasons))


def _from_key_descriptor(key_descriptor: etree._Element) -> SpEncryption:
    key_info = key_descriptor.find(f"{{{DS}}}KeyInfo")
    text = key_info.find(f"{{{DS}}}X509Data/{{{DS}}}X509Certificate") if key_info is not None else None
    if text is None or not (text.text or "").strip():
        raise EncryptionUnavailable("an encryption KeyDescriptor without a ds:X509Certificate")
    certificate = "".join((text.text or "").split())
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(certificate, validate=True))
        public_key = cert.public_key()
    except (ValueError, binascii.Error):
        raise EncryptionUnavailable("an encryption certificate that is not base64 DER X.509") from None
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise EncryptionUnavailable("an encryption key that is not RSA (RSA-OAEP key transport, XML-Enc 1.1 §5.5)")
    if public_key.key_size < MIN_RSA_BITS:
        raise EncryptionUnavailable(f"an RSA encryption key of {public_key.key_size} bits "
                                    f"(at least {MIN_RSA_BITS} are needed)")
    name = key_info.find(f"{{{DS}}}KeyName") if key_info is not None else None
    methods = {m.get("Algorithm"): m for m in key_descriptor.findall(f"{{{MD}}}EncryptionMethod")}
    data = _choose(methods, algorithms.DATA_ENCRYPTIONS, DATA_PREFERENCE,
                   "data encryption (XML-Enc 1.1 §5.2: the broker encrypts with AES-GCM only)")
    transport = _choose(methods, algorithms.KEY_TRANSPORTS, KEY_TRANSPORT_PREFERENCE,
                        "key transport (XML-Enc 1.1 §5.5: the broker wraps keys with RSA-OAEP only)")
    digest = mgf = None
    method = methods.get(transport)
    if transport == algorithms.RSA_OAEP and method is not None:
        # XML-Enc 1.1 §5.5.2: the SP's DigestMethod and MGF for xmlenc11#rsa-oaep, if it names them.
        found = method.find(f"{{{DS}}}DigestMethod")
        digest = found.get("Algorithm") if found is not None else None
        found = method.find(f"{{{algorithms.XENC11}}}MGF")
        mgf = found.get("Algorithm") if found is not None else None
        if (digest is not None and digest not in algorithms.OAEP_DIGESTS) or (
                mgf is not None and mgf not in algorithms.MGF_ALGORITHMS):
            raise EncryptionUnavailable("an RSA-OAEP EncryptionMethod with an unknown DigestMethod or MGF "
                                        "(XML-Enc 1.1 §5.5.2)")
    key_name = (name.text or "").strip() if name is not None else ""
    return SpEncryption(certificate=certificate, data=data, key_transport=transport, oaep_digest=digest, mgf=mgf,
                        key_name=key_name or None)


def _choose(methods: Mapping[str | None, etree._Element], family: Mapping[str, Any], preference: tuple[str, ...],
            what: str) -> str:
    """The preferred algorithm of ``family`` the SP lists; the first preference when it lists none of the family."""
    listed = [uri for uri in methods if uri is not None and uri in family]
    if not listed:
        return preference[0]
    for uri in preference:
        if uri in listed:
            return uri
    raise EncryptionUnavailable(f"the SP's md:EncryptionMethod list names only {', '.join(sorted(listed))} for "
                                f"{what}")


class SpAssertionEncryption:
    """pysaml2's ``Entity._encrypt_assertion`` for the broker's IdP: each SP's own key and algorithms.

    pysaml2 calls it with the Response (its assertion already signed and wrapped in
    ``<saml:EncryptedAssertion>``) and the SP's entity id; the key registered for that
    SP is the only one used, whatever pysaml2 passes as ``encrypt_cert``.
    """

    def __init__(self, entity: Any, keys: Mapping[str, SpEncryption]):
        self.entity = entity
        self.keys = dict(keys)

    def __call__(self, encrypt_cert: Any, sp_entity_id: str | None, response: Any, node_xpath: str | None = None):
        key = self.keys.get(sp_entity_id or "")
        if key is None:
            raise EncryptError("no encryption key is registered for this service provider")
        template = key.algorithms().template(certificate_b64=key.certificate, key_name=key.key_name)
        return self.entity.sec.encrypt_assertion(response, key.pem(), template, node_xpath=node_xpath)


def check_encrypted(response_xml: str) -> None:
    """The Response carries its assertion only encrypted (SAML Core §2.3.4); raises :class:`EncryptError`.

    pysaml2 silently skips encryption in some configurations; this check, on what
    is about to be sent, makes a plaintext assertion to an SP that asked for
    encryption impossible.
    """
    root = parse_document(response_xml)
    if root.tag != f"{{{SAMLP}}}Response" or root.findall(f"{{{SAML}}}Assertion"):
        raise EncryptError("the Response for an SP that asked for encryption carries a plaintext assertion")
    encrypted = root.findall(f"{{{SAML}}}EncryptedAssertion")
    if len(encrypted) != 1 or len(encrypted[0].findall(f"{{{XENC}}}EncryptedData")) != 1:
        raise EncryptError("the Response for an SP that asked for encryption has no EncryptedAssertion")
    if any(node.tag == f"{{{SAML}}}Assertion" for node in root.iter()):
        raise EncryptError("an Assertion in plaintext inside the Response")


__all__ = ["EncryptionUnavailable", "SpAssertionEncryption", "SpEncryption", "check_encrypted", "sp_encryption"]
