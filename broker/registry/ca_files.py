"""A city's own TLS trust anchors: ``ca_file`` on an OIDC IdP and on ``metadata: {url, …}``.

A city whose IdP has a certificate from a private CA names that CA's certificate(s) in a file
of its own inside the CA directory the operator configured (``ca_dir`` / ``BROKER_CA_DIR``;
none by default).  The tenant file is untrusted input (decision 8), so the name follows the
rules of a secret file (:mod:`broker.registry.tenant_secrets`):

* inside the CA directory, as written (no ``..``) and once symlinks are resolved
  (:func:`broker.registry.paths.contained`); a relative name is taken from the CA directory;
* the city's own: in a folder ``<city>/``, or called ``<city>``, ``<city>-…`` or ``…-<city>``
  (:func:`broker.registry.environment.secret_file_owner`), never another city's;
* a PEM file of at most 256 KiB holding X.509 certificates only (one at least): a private
  key or any other PEM block is refused, so a key put there by mistake is never used.

The validated text is kept on the tenant (:attr:`CaFile.pem`) and is what the TLS
connections to that IdP trust (:mod:`broker.backends.trust`), in place of the public CAs and
of ``REQUESTS_CA_BUNDLE``; no other city's IdP trusts it.  Certificate lifetimes are not a
validation error: they are in the expiry report (:mod:`broker.registry.expiry`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from broker.registry.environment import secret_file_owner
from broker.registry.paths import contained
from broker.registry.tenant_model import CaFile

#: A CA file is at most this long (a few certificates, not a bundle of every public CA).
MAX_CA_BYTES = 256 * 1024
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


def resolve_ca_file(raw: Any, path: str, c: Any, *, tenant_id: str) -> CaFile | None:
    """The :class:`CaFile` a tenant's ``ca_file`` value names, or ``None`` after ``c.fail(path, …)``."""
    ca_dir = c.environ.ca_dir
    if not isinstance(raw, str) or not raw.strip():
        c.fail(path, "the name of a PEM file of CA certificates in the CA directory (ca_dir)")
        return None
    if ca_dir is None:
        c.fail(path, "no ca_file: the operator has set no CA directory (ca_dir / BROKER_CA_DIR), so a city "
                     "cannot name one")
        return None
    name = raw.strip()
    found = contained(ca_dir, name)
    if found is None:
        c.fail(path, f"a file inside the CA directory {ca_dir} ({name} is outside it; the operator sets the "
                     "directory with ca_dir / BROKER_CA_DIR)")
        return None
    file, relative = found
    if not tenant_id or secret_file_owner(relative, c.tenant_ids) != tenant_id:
        city = tenant_id or "<city>"
        c.fail(path, f"a CA file of this city: {city}/<NAME>, {city}, {city}-<NAME> or <NAME>-{city} in the CA "
                     f"directory ({relative} is not {city}'s)")
        return None
    if not file.is_file():
        c.fail(path, f"a readable file ({ca_dir / relative} not found)")
        return None
    with file.open("rb") as handle:
        data = handle.read(MAX_CA_BYTES + 1)
    if len(data) > MAX_CA_BYTES:
        c.fail(path, f"a CA file of at most {MAX_CA_BYTES // 1024} KiB")
        return None
    problem, certificates = _certificates(data)
    if problem:
        c.fail(path, f"{problem} ({relative})")
        return None
    pem = data.decode("ascii")
    return CaFile(path=file, relative=str(relative), digest=hashlib.sha256(data).hexdigest(), pem=pem,
                  certificates=tuple(certificates))


def _certificates(data: bytes) -> tuple[str | None, list[tuple[str, Any]]]:
    """``(problem, [(subject, not_after)])``: a problem names what was expected, never the content."""
    try:
        data.decode("ascii")
    except UnicodeDecodeError:
        return "a PEM file (ASCII text) of CA certificates", []
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        return "PEM certificates (-----BEGIN CERTIFICATE-----)", []
    certificates = []
    for index, (label, _) in enumerate(blocks):
        if label != b"CERTIFICATE":
            what = "a private key" if b"PRIVATE KEY" in label else f"a {label.decode().lower()}"
            return f"certificates only, but block {index + 1} is {what}", []
    try:
        loaded = x509.load_pem_x509_certificates(data)
    except ValueError:
        return "PEM certificates that parse as X.509", []
    if len(loaded) != len(blocks):
        return "PEM certificates that parse as X.509", []
    for certificate in loaded:
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        subject = str(names[0].value) if names else certificate.subject.rfc4514_string() or "(no subject)"
        certificates.append((subject, certificate.not_valid_after_utc))
    return None, certificates
