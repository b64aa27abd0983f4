"""A city's SAML IdP in the test's hands: pysaml2 ``Server`` from the demo IdP configuration.

:class:`CityIdp` is built exactly as the demo IdP builds its servers
(``broker.demo.saml_idp.idp_config`` with the keys in the stack's demo folder, the
broker's live SP metadata, in-process signatures), so what it signs is what the
real city IdP would sign.  Tests then alter the response:

* before signing (``mutate`` gets the pysaml2 objects): the result is *genuinely*
  signed by the city's key and differs from a good response only in what the test
  changed (a time, an audience, a recipient...), so a refusal can only come from
  the check under test;
* after signing (lxml on the XML): tampering, stripping, wrapping, comments.

The algorithms are the city's to choose too: ``sign_alg`` / ``digest_alg`` for the
signatures, an :class:`~broker.saml.xml_encryption.AssertionEncryption` for an
encrypted assertion (pysaml2 builds, signs and encrypts; the template is ours).

An attacker is the same class on another key folder (``broker.pki.ensure_keypair``):
same entity id and endpoints, its own key, its own certificate in ``<ds:KeyInfo>``.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lxml import etree
from saml2 import BINDING_HTTP_REDIRECT, saml, samlp
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.server import Server
from saml2.sigver import pre_signature_part, signed_instance_factory
from saml2.time_util import in_a_while
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from broker.demo import mpassid, saml_idp
from broker.demo.directory import DEMO_DIRECTORY, find_user
from broker.pki import ensure_keypair
from broker.saml.pysaml2_crypto import configure_signatures
from broker.saml.xml_encryption import AssertionEncryption

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}

EVIL_NAME = "Mallory"
EVIL_UID = "mallory-admin"


@dataclasses.dataclass
class AuthnRequest:
    """The AuthnRequest the broker sent (as the city IdP parsed it)."""

    id: str
    acs: str
    sp: str
    relay_state: str
    idp: str                # the entity the request was addressed to


class CityIdp:
    """``city``'s IdP (or an impostor of it, with ``key_dir`` holding another key)."""

    def __init__(self, stack, city: str, sp_metadata_xml: str, *, key_dir: Path | None = None):
        self.city = city
        self.stack = stack
        self.entity_id = saml_idp.entity_id(stack.saml_url, city)
        self.sign_response = DEMO_DIRECTORY[city]["saml"]["sign_response"]
        self.server = Server(config=saml_idp.idp_config(stack.saml_url, city, Path(key_dir or stack.demo_dir / "keys"),
                                                        sp_metadata_xml))
        configure_signatures(self.server)

    @classmethod
    def impostor(cls, stack, city: str, sp_metadata_xml: str, key_dir: Path) -> CityIdp:
        """``city``'s entity id and endpoints with an attacker's own key and self-signed certificate."""
        ensure_keypair(key_dir, f"saml-idp-{city}", common_name=f"{city} demo SAML IdP")
        return cls(stack, city, sp_metadata_xml, key_dir=key_dir)

    # -- reading the broker's request --------------------------------------------------

    def parse_request(self, location: str) -> AuthnRequest:
        """Parse the HTTP-Redirect AuthnRequest at ``location`` (the broker's redirect)."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        message = self.server.parse_authn_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT).message
        sp = message.issuer.text.strip()
        acs = message.assertion_consumer_service_url
        return AuthnRequest(id=message.id, acs=acs, sp=sp, relay_state=query.get("RelayState", ""),
                            idp=self.entity_id)

    # -- answering -----------------------------------------------------------------------

    def response(self, request: AuthnRequest, username: str, *, mutate: Callable[[samlp.Response], None] | None = None,
                 sign_assertion: bool = True, sign_response: bool | None = None,
                 attributes: Callable[[dict], dict] | None = None, sign_alg: str = SIG_RSA_SHA256,
                 digest_alg: str = DIGEST_SHA256, mutate_xml: Callable[[str], str] | None = None) -> str:
        """A response for ``username`` to ``request``: built by pysaml2, ``mutate``d, then signed
        (``mutate_xml`` alters its XML, signature templates in place, just before the signing)."""
        user = find_user(self.city, username)
        assert user, f"no demo user {username} in {self.city}"
        released = mpassid.attributes(self.city, user)
        identity = {mpassid.FRIENDLY_NAMES[name]: values for name, values in released.items()}
        if attributes:
            identity = attributes(identity)
        name_id = saml.NameID(format=saml.NAMEID_FORMAT_PERSISTENT,
                              text=saml_idp.persistent_id(self.entity_id, request.sp, user),
                              name_qualifier=self.entity_id, sp_name_qualifier=request.sp)
        response = self.server.create_authn_response(
            identity, in_response_to=request.id, destination=request.acs, sp_entity_id=request.sp,
            name_id=name_id, authn={"class_ref": PASSWORDPROTECTEDTRANSPORT, "authn_instant": 0},
            sign_assertion=False, sign_response=False)
        if isinstance(response, str):  # pragma: no cover - pysaml2 returns an instance when nothing is signed
            response = samlp.response_from_string(response)
        if mutate:
            mutate(response)
        return sign(self.server, response, assertion=sign_assertion,
                    response_too=self.sign_response if sign_response is None else sign_response,
                    sign_alg=sign_alg, digest_alg=digest_alg, mutate_xml=mutate_xml)

    def encrypted_response(self, request: AuthnRequest, username: str, *, sign_assertion: bool,
                           encryption: AssertionEncryption | None = None, sign_alg: str = SIG_RSA_SHA256,
                           digest_alg: str = DIGEST_SHA256) -> str:
        """pysaml2's own sign-then-encrypt: the assertion encrypted to the broker's encryption key
        (from its SP metadata, i.e. public), signed by this IdP's key first if ``sign_assertion``;
        ``encryption`` chooses the algorithms (default: RSA-OAEP and AES-256-GCM)."""
        configure_signatures(self.server, encryption=encryption)
        user = find_user(self.city, username)
        released = mpassid.attributes(self.city, user)
        identity = {mpassid.FRIENDLY_NAMES[name]: values for name, values in released.items()}
        name_id = saml.NameID(format=saml.NAMEID_FORMAT_PERSISTENT,
                              text=saml_idp.persistent_id(self.entity_id, request.sp, user),
                              name_qualifier=self.entity_id, sp_name_qualifier=request.sp)
        response = self.server.create_authn_response(
            identity, in_response_to=request.id, destination=request.acs, sp_entity_id=request.sp,
            name_id=name_id, authn={"class_ref": PASSWORDPROTECTEDTRANSPORT, "authn_instant": 0},
            sign_assertion=sign_assertion, sign_response=False, encrypt_assertion=True,
            encrypt_assertion_self_contained=True, sign_alg=sign_alg, digest_alg=digest_alg)
        xml = response if isinstance(response, str) else str(response)
        assert "EncryptedAssertion" in xml and "AttributeValue" not in xml
        return xml

    def error_response(self, request: AuthnRequest, status: str, message: str) -> str:
        response = self.server.create_error_response(request.id, request.acs, (status, message), sign=False)
        if isinstance(response, str):  # pragma: no cover
            response = samlp.response_from_string(response)
        return sign(self.server, response, assertion=False, response_too=self.sign_response)


def sign(server: Server, response: samlp.Response, *, assertion: bool, response_too: bool,
         sign_alg: str = SIG_RSA_SHA256, digest_alg: str = DIGEST_SHA256,
         mutate_xml: Callable[[str], str] | None = None) -> str:
    """Sign the assertion and/or the response with ``server``'s key (exclusive c14n, RSA-SHA256 unless
    told otherwise), embedding ``server``'s certificate in ``<ds:KeyInfo>`` as pysaml2 does."""
    to_sign = []
    if assertion:
        response.assertion.signature = pre_signature_part(response.assertion.id, server.sec.my_cert, 1,
                                                          sign_alg=sign_alg, digest_alg=digest_alg)
        to_sign.append((_class_name(response.assertion), response.assertion.id))
    if response_too:
        response.signature = pre_signature_part(response.id, server.sec.my_cert, 2,
                                                sign_alg=sign_alg, digest_alg=digest_alg)
        to_sign.append((_class_name(response), response.id))
    xml = mutate_xml(str(response)) if mutate_xml else str(response)
    if not to_sign:
        return xml
    signed = signed_instance_factory(xml, server.sec, to_sign)
    return signed.decode() if isinstance(signed, bytes) else signed


