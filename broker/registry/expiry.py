"""What expires, and when: certificates and metadata, 30, 14 and 7 days ahead.

A city's IdP signs with a certificate its metadata lists; its metadata may carry a
``validUntil``; the broker's own SAML certificates (``BROKER_KEYS_DIR``: ``saml-sp.crt``
towards the cities, ``saml-idp.crt`` towards SAML services) are trusted by the cities and
services.  When one of them lapses, logins through it stop (metadata past its
``validUntil`` is refused; many IdPs and SPs refuse an expired certificate), so the broker
says so ahead of time.

:func:`expiry_report` is a plain function of the tenants (and, for IdPs whose metadata is
named by URL, the documents in use; and the keys folder): one :class:`ExpiryItem` per
certificate and per ``validUntil``, with ``days_left`` for a metric.
:func:`expiry_warnings` keeps the items within :data:`THRESHOLDS`: ``broker check`` prints
them, a build and a metadata refresh log them (:func:`log_expiry_warnings`, once a day per
item and level), and the admin console shows the same list.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import logging
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

logger = logging.getLogger(__name__)

#: Days ahead at which an item is reported, and the level it then has.
THRESHOLDS = ((7, "critical"), (14, "warning"), (30, "notice"))
#: The level of an item already past its date.
EXPIRED = "expired"
#: The broker's own certificates in ``BROKER_KEYS_DIR`` (the names :mod:`broker.assemble` gives them).
OWN_CERTIFICATES = {
    "saml-sp": "the broker's SAML SP certificate (towards the cities' IdPs)",
    "saml-idp": "the broker's SAML IdP certificate (towards SAML services)",
}
LOGGED_KEY = "expiry:logged:"
_MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
_DS = "{http://www.w3.org/2000/09/xmldsig#}"
_DAY = 86400.0


@dataclasses.dataclass(frozen=True)
class ExpiryItem:
    """One thing that expires: a certificate or a metadata ``validUntil``."""

    idp: str | None              # "<tenant>/<idp>"; None for the broker's own certificates
    what: str                    # "signing certificate", "metadata validUntil", "the broker's SAML SP …"
    subject: str                 # which one: a certificate's CN and fingerprint, a document's source
    not_after: datetime.datetime  # UTC
    seconds_left: float          # negative once past
    level: str | None            # "expired", "critical" (7 days), "warning" (14), "notice" (30); None: later

    @property
    def days_left(self) -> int:
        """Whole days left (rounded down: 6 means less than 7; -1 means expired less than a day ago)."""
        return math.floor(self.seconds_left / _DAY)

    @property
    def id(self) -> str:
        """A stable name for the item (a metric's label, the once-a-day log key)."""
        return f"{self.idp or 'broker'}|{self.what}|{self.subject}"

    def message(self) -> str:
        owner = self.idp or "broker"
        date = self.not_after.strftime("%Y-%m-%d %H:%M UTC")
        if self.seconds_left <= 0:
            ago = math.floor(-self.seconds_left / _DAY)
            when = f"expired on {date} ({f'{ago} days ago' if ago else 'less than a day ago'})"
        else:
            when = f"expires on {date} ({f'in {self.days_left} days' if self.days_left else 'in less than a day'})"
        return f"{owner}: {self.what} {self.subject} {when}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (the console, a metrics exporter)."""
        return {"idp": self.idp, "what": self.what, "subject": self.subject,
                "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"), "days_left": self.days_left,
                "seconds_left": round(self.seconds_left), "level": self.level}


def level_for(seconds_left: float) -> str | None:
    """The level of an item with ``seconds_left`` to go."""
    if seconds_left <= 0:
        return EXPIRED
    for days, level in THRESHOLDS:
        if seconds_left <= days * _DAY:
            return level
    return None


def _item(idp: str | None, what: str, subject: str, not_after: datetime.datetime, now: float) -> ExpiryItem:
    if not_after.tzinfo is None:
        not_after = not_after.replace(tzinfo=datetime.UTC)
    left = not_after.timestamp() - now
    return ExpiryItem(idp=idp, what=what, subject=subject, not_after=not_after.astimezone(datetime.UTC),
                      seconds_left=left, level=level_for(left))


def _describe(certificate: x509.Certificate, der: bytes) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else certificate.subject.rfc4514_string() or "(no subject)"
    return f"'{name}' (SHA-256 {hashlib.sha256(der).hexdigest()[:16]}…)"


def certificate_expiry(idp: str | None, what: str, der: bytes, now: float) -> ExpiryItem | None:
    """The item of one DER certificate; ``None`` if it does not parse."""
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return _item(idp, what, _describe(certificate, der), certificate.not_valid_after_utc, now)


