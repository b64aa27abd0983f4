"""SAML single logout messages (SAML Core §3.7): ``<LogoutRequest>`` and ``<LogoutResponse>``.

Built as text (one string each, like the AuthnRequest the broker sends) and read with the
hardened parser: no DTD, UTF-8 only, no comments in what is read, text read whole
(decision 9). The checks are the ones the single logout profile asks of a receiver
(SAML Profiles §4.4.4): the message is addressed to us (``Destination``), fresh
(``IssueInstant``, ``NotOnOrAfter``), from the party we expect (``Issuer``), and a
response answers the request we sent (``InResponseTo``). The signature is checked by
the binding that carried the message (:mod:`broker.saml.redirect`, or the enveloped
signature for HTTP-POST).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from broker.errors import InvalidResponse
from broker.saml.response import SAML, SAMLP, instant, read_text, refuse_comments
from broker.saml.xml_parsing import parse

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
PARTIAL_LOGOUT = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"
RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
_NAMESPACES = 'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"'


@dataclasses.dataclass(frozen=True)
class LogoutRequest:
    id: str
    issuer: str
    name_id: str | None
    session_indexes: tuple[str, ...]
    destination: str | None


@dataclasses.dataclass(frozen=True)
class LogoutResponse:
    id: str
    issuer: str
    in_response_to: str | None
    status: str
    destination: str | None

    @property
    def success(self) -> bool:
        return self.status == SUCCESS


def new_id() -> str:
    return "id-" + secrets.token_hex(16)


def _instant(now: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))


def build_request(*, request_id: str, issuer: str, destination: str, name_id: str, name_id_format: str | None = None,
                  name_qualifier: str | None = None, sp_name_qualifier: str | None = None,
                  session_index: str | None = None, lifetime: int = 300, now: float | None = None) -> str:
    """A ``<LogoutRequest>`` for the principal ``name_id`` in ``session_index`` (Core §3.7.1)."""
    moment = time.time() if now is None else now
    attributes = "".join(f" {n}={quoteattr(v)}" for n, v in (("Format", name_id_format), ("NameQualifier",
                         name_qualifier), ("SPNameQualifier", sp_name_qualifier)) if v)
    return (f'<samlp:LogoutRequest {_NAMESPACES} ID="{request_id}" Version="2.0" IssueInstant="{_instant(moment)}" '
            f'Destination={quoteattr(destination)} NotOnOrAfter="{_instant(moment + lifetime)}">'
            f"<saml:Issuer>{escape(issuer)}</saml:Issuer>"
            f"<saml:NameID{attributes}>{escape(name_id)}</saml:NameID>"
            + (f"<samlp:SessionIndex>{escape(session_index)}</samlp:SessionIndex>" if session_index else "")
            + "</samlp:LogoutRequest>")


def build_response(*, response_id: str, issuer: str, destination: str, in_response_to: str, status: str = SUCCESS,
                   now: float | None = None) -> str:
    """A ``<LogoutResponse>`` to the request ``in_response_to`` (Core §3.7.2)."""
    if status == SUCCESS:
        code = f'<samlp:StatusCode Value="{SUCCESS}"/>'
    else:  # Core §3.2.2.2 second-level codes; PartialLogout is a success that did not reach everyone
        top = SUCCESS if status == PARTIAL_LOGOUT else RESPONDER
        code = f'<samlp:StatusCode Value="{top}"><samlp:StatusCode Value={quoteattr(status)}/></samlp:StatusCode>'
    return (f'<samlp:LogoutResponse {_NAMESPACES} ID="{response_id}" Version="2.0" IssueInstant="{_instant(now)}" '
            f'Destination={quoteattr(destination)} InResponseTo={quoteattr(in_response_to)}>'
            f"<saml:Issuer>{escape(issuer)}</saml:Issuer><samlp:Status>{code}</samlp:Status>"
            "</samlp:LogoutResponse>")


def read_request(xml: bytes, *, destination: str, skew: int = 60, now: float | None = None) -> LogoutRequest:
    """Parse and check a ``<LogoutRequest>`` addressed to ``destination``."""
    root = _root(xml, "LogoutRequest", destination, skew, now)
    moment = time.time() if now is None else now
    not_on_or_after = root.get("NotOnOrAfter")
    if not_on_or_after and instant(not_on_or_after, "NotOnOrAfter") <= moment - skew:
        raise InvalidResponse("the LogoutRequest has expired (NotOnOrAfter, Core §3.7.1)")
    name_id = read_text(root.find(f"{{{SAML}}}NameID"), "NameID")
    if root.find(f"{{{SAML}}}EncryptedID") is not None or root.find(f"{{{SAML}}}BaseID") is not None:
        raise InvalidResponse("only a plain NameID is accepted in a LogoutRequest")
    indexes = tuple(filter(None, (read_text(e, "SessionIndex") for e in root.iterfind(f"{{{SAMLP}}}SessionIndex"))))
    return LogoutRequest(id=root.get("ID") or "", issuer=_issuer(root), name_id=name_id, session_indexes=indexes,
                         destination=root.get("Destination"))


def read_response(xml: bytes, *, destination: str, skew: int = 60, now: float | None = None) -> LogoutResponse:
    """Parse and check a ``<LogoutResponse>`` addressed to ``destination``."""
    root = _root(xml, "LogoutResponse", destination, skew, now)
    code = root.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode")
    if code is None or not code.get("Value"):
        raise InvalidResponse("LogoutResponse without a StatusCode (Core §3.2.2)")
    status = code.get("Value") or ""
    second = code.find(f"{{{SAMLP}}}StatusCode")
    if status != SUCCESS and second is not None and second.get("Value"):
        status = second.get("Value") or status
    return LogoutResponse(id=root.get("ID") or "", issuer=_issuer(root), in_response_to=root.get("InResponseTo"),
                          status=status, destination=root.get("Destination"))


def _root(xml: bytes, tag: str, destination: str, skew: int, now: float | None) -> etree._Element:
    try:
        root = parse(xml)
    except Exception as exc:  # noqa: BLE001 - the hardened parser's refusals, whatever their type
        raise InvalidResponse(f"the {tag} is not acceptable XML: {str(exc)[:120]}") from None
    if root.tag != f"{{{SAMLP}}}{tag}":
        raise InvalidResponse(f"expected a samlp:{tag}")
    refuse_comments(root, tag)
    if root.get("Version") != "2.0" or not root.get("ID"):
        raise InvalidResponse(f"{tag} Version or ID missing (Core §3.2.1)")
    # Bindings §3.4.5.2 / §3.5.5.2: a message that names a Destination must name us.
    if root.get("Destination") not in (None, destination):
        raise InvalidResponse(f"the {tag} is addressed to another endpoint (Destination)")
    moment = time.time() if now is None else now
    issued = instant(root.get("IssueInstant"), f"{tag} IssueInstant")
    if issued > moment + skew or issued < moment - 600 - skew:
        raise InvalidResponse(f"{tag} IssueInstant is outside the accepted window (Core §3.2.1)")
    return root


def _issuer(root: etree._Element) -> str:
    issuer = read_text(root.find(f"{{{SAML}}}Issuer"), "Issuer")
    if not issuer:
        raise InvalidResponse("a logout message must name its Issuer (Profiles §4.4.4)")
    return issuer
