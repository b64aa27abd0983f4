"""Processing a SAML Web Browser SSO ``<Response>``: parsed once, verified once.

pysaml2 turns a response into its object model, serializes it back for every
signature check, validates the schema with a pure-Python validator, and parses
the assertion again: about 5 ms of CPU per login, most of the broker's budget.
This module does what the Web Browser SSO profile asks of a service provider
(SAML Profiles §4.1.4.3) on one lxml tree, and is the only path by which the
broker accepts a SAML response (ADR 0007, ADR 0009):

1. parse with the hardened parser of :mod:`broker.saml.xml_parsing` (no DTD, no
   entities, no network, unique IDs), refuse comments and processing
   instructions (no signature covers them), validate against the SAML schemas;
2. check the ``<Response>``: version, ``Destination``, ``InResponseTo``,
   ``IssueInstant``, ``Issuer``, ``Status``;
3. check every signature and encryption algorithm against the IdP's
   :class:`~broker.saml.crypto_policy.CryptoPolicy` before any cryptography;
4. verify the response signature if it has one, decrypt an
   ``<EncryptedAssertion>`` with our key, and require exactly one assertion in the
   whole document, signed by itself or through the response (Profiles §4.1.3.5);
5. read everything from the verified elements only, so signature wrapping has
   nothing to hide behind, and text only whole (:func:`_text`): ``Issuer``, a bearer
   ``SubjectConfirmation`` answering our request, ``Conditions`` (none not
   understood) and ``AudienceRestriction``, ``AuthnStatement``, attributes.

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
from collections.abc import Iterable, Mapping, Sequence

import xmlsec
from lxml import etree
from saml2.sigver import XmlsecError
from saml2.xml.schema import XMLSchemaError

from broker.errors import IdpError, InvalidResponse
from broker.saml import schema as xmlsig_schema
from broker.saml.crypto_policy import DEFAULT_POLICY, AlgorithmRefused, CryptoPolicy
from broker.saml.xml_encryption import decrypt_node, encrypted_key_for
from broker.saml.xml_keys import certificate_key
from broker.saml.xml_parsing import check_unique_ids, parse
from broker.saml.xml_signatures import verify_node

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
MAX_MESSAGE_BYTES = 512 * 1024

_RESPONSE = f"{{{SAMLP}}}Response"
_ASSERTION = f"{{{SAML}}}Assertion"
_ENCRYPTED_ASSERTION = f"{{{SAML}}}EncryptedAssertion"
_ENCRYPTED_DATA = f"{{{XENC}}}EncryptedData"
_ISSUER = f"{{{SAML}}}Issuer"
_AUDIENCE_RESTRICTION = f"{{{SAML}}}AudienceRestriction"
_AUDIENCE = f"{{{SAML}}}Audience"
_ONE_TIME_USE = f"{{{SAML}}}OneTimeUse"
_PROXY_RESTRICTION = f"{{{SAML}}}ProxyRestriction"
_SIGNATURE = f"{{{DS}}}Signature"
_XSI_TYPE = f"{{{XSI}}}type"

# Core §2.5.1: the conditions this processor evaluates (NotBefore/NotOnOrAfter are attributes).
_UNDERSTOOD_CONDITIONS = {_AUDIENCE_RESTRICTION: "AudienceRestrictionType", _ONE_TIME_USE: "OneTimeUseType",
                          _PROXY_RESTRICTION: "ProxyRestrictionType"}


@dataclasses.dataclass(frozen=True)
class Expected:
    """What this flow's response must match: our SP, our request, the IdP we asked, its crypto policy.

    ``crypto`` is the IdP's :class:`~broker.saml.crypto_policy.CryptoPolicy` (default: no
    legacy algorithm).  ``downstream`` is the service the broker will issue its own token or
    assertion to, for a ``<ProxyRestriction>`` that names audiences (Core §2.5.1.6).
    """

    sp_entity_id: str
    acs_url: str
    request_id: str
    idp_entity_id: str
    skew: int = 60
    max_age: int = 900          # a response issued longer ago than the flow lifetime is stale
    crypto: CryptoPolicy = DEFAULT_POLICY
    downstream: str | None = None


@dataclasses.dataclass(frozen=True)
class Assertion:
    """What the broker takes from a verified assertion.

    ``proxy_count`` is the ``Count`` of a ``<ProxyRestriction>`` (Core §2.5.1.6), ``None``
    without one or without a count: a SAML assertion the broker issues on the basis of
    this one must carry a ``ProxyRestriction`` with a ``Count`` of at most ``proxy_count - 1``.
    """

    issuer: str
    name_id: str | None
    name_id_format: str | None
    authn_instant: str | None
    authn_context_class_ref: str | None
    authenticating_authority: str | None
    attributes: dict[str, list[str]]
    proxy_count: int | None = None
    # What a LogoutRequest to the IdP must name (Core §3.7.1): the NameID with its qualifiers, and the session.
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None
    session_index: str | None = None


class IdpKeys:
    """Signature-verification keys per IdP entity, from metadata, loaded once."""

    def __init__(self, certificates: Mapping[str, Sequence[str]]):
        self._keys = {entity: [certificate_key(certificate_pem(cert)) for cert in certs]
                      for entity, certs in certificates.items()}

    def __call__(self, entity_id: str) -> list[xmlsec.Key]:
        return self._keys.get(entity_id, [])

    def __contains__(self, entity_id: str) -> bool:
        return bool(self._keys.get(entity_id))

    @classmethod
    def from_metadata(cls, metadata, entity_ids: Iterable[str]) -> IdpKeys:
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
    """Verify a base64 ``SAMLResponse`` (HTTP-POST binding) and return its assertion.

    The algorithms of every signature and of the encrypted assertion are checked against
    ``expected.crypto`` before any signature is verified or anything decrypted.
    """
    now = time.time() if now is None else now
    policy = expected.crypto
    root = _parse(encoded)
    _check_response(root, expected, now)
    idp_keys = keys(expected.idp_entity_id)
    if not idp_keys:
        raise InvalidResponse("no signing certificate for the IdP in its metadata")
    _check_algorithms(root, policy)
    response_signed = _verify_if_signed(root, idp_keys, "Response", policy)
    assertion, was_encrypted = _the_assertion(root, decryption_key, policy)
    # A verified Response signature covers a plain child assertion byte for byte: checking the
    # assertion's own signature with the same key would prove nothing more.  A decrypted
    # assertion was covered only in its encrypted form, so its own signature is checked.
    if was_encrypted or not response_signed:
        if assertion.find(_SIGNATURE) is not None:
            _verify(assertion, idp_keys, "Assertion", policy)
        elif not response_signed:
            # Profiles §4.1.3.5: each assertion signed, or the Response that carries it.
            raise InvalidResponse("neither the assertion nor the response is signed (Profiles §4.1.3.5)")
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
        root = parse(raw)
    except XmlsecError as exc:  # XmlsecError / SignatureError from the hardened parser
        raise InvalidResponse(f"SAMLResponse is not an acceptable XML document: {exc}") from None
    if root.tag != _RESPONSE:
        raise InvalidResponse("the message is not a samlp:Response")
    refuse_comments(root, "Response")
    try:
        xmlsig_schema.validate(root)
    except XMLSchemaError as exc:
        raise InvalidResponse(f"the response does not follow the SAML schema: {str(exc)[:120]}") from None
    return root


def refuse_comments(element: etree._Element, what: str) -> None:
    """Refuse comments and processing instructions anywhere inside *element* (ADR 0009).

    No SAML signature covers a comment (exclusive c14n drops them, and a ``#ID``
    reference drops them even under ``WithComments``, XML-DSig §4.4.3.3), so one
    can be added to a signed message without breaking the signature, and it
    splits the text it sits in: ``bob<!---->.attacker`` is signed as
    ``bob.attacker`` (CVE-2017-11427 and its kind).  No IdP sends either.
    """
    for node in element.iter(etree.Comment, etree.ProcessingInstruction):
        kind = "comment" if node.tag is etree.Comment else "processing instruction"
        raise InvalidResponse(f"a {kind} inside the {what}: it is not covered by the signature and would "
                              "split the text it sits in (XML-DSig §4.4.3.3, ADR 0009)")


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
    issued = instant(root.get("IssueInstant"), "Response IssueInstant")
    if issued > now + expected.skew or issued < now - expected.max_age - expected.skew:
        raise InvalidResponse("Response IssueInstant is outside the accepted window (Core §3.2.2)")
    issuer = root.find(_ISSUER)
    if issuer is not None:
        _check_issuer(issuer, expected.idp_entity_id, "Response")
    code = root.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode")
    if code is None or code.get("Value") != SUCCESS:
        second = code.find(f"{{{SAMLP}}}StatusCode") if code is not None else None
        detail = (second if second is not None else code).get("Value", "") if code is not None else "none"
        name = detail.rsplit(":", 1)[-1]
        # Core §3.2.2.2: the person did not sign in (cancelled, declined, no session for IsPassive).
        upstream_error = {"AuthnFailed": "access_denied", "RequestDenied": "access_denied",
                          "NoPassive": "login_required"}.get(name)
        raise IdpError(f"IdP returned status {name}", upstream_error=upstream_error)


def _check_issuer(issuer: etree._Element, idp_entity_id: str, what: str) -> None:
    # Core §2.2.5, §3.2.2: the Issuer is the IdP's entity id (Format entity, or omitted).
    if issuer.get("Format") not in (None, ENTITY_FORMAT) or read_text(issuer, f"{what} Issuer") != idp_entity_id:
        raise InvalidResponse(f"{what} Issuer is not the IdP the request was sent to (Core §2.3.3, §3.2.2)")


def _check_algorithms(root: etree._Element, policy: CryptoPolicy) -> None:
    """The IdP's crypto policy on every signature and encrypted assertion in sight, before any crypto.

    (An assertion that arrives encrypted has its signature checked after decryption,
    before it is verified.)
    """
    try:
        for signed in (root, *root.findall(_ASSERTION)):
            signature = signed.find(_SIGNATURE)
            if signature is not None:
                policy.check_signature(signature)
        for encrypted in root.findall(_ENCRYPTED_ASSERTION):
            data = encrypted.find(_ENCRYPTED_DATA)
            if data is not None:
                policy.check_encryption(data, encrypted_key_for(root, data))
    except AlgorithmRefused as exc:
        raise InvalidResponse(str(exc)) from None
    except XmlsecError as exc:  # no EncryptedKey for the EncryptedData
        raise InvalidResponse(f"the encrypted assertion cannot be decrypted by us: {exc}") from None


def _verify_if_signed(node: etree._Element, keys: Sequence[xmlsec.Key], what: str, policy: CryptoPolicy) -> bool:
    if node.find(_SIGNATURE) is None:
        return False
    _verify(node, keys, what, policy)
    return True


def _verify(node: etree._Element, keys: Sequence[xmlsec.Key], what: str, policy: CryptoPolicy) -> None:
    node_id = node.get("ID")
    if not node_id:
        raise InvalidResponse(f"the signed {what} has no ID (Core §5.4.2)")
    failure = None
    for key in keys:  # metadata may list an old and a new certificate during the IdP's rollover
        try:
            verify_node(node, node_id, key, policy=policy)
            return
        except AlgorithmRefused as exc:
            raise InvalidResponse(f"{what} signature: {exc}") from None
        except XmlsecError as exc:  # SignatureError and friends
            failure = exc
    raise InvalidResponse(f"{what} signature does not verify with the IdP's metadata keys: {failure}")


def _the_assertion(root: etree._Element, decryption_key: xmlsec.Key | None,
                   policy: CryptoPolicy) -> tuple[etree._Element, bool]:
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
            decrypt_node(root, data, decryption_key, policy=policy)
        except AlgorithmRefused as exc:
            raise InvalidResponse(str(exc)) from None
        except XmlsecError as exc:
            raise InvalidResponse(f"the assertion could not be decrypted: {exc}") from None
        plain = encrypted[0].findall(_ASSERTION)
        if len(plain) != 1:
            raise InvalidResponse("EncryptedAssertion did not hold one Assertion")
    # Signature wrapping needs a second assertion somewhere (an Extensions, an Object, a
    # decrypted subtree): there may be only the one we read, and its IDs must stay unique.
    if sum(1 for _ in root.iter(_ASSERTION)) != 1:
        raise InvalidResponse("more than one Assertion element in the document")
    if encrypted:
        refuse_comments(plain[0], "decrypted Assertion")
        try:
            check_unique_ids(root)
            xmlsig_schema.validate(plain[0])
        except (XmlsecError, XMLSchemaError) as exc:
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
    issued = instant(assertion.get("IssueInstant"), "Assertion IssueInstant")
    if issued > now + expected.skew or issued < now - expected.max_age - expected.skew:
        raise InvalidResponse("Assertion IssueInstant is outside the accepted window (Core §2.3.3)")
    subject = assertion.find(f"{{{SAML}}}Subject")
    if subject is None:
        raise InvalidResponse("Assertion without Subject (Profiles §4.1.4.2)")
    _check_bearer(subject, expected, now)
    proxy_count = _check_conditions(assertion, expected, now)
    statement = assertion.find(f"{{{SAML}}}AuthnStatement")
    if statement is None:
        raise InvalidResponse("Assertion without AuthnStatement (Profiles §4.1.4.2)")
    session_end = statement.get("SessionNotOnOrAfter")
    if session_end and instant(session_end, "SessionNotOnOrAfter") <= now - expected.skew:
        raise InvalidResponse("the IdP session has already ended (Core §2.7.2)")
    name_id = subject.find(f"{{{SAML}}}NameID")
    context = f"{{{SAML}}}AuthnContext/{{{SAML}}}"
    return Assertion(
        issuer=expected.idp_entity_id,
        name_id=read_text(name_id, "NameID"),
        name_id_format=name_id.get("Format") if name_id is not None else None,
        authn_instant=statement.get("AuthnInstant"),
        authn_context_class_ref=read_text(statement.find(context + "AuthnContextClassRef"), "AuthnContextClassRef"),
        authenticating_authority=read_text(statement.find(context + "AuthenticatingAuthority"),
                                       "AuthenticatingAuthority"),
        attributes=_attributes(assertion),
        proxy_count=proxy_count,
        name_qualifier=name_id.get("NameQualifier") if name_id is not None else None,
        sp_name_qualifier=name_id.get("SPNameQualifier") if name_id is not None else None,
        session_index=statement.get("SessionIndex"),
    )


def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
    """``Name`` → string values (Core §2.7.3.1.1).

    A value with element children (``xs:anyType``, e.g. an eduPersonTargetedID sent as a
    ``<NameID>``) is structured, not a string: it is left out rather than flattened into one.
    """
    attributes: dict[str, list[str]] = {}
    for attribute in assertion.iterfind(f"{{{SAML}}}AttributeStatement/{{{SAML}}}Attribute"):
        name = attribute.get("Name")
        if not name:
            continue
        values = attributes.setdefault(name, [])
        for value in attribute.iterfind(f"{{{SAML}}}AttributeValue"):
            if len(value) and not _declared_simple(value):
                continue
            text = read_text(value, "AttributeValue")
            if text:
                values.append(text)
    return attributes


def _declared_simple(value: etree._Element) -> bool:
    """Whether ``xsi:type`` declares an XML Schema built-in (simple) type, such as ``xs:string``."""
    declared = value.get(_XSI_TYPE)
    if not declared:
        return False
    prefix, _, _local = declared.rpartition(":")
    return value.nsmap.get(prefix or None) == XSD


def _check_bearer(subject: etree._Element, expected: Expected, now: float) -> None:
    """Profiles §4.1.4.2-3: a bearer confirmation for our ACS and request, still valid.

    The broker always sends an ``<AuthnRequest>`` and accepts no unsolicited response, so
    the confirmation's ``InResponseTo`` is required and must be this flow's request.
    """
    reason = "no bearer SubjectConfirmation"
    for confirmation in subject.iterfind(f"{{{SAML}}}SubjectConfirmation"):
        if confirmation.get("Method") != BEARER:
            continue
        data = confirmation.find(f"{{{SAML}}}SubjectConfirmationData")
        not_on_or_after = data.get("NotOnOrAfter") if data is not None else None
        not_before = data.get("NotBefore") if data is not None else None
        if data is None or data.get("Recipient") != expected.acs_url:
            reason = "the bearer confirmation's Recipient is not our ACS"
        elif data.get("InResponseTo") is None:
            reason = "the bearer confirmation has no InResponseTo, and the broker accepts only answers to its requests"
        elif data.get("InResponseTo") != expected.request_id:
            reason = "the bearer confirmation answers another request (InResponseTo)"
        elif not not_on_or_after:
            reason = "the bearer confirmation has no NotOnOrAfter"
        elif instant(not_on_or_after, "NotOnOrAfter") <= now - expected.skew:
            reason = "the bearer confirmation has expired (NotOnOrAfter)"
        elif not_before and instant(not_before, "NotBefore") > now + expected.skew:
            reason = "the bearer confirmation is not yet valid (NotBefore)"
        else:
            return
    raise InvalidResponse(f"{reason} (Profiles §4.1.4.2, §4.1.4.3)")


def _check_conditions(assertion: etree._Element, expected: Expected, now: float) -> int | None:
    """Core §2.5.1: every condition valid, none not understood; returns the ProxyRestriction Count."""
    conditions = assertion.find(f"{{{SAML}}}Conditions")
    if conditions is None:
        raise InvalidResponse("Assertion without Conditions: it is not restricted to us (Audience, "
                              "Profiles §4.1.4.2)")
    for condition in conditions:
        # Core §2.5.1.1 rule 3: a condition not understood makes the assertion Indeterminate, and
        # §2.5.1: "the validity status of the assertion MUST be considered to be Indeterminate";
        # <Condition xsi:type=...> (§2.5.1.3) is the extension point, understood by no one here.
        if condition.tag not in _UNDERSTOOD_CONDITIONS or not _own_type(condition):
            name = condition.get(_XSI_TYPE) or etree.QName(condition).localname
            raise InvalidResponse(f"the assertion's Conditions hold {name}, a condition the broker does not "
                                  "evaluate: the assertion is Indeterminate (Core §2.5.1, §2.5.1.1)")
    not_before = conditions.get("NotBefore")
    if not_before and instant(not_before, "NotBefore") > now + expected.skew:
        raise InvalidResponse("the assertion is not yet valid (NotBefore, Core §2.5.1.2)")
    not_on_or_after = conditions.get("NotOnOrAfter")
    if not_on_or_after and instant(not_on_or_after, "NotOnOrAfter") <= now - expected.skew:
        raise InvalidResponse("the assertion has expired (NotOnOrAfter, Core §2.5.1.2)")
    restrictions = conditions.findall(_AUDIENCE_RESTRICTION)
    # Core §2.5.1.4: every AudienceRestriction must name us; Profiles §4.1.4.2: at least one.
    if not restrictions or any(expected.sp_entity_id not in _audiences(r) for r in restrictions):
        raise InvalidResponse("the assertion is not restricted to the broker's entity (Audience, "
                              "Core §2.5.1.4)")
    # Core §2.5.1.5: OneTimeUse is met (the assertion is used at once and never kept; its request id
    # is consumed once); at most one.
    if len(conditions.findall(_ONE_TIME_USE)) > 1:
        raise InvalidResponse("more than one OneTimeUse condition (Core §2.5.1.5)")
    proxy = conditions.findall(_PROXY_RESTRICTION)
    if len(proxy) > 1:
        raise InvalidResponse("more than one ProxyRestriction condition (Core §2.5.1.6)")
    return _check_proxy_restriction(proxy[0], expected) if proxy else None


def _check_proxy_restriction(restriction: etree._Element, expected: Expected) -> int | None:
    """Core §2.5.1.6: the broker issues new assertions (tokens) on this one's basis, to one service."""
    count = restriction.get("Count")
    if count is not None and int(count) == 0:
        raise InvalidResponse("ProxyRestriction Count=0: the IdP forbids what the broker does with an "
                              "assertion, issue its own to a service (Core §2.5.1.6)")
    audiences = _audiences(restriction)
    if audiences and expected.downstream not in audiences:
        raise InvalidResponse("the ProxyRestriction does not name the service the broker would issue "
                              "to (Core §2.5.1.6)")
    return int(count) if count is not None else None


