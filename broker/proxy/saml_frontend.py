"""Our SAML IdP frontend: SATOSA's, at fixed URLs, with per-SP release policy.

SATOSA's :class:`~satosa.frontends.saml2.SAMLFrontend` registers its SSO
endpoints once per backend (``/<backend>/sso/...``) and answers an unknown SP
with a 500.  Ours serves one IdP entity for all upstream IdPs (the IdP is
chosen by the broker, see :mod:`broker.proxy.selection`), answers bad requests
with a 4xx page, and releases to each SP only what its policy allows, in the
MPASSid or DigiOne profile, with a pairwise persistent NameID.

URLs (documented in docs/saml.md): metadata ``/saml2/idp/metadata``, SSO
``/saml2/idp/sso/redirect`` and ``/saml2/idp/sso/post``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2 import saml
from saml2.attribute_converter import AttributeConverter
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from saml2.server import Server
from satosa.context import Context
from satosa.exception import SATOSABadRequestError
from satosa.frontends.saml2 import SAMLFrontend
from satosa.response import Response

from broker.errors import BrokerError, UnknownClient
from broker.mapping import NAME_FORMAT_URI, SAML_FRIENDLY_NAMES

logger = logging.getLogger(__name__)

SSO_PATHS = {BINDING_HTTP_REDIRECT: "saml2/idp/sso/redirect", BINDING_HTTP_POST: "saml2/idp/sso/post"}
METADATA_PATH = "saml2/idp/metadata"
_HINT_PREFIXES = ("urn:digione:idp:", "urn:mpass.id:authnsource:")

#: ``release(sp_entity_id, identity) -> (attributes by SAML Name URI, pairwise NameID)``
Release = Callable[[str, dict], tuple[dict[str, list[str]], str]]


class BrokerSamlFrontend(SAMLFrontend):
    def __init__(self, auth_req_callback_func, internal_attributes, config, base_url, name, *,
                 release: Release, configure_entity: Callable[[Any], None] | None = None):
        super().__init__(auth_req_callback_func, internal_attributes, config, base_url, name)
        self.release = release
        self.configure_entity = configure_entity
        self._metadata_xml: str | None = None

    def register_endpoints(self, backend_names):
        self.idp_config = copy.deepcopy(self.config[self.KEY_IDP_CONFIG])
        self.idp = Server(config=IdPConfig().load(copy.deepcopy(self.idp_config)))
        self.idp.config.attribute_converters = [ReleaseConverter()]
        # pysaml2's metadata lookups scan every source (one per SP): index the SPs once.
        self.sp_entities = frozenset(entity for entity in self.idp.metadata.keys()
                                     if self.idp.metadata[entity].get("spsso_descriptor"))
        if self.configure_entity:
            self.configure_entity(self.idp)
        endpoints = [(f"^{path}$", self._sso(binding)) for binding, path in SSO_PATHS.items()]
        endpoints.append((f"^{METADATA_PATH}$", self._metadata_endpoint))
        return endpoints

    def _sso(self, binding: str):
        def endpoint(context: Context):
            return self.handle_authn_request(context, binding)
        return endpoint

    def handle_authn_request(self, context: Context, binding_in: str):
        request = context.request or {}
        if not isinstance(request.get("SAMLRequest"), str):
            raise BrokerError("no SAMLRequest in the request")
        try:
            info = self.idp.parse_authn_request(request["SAMLRequest"], binding_in)
        except Exception as exc:  # pysaml2 raises many types for malformed input
            raise BrokerError(f"AuthnRequest not parseable: {exc.__class__.__name__}") from None
        requester = info.message.issuer.text.strip() if info.message.issuer is not None else None
        if not requester or requester not in self.sp_entities:
            raise UnknownClient("AuthnRequest from a service provider that is not registered")
        refs = [ref.text.strip() for ref in
                getattr(info.message.requested_authn_context, "authn_context_class_ref", None) or () if ref.text]
        hint = next((ref for ref in refs if ref.startswith(_HINT_PREFIXES)), None)
        context.decorate("digione.authn", {
            "prompt": ["login"] if str(info.message.force_authn).lower() in ("true", "1") else [],
            "idp_hint": hint[len("urn:digione:idp:"):] if hint and hint.startswith("urn:digione:idp:") else hint,
            "ui_locales": request.get("lang") or (context.qs_params or {}).get("lang"),
            "client_id": requester,
        })
        try:
            return self._handle_authn_request(context, binding_in, self.idp)
        except SATOSABadRequestError:
            raise
        except BrokerError:
            raise
        except Exception as exc:
            logger.warning("AuthnRequest refused", exc_info=True)
            raise BrokerError(f"AuthnRequest refused: {exc.__class__.__name__}") from None

    def handle_authn_response(self, context: Context, internal_response):
        request_state = context.state.get(self.name)
        sp_entity_id = request_state["resp_args"]["sp_entity_id"] if request_state else None
        attributes, name_id = self.release(sp_entity_id, internal_response.attributes)
        internal_response.attributes = attributes
        internal_response.subject_id = name_id
        internal_response.subject_type = NAMEID_FORMAT_PERSISTENT
        return self._handle_authn_response(context, internal_response, self.idp)

    def _get_approved_attributes(self, idp, idp_policy, sp_entity_id, state):
        return {}  # release is decided per SP by its release policy, not by pysaml2's policy

    def _filter_attributes(self, idp, internal_response, context):
        return internal_response.attributes  # the release policy has already filtered

    def _metadata_endpoint(self, context, *args):
        if self._metadata_xml is None:
            self._metadata_xml = create_metadata_string(None, self.idp.config, 4, None, None, None, None,
                                                        None).decode("utf-8")
        return Response(self._metadata_xml, content="text/xml")


class ReleaseConverter(AttributeConverter):
    """Emits released attributes by their URI names, NameFormat uri, with FriendlyNames.

    The release policy already produced attributes keyed by SAML Name; pysaml2's
    map-based converters would need a unique local name per attribute, which the
    two profiles do not have (both release a ``nickname``).
    """

    def __init__(self):
        super().__init__(NAME_FORMAT_URI)

    def to_(self, attrvals):
        return [saml.Attribute(name=name, name_format=NAME_FORMAT_URI, friendly_name=SAML_FRIENDLY_NAMES.get(name),
                               attribute_value=[saml.AttributeValue(text=str(v)) for v in values])
                for name, values in attrvals.items()]
