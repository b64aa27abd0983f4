"""Key pairs and certificates for SAML signing and decryption.

Production keys come from files an operator provides (``BROKER_KEYS_DIR``);
when a key is missing there, :func:`ensure_keypair` generates a self-signed one
so the embedded default runs on a fresh machine (the demo IdPs use it too).
Nothing here is ever in the repository: key directories are ignored folders.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


class KeyPair(NamedTuple):
    """Paths of a PEM private key (PKCS#8, unencrypted) and its self-signed certificate."""

    key_path: Path
    cert_path: Path

    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())


def ensure_keypair(key_dir: Path, name: str, *, common_name: str | None = None, days: int = 3650) -> KeyPair:
    """Return the key pair ``<key_dir>/<name>.key`` + ``.crt``, generating an RSA-2048 pair if missing.

    Generation holds an exclusive lock on ``<key_dir>/.lock`` so that two processes
    starting together (two workers, the demo and a test) cannot pair one process's
    key with the other's certificate.
    """
    key_dir = Path(key_dir)
    pair = KeyPair(key_dir / f"{name}.key", key_dir / f"{name}.crt")
    if pair.key_path.exists() and pair.cert_path.exists():
        return pair
    key_dir.mkdir(parents=True, exist_ok=True)
    with _locked(key_dir / ".lock"):
        if not (pair.key_path.exists() and pair.cert_path.exists()):
            key, cert = _self_signed(common_name or name, days)
            _write(pair.key_path, key, mode=0o600)
            _write(pair.cert_path, cert, mode=0o644)
    return pair


def certificate_body(cert_pem: str | bytes) -> str:
    """The base64 body of a PEM certificate, as SAML metadata ``<ds:X509Certificate>`` wants it."""
    text = cert_pem.decode() if isinstance(cert_pem, bytes) else cert_pem
    return "".join(line for line in text.splitlines() if line and not line.startswith("-----"))


def sha256_fingerprint(cert_pem: str | bytes) -> str:
    """Lower-case hex SHA-256 of the DER certificate (the pin tenant files use)."""
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _self_signed(common_name: str, days: int) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, *, mode: int) -> None:
    # Write beside the target and rename, so a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