def _class_name(instance) -> str:
    return f"{instance.c_namespace}:{instance.c_tag}"


# -- small mutations on pysaml2 objects ---------------------------------------------------


def bearer_data(response: samlp.Response) -> saml.SubjectConfirmationData:
    return response.assertion.subject.subject_confirmation[0].subject_confirmation_data


def when(seconds: int) -> str:
    """An xs:dateTime ``seconds`` from now (negative: in the past)."""
    return in_a_while(seconds=seconds)


# -- alterations on the signed XML ------------------------------------------------------------


def parse(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode())


def serialize(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode")


def assertion_of(root: etree._Element) -> etree._Element:
    return root.find(f"{{{SAML}}}Assertion")


def strip_signatures(element: etree._Element) -> etree._Element:
    for signature in element.findall(f"{{{DS}}}Signature"):
        element.remove(signature)
    return element


def make_evil(element: etree._Element, real_values: dict[str, str]) -> etree._Element:
    """The attacker's values in ``element``: NameID, uid and names."""
    for name_id in element.iter(f"{{{SAML}}}NameID"):
        name_id.text = EVIL_UID
    for value in element.iter(f"{{{SAML}}}AttributeValue"):
        for real, evil in real_values.items():
            if value.text and value.text.strip() == real:
                value.text = evil
    return element


def xsw_clone(xml: str, real_values: dict[str, str], *, where: str, same_id: bool) -> str:
    """Signature wrapping: an unsigned, evil clone of the signed assertion ``before``/``after`` it
    (XSW3 / the unsigned-copy half of XSW5), or the evil clone ``around`` it (XSW4)."""
    root = parse(xml)
    original = assertion_of(root)
    evil = make_evil(strip_signatures(copy.deepcopy(original)), real_values)
    if not same_id:
        evil.set("ID", "_evil" + original.get("ID").lstrip("_id"))
    if where == "before":
        root.insert(root.index(original), evil)
    elif where == "after":
        root.insert(root.index(original) + 1, evil)
    elif where == "around":
        root.replace(original, evil)
        evil.append(original)
    elif where == "extensions":  # XSW7: the signed one hidden in <samlp:Extensions>, the evil one in its place
        extensions = etree.Element(f"{{{SAMLP}}}Extensions")
        root.replace(original, evil)
        root.insert(root.index(root.find(f"{{{SAMLP}}}Status")) if root.find(f"{{{SAMLP}}}Status") is not None
                    else 1, extensions)
        extensions.append(original)
    else:
        raise ValueError(where)
    return serialize(root)


def tamper_attribute(xml: str, old: str, new: str) -> str:
    root = parse(xml)
    changed = 0
    for value in assertion_of(root).iter(f"{{{SAML}}}AttributeValue"):
        if value.text and value.text.strip() == old:
            value.text = new
            changed += 1
    assert changed, f"no attribute value {old!r} in the assertion"
    return serialize(root)


def set_response_issuer(xml: str, issuer: str | None) -> str:
    root = parse(xml)
    element = root.find(f"{{{SAML}}}Issuer")
    if issuer is None:
        root.remove(element)
    else:
        element.text = issuer
    return serialize(root)


def encode(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()


def insert_comment(xml: str, tag: str, at: str) -> str:
    """A comment inside the first ``saml:<tag>`` of the signed XML, just after the text ``at``.

    Exclusive c14n drops comments, so every signature still verifies; lxml's ``.text``
    of ``bob<!---->.attacker`` is ``bob``.
    """
    root = parse(xml)
    element = next(root.iter(f"{{{SAML}}}{tag}"))
    text = element.text or ""
    assert at in text and len(element) == 0, (tag, at)
    head, tail = text[:text.index(at) + len(at)], text[text.index(at) + len(at):]
    element.text = head
    comment = etree.Comment("")
    comment.tail = tail
    element.append(comment)
    return serialize(root)


XSI = "http://www.w3.org/2001/XMLSchema-instance"


def add_conditions(*snippets: str) -> Callable[[str], str]:
    """A ``mutate_xml`` adding condition elements (XML with the ``saml:`` and ``xsi:`` prefixes) to the
    assertion's ``<Conditions>``, before it is signed."""
    def mutate_xml(xml: str) -> str:
        root = parse(xml)
        conditions = next(root.iter(f"{{{SAML}}}Conditions"))
        # lxml re-uses the document's declarations on insertion: QNames in values take its prefix.
        prefix = next(name for name, uri in conditions.nsmap.items() if uri == SAML)
        for snippet in snippets:
            snippet = snippet.replace('xsi:type="saml:', f'xsi:type="{prefix}:')
            snippet = re.sub(r"^<([\w:]+)", rf'<\1 xmlns:saml="{SAML}" xmlns:xsi="{XSI}"', snippet, count=1)
            conditions.append(etree.fromstring(snippet))
        return serialize(root)
    return mutate_xml
