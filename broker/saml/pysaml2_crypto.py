"""pysaml2's crypto plugin, in process: ``CryptoBackend`` and ``SecurityContext`` on python-xmlsec.

pysaml2 signs, verifies, encrypts and decrypts by writing the document, keys and
certificates to temporary files and spawning the ``xmlsec1`` program.  This module
gives pysaml2 entities (the broker's SAML IdP frontend, the demo IdPs, test peers)
the same interface in memory (ADR 0003):

* :class:`CryptoBackendXmlSecInProcess` implements ``CryptoBackend`` on
  :mod:`~broker.saml.xml_signatures` and :mod:`~broker.saml.xml_encryption`;
* :class:`InProcessSecurityContext` passes certificates and keys in memory and
  reads the configured key files once, when it is built;
* :func:`configure_signatures` installs both on an entity (and its metadata store),
  makes its signatures RSA-SHA256/SHA-256 unless the entity configures otherwise
  (pysaml2's default is RSA-SHA1), and makes the assertions it encrypts RSA-OAEP and
  AES-GCM (:class:`~broker.saml.xml_encryption.AssertionEncryption`; pysaml2's default
  is Triple-DES-CBC);
* :func:`pysaml2_config_overrides` is merged into an entity configuration before
  the entity is built.

The SAML responses the broker *receives* do not go through pysaml2 at all
(:mod:`broker.saml.response`, ADR 0007).  pysaml2's ``xmlsec1`` subprocess
backend is no longer selectable (ADR 0009).
"""

from __future__ import annotations

import base64
import logging
import os
from typing import Any

import xmlsec
from lxml import etree
from saml2 import SamlBase
from saml2.cert import CertificateError
from saml2.sigver import (
    ASSERT_XPATH,
    NODE_NAME,
    CryptoBackend,
    DecryptError,
    EncryptError,
    MissingKey,
    RSACrypto,
    SecurityContext,
    SignatureError,
    XmlsecError,
    get_pem_wrapped_unwrapped,
    import_rsa_key_from_file,
    pem_format,
    pre_encrypt_assertion,
)
from saml2.xml.schema import XMLSchemaError
from saml2.xml.schema import validate as validate_with_xmlschema
from saml2.xmldsig import (
    ALLOWED_CANONICALIZATIONS,
    ALLOWED_TRANSFORMS,
    DIGEST_SHA256,
    SIG_RSA_SHA256,
    TRANSFORM_ENVELOPED,
)

from broker.saml import schema as xmlsig_schema
from broker.saml.xml_encryption import AssertionEncryption, decrypt, encrypt_node, single_xpath_node
from broker.saml.xml_keys import KeyMaterial, certificate_key, private_key, read_material
from broker.saml.xml_parsing import check_libxml2, parse_document, serialize
from broker.saml.xml_signatures import sign, verify_signature

logger = logging.getLogger(__name__)

IN_PROCESS = "in-process"

#: Schema validation of each signed item, against pysaml2's XSD files:
#: ``libxml2`` — pysaml2's re-serialization of the item (``str(item)``, as pysaml2 does), libxml2 engine;
#: ``xmlschema`` — the same document, pysaml2's own (pure Python) validator: pysaml2 exactly, ~40x slower;
#: ``signed-node`` — the element libxmlsec1 verified, as received, libxml2 engine: no re-serialization,
#: and stricter (pysaml2's re-serialization puts misplaced children back in schema order).
SCHEMA_VALIDATIONS = ("libxml2", "xmlschema", "signed-node")
DEFAULT_SCHEMA_VALIDATION = "libxml2"

#: What an entity signs with unless its configuration names ``signing_algorithm`` / ``digest_algorithm``.
DEFAULT_SIGNING_ALGORITHM = SIG_RSA_SHA256
DEFAULT_DIGEST_ALGORITHM = DIGEST_SHA256


# -- the pysaml2 crypto backend ------------------------------------------------------------