def metadata_expiry(idp: str, xml: str | bytes, *, now: float | None = None) -> list[ExpiryItem]:
    """The signing and encryption certificates of an IdP's metadata (its IDPSSODescriptor), and
    its ``validUntil``; ``[]`` for a document that does not parse (the loaders refuse those)."""
    from broker.saml.metadata import MetadataRejected, document_times
    from broker.saml.xml_parsing import parse

    now = time.time() if now is None else now
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    try:
        root = parse(data)
    except Exception:  # noqa: BLE001 - the loaders have refused such a document already; nothing to report
        return []
    items: list[ExpiryItem] = []
    uses: dict[bytes, set[str]] = {}
    for descriptor in root.iter(f"{_MD}IDPSSODescriptor"):
        for key in descriptor.findall(f"{_MD}KeyDescriptor"):
            use = key.get("use") or "signing and encryption"
            for text in key.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate"):
                try:
                    der = base64.b64decode("".join((text.text or "").split()), validate=True)
                except (binascii.Error, ValueError):
                    continue
                uses.setdefault(der, set()).update(use.split(" and "))
    for der, used in uses.items():
        what = " and ".join(u for u in ("signing", "encryption") if u in used) + " certificate"
        item = certificate_expiry(idp, what, der, now)
        if item is not None:
            items.append(item)
    try:
        valid_until, _ = document_times(root)
    except MetadataRejected:
        valid_until = None
    if valid_until is not None:
        items.append(_item(idp, "metadata validUntil", f"(document SHA-256 {hashlib.sha256(data).hexdigest()[:16]}…)",
                           datetime.datetime.fromtimestamp(valid_until, datetime.UTC), now))
    return items


def ca_file_expiry(idp: Any, *, now: float | None = None) -> list[ExpiryItem]:
    """The certificates of an IdP's CA file (``ca_file``, or ``metadata.ca_file``): once the CA
    lapses, TLS to the IdP fails and its logins (or metadata refreshes) stop."""
    now = time.time() if now is None else now
    metadata = getattr(idp, "metadata", None)
    ca_file = getattr(idp, "ca_file", None) or getattr(metadata, "ca_file", None)
    if ca_file is None:
        return []
    return [_item(idp.key, "TLS CA certificate", f"'{subject}' (ca_file {ca_file.relative})", not_after, now)
            for subject, not_after in ca_file.certificates]


def own_certificates_expiry(keys_dir: Path, *, now: float | None = None) -> list[ExpiryItem]:
    """The broker's own SAML certificates in ``keys_dir`` (those present; none is generated here)."""
    now = time.time() if now is None else now
    items: list[ExpiryItem] = []
    for name, what in OWN_CERTIFICATES.items():
        path = Path(keys_dir) / f"{name}.crt"
        try:
            certificate = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            continue
        der = certificate.public_bytes(Encoding.DER)
        items.append(_item(None, what, f"{path.name} {_describe(certificate, der)}",
                           certificate.not_valid_after_utc, now))
    return items


def expiry_report(tenants: Iterable[Any], *, remote: Mapping[str, str | None] | None = None,
                  keys_dir: Path | None = None, now: float | None = None) -> list[ExpiryItem]:
    """Every item, soonest first: the SAML IdPs' metadata (files: the validated text; by URL: the
    document in ``remote``, by ``<tenant>/<idp>``, when there is one) and the broker's own
    certificates in ``keys_dir``."""
    now = time.time() if now is None else now
    remote = remote or {}
    items: list[ExpiryItem] = []
    for tenant in tenants:
        for idp in tenant.identity_providers:
            items.extend(ca_file_expiry(idp, now=now))
            if idp.type != "saml" or idp.metadata is None:
                continue
            xml = idp.metadata.xml if idp.metadata.xml else remote.get(idp.key)
            if xml:
                items.extend(metadata_expiry(idp.key, xml, now=now))
    if keys_dir is not None:
        items.extend(own_certificates_expiry(keys_dir, now=now))
    return sorted(items, key=lambda item: (item.seconds_left, item.id))


def expiry_warnings(tenants: Iterable[Any], *, remote: Mapping[str, str | None] | None = None,
                    keys_dir: Path | None = None, now: float | None = None) -> list[ExpiryItem]:
    """The items of :func:`expiry_report` within 30 days or past."""
    return [item for item in expiry_report(tenants, remote=remote, keys_dir=keys_dir, now=now) if item.level]


_logged: dict[tuple[str, str], float] = {}


def log_expiry_warnings(items: Iterable[ExpiryItem], *, store: Any = None,
                        now: float | None = None) -> list[ExpiryItem]:
    """Log each item with a level at WARNING, once a day per item and level; return those logged.

    With a store, "once a day" holds for every instance sharing it (one ``add`` per item);
    without one (or if it does not answer), for this process.
    """
    from broker.store import StoreError

    now = time.time() if now is None else now
    logged = []
    for item in items:
        if not item.level:
            continue
        name = hashlib.sha256(item.id.encode()).hexdigest()[:32]
        first: bool | None = None
        if store is not None:
            try:
                first = store.add(f"{LOGGED_KEY}{name}:{item.level}", 1, int(_DAY))
            except StoreError:
                first = None
        if first is None:
            last = _logged.get((name, item.level))
            first = last is None or now - last >= _DAY
        if not first:
            continue
        _logged[(name, item.level)] = now
        logger.warning("%s", item.message(), extra={"event": "expiry", "level_name": item.level, "idp": item.idp,
                                                   "what": item.what, "days_left": item.days_left})
        logged.append(item)
    return logged


__all__ = [
    "EXPIRED",
    "OWN_CERTIFICATES",
    "THRESHOLDS",
    "ExpiryItem",
    "ca_file_expiry",
    "certificate_expiry",
    "expiry_report",
    "expiry_warnings",
    "level_for",
    "log_expiry_warnings",
    "metadata_expiry",
    "own_certificates_expiry",
]
