"""Processing a SAML Web Browser SSO ``<Response>``: parsed once, verified once.

pysaml2 turns a response into its object model, serializes it back for every
signature check, validates the schema with a pure-Python validator, and parses
the assertion again: about 5 ms of CPU per login, most of the broker's budget.
This module does what the Web Browser SSO profile asks of a service provider
(SAML Profiles §4.1.4.3) on one lxml tree:

1. parse with the hardened parser of :mod:`broker.proxy.xmlsig` (no DTD, no
   entities, no network, unique IDs) and validate against the SAML schemas;
2. check the ``<Response>``: version, ``Destination``, ``InResponseTo``,
   ``IssueInstant``, ``Issuer``, ``Status``;
3. verify its signature if it has one, decrypt an ``<EncryptedAssertion>`` with
   our key, and require exactly one assertion in the whole document, signed by
   itself or through the response (Profiles §4.1.3.5);
4. read everything from the verified elements only, so signature wrapping has
   nothing to hide behind: ``Issuer``, bearer ``SubjectConfirmation``,
   ``Conditions`` and ``AudienceRestriction``, ``AuthnStatement``, attributes.

Keys come only from the IdP's metadata (:class:`IdpKeys`), never from the message.
Every refusal raises :class:`~broker.errors.InvalidResponse` (or
:class:`~broker.errors.IdpError` for a non-success status) naming the clause.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import time
from typing import Iterable, Sequence

import xmlsec
from lxml import etree

from broker.errors import IdpError, InvalidResponse
from broker.proxy import xmlsig, xmlsig_schema

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
MAX_MESSAGE_BYTES = 512 * 1024

_RESPONSE = f"{{{SAMLP}}}Response"
_ASSERTION = f"{{{SAML}}}Assertion"
_ENCRYPTED_ASSERTION = f"{{{SAML}}}EncryptedAssertion"
_ENCRYPTED_DATA = f"{{{XENC}}}EncryptedData"
_ISSUER = f"{{{SAML}}}Issuer"
_SIGNATURE = f"{{{DS}}}Signature"


@dataclasses.dataclass(frozen=True)
class Expected:
    """What this flow's response must match: our SP, our request, the IdP we asked."""

    sp_entity_id: str
    acs_url: str
    request_id: str
    idp_entity_id: str
    skew: int = 60
    max_age: int = 900          # a response issued longer ago than the flow lifetime is stale


@dataclasses.dataclass(frozen=True)
class Assertion:
    """What the broker takes from a verified assertion."""

    issuer: str
    name_id: str | None
    name_id_format: str | None
    authn_instant: str | None
    authn_context_class_ref: str | None
    authenticating_authority: str | None
    attributes: dict[str, list[str]]


class IdpKeys:
    """Signature-verification keys per IdP entity, from metadata, loaded once."""

    def __init__(self, certificates: dict[str, Sequence[str]]):
        self._keys = {entity: [xmlsig.certificate_key(_pem(cert)) for cert in certs]
                      for entity, certs in certificates.items()}

    def __call__(self, entity_id: str) -> list[xmlsec.Key]:
        return self._keys.get(entity_id, [])

    def __contains__(self, entity_id: str) -> bool:
        return bool(self._keys.get(entity_id))

    @classmethod
    def from_metadata(cls, metadata, entity_ids: Iterable[str]) -> "IdpKeys":
        """Signing certificates of ``entity_ids`` in a pysaml2 ``MetadataStore``."""
        certificates = {}
        for entity_id in entity_ids:
            try:
                certificates[entity_id] = [cert for _, cert in metadata.certs(entity_id, "idpsso", "signing")]
            except KeyError:
                continue
        return cls(certificates)


