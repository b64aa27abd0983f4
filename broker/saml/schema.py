"""SAML schema validation on libxml2, against the XSD files pysaml2 ships.

pysaml2 validates every signed item against the SAML schemas before checking
its signature (``SecurityContext._check_signature``), using the pure-Python
``xmlschema`` package: about 4 ms per item, two items per login, more than all
the cryptography together.  This module validates against the *same* schema
documents (``saml2/data/schemas``, the same namespace → file map as
``saml2.xml.schema``) with libxml2's XSD engine, in about 0.1 ms.

Remote ``schemaLocation`` URLs in the SAML schemas (xmldsig, xmlenc) resolve to
the packaged copies; nothing is ever fetched.  The validator is built once, by
:func:`prepare` at start-up or on first use, and shared under a lock (lxml
keeps each validation's error log on the schema object).
"""

from __future__ import annotations

import threading
from importlib.resources import files

import saml2.data.schemas
from lxml import etree
from saml2.xml.schema import XMLSchemaError

# As saml2.xml.schema._create_xml_schema_validator's "locations".
_NAMESPACE_FILES = {
    "http://www.w3.org/XML/1998/namespace": "xml.xsd",
    "http://schemas.xmlsoap.org/soap/envelope/": "envelope.xsd",
    "http://www.w3.org/2001/04/xmlenc#": "xenc-schema.xsd",
    "http://www.w3.org/2009/xmlenc11#": "xenc-schema-11.xsd",
    "http://www.w3.org/2000/09/xmldsig#": "xmldsig-core-schema.xsd",
    "urn:oasis:names:tc:SAML:2.0:assertion": "saml-schema-assertion-2.0.xsd",
    "urn:oasis:names:tc:SAML:2.0:metadata": "saml-schema-metadata-2.0.xsd",
    "urn:oasis:names:tc:SAML:2.0:protocol": "saml-schema-protocol-2.0.xsd",
    "http://eidas.europa.eu/metadata/servicelist": "eidas-schema-metadata-servicelist.xsd",
    "http://eidas.europa.eu/saml-extensions": "eidas-schema-saml-extensions.xsd",
    "http://eidas.europa.eu/attributes/naturalperson": "eidas-schema-attribute-naturalperson.xsd",
    "http://eidas.europa.eu/attributes/legalperson": "eidas-schema-attribute-legalperson.xsd",
}


class _PackagedSchemas(etree.Resolver):
    """Resolve every schema location to the file of that name in pysaml2's package."""

    def __init__(self, directory):
        super().__init__()
        self.directory = directory

    def resolve(self, url, pubid, context):
        candidate = self.directory.joinpath(url.rstrip("/").rsplit("/", 1)[-1])
        if candidate.is_file():
            return self.resolve_filename(str(candidate), context)
        return None  # left to libxml2, which may not use the network (no_network)


def _build_schema() -> etree.XMLSchema:
    directory = files(saml2.data.schemas)
    imports = "".join(
        f'<xs:import namespace="{namespace}" schemaLocation="{directory.joinpath(name)}"/>'
        for namespace, name in _NAMESPACE_FILES.items()
    )
    driver = (f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x-digione:saml-schemas">'
              f'{imports}</xs:schema>')
    # Schema documents are ours (pysaml2's package): their internal DTD subsets are trusted.
    parser = etree.XMLParser(no_network=True, load_dtd=True, resolve_entities=True)
    parser.resolvers.add(_PackagedSchemas(directory))
    return etree.XMLSchema(etree.fromstring(driver.encode(), parser))


_schema: etree.XMLSchema | None = None
_lock = threading.Lock()


def prepare() -> etree.XMLSchema:
    """Build the validator now (start-up) rather than on the first message (it reads ~10 files)."""
    global _schema
    with _lock:
        if _schema is None:
            _schema = _build_schema()
        return _schema


_instance_parser = threading.local()


def _parser() -> etree.XMLParser:
    parser = getattr(_instance_parser, "parser", None)
    if parser is None:
        parser = _instance_parser.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, collect_ids=False)
    return parser


def validate(doc: str | bytes | etree._Element) -> None:
    """Validate a SAML element (Response, Assertion, …) against the SAML schemas.

    *doc* is XML text or an already parsed element (validated as the root of
    its subtree, with the namespaces in scope).  Drop-in for
    :func:`saml2.xml.schema.validate`: raises
    :class:`saml2.xml.schema.XMLSchemaError` when *doc* is not valid.
    """
    if isinstance(doc, etree._Element):
        root = doc
    else:
        try:
            root = etree.fromstring(doc.encode("utf-8") if isinstance(doc, str) else doc, _parser())
        except etree.XMLSyntaxError as exc:
            raise XMLSchemaError({"error": f"not well-formed: {exc}"}) from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise XMLSchemaError({"error": "document type declarations are not accepted"})
    schema = _schema if _schema is not None else prepare()   # built once, never replaced
    with _lock:
        if schema.validate(root):
            return
        error = str(schema.error_log.last_error)
    raise XMLSchemaError({"error": error})


__all__ = ["prepare", "validate"]
