"""The SAML IdP frontend: the broker as one SAML identity provider for every service provider.

A SATOSA ``FrontendModule`` on pysaml2's ``Server`` (one IdP entity for all city
IdPs: the broker chooses the city, :mod:`broker.login.selection`).  URLs:
metadata ``/saml2/idp/metadata``, SSO ``/saml2/idp/sso/redirect`` and
``/saml2/idp/sso/post``.

The ``<AuthnRequest>`` (SAML Core §3.4.1), checked before a login begins:

* the Issuer is a registered SP (else a page, never a Response to an unknown party);
* signed as the SP's metadata demands (``AuthnRequestsSigned="true"``, Metadata
  §2.4.4): the HTTP-Redirect signature (Bindings §3.4.4.1) or the enveloped one
  (POST), verified with the SP's metadata keys; a signature that is present is
  verified even when not required;
* the ACS is one of the SP's metadata endpoints with the HTTP-POST binding;
* ``IsPassive`` (no page may be shown) and ``ForceAuthn`` become the login's
  ``prompt``; a requested ``<Subject>`` names the only user who may be answered.

The answer: a signed Response and signed assertion with a pairwise persistent
NameID and only what the SP's release policy allows (MPASSid or DigiOne
profile), or a Response with an error ``<Status>``: ``NoPassive`` when
``IsPassive`` could not be honoured, ``RequestDenied`` when the service's rules
refused the user, ``AuthnFailed`` otherwise (Core §3.2.2.2).  For an SP whose
registration asks for it, the signed assertion is encrypted for the key of its
metadata (an ``<EncryptedAssertion>``, Core §2.3.4; AES-GCM and RSA-OAEP,
:mod:`broker.saml.sp_encryption`).  The ``<AuthenticatingAuthority>`` (Core
§2.7.2.2) names the broker, not the city IdP the person used, unless the SP's
registration entitles it to the city's (ADR 0013).

The IdP metadata is signed and served as ``application/samlmetadata+xml``
(:func:`broker.saml.metadata.own_metadata`).
"""

from __future__ import annotations

import base64
import copy
import logging
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.attribute_converter import AttributeConverter
from saml2.config import IdPConfig
from saml2.response import IncorrectlySigned
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.sigver import SignatureError, XmlsecError
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from satosa.frontends.base import FrontendModule
from satosa.internal import InternalData
from satosa.response import Response

from broker.errors import BrokerError, ExpiredFlow, UnknownClient
from broker.login.access import Notice
from broker.login.context import LoginContext
from broker.login.flow import SamlRequest, ServiceRequest
from broker.mapping import NAME_FORMAT_URI, SAML_FRIENDLY_NAMES, SAML_NAMES
from broker.saml.logout import PARTIAL_LOGOUT, SUCCESS
from broker.saml.metadata import METADATA_MEDIA_TYPE, own_metadata
from broker.saml.slo import SingleLogout
from broker.saml.sp_encryption import SpAssertionEncryption, SpEncryption, check_encrypted
from broker.saml.xml_parsing import parse as parse_xml
from broker.web import csp

logger = logging.getLogger("broker.frontends.saml")

SSO_PATHS = {BINDING_HTTP_REDIRECT: "saml2/idp/sso/redirect", BINDING_HTTP_POST: "saml2/idp/sso/post"}
SLO_PATHS = {BINDING_HTTP_REDIRECT: "saml2/idp/slo/redirect", BINDING_HTTP_POST: "saml2/idp/slo/post"}
METADATA_PATH = "saml2/idp/metadata"
_HINT_PREFIXES = ("urn:digione:idp:", "urn:mpass.id:authnsource:", "urn:digione:school:")
_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_MAX_REQUEST = 64 * 1024
UNSPECIFIED_CONTEXT = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"

#: The login's errors as SAML second-level status codes (Core §3.2.2.2).
STATUS = {"login_required": samlp.STATUS_NO_PASSIVE, "access_denied": samlp.STATUS_REQUEST_DENIED}

#: ``release(sp_entity_id, identity) -> (attributes by SAML Name URI, pairwise NameID)``
Release = Callable[[str, Mapping[str, Any]], tuple[dict[str, list[str]], str]]

