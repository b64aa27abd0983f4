"""Our SAML backend: SATOSA's SP, with shared request ids and issuer binding.

SATOSA's :class:`~satosa.backends.saml2.SAMLBackend` is one SP entity serving
every SAML IdP, which is what we want.  We keep its configuration handling,
AuthnRequest construction and metadata endpoint, and replace the two parts that
break on a real deployment:

* **Outstanding request ids.**  SATOSA keeps them in a per-process dict: a
  response landing on another worker fails, and replay protection holds only in
  one process.  Ours travel in the sealed flow state, binding the response to the
  browser that sent the request (SAML Profiles §4.1.4.3: InResponseTo must match a
  request *we* sent; the AEAD seal makes the id unforgeable), and a response is
  accepted once: after it verified, its request id is claimed in the store with one
  atomic ``SET NX`` (``saml:req:<id>``, TTL = flow lifetime), so whichever instance
  receives it first wins and every replay, anywhere, is refused.
* **Issuer binding.**  Many IdPs (ADFS, Entra) sign only the assertion, and
  pysaml2 then never compares the unsigned Response ``<Issuer>`` with the signed
  Assertion ``<Issuer>``.  We require the Response Issuer (when present), the
  Assertion Issuer and the IdP the request was sent to to be the same entity
  (SAML Core §3.2.2, §2.3.3; Profiles §4.1.4.2).

Attributes are passed on raw (SAML ``Name`` → list of string values), so the
mapping rules see exactly what the IdP sent; SATOSA's debug log of every
attribute value is skipped (it would log personal data).
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
import zlib
from urllib.parse import urlencode
from xml.sax.saxutils import quoteattr, escape

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.response import StatusError
from satosa.backends.saml2 import SAMLBackend
from satosa.context import Context
from satosa.internal import AuthenticationInformation, InternalData
from satosa.response import Redirect, Response
from satosa.saml_util import make_saml_response

from broker.errors import ExpiredFlow, IdpError, InvalidResponse, ReplayedResponse
from broker.proxy import xmlsig
from broker.proxy.saml_response import Assertion, Expected, IdpKeys, check_verified, process_response
from broker.store import Store

logger = logging.getLogger(__name__)

REQUEST_KEY = "saml:req:"


class BrokerSamlBackend(SAMLBackend):
    """One SP for all SAML IdPs, with request ids in the shared store."""

    def __init__(self, outgoing, internal_attributes, config, base_url, name, *, store: Store, flow_ttl: int,
                 in_process: bool = True):
        super().__init__(outgoing, internal_attributes, config, base_url, name)
        self.store = store
        self.flow_ttl = flow_ttl
        self.outstanding_queries = _NoProcessLocalState()
        self.acs_url = self._get_acs(None)[0]
        self._sso_urls: dict[str, str | None] = {}
        # pysaml2's metadata lookups scan every metadata source; ours must not grow with the IdPs.
        self.idp_entities = frozenset(self.sp.metadata.identity_providers())
        self.skew = int(self.sp.config.accepted_time_diff or 60)
        # In-process signatures: responses go through our one-parse processor (saml_response);
        # the xmlsec1 path keeps pysaml2's parser, with our extra checks on top.
        self.idp_keys = IdpKeys.from_metadata(self.sp.metadata, self.idp_entities) \
            if in_process else None
        key_file = self.sp.config.key_file
        self.decryption_key = xmlsig.private_key(key_file) if in_process and key_file else None

    # -- request ---------------------------------------------------------------

    def start_auth(self, context: Context, internal_req: InternalData) -> Response:
        entity_id = context.get_decoration(Context.KEY_TARGET_ENTITYID)
        if not entity_id:
            raise InvalidResponse("no SAML IdP chosen for this flow")
        if entity_id not in self.idp_entities:
            raise IdpError("the IdP's metadata could not be loaded", status=503)
        return self.authn_request(context, entity_id)

    def authn_request(self, context: Context, entity_id: str) -> Response:
        authn = context.get_decoration("digione.authn") or {}
        force_authn = "login" in (authn.get("prompt") or ()) or authn.get("max_age") == 0
        relay_state = secrets.token_urlsafe(12)
        destination = self._redirect_sso_url(entity_id)
        if destination and not self.sp.config.getattr("authn_requests_signed", "sp"):
            req_id = "id-" + secrets.token_hex(16)
            response = Redirect(authn_request_redirect(
                destination=destination, request_id=req_id, sp_entity_id=self.sp.config.entityid,
                acs_url=self.acs_url, relay_state=relay_state, force_authn=force_authn))
        else:  # a signed request, or an IdP without the Redirect binding: pysaml2 builds it
            acs_url, response_binding = self._get_acs(context)
            req_id, binding, http_info = self.sp.prepare_for_negotiated_authenticate(
                entityid=entity_id, assertion_consumer_service_url=acs_url, response_binding=response_binding,
                relay_state=relay_state, **({"force_authn": "true"} if force_authn else {}))
            response = make_saml_response(binding, http_info)
        context.state[self.name] = {"relay_state": relay_state, "req_id": req_id, "idp": entity_id}
        logger.debug("saml authn request sent idp=%s", entity_id)
        return response

    def _redirect_sso_url(self, entity_id: str) -> str | None:
        """The IdP's HTTP-Redirect SSO location from its metadata (looked up once per IdP)."""
        if entity_id not in self._sso_urls:
            try:
                services = self.sp.metadata.single_sign_on_service(entity_id, BINDING_HTTP_REDIRECT)
            except Exception:  # pysaml2 raises several types for an entity without the binding
                services = []
            self._sso_urls[entity_id] = services[0]["location"] if services else None
        return self._sso_urls[entity_id]

    # -- response --------------------------------------------------------------

    def authn_response(self, context: Context, binding: str) -> Response:
        flow = context.state.get(self.name) if context.state else None
        if not flow or "req_id" not in flow:
            raise ExpiredFlow("SAML response without a flow in progress (no or expired state cookie)")
        request = context.request or {}
        saml_response = request.get("SAMLResponse")
        if not saml_response or not isinstance(saml_response, str):
            raise InvalidResponse("no SAMLResponse in the request")
        if request.get("RelayState") != flow["relay_state"]:
            raise InvalidResponse("RelayState does not match the flow")
        expected = Expected(sp_entity_id=self.sp.config.entityid, acs_url=self.acs_url, request_id=flow["req_id"],
                            idp_entity_id=flow["idp"], skew=self.skew, max_age=self.flow_ttl)
        if self.idp_keys is not None:
            assertion = process_response(saml_response, expected, self.idp_keys, decryption_key=self.decryption_key)
        else:
            assertion = self._parse_with_pysaml2(saml_response, binding, flow, expected)
        internal = _internal_data(assertion)
        if not self.store.add(REQUEST_KEY + flow["req_id"], 1, self.flow_ttl):
            raise ReplayedResponse("SAML response for a request already answered (replay)")
        context.state.pop(self.name, None)
        logger.info("saml response accepted idp=%s attributes=%d", flow["idp"], len(internal.attributes))
        return self.auth_callback_func(context, internal)

    def _parse_with_pysaml2(self, saml_response: str, binding: str, flow: dict, expected: Expected) -> Assertion:
        """The ``xmlsec1`` path: pysaml2 verifies and decrypts, then the same checks as our processor."""
        try:
            response = self.sp.parse_authn_request_response(
                saml_response, binding, outstanding={flow["req_id"]: flow["idp"]})
        except StatusError as exc:
            raise IdpError(f"IdP returned status {exc.__class__.__name__}") from None
        except Exception as exc:  # pysaml2 raises many unrelated types for bad input
            # pysaml2's message names the failed check; cut short, it never reaches a client.
            reason = " ".join(str(exc).split())[:160]
            raise InvalidResponse(f"SAML response rejected: {exc.__class__.__name__}: {reason}") from None
        if response is None or response.assertion is None:
            # pysaml2 returns a response without an assertion when its own verify() failed.
            raise InvalidResponse("SAML response rejected: not verified (Destination, IssueInstant or status)")
        return check_verified(saml_response, str(response.assertion), expected)

    def register_endpoints(self):
        endpoints = super().register_endpoints()
        # The reload endpoint would let anyone trigger metadata reloads: the registry rebuilds instead.
        return [(regex, fn) for regex, fn in endpoints if "reload-metadata" not in regex]