def process_response(encoded: str, expected: Expected, keys: IdpKeys, *,
                     decryption_key: xmlsec.Key | None = None, now: float | None = None) -> Assertion:
    """Verify a base64 ``SAMLResponse`` (HTTP-POST binding) and return its assertion."""
    now = time.time() if now is None else now
    root = _parse(encoded)
    _check_response(root, expected, now)
    idp_keys = keys(expected.idp_entity_id)
    if not idp_keys:
        raise InvalidResponse("no signing certificate for the IdP in its metadata")
    response_signed = _verify_if_signed(root, idp_keys, "Response")
    assertion, was_encrypted = _the_assertion(root, decryption_key)
    # A verified Response signature covers a plain child assertion byte for byte: checking the
    # assertion's own signature with the same key would prove nothing more.  A decrypted
    # assertion was covered only in its encrypted form, so its own signature is checked.
    if was_encrypted or not response_signed:
        if assertion.find(_SIGNATURE) is not None:
            _verify(assertion, idp_keys, "Assertion")
        elif not response_signed:
            # Profiles §4.1.3.5: each assertion signed, or the Response that carries it.
            raise InvalidResponse("neither the assertion nor the response is signed (Profiles §4.1.3.5)")
    return _read_assertion(assertion, expected, now)


def check_verified(encoded: str, assertion_xml: str, expected: Expected, *, now: float | None = None) -> Assertion:
    """The same checks on a response whose signatures another verifier already checked.

    For the ``xmlsec1`` signature backend, where pysaml2 verifies and decrypts: the
    envelope is checked on the message as received, the assertion on pysaml2's
    (verified, decrypted) copy, so both paths refuse and accept the same messages.
    """
    now = time.time() if now is None else now
    _check_response(_parse(encoded), expected, now)
    try:
        assertion = xmlsig.parse(assertion_xml.encode("utf-8"))
    except Exception as exc:
        raise InvalidResponse(f"the verified assertion is not acceptable XML: {exc}") from None
    if assertion.tag != _ASSERTION:
        raise InvalidResponse("the verified element is not a saml:Assertion")
    return _read_assertion(assertion, expected, now)


# -- the message ---------------------------------------------------------------------------

def _parse(encoded: str) -> etree._Element:
    if not isinstance(encoded, str) or len(encoded) > MAX_MESSAGE_BYTES * 4 // 3 + 4:
        raise InvalidResponse("SAMLResponse missing or too large")
    try:
        raw = base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        raise InvalidResponse("SAMLResponse is not base64 (Bindings §3.5.4)") from None
    try:
        root = xmlsig.parse(raw)
    except Exception as exc:  # XmlsecError / SignatureError from the hardened parser
        raise InvalidResponse(f"SAMLResponse is not an acceptable XML document: {exc}") from None
    if root.tag != _RESPONSE:
        raise InvalidResponse("the message is not a samlp:Response")
    try:
        xmlsig_schema.validate(root)
    except Exception as exc:
        raise InvalidResponse(f"the response does not follow the SAML schema: {str(exc)[:120]}") from None
    return root


def _check_response(root: etree._Element, expected: Expected, now: float) -> None:
    if root.get("Version") != "2.0":
        raise InvalidResponse("Response Version is not 2.0 (Core §3.2.2)")
    destination = root.get("Destination")
    if destination is not None and destination != expected.acs_url:
        raise InvalidResponse("Response Destination is not our ACS (Bindings §3.5.5.2)")
    if destination is None and root.find(_SIGNATURE) is not None:
        raise InvalidResponse("a signed Response must name its Destination (Bindings §3.5.5.2)")
    if root.get("InResponseTo") != expected.request_id:
        raise InvalidResponse("Response InResponseTo is not this flow's request (Profiles §4.1.4.3)")
    issued = _instant(root.get("IssueInstant"), "Response IssueInstant")
    if issued > now + expected.skew or issued < now - expected.max_age - expected.skew:
        raise InvalidResponse("Response IssueInstant is outside the accepted window (Core §3.2.2)")
    issuer = root.find(_ISSUER)
    if issuer is not None:
        _check_issuer(issuer, expected.idp_entity_id, "Response")
    code = root.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode")
    if code is None or code.get("Value") != SUCCESS:
        second = code.find(f"{{{SAMLP}}}StatusCode") if code is not None else None
        detail = (second if second is not None else code).get("Value", "") if code is not None else "none"
        raise IdpError(f"IdP returned status {detail.rsplit(':', 1)[-1]}")


def _check_issuer(issuer: etree._Element, idp_entity_id: str, what: str) -> None:
    # Core §2.2.5, §3.2.2: the Issuer is the IdP's entity id (Format entity, or omitted).
    if issuer.get("Format") not in (None, ENTITY_FORMAT) or (issuer.text or "").strip() != idp_entity_id:
        raise InvalidResponse(f"{what} Issuer is not the IdP the request was sent to (Core §2.3.3, §3.2.2)")


