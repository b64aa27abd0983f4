"""Debian's Apache with a service's configuration, on a loopback port, for the interop tests.

Imported by name (tests/interop/conftest.py puts this directory on sys.path).  :class:`Apache`
runs ``apache2 -X`` (one process, in the foreground) with a configuration of its own in a
fresh temporary directory: the harness below (modules, TLS on ``127.0.0.1:<port>``, pid file,
logs) plus the service's part and files (the claims-dumping CGI, keys, metadata), which the
tests take from docs/services.md.  Nothing of the system's /etc/apache2 is read or changed,
nothing listens beyond loopback, and :meth:`Apache.stop` ends the process it started and
removes its directory.  Also here: the browser session the tests sign in with, and a recorder
of the SAML Responses it carries.

Apache refuses to serve as root: when the tests run as root, Apache runs as ``nobody``
(``subprocess.Popen(user=...)``, so it never holds root at all) and the directory is handed
to that account.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

APACHE = Path("/usr/sbin/apache2")
MODULES = Path("/usr/lib/apache2/modules")
START_TIMEOUT = 10.0

#: A file each Debian package installs: when it is absent, the test is skipped naming the package.
PACKAGES = {
    "apache2": APACHE,
    "libapache2-mod-auth-openidc": MODULES / "mod_auth_openidc.so",
    "libapache2-mod-auth-mellon": MODULES / "mod_auth_mellon.so",
}


def missing(*packages: str) -> str | None:
    """The skip reason when a Debian package is not installed, else ``None``."""
    absent = [name for name in ("apache2", *packages) if not PACKAGES[name].exists()]
    if not absent:
        return None
    return (f"Debian package(s) {', '.join(absent)} not installed: apt-get install -y --no-install-recommends "
            f"{' '.join(absent)} (.ci/run does)")


_HARNESS = """\
# The test harness around the service's configuration: not part of the documented set-up.
ServerRoot "{root}"
DefaultRuntimeDir "{root}"
PidFile "{root}/apache.pid"
ErrorLog "{root}/error.log"
LogLevel {log_level}
SSLSessionCache none
ServerName https://localhost:{port}
Listen 127.0.0.1:{port} https
KeepAlive Off
Timeout 20
LoadModule mpm_prefork_module {modules}/mod_mpm_prefork.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule alias_module {modules}/mod_alias.so
LoadModule cgi_module {modules}/mod_cgi.so
LoadModule ssl_module {modules}/mod_ssl.so
{load}
SSLEngine on
SSLCertificateFile "{root}/tls.crt"
SSLCertificateKeyFile "{root}/tls.key"
DocumentRoot "{root}/htdocs"
<Directory />
    Require all denied
</Directory>
<Directory "{root}/htdocs">
    Require all granted
</Directory>
<Directory "{root}/cgi-bin">
    Require all granted