def authn_request_redirect(*, destination: str, request_id: str, sp_entity_id: str, acs_url: str,
                           relay_state: str, force_authn: bool = False, now: float | None = None) -> str:
    """The URL that carries an unsigned ``<AuthnRequest>`` by the HTTP-Redirect binding.

    Built directly (SAML Core §3.4.1; Bindings §3.4.4: DEFLATE, base64, URL-encode)
    rather than through pysaml2's object model: one string, one deflate.
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
    query = urlencode({"SAMLRequest": encoded, "RelayState": relay_state})
    return destination + ("&" if "?" in destination else "?") + query


def _internal_data(assertion: Assertion) -> InternalData:
    return InternalData(
        auth_info=AuthenticationInformation(
            auth_class_ref=assertion.authn_context_class_ref, timestamp=assertion.authn_instant,
            authority=assertion.authenticating_authority, issuer=assertion.issuer),
        attributes=assertion.attributes,
        subject_type=assertion.name_id_format,
        subject_id=assertion.name_id,
    )


class _NoProcessLocalState(dict):
    """Guards against SATOSA code paths that would fall back to a per-process dict."""

    def __setitem__(self, key, value):
        raise RuntimeError("outstanding SAML requests live in the shared store")


__all__ = ["BrokerSamlBackend", "BINDING_HTTP_POST", "REQUEST_KEY"]
