"""The SAML backend: the broker as one service provider toward every city's SAML IdP.

A SATOSA ``BackendModule`` on pysaml2's ``Saml2Client`` (the SP's configuration,
metadata and, for IdPs that need it, request signing).  Its part of a login
(:mod:`broker.login.steps`):

* :meth:`SamlBackend.start_auth` sends an ``<AuthnRequest>`` to the IdP the flow
  now waits for and records its ``ID`` and RelayState in the flow
  (:meth:`~broker.login.flow.LoginFlow.upstream_sent`);
* :meth:`SamlBackend.acs` takes the ``<Response>`` only if the flow waits for a SAML
  IdP, with the RelayState it sent, and verifies the message with
  :func:`broker.saml.response.process_response` against that request: the
  request id (``InResponseTo``), the IdP it was sent to (Issuer, and the keys of
  *that* IdP's metadata only), our ACS and entity id.  A response is accepted
  once: after it verified, its request id is claimed in the store with one
  atomic ``SET NX`` (``saml:req:<id>``, TTL = flow lifetime), so whichever
  instance receives it first wins and every replay, anywhere, is refused.

Attributes are passed on raw (SAML ``Name`` → list of string values), so the
mapping rules see exactly what the IdP sent; none of them is logged.
"""

from __future__ import annotations

import base64
import copy
import logging
import secrets
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.sax.saxutils import escape, quoteattr

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from satosa.backends.base import BackendModule
from satosa.internal import InternalData
from satosa.response import Redirect, Response
from satosa.saml_util import make_saml_response

from broker.errors import ExpiredFlow, IdpError, InvalidResponse, ReplayedResponse
from broker.login.context import LoginContext
from broker.login.internal import auth_information, internal_data
from broker.registry.tenants import IdentityProvider
from broker.saml.crypto_policy import policy_for
from broker.saml.metadata import METADATA_MEDIA_TYPE, own_metadata
from broker.saml.response import Assertion, Expected, IdpKeys, process_response
from broker.saml.slo import SingleLogout
from broker.saml.xml_keys import private_key
from broker.sessions.model import UpstreamSession
from broker.store import Store

logger = logging.getLogger("broker.backends.saml")

REQUEST_KEY = "saml:req:"
ACS_PATH = "saml2/acs/post"
METADATA_PATH = "saml2/sp/metadata"
SLO_PATHS = {BINDING_HTTP_REDIRECT: "saml2/sp/slo/redirect", BINDING_HTTP_POST: "saml2/sp/slo/post"}


