"""SAML IdP metadata named by URL, trusted through a pinned signing certificate.

A tenant may name its IdP's metadata as ``{url, signing_cert_sha256}``.  When the
proxy is built (never on the login path) the document is fetched and accepted
only if its document element carries an enveloped XML signature (XML-DSig §6.6.4)
made with a certificate whose SHA-256 equals the pin, and it has not expired
(SAML Metadata §2.2.1 ``validUntil``).  The last good copy is kept in the store
for a week, so an instance can start while the city's metadata host is down; with
neither, only that IdP is unavailable.

:func:`own_metadata` is the other direction: the document of one of the broker's own
entities (the SP toward the cities, the IdP toward the services).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging

import requests
from lxml import etree
from saml2.metadata import create_metadata_string

from broker.pki import sha256_fingerprint
from broker.saml.xml_keys import certificate_key
from broker.saml.xml_signatures import verify_signature
from broker.store import Store, StoreError

logger = logging.getLogger(__name__)

CACHE_KEY = "saml:metadata:"
CACHE_TTL = 7 * 24 * 3600
_DS = "{http://www.w3.org/2000/09/xmldsig#}"
_MAX_BYTES = 10 * 1024 * 1024


def own_metadata(config: object) -> str:
    """The metadata document of one of our own pysaml2 entities, from its configuration (valid for 4 hours)."""
    return str(create_metadata_string(None, config, 4, None, None, None, None, None).decode("utf-8"))


class MetadataRejected(ValueError):
    """The document is not metadata signed with the pinned certificate."""


class MetadataUnavailable(RuntimeError):
    """Neither a fresh, valid document nor a cached one could be had."""


def verify_pinned(xml: bytes, fingerprint: str, *, now: datetime.datetime | None = None) -> str:
    """Return ``xml`` as text if it is signed with the pinned certificate and not expired."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(xml, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise MetadataRejected(f"not well-formed XML: {exc}") from None
    signature = root.find(f"{_DS}Signature")
    if signature is None:
        raise MetadataRejected("the metadata is not signed")
    cert_text = signature.findtext(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate")
    if not cert_text:
        raise MetadataRejected("the signature names no X.509 certificate")
    try:
        der = base64.b64decode("".join(cert_text.split()), validate=True)
    except ValueError:
        raise MetadataRejected("the signing certificate is not base64") from None
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    # The pin, not the document, decides which key is trusted.
    if sha256_fingerprint(pem) != fingerprint.replace(":", "").lower():
        raise MetadataRejected("the signing certificate does not match the pinned fingerprint")
    qname = etree.QName(root)
    # xmlsig raises SignatureError subclasses; anything else a hostile document provokes is a
    # rejection too, so the caller falls back to the cached copy instead of failing the build.
    try:
        verify_signature(xml, certificate_key(pem), node_name=f"{qname.namespace}:{qname.localname}",
                         node_id=root.get("ID"))
    except Exception as exc:  # noqa: BLE001 - untrusted remote document: every failure rejects it
        raise MetadataRejected(f"signature check failed: {exc}") from None
    valid_until = root.get("validUntil")
    if valid_until:
        until = datetime.datetime.fromisoformat(valid_until.replace("Z", "+00:00"))
        if until.tzinfo is None:
            until = until.replace(tzinfo=datetime.UTC)
        if until < (now or datetime.datetime.now(datetime.UTC)):
            raise MetadataRejected("the metadata has expired (validUntil)")
    return xml.decode("utf-8")


def pinned_metadata(url: str, fingerprint: str, *, store: Store, http: requests.Session,
                    timeout: float = 10.0) -> str:
    """The verified metadata at ``url``, or the last good copy; raises :class:`MetadataUnavailable`."""
    key = CACHE_KEY + hashlib.sha256(url.encode()).hexdigest()
    try:
        reply = http.get(url, timeout=timeout, stream=True)
        reply.raise_for_status()
        body = reply.raw.read(_MAX_BYTES + 1, decode_content=True)
        if len(body) > _MAX_BYTES:
            raise MetadataRejected("the metadata is larger than 10 MiB")
        text = verify_pinned(body, fingerprint)
    except (requests.RequestException, MetadataRejected) as exc:
        try:
            cached = store.get(key)
        except StoreError:
            cached = None
        if cached:
            logger.warning("metadata fetch failed, using the last good copy url=%s reason=%s", url, exc)
            return cached
        raise MetadataUnavailable(f"{url}: {exc}") from None
    try:
        store.put(key, text, CACHE_TTL)
    except StoreError:
        pass
    return text