class RequestRefused(BrokerError):
    """An AuthnRequest the broker will not answer with a Response (shown to the person)."""


class SamlIdpFrontend(FrontendModule):
    """One SAML IdP for all registered SPs.

    ``config``: ``idp_config`` (pysaml2's IdP configuration: entity id, keys, SP
    metadata inline, endpoints); ``encryption`` (``{entity id: SpEncryption.to_dict()}``,
    the SPs whose assertions are encrypted) and ``release_authenticating_authority``
    (entity ids entitled to the city IdP's name).  ``release`` decides what each SP
    receives; ``configure_entity`` installs the in-process signature backend.
    """

    def __init__(self, auth_req_callback_func: Callable[..., Any], internal_attributes: dict[str, Any],
                 config: Mapping[str, Any], base_url: str, name: str, *, release: Release,
                 configure_entity: Callable[[Any], Any], audit: Any = None):
        super().__init__(auth_req_callback_func, internal_attributes, base_url, name)
        self.release = release
        #: A broker.audit.ReleaseAudit: a Response built for an SP is a release (docs/decisions/0017-audit.md).
        self.audit = audit
        idp_config = copy.deepcopy(config["idp_config"])
        self.idp = Server(config=IdPConfig().load(copy.deepcopy(idp_config)))
        # pysaml2 checks request signatures only when the IdP wants them all signed; the SP's metadata
        # decides here, so a second server, identical but strict, verifies the SPs that sign.
        strict = copy.deepcopy(idp_config)
        strict["service"]["idp"]["want_authn_requests_signed"] = True
        self.strict_idp = Server(config=IdPConfig().load(strict))
        self.assertions = _AssertionStamp()
        self.encryption = {entity: SpEncryption.from_dict(key) for entity, key in
                           (config.get("encryption") or {}).items()}
        self.upstream_authority = frozenset(config.get("release_authenticating_authority") or ())
        for server in (self.idp, self.strict_idp):
            server.config.attribute_converters = [ReleaseConverter()]
            configure_entity(server)
            # Each SP's own key and algorithms, never another certificate pysaml2 might pick.
            server._encrypt_assertion = SpAssertionEncryption(server, self.encryption)
            # pysaml2 keeps every assertion it issues in a process-local dict that only grows; ours
            # keeps nothing, and stamps the broker session's SessionIndex for the SP before signing.
            server.session_db = self.assertions
        self.entity_id: str = self.idp.config.entityid
        # pysaml2's metadata lookups scan every source (one per SP): the SPs are indexed once.
        self.sps: dict[str, bool] = {}
        for entity in self.idp.metadata.keys():
            descriptors = self.idp.metadata[entity].get("spsso_descriptor") or ()
            if descriptors:
                self.sps[entity] = any(str(d.get("authn_requests_signed", "")).lower() in ("true", "1")
                                       for d in descriptors)
        self._metadata_xml: str | None = None
        self.slo = SingleLogout(entity_id=self.entity_id, metadata=self.idp.metadata, role="spsso", peers=self.sps,
                                key_file=idp_config["key_file"],
                                endpoints={b: f"{base_url.rstrip('/')}/{p}" for b, p in SLO_PATHS.items()},
                                skew=int(self.idp.config.accepted_time_diff or 60))
        #: The logout steps (:class:`broker.sessions.logout.Logout`), attached when the broker is assembled.
        self.logout: Any = None

    # -- endpoints -----------------------------------------------------------------------------

    def register_endpoints(self, backend_names: Any) -> list[tuple[str, Callable[[LoginContext], Response]]]:
        endpoints: list[tuple[str, Callable[[LoginContext], Response]]] = [
            (f"^{path}$", self._sso(binding)) for binding, path in SSO_PATHS.items()]
        endpoints.append((f"^{METADATA_PATH}$", self.metadata_endpoint))
        endpoints += [(f"^{path}$", self._slo(binding)) for binding, path in SLO_PATHS.items()]
        return endpoints

    def _slo(self, binding: str) -> Callable[[LoginContext], Response]:
        def endpoint(context: LoginContext) -> Response:
            return self.handle_logout_message(context, binding)
        return endpoint

    def _sso(self, binding: str) -> Callable[[LoginContext], Response]:
        def endpoint(context: LoginContext) -> Response:
            return self.handle_authn_request(context, binding)
        return endpoint

    def metadata_endpoint(self, context: LoginContext) -> Response:
        if self._metadata_xml is None:
            self._metadata_xml = own_metadata(self.idp.config)
        return Response(self._metadata_xml, content=METADATA_MEDIA_TYPE)

    # -- the request ---------------------------------------------------------------------------

    def handle_authn_request(self, context: LoginContext, binding: str) -> Response:
        params = context.request or {}
        encoded = params.get("SAMLRequest")
        if not isinstance(encoded, str) or not encoded or len(encoded) > _MAX_REQUEST:
            raise RequestRefused("no SAMLRequest in the request")
        requester, signed = _peek(encoded, binding)
        if requester not in self.sps:
            raise UnknownClient("AuthnRequest from a service provider that is not registered")
        if binding == BINDING_HTTP_REDIRECT:
            signed = bool(params.get("Signature") or params.get("SigAlg"))
        must_sign = self.sps[requester]
        if must_sign and not signed:
            raise RequestRefused("unsigned AuthnRequest from an SP whose metadata says AuthnRequestsSigned "
                                 "(Metadata §2.4.4)")
        server = self.strict_idp if signed else self.idp
        try:
            info = server.parse_authn_request(
                encoded, binding, relay_state=params.get("RelayState"), sigalg=params.get("SigAlg"),
                signature=params.get("Signature"))
        except IncorrectlySigned:
            raise RequestRefused("AuthnRequest signature does not verify with the SP's metadata keys "
                                 "(Bindings §3.4.4.1, Core §5)") from None
        except Exception as exc:  # noqa: BLE001 - pysaml2 raises many unrelated types for malformed input
            raise RequestRefused(f"AuthnRequest not acceptable: {exc.__class__.__name__}") from None
        if info is None:
            raise RequestRefused("AuthnRequest not acceptable")
        message = info.message
        if message.issuer is None or _text(message.issuer) != requester:
            raise RequestRefused("the AuthnRequest's Issuer changed between reading and verifying")
        try:
            args = self.idp.response_args(message, [BINDING_HTTP_POST])
        except Exception as exc:  # noqa: BLE001 - pysaml2's metadata lookups raise several types
            raise RequestRefused(f"no HTTP-POST assertion consumer service for the request "
                                 f"({exc.__class__.__name__})") from None
        if not args.get("destination"):
            raise RequestRefused("no HTTP-POST assertion consumer service for the request")
        refs = [_text(ref) for ref in getattr(message.requested_authn_context, "authn_context_class_ref", None) or ()]
        hint = next((ref for ref in refs if ref.startswith(_HINT_PREFIXES)), None)
        if hint and hint.startswith("urn:digione:idp:"):
            hint = hint[len("urn:digione:idp:"):]
        elif hint and hint.startswith("urn:digione:school:"):   # a school: its city (broker.login.selection)
            hint = "school:" + hint[len("urn:digione:school:"):]
        passive = str(message.is_passive).lower() in ("true", "1")
        force = str(message.force_authn).lower() in ("true", "1")
        subject = _text(message.subject.name_id) if message.subject is not None and message.subject.name_id else None
        saml_request = SamlRequest(
            sp=requester, request_id=message.id, acs_url=args["destination"], binding=BINDING_HTTP_POST,
            relay_state=params.get("RelayState"), force_authn=force, is_passive=passive, subject=subject or None,
            authn_context=tuple(r for r in refs if r))
        lang = params.get("lang") or (context.qs_params or {}).get("lang")
        request = ServiceRequest(
            protocol="saml", frontend=self.name, requester=requester, requester_name=requester,
            prompt=(("none",) if passive else ()) + (("login",) if force else ()), idp_hint=hint,
            ui_locales=lang if isinstance(lang, str) else None, saml=saml_request)
        response: Response = self.auth_req_callback_func(context, request)
        return response

    # -- the answer ----------------------------------------------------------------------------

    def _request(self, context: LoginContext) -> SamlRequest:
        request = context.service_for(self.name).saml
        if request is None:
            raise ExpiredFlow("no SAML AuthnRequest in the flow")
        return request

    def handle_authn_response(self, context: LoginContext, internal_response: InternalData) -> Response:
        request = self._request(context)
        attributes, name_id = self.release(request.sp, internal_response.attributes or {})
        auth = internal_response.auth_info
        # SAML Core §2.7.2.2: the city IdP is named only to an SP entitled to know it (ADR 0013).
        authority = auth.issuer if request.sp in self.upstream_authority and auth.issuer else self.entity_id
        encryption = self.encryption.get(request.sp)
        # SAML Core §2.7.2: the SessionIndex names the broker session for this SP (its LogoutRequest names it).
        self.assertions.stamp(context.sso_sid)
        context.service_session_index = context.sso_sid
        response = self.idp.create_authn_response(
            identity=attributes, in_response_to=request.request_id, destination=request.acs_url,
            sp_entity_id=request.sp,
            name_id=NameID(text=name_id, format=NAMEID_FORMAT_PERSISTENT, sp_name_qualifier=request.sp,
                           name_qualifier=self.entity_id),
            authn={"class_ref": auth.auth_class_ref or UNSPECIFIED_CONTEXT, "authn_auth": authority},
            sign_response=True, sign_assertion=True, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256,
            encrypt_assertion=encryption is not None, encrypt_assertion_self_contained=True,
            encrypt_cert_assertion=encryption.pem().decode("ascii") if encryption is not None else None)
        xml = str(response)
        if encryption is not None:
            check_encrypted(xml)
        if self.audit is not None:  # in the login's store batch: no round trip of its own
            self.audit.saml(request.sp, internal_response.attributes or {}, attributes)
        return self._post(context, request, xml)

    def deny(self, context: LoginContext, error: str, description: str, *, notice: Notice | None = None) -> Response:
        """A signed Response with an error status; with a ``notice``, on a page the person reads first,
        its button posting the Response (not submitted by script)."""
        request = self._request(context)
        status = STATUS.get(error, samlp.STATUS_AUTHN_FAILED)
        if status == samlp.STATUS_NO_PASSIVE and not request.is_passive:
            status = samlp.STATUS_AUTHN_FAILED  # e.g. the requested Subject is not who signed in
        response = self.idp.create_error_response(request.request_id, request.acs_url, (status, description),
                                                  sign=True, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
        return self._post(context, request, str(response), notice=notice)

    def session_fits(self, service: ServiceRequest, identity: Mapping[str, Any]) -> bool:
        """Core §3.4.1: with a requested ``<Subject>``, only that user may be answered."""
        if service.saml is None or service.saml.subject is None:
            return True
        _, name_id = self.release(service.saml.sp, identity)
        return name_id == service.saml.subject

    def subject_for(self, service: ServiceRequest, identity: Mapping[str, Any]) -> str:
        """The pairwise NameID this SP gets (recorded in the broker session for single logout)."""
        return self.release(service.requester, identity)[1]

    def _post(self, context: LoginContext, request: SamlRequest, xml: str, *, notice: Notice | None = None) -> Response:
        """The HTTP-POST binding's page (Bindings §3.5.4): auto-submitted, never cached, posting only to the ACS."""
        fields = {"SAMLResponse": base64.b64encode(xml.encode("utf-8")).decode()}
        if request.relay_state is not None:
            fields["RelayState"] = request.relay_state
        if notice is not None:
            return notice.form(request.acs_url, fields)
        flow = context.flow
        body, headers = csp.autopost_page(request.acs_url, fields, lang=(flow.lang if flow else None) or "fi")
        response = Response(body.decode("utf-8"), content="text/html; charset=utf-8")
        response.headers.extend(h for h in headers if h[0] != "Content-Type")
        return response

    def handle_backend_error(self, exception: Any) -> Response:
        raise NotImplementedError("the login ends a flow through deny(), with the flow at hand")

    # -- single logout (Profiles §4.4) ------------------------------------------------------------

    def handle_logout_message(self, context: LoginContext, binding: str) -> Response:
        """A service provider's LogoutRequest (it starts a logout) or LogoutResponse (to ours)."""
        received, answered = self.logout.receive_saml(context, self.slo, binding, from_upstream=False)
        if answered is not None:
            return answered
        request = received.request
        assert request is not None
        session_id = self.logout.session_for_service(context, received.peer, request.session_indexes,
                                                      request.name_id)
        return self.logout.start(context, self.logout.initiator(
            "saml", requester=received.peer, request_id=request.id, relay_state=received.relay_state), session_id)

    def logout_request(self, sp: str, *, name_id: str, session_index: str,
                       relay_state: str) -> tuple[str, str] | None:
        """A signed LogoutRequest to ``sp`` for the NameID and SessionIndex it was given (Core §3.7.1)."""
        return self.slo.request_url(sp, name_id=name_id, session_index=session_index, relay_state=relay_state,
                                    name_id_format=NAMEID_FORMAT_PERSISTENT, name_qualifier=self.entity_id,
                                    sp_name_qualifier=sp)

    def logout_response(self, sp: str | None, *, in_response_to: str, relay_state: str | None,
                        partial: bool) -> str | None:
        """A signed LogoutResponse to the SP that asked (``PartialLogout`` when something did not confirm)."""
        if sp is None:
            return None
        return self.slo.response_url(sp, in_response_to=in_response_to, relay_state=relay_state,
                                     status=PARTIAL_LOGOUT if partial else SUCCESS)


class _AssertionStamp:
    """Stands in for pysaml2's ``session_db`` of an IdP: stores nothing, stamps a SessionIndex.

    pysaml2 calls ``store_assertion`` with each assertion it built, before signing it; the
    SessionIndex the broker chose (per SP and session) is set there, so the signature covers it.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def stamp(self, session_index: str | None) -> None:
        self._local.value = session_index

    def store_assertion(self, assertion: Any, to_sign: Any) -> None:
        value, self._local.value = getattr(self._local, "value", None), None
        if value:
            for statement in assertion.authn_statement or ():
                statement.session_index = value

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"pysaml2's session store is not kept by the broker ({name})")


def _peek(encoded: str, binding: str) -> tuple[str | None, bool]:
    """The Issuer of an encoded AuthnRequest and whether it carries an enveloped signature (not yet verified).

    Only to pick the SP's rules; everything used afterwards comes from pysaml2's verified parse.
    """
    try:
        raw = base64.b64decode(encoded)
        if binding == BINDING_HTTP_REDIRECT:
            raw = zlib.decompressobj(-15).decompress(raw, _MAX_REQUEST * 8)
        root = parse_xml(raw)
    except (ValueError, zlib.error, XmlsecError, SignatureError):  # binascii.Error is a ValueError
        raise RequestRefused("SAMLRequest is not an encoded XML message (Bindings §3.4.4, §3.5.4)") from None
    if root.tag != f"{{{_SAMLP}}}AuthnRequest":
        raise RequestRefused("the SAMLRequest is not an AuthnRequest")
    issuer = root.find(f"{{{_SAML}}}Issuer")
    if issuer is None or len(issuer) or any(isinstance(n, (etree._Comment, etree._ProcessingInstruction))
                                            for n in issuer.iter()):
        return None, False
    return (issuer.text or "").strip() or None, root.find(f"{{{_DS}}}Signature") is not None


def _text(node: Any) -> str:
    return (getattr(node, "text", None) or "").strip()


class ReleaseConverter(AttributeConverter):
    """Emits released attributes by their URI names, NameFormat uri, with FriendlyNames.

    The release policy already produced attributes keyed by SAML Name
    (:data:`broker.mapping.SAML_NAMES`), so the names are their own local names: an SP
    whose metadata lists ``<RequestedAttribute>`` elements (Metadata §2.4.4.1) gets those
    the policy releases, matched by Name, whatever FriendlyName it gave them.
    """

    def __init__(self) -> None:
        super().__init__(NAME_FORMAT_URI)
        self._fro = {name.lower(): name for name in SAML_NAMES}
        self._to = {name: name for name in SAML_NAMES}

    def to_(self, attrvals: Mapping[str, list[Any]]) -> list[saml.Attribute]:
        return [saml.Attribute(name=name, name_format=NAME_FORMAT_URI, friendly_name=SAML_FRIENDLY_NAMES.get(name),
                               attribute_value=[saml.AttributeValue(text=str(v)) for v in values])
                for name, values in attrvals.items()]