class CryptoBackendXmlSecInProcess(CryptoBackend):
    """pysaml2's :class:`~saml2.sigver.CryptoBackendXmlSec1` interface, in process.

    Arguments named ``*_file`` accept what pysaml2 passes (a path) and also the
    key or certificate content (bytes or PEM text), which is what
    :class:`InProcessSecurityContext` passes so that no file is read per call.
    Failures raise the subprocess path's exceptions: ``SignatureError``,
    ``DecryptError``, ``EncryptError`` (all ``XmlsecError``).
    """

    @property
    def version(self) -> str:
        """The libxmlsec1 version (``1.3.x``), as ``xmlsec1 --version`` reports it."""
        # python-xmlsec's stubs lack get_libxmlsec_version, which the compiled module has.
        return ".".join(str(part) for part in xmlsec.get_libxmlsec_version())  # type: ignore[attr-defined]

    def validate_signature(self, signedtext, cert_file, cert_type, node_name, node_id):
        """``xmlsec1 --verify --enabled-reference-uris empty,same-doc --enabled-key-data
        raw-x509-cert --pubkey-cert-<type> <cert> --id-attr:ID <node_name> --node-id <id>``.

        Returns True; raises ``SignatureError`` when the signature does not verify.
        """
        self.verify(signedtext, cert_file, cert_type, node_name, node_id)
        return True

    def verify(self, signedtext, cert_file, cert_type, node_name, node_id) -> etree._Element:
        """As :meth:`validate_signature`, returning the verified element."""
        return verify_signature(signedtext, certificate_key(cert_file, cert_type), node_name, node_id)

    def sign_statement(self, statement, node_name, key_file, node_id):
        """``xmlsec1 --sign --privkey-pem <key> --id-attr:ID <node_name> --node-id <id>``."""
        return sign(statement, private_key(key_file), node_name, node_id)

    def decrypt(self, enctext, key_file):
        """``xmlsec1 --decrypt --privkey-pem <key> --id-attr:Id EncryptedKey``."""
        return decrypt(enctext, private_key(key_file))

    def encrypt_assertion(self, statement, enc_key, template, key_type="des-192", node_xpath=None, node_id=None):
        """Encrypt the assertion of a Response for the holder of certificate *enc_key*.

        *statement* is a ``samlp.Response`` (its assertion is first moved into an
        ``<saml:EncryptedAssertion>``, SAML Core §2.3.4) or its XML; the node is
        chosen by *node_id* (an ``ID``) or *node_xpath* (default: the Response's
        ``EncryptedAssertion/Assertion``).  The session key type follows the
        template's EncryptionMethod (*key_type* is accepted for compatibility).
        """
        if isinstance(statement, SamlBase):
            statement = pre_encrypt_assertion(statement)
        root = parse_document(statement)
        if node_id:
            nodes = root.xpath("//*[@ID=$id]", id=node_id)
            if len(nodes) != 1:
                raise EncryptError(f"no single element with ID {node_id!r}")
            node = nodes[0]
        else:
            node = single_xpath_node(root, node_xpath or ASSERT_XPATH)
        encrypt_node(root, node, parse_document(template), certificate_key(enc_key))
        return serialize(root)

    def encrypt(self, text, recv_key, template, session_key_type, xpath=""):
        """``xmlsec1 --encrypt --pubkey-cert-pem <recv_key> --xml-data <text> <template>``."""
        root = parse_document(text)
        node = single_xpath_node(root, xpath) if xpath else root
        if isinstance(template, (str, os.PathLike)) and not str(template).lstrip().startswith("<"):
            template = read_material(template)
        encrypted = encrypt_node(root, node, parse_document(template), certificate_key(recv_key))
        return serialize(encrypted if node is root else root)


# -- the pysaml2 security context ----------------------------------------------------------


def _saml_profile_violations(item) -> dict[str, bool]:
    """pysaml2's own SAML Core §5.4 checks on its parsed view of the signed item.

    Kept verbatim in meaning (see ``SecurityContext._check_signature``), so that the
    plugin refuses what pysaml2's own backend refused before any cryptography runs.
    """
    signed_info = item.signature.signed_info
    references = signed_info.reference
    single_reference = len(references) == 1
    uri = references[0].uri if single_reference else None
    has_uri = single_reference and uri is not None
    anchor = has_uri and uri is not None and uri.startswith("#") and len(uri) > 1
    points_to_item = anchor and uri == f"#{item.id}"
    c14n_ok = signed_info.canonicalization_method.algorithm in ALLOWED_CANONICALIZATIONS
    transforms = references[0].transforms if single_reference else None
    algorithms = [t.algorithm for t in transforms.transform] if transforms is not None else []
    one_or_two = single_reference and 1 <= len(algorithms) <= 2
    all_allowed = one_or_two and len(algorithms) == len(ALLOWED_TRANSFORMS.intersection(algorithms))
    enveloped = one_or_two and TRANSFORM_ENVELOPED in algorithms
    return {
        "signatures must have a single reference element": single_reference,
        "the Reference element must have a URI attribute": has_uri,
        "the URI attribute contains an anchor": anchor,
        "the anchor points to the enclosing element ID attribute": points_to_item,
        "canonicalization method is c14n": c14n_ok,
        "the number of transforms is one or two": one_or_two,
        "all transform algs are allowed": all_allowed,
        "the enveloped signature transform is defined": enveloped,
        "object element is not present": not item.signature.object,
    }


