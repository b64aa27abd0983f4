"""SAML IdP metadata named by URL, trusted through pinned signing certificates.

A tenant may name its IdP's metadata as ``{url, signing_cert_sha256}``, where
``signing_cert_sha256`` is one pin or, during a rollover of the signing certificate, a
list of up to three.  A document is accepted only if its document element carries an
enveloped XML signature (XML-DSig §6.6.4) made with a certificate whose SHA-256 is one
of the pins, it has not expired (SAML Metadata §2.2.1 ``validUntil``) and, when fetched,
it passes the checks a metadata file does (:func:`broker.registry.metadata.check_idp_metadata`:
one EntityDescriptor, the tenant's entityID).  The last good copy is kept in the store
(at most a week, never past its ``validUntil``), so an instance can start while the
city's metadata host is down; with neither, only that IdP is unavailable.

:mod:`broker.saml.metadata_refresh` keeps the documents current in the background
(``cacheDuration``, backoff, one fetch for all instances); :func:`pinned_metadata` is
what a build of the proxy reads.

:func:`own_metadata` is the other direction: the signed document of one of the broker's own
entities (the SP toward the cities, the IdP toward the services), served as
:data:`METADATA_MEDIA_TYPE`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import logging
import re
from collections.abc import Iterable
from typing import Any

import requests
from lxml import etree
from saml2 import class_name
from saml2.metadata import entity_descriptor, metadata_tostring_fix
from saml2.s_utils import sid
from saml2.sigver import pre_signature_part
from saml2.validate import valid_instance
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from broker.pki import sha256_fingerprint
from broker.saml.xml_keys import certificate_key, private_key, read_material
from broker.saml.xml_signatures import sign, verify_signature
from broker.store import Store

logger = logging.getLogger(__name__)

CACHE_KEY = "saml:{metadata}:"   # one hash tag for all metadata keys (read together; broker/store/slots.py)
CACHE_TTL = 7 * 24 * 3600
_DS = "{http://www.w3.org/2000/09/xmldsig#}"
_MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
_MAX_BYTES = 10 * 1024 * 1024
_DURATION = re.compile(r"^(-)?P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?!$)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


#: The media type of a SAML metadata document (saml-metadata-2.0-os, its MIME type registration).
METADATA_MEDIA_TYPE = "application/samlmetadata+xml"
#: How long a consumer that refreshes may keep our metadata (SAML Metadata §2.3.2 ``cacheDuration``).
OWN_CACHE_DURATION = "PT6H"


def own_metadata(config: Any) -> str:
    """The signed metadata document of one of our own pysaml2 entities (the SP toward the cities, the IdP
    toward the services), from its configuration.

    An enveloped signature of the ``EntityDescriptor`` (SAML Metadata §3; SAML Core §5.4: exclusive
    c14n, RSA-SHA256, SHA-256) made with the entity's own signing key, its certificate in
    ``<ds:KeyInfo>``: a consumer that knows the certificate's fingerprint verifies the document, however
    it obtained it.  ``cacheDuration`` tells consumers that refresh how often; there is no ``validUntil``,
    so a copy a service stored once keeps working (ADR 0013).
    """
    descriptor = entity_descriptor(config)
    descriptor.id = sid()
    descriptor.cache_duration = OWN_CACHE_DURATION
    certificate = "".join(line for line in read_material(config.cert_file).decode("ascii").splitlines()
                          if line and not line.startswith("-----"))
    descriptor.signature = pre_signature_part(descriptor.id, certificate, 1, digest_alg=DIGEST_SHA256,
                                              sign_alg=SIG_RSA_SHA256)
    valid_instance(descriptor)
    xml = metadata_tostring_fix(descriptor, {"xs": "http://www.w3.org/2001/XMLSchema"}, None)
    return sign(xml, private_key(config.key_file), node_name=class_name(descriptor), node_id=descriptor.id)


class MetadataRejected(ValueError):
    """The document is not metadata signed with the pinned certificate."""


class MetadataUnavailable(RuntimeError):
    """Neither a fresh, valid document nor a cached one could be had."""


@dataclasses.dataclass(frozen=True)
class PinnedDocument:
    """A metadata document accepted under the pins, with what its refresh schedule needs."""

    xml: str = dataclasses.field(repr=False)
    digest: str                          # SHA-256 of the document's bytes
    signer: str                          # the pin whose certificate signed it
    valid_until: float | None            # POSIX seconds, the earliest validUntil (document or IDPSSODescriptor)
    cache_duration: float | None         # seconds, the shortest cacheDuration (SAML Metadata §2.2.1)


def parse_duration(text: str) -> float | None:
    """Seconds in an ``xs:duration`` (ISO 8601: ``PT6H``, ``P1DT30M``, ``PT90.5S``); ``None`` if not one.

    Years count 365 days and months 30 (a cache duration needs no calendar); a negative
    duration gives ``None``.
    """
    match = _DURATION.match(text.strip())
    if not match or match.group(1):
        return None
    years, months, weeks, days, hours, minutes = (int(g or 0) for g in match.groups()[1:7])
    seconds = float(match.group(8) or 0)
    return (((years * 365 + months * 30 + weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds


def parse_date_time(text: str) -> float:
    """POSIX seconds of an ``xs:dateTime`` (no zone is UTC); raises ``ValueError``."""
    value = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()


def document_times(root: etree._Element) -> tuple[float | None, float | None]:
    """``(validUntil, cacheDuration)`` of a metadata document: the earliest and the shortest of the
    document element's and its role descriptors'.  Raises :class:`MetadataRejected` for a
    ``validUntil`` that is not a dateTime."""
    nodes = [root, *root.findall(f"{_MD}IDPSSODescriptor")]
    until: list[float] = []
    cache: list[float] = []
    for node in nodes:
        if node.get("validUntil"):
            try:
                until.append(parse_date_time(node.get("validUntil")))
            except ValueError:
                raise MetadataRejected("validUntil is not an xs:dateTime") from None
        if node.get("cacheDuration"):
            duration = parse_duration(node.get("cacheDuration"))
            if duration is not None:
                cache.append(duration)
    return (min(until) if until else None), (min(cache) if cache else None)


def _pin_list(fingerprints: str | Iterable[str]) -> list[str]:
    items = [fingerprints] if isinstance(fingerprints, str) else list(fingerprints)
    return [item.replace(":", "").strip().lower() for item in items if item]


def check_pinned(xml: bytes, fingerprints: str | Iterable[str], *, now: float | None = None,
                 entity_id: str | None = None, full: bool = True) -> PinnedDocument:
    """Accept ``xml`` if it is signed with a certificate one of ``fingerprints`` pins and has not expired.

    ``entity_id`` is the tenant's: the document element must be the EntityDescriptor of that
    entity.  ``full`` runs the checks a metadata file gets as well
    (:func:`broker.registry.metadata.check_idp_metadata`); a copy this code wrote to the store
    was checked so when it was fetched.  Raises :class:`MetadataRejected`.
    """
    from broker.registry.metadata import MetadataError, check_idp_metadata

    pins = _pin_list(fingerprints)
    if not pins:
        raise MetadataRejected("no signing certificate is pinned")
    if len(xml) > _MAX_BYTES:
        raise MetadataRejected("the metadata is larger than 10 MiB")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(xml, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise MetadataRejected(f"not well-formed XML: {exc}") from None
    signature = root.find(f"{_DS}Signature")
    if signature is None:
        raise MetadataRejected("the metadata is not signed")
    texts = signature.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate")
    if not texts:
        raise MetadataRejected("the signature names no X.509 certificate")
    pem, signer = None, None
    for text in texts:   # a chain may come with the signer's certificate: the pinned one is used
        try:
            der = base64.b64decode("".join((text.text or "").split()), validate=True)
            candidate = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
            fingerprint = sha256_fingerprint(candidate)
        except ValueError:
            continue
        if fingerprint in pins:
            pem, signer = candidate, fingerprint
            break
    # The pins, not the document, decide which key is trusted.
    if pem is None or signer is None:
        raise MetadataRejected("the signing certificate matches none of the pinned fingerprints")
    qname = etree.QName(root)
    # xmlsig raises SignatureError subclasses; anything else a hostile document provokes is a
    # rejection too, so the caller falls back to the cached copy instead of failing the build.
    try:
        verify_signature(xml, certificate_key(pem), node_name=f"{qname.namespace}:{qname.localname}",
                         node_id=root.get("ID"))
    except Exception as exc:  # noqa: BLE001 - untrusted remote document: every failure rejects it
        raise MetadataRejected(f"signature check failed: {exc}") from None
    valid_until, cache_duration = document_times(root)
    if valid_until is not None and valid_until <= (now if now is not None else datetime.datetime.now(
            datetime.UTC).timestamp()):
        raise MetadataRejected("the metadata has expired (validUntil)")
    if entity_id is not None and root.get("entityID") != entity_id:
        raise MetadataRejected(f"the metadata is not the EntityDescriptor of {entity_id}")
    try:
        text = xml.decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataRejected("the metadata is not UTF-8") from None
    if full:
        try:
            check_idp_metadata(xml, entity_id=entity_id)
        except MetadataError as exc:
            raise MetadataRejected(f"expected {exc.expected}") from None
    return PinnedDocument(xml=text, digest=hashlib.sha256(xml).hexdigest(), signer=signer,
                          valid_until=valid_until, cache_duration=cache_duration)


def verify_pinned(xml: bytes, fingerprint: str | Iterable[str], *, now: datetime.datetime | None = None,
                  entity_id: str | None = None) -> str:
    """Return ``xml`` as text if it is signed with a pinned certificate (one pin or several) and not expired."""
    return check_pinned(xml, fingerprint, now=now.timestamp() if now is not None else None,
                        entity_id=entity_id, full=False).xml


def pinned_metadata(url: str, fingerprint: str | Iterable[str], *, store: Store, http: requests.Session,
                    timeout: float = 10.0, entity_id: str | None = None) -> str:
    """The verified metadata at ``url`` for a build of the proxy; raises :class:`MetadataUnavailable`.

    The last good copy in the store while it is not due for a refresh (the background
    refresher keeps it current), else a fresh fetch, else the last good copy if it is still
    valid.  ``fingerprint`` is one pin or several.
    """
    from broker.saml.metadata_refresh import PinnedSource, current_document

    source = PinnedSource(idp=url, url=url, pins=tuple(_pin_list(fingerprint)), entity_id=entity_id)
    return current_document(source, store=store, http=http, timeout=timeout).xml