</Directory>
Include "{root}/service.conf"
"""


class Apache:
    """One ``apache2 -X`` on ``https://localhost:<port>`` with ``service_conf(root)`` included.

    ``service_conf`` is given the directory the files are in (absolute paths: not every module
    resolves a relative one against ServerRoot).  ``files`` are written into the directory
    first (relative names; those in ``cgi-bin/`` made executable); ``modules`` names the extra
    modules to load (e.g. ``auth_openidc``); ``environ`` is Apache's environment, which the
    configuration reads as ``${NAME}`` (the documented set-ups take secrets from there).
    """

    def __init__(self, *, port: int, service_conf: Callable[[Path], str], modules: tuple[str, ...],
                 files: Mapping[str, str | bytes] | None = None, environ: Mapping[str, str] | None = None,
                 log_level: str = "warn ssl:error"):
        self.port = port
        self.url = f"https://localhost:{port}"
        self.root = Path(tempfile.mkdtemp(prefix="digione-interop-apache-"))
        self._service_conf = service_conf
        self._modules = modules
        self.files = dict(files or {})
        self._environ = dict(environ or {})
        self._log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None

    # -- files --------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def ca_file(self) -> Path:
        """The self-signed TLS certificate, for the test's HTTP client to trust."""
        return self.root / "tls.crt"

    def error_log(self) -> str:
        log = self.root / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def _write(self) -> None:
        (self.root / "htdocs").mkdir()
        (self.root / "cgi-bin").mkdir()
        key, cert = tls_pair("localhost")
        (self.root / "tls.key").write_bytes(key)
        (self.root / "tls.crt").write_bytes(cert)
        for name, content in self.files.items():
            target = self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            if target.parent.name == "cgi-bin":
                target.chmod(0o755)
        load = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in self._modules)
        (self.root / "service.conf").write_text(self._service_conf(self.root))
        (self.root / "apache.conf").write_text(_HARNESS.format(root=self.root, port=self.port, modules=MODULES,
                                                               load=load, log_level=self._log_level))

    # -- running ------------------------------------------------------------------------

    def start(self) -> Apache:
        """Write the directory, start ``apache2 -X`` and wait until it listens; on failure, stop and raise."""
        try:
            self._write()
            self._spawn()
            self._wait()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        user = _unprivileged_user()
        if user is not None:
            for path in (self.root, *self.root.rglob("*")):
                os.chown(path, user.pw_uid, user.pw_gid)
        env = {"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C.UTF-8", **self._environ}
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
        self.process = subprocess.Popen(
            [str(APACHE), "-X", "-d", str(self.root), "-f", str(self.root / "apache.conf")],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            **kwargs)  # type: ignore[call-overload]

    def _wait(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                raise RuntimeError(f"apache2 exited with {self.process.returncode}:\n{output}\n{self.error_log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"apache2 did not listen on 127.0.0.1:{self.port} in {START_TIMEOUT} s:\n"
                           f"{self.error_log()}")

    def stop(self) -> None:
        """End the Apache this object started (SIGTERM, then SIGKILL) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process is not None and self.process.stdout:
            self.process.stdout.close()
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[Apache]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def _unprivileged_user() -> pwd.struct_passwd | None:
    """``nobody`` when running as root (Apache will not serve as root), else ``None`` (this user)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("nobody")


def tls_pair(host: str) -> tuple[bytes, bytes]:
    """A self-signed P-256 key and certificate for ``host`` and 127.0.0.1 (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


class BrowserSession(requests.Session):
    """A requests session that keeps cookies as a browser does (RFC 6265 §5.3) for ``localhost``.

    mod_auth_mellon sets ``Domain=localhost`` when served as localhost.  http.cookiejar follows
    RFC 2965 there: it stores the cookie for ``.localhost`` and never sends it back to
    ``localhost``, so the login would end in mellon's "User has disabled cookies".  A browser
    sends it; so does this session, by keeping such a cookie as a cookie of the host.
    """

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = super().send(request, **kwargs)
        for cookie in [c for c in self.cookies if c.domain == ".localhost"]:
            self.cookies.clear(cookie.domain, cookie.path, cookie.name)
            cookie.domain, cookie.domain_specified, cookie.domain_initial_dot = "localhost.local", False, False
            self.cookies.set_cookie(cookie)
        return response


def browser_session(ca_file: Path) -> requests.Session:
    """A :class:`BrowserSession` that trusts ``ca_file`` (and not REQUESTS_CA_BUNDLE)."""
    session = BrowserSession()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify, and proxies apply
    session.verify = str(ca_file)
    return session


def parse_dump(text: str) -> dict[str, str]:
    """The ``NAME=value`` lines the claims-dumping CGI prints (docs/services.md), as a dict."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            out[name] = value
    return out


def saml_responses(person: Any) -> list[bytes]:
    """Wrap ``person.post`` so that every SAMLResponse it posts is kept (decoded): returns the list it fills."""
    kept: list[bytes] = []
    post = person.post

    def recording_post(url: str, data: Any) -> requests.Response:
        if isinstance(data, dict) and "SAMLResponse" in data:
            kept.append(base64.b64decode(data["SAMLResponse"]))
        return post(url, data)

    person.post = recording_post
    return kept