class SamlBackend(BackendModule):
    """One SP for all SAML IdPs; request ids in the flow, their use recorded in the shared store.

    ``config``: ``sp_config`` (pysaml2's SP configuration).  ``idps`` are the SAML
    IdPs by registry key; ``configure_entity`` installs the in-process signature
    backend on the pysaml2 entity.
    """

    def __init__(self, auth_callback_func: Callable[..., Any], internal_attributes: dict[str, Any],
                 config: Mapping[str, Any], base_url: str, name: str, *, idps: Mapping[str, IdentityProvider],
                 store: Store, flow_ttl: int, configure_entity: Callable[[Any], Any]):
        super().__init__(auth_callback_func, internal_attributes, base_url, name)
        self.sp = Saml2Client(SPConfig().load(copy.deepcopy(config["sp_config"])))
        configure_entity(self.sp)
        self.store = store
        self.flow_ttl = flow_ttl
        self.idps = dict(idps)
        # Each IdP's algorithms: the defaults, plus only what its tenant entry lists under legacy_crypto.
        self.crypto = {key: policy_for(idp.legacy_crypto) for key, idp in self.idps.items()}
        self.entity_id: str = self.sp.config.entityid
        self.acs_url: str = self.sp.config.getattr("endpoints", "sp")["assertion_consumer_service"][0][0]
        self.sign_requests = bool(self.sp.config.getattr("authn_requests_signed", "sp"))
        self.skew = int(self.sp.config.accepted_time_diff or 60)
        # pysaml2's metadata lookups scan every metadata source; ours must not grow with the IdPs.
        self.idp_entities = frozenset(self.sp.metadata.identity_providers())
        self.idp_keys = IdpKeys.from_metadata(self.sp.metadata, self.idp_entities)
        self._sso_urls = {entity: _redirect_sso_url(self.sp, entity) for entity in self.idp_entities}
        key_file = self.sp.config.key_file
        self.decryption_key = private_key(key_file) if key_file else None
        self._metadata_xml: str | None = None
        self.by_entity = {idp.entity_id: idp for idp in self.idps.values() if idp.entity_id}
        self.slo = SingleLogout(entity_id=self.entity_id, metadata=self.sp.metadata, role="idpsso",
                                peers=self.idp_entities, key_file=key_file,
                                endpoints={b: f"{base_url.rstrip('/')}/{p}" for b, p in SLO_PATHS.items()},
                                skew=self.skew)
        #: The logout steps (:class:`broker.sessions.logout.Logout`), attached when the broker is assembled.
        self.logout: Any = None

    def register_endpoints(self) -> list[tuple[str, Callable[[LoginContext], Response]]]:
        return [(f"^{urlsplit(self.acs_url).path.lstrip('/')}$", self.acs),
                (f"^{METADATA_PATH}$", self.metadata_endpoint),
                *((f"^{path}$", self._slo(binding)) for binding, path in SLO_PATHS.items())]

    def _slo(self, binding: str) -> Callable[[LoginContext], Response]:
        def endpoint(context: LoginContext) -> Response:
            return self.handle_logout_message(context, binding)
        return endpoint

    def get_metadata_desc(self) -> list[Any]:
        return []

    def metadata_endpoint(self, context: LoginContext) -> Response:
        if self._metadata_xml is None:
            self._metadata_xml = own_metadata(self.sp.config)
        return Response(self._metadata_xml, content=METADATA_MEDIA_TYPE)

    # -- the request ---------------------------------------------------------------------------

    def start_auth(self, context: LoginContext, internal_request: InternalData) -> Response:
        flow = context.flow
        upstream = flow.waiting_for(self.name) if flow is not None else None
        idp = self.idps.get(upstream.idp) if upstream is not None else None
        if flow is None or idp is None or not idp.entity_id:
            raise InvalidResponse("no SAML IdP chosen for this flow")
        entity_id = idp.entity_id
        if entity_id not in self.idp_entities:
            raise IdpError("the IdP's metadata could not be loaded", status=503)
        force_authn = flow.service.reauthenticate_upstream
        relay_state = secrets.token_urlsafe(12)
        destination = self._sso_urls.get(entity_id)
        response: Response
        if destination and not self.sign_requests:
            request_id = "id-" + secrets.token_hex(16)
            response = Redirect(authn_request_redirect(
                destination=destination, request_id=request_id, sp_entity_id=self.entity_id, acs_url=self.acs_url,
                relay_state=relay_state, force_authn=force_authn, lang=flow.lang))
        else:  # a signed request, or an IdP without the Redirect binding: pysaml2 builds it
            request_id, binding, http_info = self.sp.prepare_for_negotiated_authenticate(
                entityid=entity_id, assertion_consumer_service_url=self.acs_url, response_binding=BINDING_HTTP_POST,
                relay_state=relay_state, **({"force_authn": "true"} if force_authn else {}))
            response = make_saml_response(binding, http_info)
        context.flow = flow.upstream_sent(request_id=request_id, relay_state=relay_state)
        return response

    # -- the response --------------------------------------------------------------------------

    def acs(self, context: LoginContext) -> Response:
        flow = context.flow
        if flow is None:
            raise ExpiredFlow(f"SAML response without a login in progress ({context.flow_problem or 'no flow cookie'})")
        upstream = flow.waiting_for(self.name)
        idp = self.idps.get(upstream.idp)
        if idp is None or not idp.entity_id or not upstream.request_id:
            raise InvalidResponse("the flow is not waiting for a SAML IdP's response")
        params = context.request or {}
        saml_response = params.get("SAMLResponse")
        if not saml_response or not isinstance(saml_response, str):
            raise InvalidResponse("no SAMLResponse in the request")
        # Bindings §3.5.3: the RelayState comes back unchanged; it ties the answer to this browser's request.
        relay_state = params.get("RelayState")
        if not isinstance(relay_state, str) or not secrets.compare_digest(relay_state, upstream.relay_state or ""):
            raise InvalidResponse("RelayState does not match the flow")
        expected = Expected(sp_entity_id=self.entity_id, acs_url=self.acs_url, request_id=upstream.request_id,
                            idp_entity_id=idp.entity_id, skew=self.skew, max_age=self.flow_ttl,
                            crypto=self.crypto[idp.key], downstream=flow.service.requester)
        assertion = process_response(saml_response, expected, self.idp_keys, decryption_key=self.decryption_key)
        if not self.store.add(REQUEST_KEY + upstream.request_id, 1, self.flow_ttl):
            raise ReplayedResponse("SAML response for a request already answered (replay)")
        context.upstream_session = UpstreamSession(
            kind="saml", idp=idp.key, name_id=assertion.name_id, name_id_format=assertion.name_id_format,
            name_qualifier=assertion.name_qualifier, sp_name_qualifier=assertion.sp_name_qualifier,
            session_index=assertion.session_index)
        return self.auth_callback_func(context, _internal_data(assertion))


    # -- single logout with the cities' IdPs (Profiles §4.4) ---------------------------------------

    def handle_logout_message(self, context: LoginContext, binding: str) -> Response:
        """A city IdP's LogoutResponse (to ours), or its own LogoutRequest (the city starts a logout)."""
        received, answered = self.logout.receive_saml(context, self.slo, binding, from_upstream=True)
        if answered is not None:
            return answered
        request = received.request
        idp = self.by_entity.get(received.peer)
        if request is None or idp is None:
            raise InvalidResponse("a logout request from an IdP that is not registered")
        names = (*request.session_indexes, *((request.name_id,) if request.name_id else ()))
        session_id = self.logout.session_for_upstream(context, idp.key, names)
        return self.logout.start(context, self.logout.initiator(
            "upstream", requester=idp.key, request_id=request.id, relay_state=received.relay_state), session_id)

    def logout_request(self, upstream: UpstreamSession, *, relay_state: str) -> tuple[str, str] | None:
        """A signed LogoutRequest to the city IdP for what it asserted (``None``: it has no SLO endpoint)."""
        idp = self.idps.get(upstream.idp)
        if idp is None or not idp.entity_id or not upstream.name_id:
            return None
        return self.slo.request_url(idp.entity_id, name_id=upstream.name_id, relay_state=relay_state,
                                    session_index=upstream.session_index, name_id_format=upstream.name_id_format,
                                    name_qualifier=upstream.name_qualifier,
                                    sp_name_qualifier=upstream.sp_name_qualifier)

    def logout_response(self, idp_key: str, *, in_response_to: str, relay_state: str | None) -> str | None:
        idp = self.idps.get(idp_key)
        if idp is None or not idp.entity_id:
            return None
        return self.slo.response_url(idp.entity_id, in_response_to=in_response_to, relay_state=relay_state)