class InProcessSecurityContext(SecurityContext):
    """pysaml2's SecurityContext without temporary files.

    The base class writes every metadata certificate (and every decryption or
    signing key passed as content) to a temporary file for each check.  This
    subclass passes key material in memory to :class:`CryptoBackendXmlSecInProcess`
    and reads the configured key files once, at construction.

    Signed items are schema-validated as in the base class; :attr:`schema_validation`
    picks how (see :data:`SCHEMA_VALIDATIONS`; default ``libxml2``).

    Deliberate differences from the base class (both fail closed):

    * certificates embedded in a message are never used, even with
      ``only_use_keys_in_metadata: false``: no metadata key, no trust
      (:class:`~saml2.sigver.MissingKey`);
    * a signature that does not verify is refused even with
      ``want_authn_requests_only_with_valid_cert`` (the base class then only
      checks the certificate).
    """

    schema_validation = DEFAULT_SCHEMA_VALIDATION

    def __init__(self, crypto: CryptoBackendXmlSecInProcess, key_file: str = "", *args, **kwargs):
        if not isinstance(crypto, CryptoBackendXmlSecInProcess):
            raise TypeError("InProcessSecurityContext needs a CryptoBackendXmlSecInProcess")
        super().__init__(crypto, key_file, *args, **kwargs)
        self._key_source = self.key_file
        self._key_content = read_material(self.key_file) if self.key_file else None
        self._enc_key_contents = [read_material(path) for path in (self.enc_key_files or []) if path]
        if not self.only_use_keys_in_metadata:
            logger.warning("only_use_keys_in_metadata is false: ignored, signatures verify with metadata keys only")

    @classmethod
    def from_config(cls, conf, crypto: CryptoBackendXmlSecInProcess | None = None) -> InProcessSecurityContext:
        """Build from a pysaml2 Config, as :func:`saml2.sigver.security_context` does."""
        return _build_security_context(conf, crypto or CryptoBackendXmlSecInProcess(), cls)

    # -- signing ---------------------------------------------------------------------------

    def _signing_key(self) -> KeyMaterial:
        # CertHandler may switch key_file to a generated key (generate_cert_info); follow it.
        if self.key_file == self._key_source and self._key_content is not None:
            return self._key_content
        return self.key_file

    def sign_statement(self, statement, node_name, key=None, key_file=None, node_id=None):
        """Sign node *node_id*; *key* is base64 of the PEM key, as in the base class."""
        if not key_file and key:
            material: KeyMaterial = base64.b64decode(str(key).encode())
        elif key_file:
            material = key_file
        else:
            material = self._signing_key()
        return self.crypto.sign_statement(statement, node_name, material, node_id)

    # -- verification ----------------------------------------------------------------------

    def _metadata_certificates(self, issuer: str | None) -> list[bytes]:
        if not self.metadata:
            return []
        try:
            entries = self.metadata.certs(issuer, "any", "signing")
        except KeyError:
            return []
        certs: list[bytes] = []
        for _name, cert in entries:
            pem = pem_format(cert) if isinstance(cert, str) else read_material(cert)
            if pem not in certs:
                certs.append(pem)
        return certs

    def _check_signature(self, decoded_xml, item, node_name=NODE_NAME, origdoc=None, must=False,
                         only_valid_cert=False, issuer=None):
        try:
            _issuer = item.issuer.text.strip()
        except AttributeError:
            try:
                _issuer = issuer.text.strip()
            except AttributeError:
                _issuer = None

        certs = self._metadata_certificates(_issuer)
        if not certs:
            raise MissingKey(_issuer)

        if self.schema_validation != "signed-node":
            self._validate_schema(str(item), item, _issuer, node_name)

        validators = _saml_profile_violations(item)
        if not all(validators.values()):
            raise SignatureError({
                "message": "Signature failed to meet constraints on xmldsig",
                "validators": validators, "item ID": item.id, "issuer": _issuer, "node name": node_name,
            })

        verified_with = node = None
        for cert in certs:
            try:
                node = self.crypto.verify(decoded_xml, cert, "pem", node_name, item.id)
            except XmlsecError as exc:
                logger.info("signature of %s %s not verified with a key of %s: %s", node_name, item.id, _issuer, exc)
            else:
                verified_with = cert
                break
        if verified_with is None:
            raise SignatureError("Failed to verify signature")
        if self.schema_validation == "signed-node":
            self._validate_schema(node, item, _issuer, node_name)
        if not self._certificate_acceptable(verified_with):
            raise CertificateError("Invalid certificate!")
        return item

    def _validate_schema(self, document, item, issuer, node_name) -> None:
        validate = validate_with_xmlschema if self.schema_validation == "xmlschema" else xmlsig_schema.validate
        try:
            validate(document)
        except XMLSchemaError as exc:
            raise SignatureError({
                "message": "Signature verification failed. Invalid document format.",
                "reason": str(exc), "ID": item.id, "issuer": issuer, "type": node_name,
            }) from exc

    def _certificate_acceptable(self, cert_pem: bytes) -> bool:
        """``validate_certificate``: the signer certificate chains to our own (CertHandler.verify_cert)."""
        handler = self.cert_handler
        if not getattr(handler, "_verify_cert", False):
            return True
        cert_str = cert_pem.decode("ascii")
        extra = getattr(handler, "_cert_handler_extra_class", None)
        if extra is not None and extra.use_validate_cert_func():
            return bool(extra.validate_cert(cert_str, handler._cert_str, handler._key_str))
        valid, message = handler._osw.verify(handler._cert_str, cert_str)
        logger.info("CertHandler.verify_cert: %s", message)
        return bool(valid)

    def verify_signature(self, signedtext, cert_file=None, cert_type="pem", node_name=NODE_NAME, node_id=None):
        if not cert_file:
            cert_file, cert_type = self.cert_file, self.cert_type
        return self.crypto.validate_signature(signedtext, cert_file=cert_file, cert_type=cert_type,
                                              node_name=node_name, node_id=node_id)

    # -- decryption ------------------------------------------------------------------------

    def decrypt_keys(self, enctext, keys=None):
        """Decrypt with *keys* (PEM content, e.g. from ``outstanding_certs``), then our keys."""
        if not isinstance(keys, list):
            keys = [keys]
        return self.decrypt(enctext, key_file=[key for key in keys if key])

    def decrypt(self, enctext, key_file=None):
        candidates: list[KeyMaterial] = list(key_file) if isinstance(key_file, list) else [key_file]
        candidates = [key for key in candidates if key] + self._enc_key_contents
        for material in candidates:
            try:
                decrypted = self.crypto.decrypt(enctext, material)
            except XmlsecError:
                continue
            if decrypted:
                return decrypted
        raise DecryptError(f"No key was able to decrypt the ciphertext ({len(candidates)} keys tried)")


