"""Self-signed signing keys for the demo identity providers.

Keys live in a local, git-ignored folder (``var/demo`` by default) and are created
on first use; later runs reuse them so that metadata files written for the broker
stay valid across restarts.  Never use these keys for anything but the demo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """Paths of a PEM private key (PKCS#8, unencrypted) and its self-signed certificate."""

    key_path: Path
    cert_path: Path

    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())


def ensure_keypair(key_dir: Path, name: str, *, common_name: str | None = None) -> KeyPair:
    """Return the key pair ``<key_dir>/<name>.key`` + ``.crt``, generating it if missing.

    Generation holds an exclusive lock on ``<key_dir>/.lock`` so that two processes
    starting together (the demo command and a test, two workers) cannot pair one
    process's key with the other's certificate.
    """
    key_dir = Path(key_dir)
    pair = KeyPair(key_dir / f"{name}.key", key_dir / f"{name}.crt")
    if pair.key_path.exists() and pair.cert_path.exists():
        return pair
    key_dir.mkdir(parents=True, exist_ok=True)
    with _locked(key_dir / ".lock"):
        if not (pair.key_path.exists() and pair.cert_path.exists()):
            key, cert = _self_signed(common_name or name)
            _write(pair.key_path, key, mode=0o600)
            _write(pair.cert_path, cert, mode=0o644)
    return pair


def _self_signed(common_name: str) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
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