def authn_request_redirect(*, destination: str, request_id: str, sp_entity_id: str, acs_url: str,
                           relay_state: str, force_authn: bool = False, lang: str | None = None,
                           now: float | None = None) -> str:
    """The URL that carries an unsigned ``<AuthnRequest>`` by the HTTP-Redirect binding.

    Built directly (SAML Core §3.4.1; Bindings §3.4.4: DEFLATE, base64, URL-encode)
    rather than through pysaml2's object model: one string, one deflate.  ``lang``
    travels as Shibboleth's and MPASSid's ``lang`` query parameter.
    """
    instant = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    xml = ('<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
           'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
           f'ID="{request_id}" Version="2.0" IssueInstant="{instant}" Destination={quoteattr(destination)} '
           f'AssertionConsumerServiceURL={quoteattr(acs_url)} '
           'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"'
           + (' ForceAuthn="true"' if force_authn else "") + '>'
           f'<saml:Issuer>{escape(sp_entity_id)}</saml:Issuer>'
           '<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" AllowCreate="true"/>'
           '</samlp:AuthnRequest>')
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    encoded = base64.b64encode(deflate.compress(xml.encode()) + deflate.flush()).decode()
    query = {"RelayState": relay_state}
    if lang:
        query["lang"] = lang
    return (destination + ("&" if "?" in destination else "?") + "SAMLRequest=" + _quote_base64(encoded) + "&"
            + urlencode(query))


def _quote_base64(value: str) -> str:
    """``quote_plus`` of standard base64 at C speed: ``+``, ``/`` and ``=`` are its only unsafe characters
    (urlencode's per-character quoting cost ~40 µs for a SAMLRequest)."""
    return value.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


def _redirect_sso_url(sp: Saml2Client, entity_id: str) -> str | None:
    """The IdP's HTTP-Redirect SSO location from its metadata."""
    try:
        services = sp.metadata.single_sign_on_service(entity_id, BINDING_HTTP_REDIRECT)
    except Exception:  # noqa: BLE001 - pysaml2 raises several types for an entity without the binding
        services = []
    return services[0]["location"] if services else None


def _internal_data(assertion: Assertion) -> InternalData:
    return internal_data(
        auth_info=auth_information(
            auth_class_ref=assertion.authn_context_class_ref, timestamp=assertion.authn_instant,
            authority=assertion.authenticating_authority, issuer=assertion.issuer),
        attributes=assertion.attributes,
        subject_type=assertion.name_id_format,
        subject_id=assertion.name_id,
    )
