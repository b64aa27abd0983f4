"""Keys and certificates for the XML signature and encryption code, parsed once.

Key material is accepted as PEM/DER bytes, PEM text or a file path, and parsed
into python-xmlsec keys cached by content: the login path never reads a file and
never parses the same certificate twice.  Metadata is the trust anchor: a
certificate is used for its public key only (no chain, no validity check).
"""

from __future__ import annotations

import functools
import os
from typing import Union

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from saml2.sigver import XmlsecError

#: Key or certificate material: PEM/DER bytes, a PEM string, or a file path.
KeyMaterial = Union[bytes, str, "os.PathLike[str]"]


def read_material(material: KeyMaterial) -> bytes:
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
    cheaper.
    """
    try:
        cert = x509.load_der_x509_certificate(content) if der else x509.load_pem_x509_certificate(content)
        spki = cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        return xmlsec.Key.from_memory(spki, xmlsec.constants.KeyDataFormatPem)
    except (ValueError, TypeError, xmlsec.Error) as exc:
        raise XmlsecError(f"cannot load certificate: {exc}") from None


@functools.lru_cache(maxsize=64)
def _private_key(content: bytes) -> xmlsec.Key:
    try:
        return xmlsec.Key.from_memory(content, xmlsec.constants.KeyDataFormatPem)
    except xmlsec.Error as exc:
        raise XmlsecError(f"cannot load private key: {exc}") from None


def certificate_key(material: KeyMaterial, cert_type: str = "pem") -> xmlsec.Key:
    """The public key of an X.509 certificate (``pem`` or ``der``), cached by content."""
    if cert_type not in ("pem", "der"):
        raise XmlsecError(f"unsupported certificate type {cert_type!r}")
    return _certificate_key(read_material(material), cert_type == "der")


def private_key(material: KeyMaterial) -> xmlsec.Key:
    """A PEM private key (PKCS#1 or PKCS#8, unencrypted), cached by content."""
    return _private_key(read_material(material))


def clear_key_cache() -> None:
    """Forget every parsed key and certificate (tests; key rotation without restart)."""
    _certificate_key.cache_clear()
    _private_key.cache_clear()


__all__ = ["KeyMaterial", "certificate_key", "clear_key_cache", "private_key", "read_material"]
