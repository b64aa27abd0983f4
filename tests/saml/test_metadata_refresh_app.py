"""The refresher inside the running broker: an IdP whose metadata is named by an https URL with two
pins; the city publishes a new document (its next signing certificate, a new SSO location), the
refresh thread's tick fetches it and rebuilds the proxy, which then uses it; an unpinned document
changes nothing."""

from __future__ import annotations

import datetime
import ipaddress
import threading
import time

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_REDIRECT
from signed_metadata import ENTITY, signed_metadata, signer
from werkzeug.serving import make_server

from broker.app import create_app
from broker.settings import Settings
from broker.store import MemoryStore

CITY_SSO = "https://idp.city.example/sso"
NEXT_SSO = "https://idp.city.example/sso/v2"


def _tls_pair(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class HttpsHost:
    def __init__(self, directory):
        self.body, self.hits = b"", 0
        cert, key = _tls_pair(directory)
        self.ca = str(cert)
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, ssl_context=(str(cert), str(key)))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"https://localhost:{self._server.port}/metadata"

    def _app(self, environ, start_response):
        self.hits += 1
        start_response("200 OK", [("Content-Type", "application/samlmetadata+xml")])
        return [self.body]

    def close(self):
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


def _names(text: str) -> dict[str, str]:
    return {"fi": text, "sv": text, "en": text}


@pytest.fixture
def broker(tmp_path):
    keys = {name: signer(tmp_path / "signers", name) for name in ("old", "new", "attacker")}
    host = HttpsHost(tmp_path)
    host.body = signed_metadata(keys["old"], sso=CITY_SSO)
    folders = {name: tmp_path / name for name in ("tenants", "metadata", "secrets", "keys", "registry")}
    for folder in folders.values():
        folder.mkdir()
    (folders["tenants"] / "vantaa.yaml").write_text(yaml.safe_dump({
        "id": "vantaa", "names": _names("Vantaa"), "municipality_code": "092",
        "education_provider": {"oid": "1.2.246.562.10.90920000000", "names": _names("Vantaa city")},
        "schools": [{"code": "90921", "oid": "1.2.246.562.10.90920000001", "names": _names("Demo school")}],
        "identity_providers": [{
            "id": "koulu", "type": "saml", "names": _names("Koulu"), "entity_id": ENTITY,
            "metadata": {"url": host.url, "signing_cert_sha256": [keys["old"].pin, keys["new"].pin]},
            "mapping": {"preset": "mpassid-saml"}}]}))
    env = {f"BROKER_{name.upper()}_DIR": str(folder) for name, folder in folders.items()}
    settings = Settings.from_env({**env, "BROKER_VAR_DIR": str(tmp_path / "var"), "BROKER_SECRET": "s" * 40,
                                  "BROKER_BASE_URL": "http://localhost:8000"})
    http = requests.Session()
    http.trust_env = False      # else REQUESTS_CA_BUNDLE, where set, wins over the session's verify
    http.verify = host.ca
    app = create_app(settings, store=MemoryStore(), http=http)
    yield app, host, keys
    app.close()
    host.close()


def _sso(app) -> str:
    backend = app.proxy.login.backends["saml"]
    return backend.sp.metadata.single_sign_on_service(ENTITY, BINDING_HTTP_REDIRECT)[0]["location"]


def test_a_new_document_is_fetched_in_the_background_and_the_proxy_rebuilt(broker):
    app, host, keys = broker
    assert _sso(app) == CITY_SSO and host.hits == 1
    thread = app.metadata_refresh
    assert thread.run_once() is False, "nothing due yet"
    # The city adds its next certificate, signs with it and moves its SSO endpoint.
    host.body = signed_metadata(keys["new"], [keys["old"].cert, keys["new"].cert], sso=NEXT_SSO)
    thread.clock = lambda: time.time() + 3601
    proxy = app.proxy
    assert thread.run_once() is True, "refreshed, changed, rebuilt"
    assert app.proxy is not proxy and _sso(app) == NEXT_SSO
    assert host.hits == 2, "the rebuild used the copy the refresher stored"
    certs = app.proxy.login.backends["saml"].sp.metadata.certs(ENTITY, "idpsso", "signing")
    assert len(certs) == 2
    # A document re-signed by a key nobody pinned is refused: the proxy keeps the last good one.
    host.body = signed_metadata(keys["attacker"], [keys["attacker"].cert], sso="https://evil.example/sso")
    thread.clock = lambda: time.time() + 2 * 3601 + 10
    proxy = app.proxy
    assert thread.run_once() is False
    assert app.proxy is proxy and _sso(app) == NEXT_SSO
    assert host.hits == 3
