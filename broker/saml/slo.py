"""SAML single logout with one peer kind: sending and receiving logout messages (Profiles §4.4).

The broker speaks single logout twice: as an IdP to the service providers, and as an SP
to the cities' IdPs. Both sides do the same things, so :class:`SingleLogout` serves
both, built with the peers' metadata:

* :meth:`SingleLogout.request_url` / :meth:`SingleLogout.response_url` — a signed
  ``<LogoutRequest>`` or ``<LogoutResponse>`` to a peer's SLO endpoint, by the
  HTTP-Redirect binding (the binding every SLO endpoint in the field offers);
* :meth:`SingleLogout.receive` — a message arriving at our SLO endpoint, by HTTP-Redirect
  or HTTP-POST.

Every received message must be signed by its issuer's metadata key: Profiles §4.4.3.1
and §4.4.4.1 require the sender to authenticate itself, and a front-channel binding
has no other way. An unsigned LogoutRequest could sign anyone out who is known by
NameID or SessionIndex.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from saml2 import BINDING_HTTP_REDIRECT

from broker.errors import InvalidResponse
from broker.saml import logout, redirect
from broker.saml.crypto_policy import DEFAULT_POLICY
from broker.saml.response import certificate_pem
from broker.saml.xml_keys import certificate_key
from broker.saml.xml_parsing import parse
from broker.saml.xml_signatures import verify_node

Role = Literal["spsso", "idpsso"]


@dataclasses.dataclass(frozen=True)
class Received:
    """A logout message from a peer, its signature verified."""

    peer: str
    relay_state: str | None
    request: logout.LogoutRequest | None = None
    response: logout.LogoutResponse | None = None


@dataclasses.dataclass(frozen=True)
class _Peer:
    location: str | None             # its SLO endpoint (HTTP-Redirect)
    response_location: str | None    # where its LogoutResponses go, if different
    keys: tuple[PublicKeyTypes, ...]
    certificates: tuple[str, ...]


class SingleLogout:
    """Logout messages between us (``entity_id``) and peers of ``role`` in ``metadata``."""

    def __init__(self, *, entity_id: str, metadata: Any, role: Role, peers: Iterable[str], key_file: str,
                 endpoints: dict[str, str], skew: int = 60):
        self.entity_id = entity_id
        self.endpoints = endpoints            # binding -> our SLO URL
        self.skew = skew
        self._key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
        self._peers: dict[str, _Peer] = {}
        for entity in peers:
            try:
                services = metadata.single_logout_service(entity, BINDING_HTTP_REDIRECT, role) or []
            except Exception:  # noqa: BLE001 - pysaml2 raises several types for an entity without the service
                services = []
            try:
                certificates = tuple(cert for _, cert in metadata.certs(entity, role, "signing"))
            except Exception:  # noqa: BLE001 - the same for an entity without signing keys
                certificates = ()
            first = services[0] if services else {}
            self._peers[entity] = _Peer(location=first.get("location"),
                                        response_location=first.get("response_location") or first.get("location"),
                                        keys=tuple(redirect.public_keys(certificates)), certificates=certificates)

    def supports(self, peer: str) -> bool:
        """Whether ``peer`` has an SLO endpoint we can send to."""
        entry = self._peers.get(peer)
        return entry is not None and entry.location is not None

    # -- sending ------------------------------------------------------------------------------------------

    def request_url(self, peer: str, *, name_id: str, relay_state: str | None, session_index: str | None = None,
                    name_id_format: str | None = None, name_qualifier: str | None = None,
                    sp_name_qualifier: str | None = None) -> tuple[str, str] | None:
        """``(url, request id)`` of a signed LogoutRequest to ``peer``, or ``None`` if it has no SLO endpoint."""
        entry = self._peers.get(peer)
        if entry is None or entry.location is None:
            return None
        request_id = logout.new_id()
        xml = logout.build_request(request_id=request_id, issuer=self.entity_id, destination=entry.location,
                                   name_id=name_id, name_id_format=name_id_format, name_qualifier=name_qualifier,
                                   sp_name_qualifier=sp_name_qualifier, session_index=session_index)
        return redirect.encode(entry.location, "SAMLRequest", xml, relay_state=relay_state, key=self._key), request_id

    def response_url(self, peer: str, *, in_response_to: str, relay_state: str | None,
                     status: str = logout.SUCCESS) -> str | None:
        """The URL of a signed LogoutResponse to ``peer``, or ``None`` if it has no SLO endpoint."""
        entry = self._peers.get(peer)
        target = entry.response_location if entry is not None else None
        if target is None:
            return None
        xml = logout.build_response(response_id=logout.new_id(), issuer=self.entity_id, destination=target,
                                    in_response_to=in_response_to, status=status)
        return redirect.encode(target, "SAMLResponse", xml, relay_state=relay_state, key=self._key)

    # -- receiving ----------------------------------------------------------------------------------------

    def receive(self, *, binding: str, raw_query: str, form: dict[str, Any]) -> Received:
        """A message at our SLO endpoint for ``binding``; refused unless its issuer signed it."""
        destination = self.endpoints[binding]
        if binding == BINDING_HTTP_REDIRECT:
            message = redirect.decode(raw_query)
            xml, relay_state, name = message.xml, message.relay_state, message.name
        else:
            name = "SAMLRequest" if "SAMLRequest" in form else "SAMLResponse"
            value = form.get(name)
            if not isinstance(value, str) or not value:
                raise InvalidResponse("no SAMLRequest or SAMLResponse in the form (Bindings §3.5.4)")
            try:
                xml = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidResponse("the SAML message is not base64 (Bindings §3.5.4)") from None
            relay_state = form.get("RelayState") if isinstance(form.get("RelayState"), str) else None
        request: logout.LogoutRequest | None = None
        response: logout.LogoutResponse | None = None
        if name == "SAMLRequest":
            request = logout.read_request(xml, destination=destination, skew=self.skew)
            issuer = request.issuer
        else:
            response = logout.read_response(xml, destination=destination, skew=self.skew)
            issuer = response.issuer
        entry = self._peers.get(issuer)
        if entry is None:
            raise InvalidResponse("a logout message from an entity that is not registered (Issuer)")
        if binding == BINDING_HTTP_REDIRECT:
            redirect.verify(message, entry.keys)
        else:
            self._verify_enveloped(xml, entry)
        return Received(peer=issuer, relay_state=relay_state, request=request, response=response)

    def _verify_enveloped(self, xml: bytes, entry: _Peer) -> None:
        root = parse(xml)
        if root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None:
            raise InvalidResponse("the logout message is not signed (Profiles §4.4.3.1)")
        failure: Exception | None = None
        for certificate in entry.certificates:
            pem = certificate_pem(certificate)
            try:
                verify_node(root, root.get("ID"), certificate_key(pem), policy=DEFAULT_POLICY)
                return
            except Exception as exc:  # noqa: BLE001 - SignatureError and the policy's refusals alike
                failure = exc
        raise InvalidResponse(f"the logout message's signature does not verify with its issuer's keys: {failure}")