def _verify_if_signed(node: etree._Element, keys: Sequence[xmlsec.Key], what: str) -> bool:
    if node.find(_SIGNATURE) is None:
        return False
    _verify(node, keys, what)
    return True


def _verify(node: etree._Element, keys: Sequence[xmlsec.Key], what: str) -> None:
    node_id = node.get("ID")
    if not node_id:
        raise InvalidResponse(f"the signed {what} has no ID (Core §5.4.2)")
    failure = None
    for key in keys:  # metadata may list an old and a new certificate during the IdP's rollover
        try:
            xmlsig.verify_node(node, node_id, key)
            return
        except Exception as exc:  # SignatureError and friends
            failure = exc
    raise InvalidResponse(f"{what} signature does not verify with the IdP's metadata keys: {failure}")


def _the_assertion(root: etree._Element, decryption_key: xmlsec.Key | None) -> tuple[etree._Element, bool]:
    """The one assertion of the response, decrypted if need be (Profiles §4.1.4.2), and whether it was."""
    plain = root.findall(_ASSERTION)
    encrypted = root.findall(_ENCRYPTED_ASSERTION)
    if len(plain) + len(encrypted) != 1:
        raise InvalidResponse("the response must carry exactly one assertion")
    if encrypted:
        if decryption_key is None:
            raise InvalidResponse("an encrypted assertion, and no decryption key configured")
        data = encrypted[0].find(_ENCRYPTED_DATA)
        if data is None:
            raise InvalidResponse("EncryptedAssertion without EncryptedData (Core §2.3.4)")
        try:
            xmlsig.decrypt_node(root, data, decryption_key)
        except Exception as exc:
            raise InvalidResponse(f"the assertion could not be decrypted: {exc}") from None
        plain = encrypted[0].findall(_ASSERTION)
        if len(plain) != 1:
            raise InvalidResponse("EncryptedAssertion did not hold one Assertion")
    # Signature wrapping needs a second assertion somewhere (an Extensions, an Object, a
    # decrypted subtree): there may be only the one we read, and its IDs must stay unique.
    if sum(1 for _ in root.iter(_ASSERTION)) != 1:
        raise InvalidResponse("more than one Assertion element in the document")
    if encrypted:
        try:
            xmlsig.check_unique_ids(root)
            xmlsig_schema.validate(plain[0])
        except Exception as exc:
            raise InvalidResponse(f"the decrypted assertion is not acceptable: {str(exc)[:120]}") from None
    return plain[0], bool(encrypted)


# -- the assertion ---------------------------------------------------------------------------

def _read_assertion(assertion: etree._Element, expected: Expected, now: float) -> Assertion:
    if assertion.get("Version") != "2.0" or not assertion.get("ID"):
        raise InvalidResponse("Assertion Version or ID missing (Core §2.3.3)")
    issuer = assertion.find(_ISSUER)
    if issuer is None:
        raise InvalidResponse("Assertion without Issuer (Core §2.3.3)")
    _check_issuer(issuer, expected.idp_entity_id, "Assertion")
    issued = _instant(assertion.get("IssueInstant"), "Assertion IssueInstant")
    if issued > now + expected.skew or issued < now - expected.max_age - expected.skew:
        raise InvalidResponse("Assertion IssueInstant is outside the accepted window (Core §2.3.3)")
    subject = assertion.find(f"{{{SAML}}}Subject")
    if subject is None:
        raise InvalidResponse("Assertion without Subject (Profiles §4.1.4.2)")
    _check_bearer(subject, expected, now)
    _check_conditions(assertion, expected, now)
    statement = assertion.find(f"{{{SAML}}}AuthnStatement")
    if statement is None:
        raise InvalidResponse("Assertion without AuthnStatement (Profiles §4.1.4.2)")
    session_end = statement.get("SessionNotOnOrAfter")
    if session_end and _instant(session_end, "SessionNotOnOrAfter") <= now - expected.skew:
        raise InvalidResponse("the IdP session has already ended (Core §2.7.2)")
    name_id = subject.find(f"{{{SAML}}}NameID")
    attributes: dict[str, list[str]] = {}
    for attribute in assertion.iterfind(f"{{{SAML}}}AttributeStatement/{{{SAML}}}Attribute"):
        name = attribute.get("Name")
        if not name:
            continue
        values = attributes.setdefault(name, [])
        for value in attribute.iterfind(f"{{{SAML}}}AttributeValue"):
            text = "".join(value.itertext()).strip()
            if text:
                values.append(text)
    return Assertion(
        issuer=expected.idp_entity_id,
        name_id=(name_id.text or "").strip() or None if name_id is not None else None,
        name_id_format=name_id.get("Format") if name_id is not None else None,
        authn_instant=statement.get("AuthnInstant"),
        authn_context_class_ref=_text(statement.find(f"{{{SAML}}}AuthnContext/{{{SAML}}}AuthnContextClassRef")),
        authenticating_authority=_text(statement.find(
            f"{{{SAML}}}AuthnContext/{{{SAML}}}AuthenticatingAuthority")),
        attributes=attributes,
    )


