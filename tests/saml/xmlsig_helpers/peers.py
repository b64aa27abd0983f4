"""A real pysaml2 IdP and SP that trust each other, with freshly generated keys.

Nothing here is mocked: the IdP is a :class:`saml2.server.Server` that builds and
signs genuine ``<samlp:Response>`` documents, the SP is the
:class:`saml2.client.Saml2Client` SATOSA's SAML backend uses, and each knows the
other only through inline SAML metadata (so the SP's trust anchor is exactly the
IdP certificate in metadata, as in production).

Both entities are constructed with ``crypto_backend: XMLSecurity`` (the placeholder
pysaml2 needs nothing for); the in-process backend is then installed with
:func:`broker.saml.pysaml2_crypto.configure_signatures`.

A response can be altered before it is signed (``mutate`` on pysaml2's objects,
``mutate_xml`` on the XML with the signature templates in place), and signed and
encrypted with chosen algorithms: the result is still genuinely signed by the IdP.
"""

from __future__ import annotations

import base64
import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
from saml2.client import Saml2Client
from saml2.config import IdPConfig, SPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import (
    NAME_FORMAT_URI,
    NAMEID_FORMAT_PERSISTENT,
    NAMEID_FORMAT_TRANSIENT,
)
from saml2.server import Server
from saml2.sigver import pre_signature_part, signed_instance_factory

from broker.saml.pysaml2_crypto import configure_signatures
from broker.saml.xml_encryption import AssertionEncryption

IDP_ENTITY_ID = "https://idp.example.org/saml/idp"
SP_ENTITY_ID = "https://broker.example.org/saml/sp"
ACS_URL = "https://broker.example.org/saml/acs/post"
REQUEST_ID = "id-4f1c2a6b0d9e4c7a8b3f5e2d1c0b9a87"

IDENTITY = {
    "uid": ["alice"],
    "mail": ["alice@school.example.org"],
    "eduPersonAffiliation": ["student"],
}
AUTHN = {"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"}


