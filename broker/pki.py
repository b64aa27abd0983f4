"""Key pairs and certificates the broker needs for SAML (signing, decryption).

Production keys come from files an operator provides (``BROKER_KEYS_DIR``);
when a key is missing there, :func:`ensure_keypair` generates a self-signed one
so the embedded default runs on a fresh machine.  Nothing here is ever in the
repository: the keys directory is ignored.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def ensure_keypair(directory: Path, name: str, *, common_name: str, days: int = 3650) -> tuple[Path, Path]:
    """Return ``(key_path, cert_path)`` for ``name``, generating an RSA-2048 pair if absent."""
    directory = Path(directory)
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    if key_path.exists() and cert_path.exists():
        return key_path, cert_path
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), mode=0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return key_path, cert_path


def certificate_body(cert_pem: str | bytes) -> str:
    """The base64 body of a PEM certificate, as SAML metadata ``<ds:X509Certificate>`` wants it."""
    text = cert_pem.decode() if isinstance(cert_pem, bytes) else cert_pem
    return "".join(line for line in text.splitlines() if line and not line.startswith("-----"))


def sha256_fingerprint(cert_pem: str | bytes) -> str:
    """Lower-case hex SHA-256 of the DER certificate (the pin tenant files use)."""
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _write(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)