def _build_security_context(conf, crypto: CryptoBackend, cls: type[SecurityContext] = SecurityContext):
    """:func:`saml2.sigver.security_context` with a given crypto backend and class."""
    sec_backend = None
    if conf.getattr("key_file", ""):
        sec_backend = RSACrypto(import_rsa_key_from_file(conf.key_file))  # HTTP-Redirect signatures
    enc_key_files = [pair["key_file"] for pair in (conf.encryption_keypairs or []) if "key_file" in pair]
    return cls(
        crypto,
        conf.key_file,
        cert_file=conf.cert_file,
        metadata=getattr(conf, "metadata", None),
        only_use_keys_in_metadata=conf.only_use_keys_in_metadata,
        cert_handler_extra_class=conf.cert_handler_extra_class,
        generate_cert_info=conf.generate_cert_info,
        tmp_cert_file=conf.tmp_cert_file,
        tmp_key_file=conf.tmp_key_file,
        validate_certificate=conf.validate_certificate,
        enc_key_files=enc_key_files,
        encryption_keypairs=conf.encryption_keypairs,
        sec_backend=sec_backend,
        delete_tmpfiles=conf.delete_tmpfiles,
    )



# -- installing the backend on a pysaml2 entity --------------------------------------------


class _InMemoryAssertionEncryption:
    """``Entity._encrypt_assertion`` without the temporary certificate file, with our algorithms.

    pysaml2's own method writes the SP's encryption certificate to a temporary file and
    encrypts after ``pre_encryption_part()``'s template: Triple-DES-CBC.  This one uses
    *encryption*'s template (default RSA-OAEP and AES-256-GCM).
    """

    def __init__(self, entity, encryption: AssertionEncryption):
        self.entity = entity
        self.encryption = encryption

    def __call__(self, encrypt_cert, sp_entity_id, response, node_xpath=None):
        if encrypt_cert:
            certs = [(None, encrypt_cert)]
        elif sp_entity_id is not None:
            certs = self.entity.metadata.certs(sp_entity_id, "any", "encryption")
        else:
            certs = []
        exception = None
        for cert_name, cert in certs:
            wrapped, unwrapped = get_pem_wrapped_unwrapped(cert)
            try:
                return self.entity.sec.encrypt_assertion(
                    response, wrapped.encode("ascii"),
                    self.encryption.template(certificate_b64=unwrapped, key_name=cert_name), node_xpath=node_xpath,
                )
            except Exception as exc:  # noqa: BLE001 - as Entity._encrypt_assertion: try the next certificate
                exception = exc
        if exception:
            raise exception
        return response