@dataclass(frozen=True)
class KeyPair:
    """An RSA key and its self-signed certificate, in memory and on disk."""

    key_pem: bytes
    cert_pem: bytes
    key_file: str
    cert_file: str

    @property
    def cert_base64(self) -> str:
        """The certificate's DER as one base64 line (``<ds:X509Certificate>`` text)."""
        body = b"".join(line for line in self.cert_pem.splitlines() if not line.startswith(b"-----"))
        return body.decode("ascii")

    @property
    def private_key(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        return serialization.load_pem_private_key(self.key_pem, password=None)


def make_keypair(directory: os.PathLike[str] | str, name: str, *, key_size: int = 2048,
                 key_type: str = "rsa") -> KeyPair:
    """Generate ``<name>.key`` / ``<name>.crt`` (PEM) in *directory*: RSA, or ECDSA P-256 (``key_type="ec"``)."""
    if key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    directory = Path(directory)
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.crt"
    key_file.write_bytes(key_pem)
    cert_file.write_bytes(cert_pem)
    return KeyPair(key_pem, cert_pem, str(key_file), str(cert_file))


def _sp_config(keys: KeyPair, enc_keys: KeyPair | None, *, want_response_signed: bool,
               want_assertions_signed: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "entityid": SP_ENTITY_ID,
        "service": {
            "sp": {
                "endpoints": {"assertion_consumer_service": [(ACS_URL, BINDING_HTTP_POST)]},
                "want_response_signed": want_response_signed,
                "want_assertions_signed": want_assertions_signed,
                "want_assertions_or_response_signed": True,
                "allow_unsolicited": False,
                "name_id_format": [NAMEID_FORMAT_TRANSIENT],
            }
        },
        "key_file": keys.key_file,
        "cert_file": keys.cert_file,
        "crypto_backend": "XMLSecurity",
        "accepted_time_diff": 60,
    }
    if enc_keys is not None:
        config["encryption_keypairs"] = [{"key_file": enc_keys.key_file, "cert_file": enc_keys.cert_file}]
    return config


def _idp_config(keys: KeyPair) -> dict[str, Any]:
    return {
        "entityid": IDP_ENTITY_ID,
        "service": {
            "idp": {
                "endpoints": {
                    "single_sign_on_service": [(IDP_ENTITY_ID + "/sso/redirect", BINDING_HTTP_REDIRECT)],
                },
                "policy": {
                    "default": {
                        "lifetime": {"minutes": 15},
                        "attribute_restrictions": None,
                        "name_form": NAME_FORMAT_URI,
                        "fail_on_missing_requested": False,
                    }
                },
                "name_id_format": [NAMEID_FORMAT_TRANSIENT, NAMEID_FORMAT_PERSISTENT],
            }
        },
        "key_file": keys.key_file,
        "cert_file": keys.cert_file,
        "crypto_backend": "XMLSecurity",
    }


def _metadata(config: dict[str, Any], config_class) -> str:
    return str(entity_descriptor(config_class().load(dict(config))))


@dataclass
class Peers:
    """The IdP, the SP, their keys, and an attacker key pair unknown to both."""

    idp: Server
    sp: Saml2Client
    idp_keys: KeyPair
    sp_keys: KeyPair
    sp_enc_keys: KeyPair | None
    attacker_keys: KeyPair
    outstanding: dict[str, str] = field(default_factory=lambda: {REQUEST_ID: "/"})

    def response_xml(self, *, sign_response: bool = True, sign_assertion: bool = True,
                     encrypt_assertion: bool = False, identity: dict[str, list[str]] | None = None,
                     in_response_to: str = REQUEST_ID, mutate: Callable[[samlp.Response], None] | None = None,
                     mutate_xml: Callable[[str], str] | None = None, sign_alg: str | None = None,
                     digest_alg: str | None = None, encryption: AssertionEncryption | None = None) -> str:
        """A genuine ``<samlp:Response>`` from the IdP to the SP (XML text).

        ``mutate`` / ``mutate_xml`` alter it before it is signed (not with ``encrypt_assertion``);
        ``sign_alg`` / ``digest_alg`` default to the IdP's (RSA-SHA256 / SHA-256 once configured);
        ``encryption`` chooses the algorithms of an encrypted assertion.
        """
        if encryption is not None:
            configure_signatures(self.idp, encryption=encryption)
        arguments = {"identity": identity or IDENTITY, "in_response_to": in_response_to, "destination": ACS_URL,
                     "sp_entity_id": SP_ENTITY_ID, "userid": "alice", "authn": AUTHN}
        if mutate is None and mutate_xml is None:
            response = self.idp.create_authn_response(
                **arguments, sign_response=sign_response, sign_assertion=sign_assertion,
                encrypt_assertion=encrypt_assertion, encrypt_assertion_self_contained=True,
                sign_alg=sign_alg, digest_alg=digest_alg)
            return response if isinstance(response, str) else str(response)
        assert not encrypt_assertion, "alterations before signing are for plain assertions"
        response = self.idp.create_authn_response(**arguments, sign_response=False, sign_assertion=False)
        if isinstance(response, str):  # pragma: no cover - pysaml2 returns an instance when nothing is signed
            response = samlp.response_from_string(response)
        if mutate:
            mutate(response)
        sign_alg, digest_alg = sign_alg or self.idp.signing_algorithm, digest_alg or self.idp.digest_algorithm
        to_sign = []
        if sign_assertion:
            response.assertion.signature = pre_signature_part(response.assertion.id, self.idp.sec.my_cert, 1,
                                                              sign_alg=sign_alg, digest_alg=digest_alg)
            to_sign.append((f"{response.assertion.c_namespace}:{response.assertion.c_tag}", response.assertion.id))
        if sign_response:
            response.signature = pre_signature_part(response.id, self.idp.sec.my_cert, 2,
                                                    sign_alg=sign_alg, digest_alg=digest_alg)
            to_sign.append((f"{response.c_namespace}:{response.c_tag}", response.id))
        xml = str(response)
        if mutate_xml:
            xml = mutate_xml(xml)
        signed = signed_instance_factory(xml, self.idp.sec, to_sign) if to_sign else xml
        return signed.decode() if isinstance(signed, bytes) else signed

    def parse(self, xml: str | bytes):
        """Let the SP consume *xml* as an HTTP-POST ``SAMLResponse``; returns an AuthnResponse."""
        if isinstance(xml, str):
            xml = xml.encode("utf-8")
        return self.sp.parse_authn_request_response(
            base64.b64encode(xml).decode("ascii"), BINDING_HTTP_POST, outstanding=dict(self.outstanding)
        )


def make_peers(directory: os.PathLike[str] | str, *, want_response_signed: bool = False,
               want_assertions_signed: bool = True, encryption: bool = False, idp_key_type: str = "rsa") -> Peers:
    """Build an IdP and an SP that trust each other through inline metadata (the IdP's key RSA or ``ec``)."""
    directory = Path(directory)
    idp_keys = make_keypair(directory, "idp", key_type=idp_key_type)
    sp_keys = make_keypair(directory, "sp")
    sp_enc_keys = make_keypair(directory, "sp-enc") if encryption else None
    attacker_keys = make_keypair(directory, "attacker")

    sp_config = _sp_config(sp_keys, sp_enc_keys, want_response_signed=want_response_signed,
                           want_assertions_signed=want_assertions_signed)
    idp_config = _idp_config(idp_keys)
    sp_metadata, idp_metadata = _metadata(sp_config, SPConfig), _metadata(idp_config, IdPConfig)
    sp_config["metadata"] = {"inline": [idp_metadata]}
    idp_config["metadata"] = {"inline": [sp_metadata]}
    sp = Saml2Client(SPConfig().load(sp_config))
    idp = Server(config=IdPConfig().load(idp_config))
    return Peers(idp, sp, idp_keys, sp_keys, sp_enc_keys, attacker_keys)
