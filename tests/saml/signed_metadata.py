"""Real IdP metadata for the pinned-metadata tests: pysaml2 writes the EntityDescriptor and signs
it (``sign_entity_descriptor``) with our in-process XML-DSig backend; the certificates are real.

Imported by name (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path

from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import Config, IdPConfig
from saml2.metadata import do_key_descriptor, entity_descriptor, sign_entity_descriptor
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from broker.demo.servers import serve_in_thread
from broker.pki import certificate_body, ensure_keypair, sha256_fingerprint
from broker.saml.pysaml2_crypto import InProcessSecurityContext, pysaml2_config_overrides

ENTITY = "https://idp.city.example/idp"
SSO = "https://idp.city.example/sso"


@dataclasses.dataclass(frozen=True)
class Signer:
    key: Path
    cert: Path

    @property
    def pin(self) -> str:
        return sha256_fingerprint(self.cert.read_bytes())

    @property
    def pin_with_colons(self) -> str:
        return ":".join(self.pin[i:i + 2] for i in range(0, 64, 2)).upper()


def signer(directory: Path, name: str, *, days: int = 3650) -> Signer:
    key, cert = ensure_keypair(directory, name, common_name=f"{name} metadata signer", days=days)
    return Signer(key, cert)


def metadata(certs: Sequence[Path], *, entity_id: str = ENTITY, sso: str = SSO, valid_until: str | None = None,
             cache_duration: str | None = None):
    """A pysaml2 EntityDescriptor with one IDPSSODescriptor whose signing keys are ``certs``."""
    config = IdPConfig().load({
        "entityid": entity_id, "cert_file": str(certs[0]),
        "service": {"idp": {"endpoints": {"single_sign_on_service": [(sso, BINDING_HTTP_REDIRECT)]}}},
        **pysaml2_config_overrides()})
    descriptor = entity_descriptor(config)
    for cert in certs[1:]:
        descriptor.idpsso_descriptor.key_descriptor.extend(
            do_key_descriptor(certificate_body(cert.read_text()), use="signing"))
    if valid_until:
        descriptor.valid_until = valid_until
    if cache_duration:
        descriptor.cache_duration = cache_duration
    return descriptor


def sign(descriptor, by: Signer) -> bytes:
    """The descriptor as a document signed (enveloped, RSA-SHA256) by ``by``, its certificate in KeyInfo."""
    conf = Config()
    conf.key_file, conf.cert_file, conf.crypto_backend = str(by.key), str(by.cert), "XMLSecurity"
    _, xml = sign_entity_descriptor(descriptor, None, InProcessSecurityContext.from_config(conf), SIG_RSA_SHA256,
                                    DIGEST_SHA256)
    return xml.encode() if isinstance(xml, str) else xml


def signed_metadata(by: Signer, certs: Sequence[Path] | None = None, **kwargs) -> bytes:
    return sign(metadata(certs or [by.cert], **kwargs), by)


class MetadataHost:
    """The city's metadata host: serves ``body`` with ``status``; counts the requests."""

    def __init__(self, body: bytes = b"", status: str = "200 OK"):
        self.body, self.status, self.hits = body, status, 0
        self._lock = threading.Lock()
        self._server = serve_in_thread(self._app)
        self.url = f"{self._server.url}/metadata?token=s3cret-query"

    def _app(self, environ, start_response):
        with self._lock:
            self.hits += 1
            body, status = self.body, self.status
        start_response(status, [("Content-Type", "application/samlmetadata+xml"), ("Content-Length", str(len(body)))])
        return [body]

    def serve(self, body: bytes | None = None, status: str = "200 OK") -> None:
        with self._lock:
            if body is not None:
                self.body = body
            self.status = status

    def close(self) -> None:
        self._server.shutdown()