def _install(entity, context: SecurityContext) -> SecurityContext:
    """Make *context* the entity's, and its metadata store's (signed metadata, MDQ)."""
    entity.sec = context
    store = getattr(entity, "metadata", None)
    if store is not None and hasattr(store, "security"):
        store.security = context
        for source in getattr(store, "metadata", {}).values():
            if getattr(source, "security", None) is not None:
                source.security = context
    return context


def _default_signing_algorithms(entity) -> None:
    """RSA-SHA256 and SHA-256 where the configuration names nothing (pysaml2 would use SHA-1)."""
    config = entity.config
    if not config.getattr("signing_algorithm"):
        entity.signing_algorithm = DEFAULT_SIGNING_ALGORITHM
    if not config.getattr("digest_algorithm"):
        entity.digest_algorithm = DEFAULT_DIGEST_ALGORITHM


def use_in_process_signatures(entity, *, schema_validation: str = DEFAULT_SCHEMA_VALIDATION,
                              encryption: AssertionEncryption | None = None) -> InProcessSecurityContext:
    """Switch a pysaml2 entity to in-process signatures; returns the new security context.

    *entity* is a :class:`saml2.entity.Entity`: SATOSA's ``SAMLFrontend.idp`` (a
    ``Server``), a demo IdP, a test peer.  Call it once, after construction.  Key files
    are read here, never afterwards.  *schema_validation* is one of
    :data:`SCHEMA_VALIDATIONS`; *encryption* chooses the algorithms of the assertions the
    entity encrypts (default: RSA-OAEP, AES-256-GCM).
    """
    if schema_validation not in SCHEMA_VALIDATIONS:
        raise ValueError(f"schema_validation must be one of {', '.join(SCHEMA_VALIDATIONS)}")
    check_libxml2()
    context = InProcessSecurityContext.from_config(entity.config)
    context.schema_validation = schema_validation
    if schema_validation != "xmlschema":
        xmlsig_schema.prepare()
    _install(entity, context)
    _default_signing_algorithms(entity)
    entity._encrypt_assertion = _InMemoryAssertionEncryption(entity, encryption or AssertionEncryption())
    return context


def configure_signatures(entity, *, schema_validation: str = DEFAULT_SCHEMA_VALIDATION,
                         encryption: AssertionEncryption | None = None) -> SecurityContext:
    """Install the in-process backend on *entity* (see :func:`use_in_process_signatures`)."""
    return use_in_process_signatures(entity, schema_validation=schema_validation, encryption=encryption)


def pysaml2_config_overrides() -> dict[str, Any]:
    """Settings to merge into a pysaml2 entity configuration before it is built.

    pysaml2 builds a security context while loading its configuration (for the
    entity and its metadata store), and its default ``crypto_backend: xmlsec1``
    needs the binary.  The placeholder ``XMLSecurity`` backend is used during
    construction (it needs nothing) and :func:`configure_signatures` replaces it
    before any message is handled; a message handled by the placeholder fails, it
    is never accepted.  ``signing_algorithm`` / ``digest_algorithm`` make the
    entity (and SATOSA's SAML frontend, which reads them from this configuration)
    sign with RSA-SHA256 and SHA-256 instead of pysaml2's RSA-SHA1 default.
    """
    return {"crypto_backend": "XMLSecurity", "signing_algorithm": DEFAULT_SIGNING_ALGORITHM,
            "digest_algorithm": DEFAULT_DIGEST_ALGORITHM}


__all__ = [
    "DEFAULT_DIGEST_ALGORITHM",
    "DEFAULT_SCHEMA_VALIDATION",
    "DEFAULT_SIGNING_ALGORITHM",
    "IN_PROCESS",
    "SCHEMA_VALIDATIONS",
    "CryptoBackendXmlSecInProcess",
    "InProcessSecurityContext",
    "check_libxml2",
    "configure_signatures",
    "pysaml2_config_overrides",
    "use_in_process_signatures",
]