def _own_type(condition: etree._Element) -> bool:
    """No ``xsi:type``, or the element's own type: a derived type may carry semantics we do not know."""
    declared = condition.get(_XSI_TYPE)
    if declared is None:
        return True
    prefix, _, local = declared.rpartition(":")
    return condition.nsmap.get(prefix or None) == SAML and local == _UNDERSTOOD_CONDITIONS[condition.tag]


def _audiences(restriction: etree._Element) -> set[str | None]:
    return {read_text(audience, "Audience") for audience in restriction.iterfind(_AUDIENCE)}


def instant(value: str | None, what: str) -> float:
    if not value:
        raise InvalidResponse(f"{what} missing")
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidResponse(f"{what} is not an xs:dateTime") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)  # Core §1.3.3: UTC
    return parsed.timestamp()


def read_text(element: etree._Element | None, what: str) -> str | None:
    """The whole text of a text-only SAML element (Issuer, NameID, Audience, AuthnContextClassRef, ...).

    The one way values are read (ADR 0009): an element with any child node (an element,
    or a comment the message check missed) is refused rather than read in part, so the
    value is never the text before the first child (``.text`` of ``bob<!---->.attacker``).
    """
    if element is None:
        return None
    if len(element):
        raise InvalidResponse(f"{what} holds child nodes where the SAML schema allows only text (ADR 0009)")
    return (element.text or "").strip() or None


def certificate_pem(certificate: str) -> bytes:
    body = "".join(certificate.split())
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n".encode()
