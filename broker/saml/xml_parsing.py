"""Parsing SAML documents: one hardened lxml parser, unique IDs, no DTD.

Every XML document the SAML toolkit handles (a response from an IdP, a
document pysaml2 hands to the crypto backend, a template) is parsed here:

* no DTD loading, no entity substitution, no network;
* documents with a document type declaration are refused (XML §3.3.1: a DTD
  can make any attribute an ID and so change what a same-document reference
  resolves to; no SAML message carries one);
* libxml2 registers no ID by itself (``collect_ids=False``): the only
  registered ID is the one the signature verifier registers on the node it
  verifies;
* :func:`parse` also requires ``ID`` / ``xml:id`` values to be unique (SAML
  Core §1.3.4), so "the element with this ID" is one element.

Comments and processing instructions are *kept*: the SAML response processor
must see them to refuse them (a comment is never covered by a SAML signature,
see ADR 0009).

:func:`check_libxml2` guards the one thing this module cannot check per
document: lxml hands its libxml2 trees to libxmlsec1 unchanged, so both must be
built against the same libxml2.
"""

from __future__ import annotations

import re
import threading

import xmlsec
from lxml import etree
from saml2 import SamlBase
from saml2.sigver import SignatureError, XmlsecError

# XML Schema NCName (the lexical space of xs:ID), as far as same-document references need.
NCNAME = re.compile(r"[^\W\d][\w.\-]*\Z")

_parsers = threading.local()


def _parser() -> etree.XMLParser:
    """The hardened parser (one per thread: lxml parsers are not thread-safe)."""
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
            collect_ids=False, remove_comments=False, remove_pis=False,
        )
        _parsers.parser = parser
    return parser


def as_bytes(xml: str | bytes | SamlBase) -> bytes:
    """XML text, bytes or a pysaml2 object as bytes."""
    if isinstance(xml, SamlBase):
        xml = str(xml)
    if isinstance(xml, str):
        return xml.encode("utf-8")
    if isinstance(xml, (bytes, bytearray)):
        return bytes(xml)
    raise TypeError(f"expected XML text, got {type(xml).__name__}")


#: An encoding declaration (XML §4.3.3) at the start of a document.
_ENCODING_DECLARATION = re.compile(
    rb'\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]{0,200}?encoding\s*=\s*["\']([A-Za-z0-9._-]{1,40})["\']')
_UTF8_NAMES = (b"utf-8", b"utf8", b"us-ascii", b"ascii")
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def refuse_before_parsing(raw: bytes) -> None:
    """Refuse, before libxml2 sees them, documents it would act on while parsing.

    libxml2 opens the file a ``<!DOCTYPE x SYSTEM "...">`` names *before* lxml's
    ``load_dtd=False`` refusal takes effect (seen with libxml2 2.14: a DOCTYPE naming
    ``/dev/stdin`` blocks the parse), so a DOCTYPE is refused as bytes.  That test is
    sound only if the bytes are the characters: so SAML messages are UTF-8 (or ASCII),
    without NUL bytes, wide byte-order marks or another declared encoding.
    """
    if raw.startswith(_WIDE_BOMS) or b"\x00" in raw:
        raise XmlsecError("only UTF-8 XML is accepted (UTF-16/32 or NUL bytes found)")
    declared = _ENCODING_DECLARATION.match(raw)
    if declared and declared.group(1).lower() not in _UTF8_NAMES:
        raise XmlsecError("only UTF-8 XML is accepted (another encoding is declared)")
    if b"<!DOCTYPE" in raw:
        raise XmlsecError("document type declarations are not accepted in SAML messages (XML §2.8)")


def parse_document(xml: str | bytes | SamlBase) -> etree._Element:
    """Parse with the hardened parser; documents with a DTD are refused (XML §3.3.1)."""
    raw = as_bytes(xml)
    refuse_before_parsing(raw)
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlsecError(f"not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise XmlsecError("document type declarations are not accepted in SAML messages")
    return root


def parse(xml: str | bytes) -> etree._Element:
    """Parse a SAML message with the hardened parser and check its IDs are unique.

    The one parse of a message: signature verification and decryption then work
    on its elements.
    """
    root = parse_document(xml)
    check_unique_ids(root)
    return root


def check_unique_ids(root: etree._Element) -> None:
    """SAML Core §1.3.4: identifiers are unique; an ID attribute is an xs:ID (unique per document).

    Signature wrapping relies on two elements carrying the same ID, one signed
    and one used; with unique IDs, "the element with this ID" is one element.
    Also called after a decryption, which adds elements to the document.
    """
    values = root.xpath("//@ID | //@xml:id")
    if len(values) != len(set(values)):
        raise SignatureError("duplicate ID attribute values in the document (SAML Core §1.3.4)")


def serialize(root: etree._Element) -> str:
    """The whole document of *root*, as text."""
    return etree.tostring(root.getroottree(), encoding="unicode")


def split_node_name(node_name: str) -> str:
    """``urn:...:assertion:Assertion`` → ``{urn:...:assertion}Assertion`` (pysaml2's class_name)."""
    namespace, _, local = node_name.rpartition(":")
    return f"{{{namespace}}}{local}" if namespace else local


def find_node(root: etree._Element, node_name: str, node_id: str | None) -> tuple[etree._Element, str | None]:
    """The node *node_id* of type *node_name*; the document element when *node_id* is None.

    Mirrors ``xmlsec1 --id-attr:ID <node_name> --node-id <node_id>``: only the
    ``ID`` of elements named *node_name* counts.  Returns the node and the ID a
    same-document reference to it must name.
    """
    tag = split_node_name(node_name)
    if node_id is None:
        return root, (root.get("ID") if root.tag == tag else None)
    if not isinstance(node_id, str) or not NCNAME.match(node_id):
        raise SignatureError("the node ID is not an NCName (XML Schema xs:ID)")
    matches = [element for element in root.xpath("//*[@ID=$id]", id=node_id) if element.tag == tag]
    if len(matches) != 1:
        raise SignatureError(f"no single {node_name} element with ID {node_id!r}")
    return matches[0], node_id


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


__all__ = [
    "NCNAME",
    "as_bytes",
    "check_libxml2",
    "check_unique_ids",
    "find_node",
    "parse",
    "parse_document",
    "serialize",
    "split_node_name",
]