def _check_bearer(subject: etree._Element, expected: Expected, now: float) -> None:
    """Profiles §4.1.4.2-3: a bearer confirmation for our ACS and request, still valid."""
    reason = "no bearer SubjectConfirmation"
    for confirmation in subject.iterfind(f"{{{SAML}}}SubjectConfirmation"):
        if confirmation.get("Method") != BEARER:
            continue
        data = confirmation.find(f"{{{SAML}}}SubjectConfirmationData")
        not_on_or_after = data.get("NotOnOrAfter") if data is not None else None
        not_before = data.get("NotBefore") if data is not None else None
        if data is None or data.get("Recipient") != expected.acs_url:
            reason = "the bearer confirmation's Recipient is not our ACS"
        elif data.get("InResponseTo") not in (None, expected.request_id):
            reason = "the bearer confirmation answers another request (InResponseTo)"
        elif not not_on_or_after:
            reason = "the bearer confirmation has no NotOnOrAfter"
        elif _instant(not_on_or_after, "NotOnOrAfter") <= now - expected.skew:
            reason = "the bearer confirmation has expired (NotOnOrAfter)"
        elif not_before and _instant(not_before, "NotBefore") > now + expected.skew:
            reason = "the bearer confirmation is not yet valid (NotBefore)"
        else:
            return
    raise InvalidResponse(f"{reason} (Profiles §4.1.4.3)")


def _check_conditions(assertion: etree._Element, expected: Expected, now: float) -> None:
    conditions = assertion.find(f"{{{SAML}}}Conditions")
    if conditions is None:
        raise InvalidResponse("Assertion without Conditions: it is not restricted to us (Audience, "
                              "Profiles §4.1.4.2)")
    not_before = conditions.get("NotBefore")
    if not_before and _instant(not_before, "NotBefore") > now + expected.skew:
        raise InvalidResponse("the assertion is not yet valid (NotBefore, Core §2.5.1.2)")
    not_on_or_after = conditions.get("NotOnOrAfter")
    if not_on_or_after and _instant(not_on_or_after, "NotOnOrAfter") <= now - expected.skew:
        raise InvalidResponse("the assertion has expired (NotOnOrAfter, Core §2.5.1.2)")
    restrictions = conditions.findall(f"{{{SAML}}}AudienceRestriction")
    # Core §2.5.1.4: every AudienceRestriction must name us; Profiles §4.1.4.2: at least one.
    if not restrictions or any(expected.sp_entity_id not in {(a.text or "").strip()
                                                              for a in r.iterfind(f"{{{SAML}}}Audience")}
                               for r in restrictions):
        raise InvalidResponse("the assertion is not restricted to the broker's entity (Audience, "
                              "Core §2.5.1.4)")


def _instant(value: str | None, what: str) -> float:
    if not value:
        raise InvalidResponse(f"{what} missing")
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidResponse(f"{what} is not an xs:dateTime") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)  # Core §1.3.3: UTC
    return parsed.timestamp()


def _text(element: etree._Element | None) -> str | None:
    return (element.text or "").strip() or None if element is not None else None


def _pem(certificate: str) -> bytes:
    body = "".join(certificate.split())
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n".encode()
