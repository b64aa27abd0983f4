"""A city's SAML IdP metadata file, loaded and validated once, the way start-up uses it.

:func:`load_idp_metadata` is the one place a metadata file named by a tenant file is
read.  Both ``broker check`` and start-up go through it (the tenant loader calls it
for every SAML IdP with ``metadata: {file: …}``), and the validated text is kept on
the tenant (``SamlMetadataSource.xml``) so that pysaml2 is given that very text as
``inline`` metadata: what was checked is what runs.

A document is accepted only if

* its path, after resolving symlinks and ``..``, lies inside the metadata directory,
  and it is a regular file of at most :data:`MAX_BYTES`, encoded in UTF-8;
* it has no DOCTYPE (hence no DTD and no entities), and the hardened parser
  (:func:`broker.saml.xml_parsing.parse`: no DTD, no entities, no network, unique IDs)
  accepts it;
* pysaml2's own metadata parser accepts it exactly as ``MetadataStore`` does for
  ``inline`` metadata (``InMemoryMetaData``), and keeps the entity (not expired,
  SAML 2.0 protocol support);
* its document element is one ``EntityDescriptor`` whose ``entityID`` is the tenant
  file's ``entity_id`` (when the tenant file gives one), with an ``IDPSSODescriptor``
  that has a ``SingleSignOnService`` (HTTP-Redirect or HTTP-POST, with a ``Location``)
  and at least one signing certificate, every one of which parses as X.509.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import warnings
from pathlib import Path

from broker.registry.paths import contained

MAX_BYTES = 10 * 1024 * 1024
_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_SSO_BINDINGS = ("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
                 "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")


class MetadataError(ValueError):
    """The file is not acceptable IdP metadata.

    ``field`` is the tenant-file key at fault (``file`` or ``entity_id``) and ``expected``
    says what was expected, in the tenant checker's words.
    """

    def __init__(self, expected: str, field: str = "file"):
        self.expected = expected
        self.field = field
        super().__init__(expected)


@dataclasses.dataclass(frozen=True)
class IdpMetadata:
    """A validated IdP metadata document."""

    path: Path | None                            # resolved, inside the metadata directory (None: inline)
    entity_id: str
    xml: str = dataclasses.field(repr=False)     # the exact text validated
    signing_certificates: tuple[bytes, ...] = dataclasses.field(default=(), repr=False)   # DER


def load_idp_metadata(name: str | Path, *, metadata_dir: Path, entity_id: str | None = None) -> IdpMetadata:
    """Load and validate the IdP metadata file ``name`` (relative to ``metadata_dir``).

    Raises :class:`MetadataError` naming what was expected.
    """
    if not isinstance(name, (str, Path)) or not str(name) or Path(name).is_absolute() or ".." in Path(name).parts:
        raise MetadataError("a relative path under metadata/ (the metadata directory), without '..'")
    found = contained(metadata_dir, name)
    if found is None:
        raise MetadataError(f"a file inside the metadata directory {metadata_dir} ({name} leads outside it)")
    path, _ = found
    if not path.is_file():
        raise MetadataError(f"an existing metadata file ({Path(metadata_dir) / name} not found)")
    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    return check_idp_metadata(data, entity_id=entity_id, path=path)


def check_idp_metadata(data: bytes, *, entity_id: str | None = None, path: Path | None = None) -> IdpMetadata:
    """Validate IdP metadata given as bytes (an upload, or inline in a registry version) exactly as a file."""
    if len(data) > MAX_BYTES:
        raise MetadataError(f"a metadata file of at most {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataError("SAML metadata encoded in UTF-8") from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        # Refused before any parser sees it: libxml2 opens the external subset a DOCTYPE names
        # (a local path, /dev/stdin...) before the parser's own DTD refusal.
        raise MetadataError("SAML metadata without a DOCTYPE, DTD or entity declarations")
    root = _hardened_parse(data)
    descriptor = _entity_descriptor(root, entity_id)
    _pysaml2_accepts(text, descriptor.get("entityID"))
    certificates = _signing_certificates(descriptor)
    return IdpMetadata(path=path, entity_id=descriptor.get("entityID"), xml=text,
                       signing_certificates=certificates)


def _hardened_parse(data: bytes):
    from saml2.sigver import SigverError

    from broker.saml.xml_parsing import parse

    try:
        return parse(data)
    except (SigverError, ValueError) as exc:  # XmlsecError (not well-formed, DTD) and SignatureError (duplicate IDs)
        raise MetadataError(f"well-formed SAML metadata without a DOCTYPE, DTD or entity declarations, with unique "
                            f"IDs ({exc})") from None


def _entity_descriptor(root, entity_id: str | None):
    if root.tag != f"{{{_MD}}}EntityDescriptor":
        raise MetadataError("SAML metadata whose document element is one EntityDescriptor "
                            f"(found {root.tag})")
    found = root.get("entityID")
    if not found:
        raise MetadataError("an EntityDescriptor with an entityID")
    if entity_id and found != entity_id:
        raise MetadataError(f"the entityID in the metadata ('{found}')", field="entity_id")
    idps = root.findall(f"{{{_MD}}}IDPSSODescriptor")
    if len(idps) != 1:
        raise MetadataError(f"SAML metadata with one IDPSSODescriptor (found {len(idps)})")
    sso = [s for s in idps[0].findall(f"{{{_MD}}}SingleSignOnService")
           if s.get("Binding") in _SSO_BINDINGS and s.get("Location")]
    if not sso:
        raise MetadataError("an IDPSSODescriptor with a SingleSignOnService (HTTP-Redirect or HTTP-POST binding, "
                            "with a Location)")
    return root


def _pysaml2_accepts(text: str, entity_id: str) -> None:
    """pysaml2's parse of ``inline`` metadata (``MetadataStore.load("inline", text)``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*CFB has been moved")
        from saml2.mdstore import InMemoryMetaData

    metadata = InMemoryMetaData([], text)
    try:
        metadata.load()
    except Exception as exc:  # noqa: BLE001 - pysaml2 raises SAMLError, defusedxml's errors, ValueError...
        cause = exc.__cause__ or exc
        raise MetadataError(f"SAML metadata pysaml2 accepts ({type(cause).__name__}: {cause})") from None
    if entity_id in getattr(metadata, "to_old", ()):
        raise MetadataError("SAML metadata that has not expired (its validUntil has passed)")
    entity = metadata.entity.get(entity_id)
    if not entity or not entity.get("idpsso_descriptor"):
        raise MetadataError("an IDPSSODescriptor pysaml2 keeps (protocolSupportEnumeration with "
                            "urn:oasis:names:tc:SAML:2.0:protocol)")


def _signing_certificates(descriptor) -> tuple[bytes, ...]:
    from cryptography import x509

    idp = descriptor.find(f"{{{_MD}}}IDPSSODescriptor")
    certificates: list[bytes] = []
    for index, key in enumerate(idp.findall(f"{{{_MD}}}KeyDescriptor")):
        if key.get("use") not in (None, "", "signing"):
            continue
        texts = key.findall(f"{{{_DS}}}KeyInfo/{{{_DS}}}X509Data/{{{_DS}}}X509Certificate")
        if not texts:
            raise MetadataError(f"an X509Certificate in signing KeyDescriptor {index + 1}")
        for text in texts:
            try:
                der = base64.b64decode("".join((text.text or "").split()), validate=True)
                x509.load_der_x509_certificate(der)
            except (binascii.Error, ValueError) as exc:
                raise MetadataError(f"signing certificates that parse as X.509 (KeyDescriptor {index + 1}: "
                                    f"{exc})") from None
            certificates.append(der)
    if not certificates:
        raise MetadataError("at least one signing certificate (a KeyDescriptor use=\"signing\" or without use)")
    return tuple(certificates)
