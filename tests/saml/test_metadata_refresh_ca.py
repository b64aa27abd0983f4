"""Metadata by URL from a city's host with a private CA: ``metadata: {url, signing_cert_sha256, ca_file}``.

Real peers: the city's metadata host is a loopback HTTPS server whose certificate a private
CA issued (tests/security/private_ca.py); the documents are signed by pysaml2
(``signed_metadata``); the tenants are real tenant files through the loader ``broker check``
uses.  Vantaa names the CA in its tenant file and its metadata is fetched; Lahti names the
same host without it, or with a CA file of its own from another CA, and gets nothing: the
CA is trusted for Vantaa's metadata only.  The stored copies are per CA file, too.
"""

from __future__ import annotations

import requests
import yaml
from signed_metadata import metadata as metadata_descriptor
from signed_metadata import sign, signer

from broker.saml.metadata_refresh import documents_for_build, pinned_sources
from broker.store import MemoryStore
from tests.security.private_ca import PrivateCa, serve_https

SAML_BASE = "https://idp.city.example"


def _names(text: str) -> dict[str, str]:
    return {"fi": text, "sv": text, "en": text}


def _tenant(city: str, code: str, idps: list[dict]) -> dict:
    return {"id": city, "names": _names(city), "municipality_code": code,
            "education_provider": {"oid": f"1.2.246.562.10.9{code}0000000", "names": _names(city)},
            "schools": [{"code": f"9{code}1", "oid": f"1.2.246.562.10.9{code}0000001", "names": _names("Koulu")}],
            "identity_providers": idps}


def _idp(idp_id: str, url: str, pin: str, entity: str, ca_file: str | None) -> dict:
    metadata = {"url": url, "signing_cert_sha256": pin, **({"ca_file": ca_file} if ca_file else {})}
    return {"id": idp_id, "type": "saml", "names": _names(idp_id), "entity_id": entity, "metadata": metadata,
            "mapping": {"preset": "mpassid-saml"}}


def test_the_citys_ca_file_fetches_its_metadata_and_no_other_citys(tmp_path):
    from broker.registry.tenants import load_tenants

    city_ca, other_ca = PrivateCa.create("Vantaa CA"), PrivateCa.create("Lahti CA")
    ca_dir = tmp_path / "ca"
    city_ca.write(ca_dir / "vantaa" / "metadata-ca.pem")
    other_ca.write(ca_dir / "lahti-ca.pem")
    key = signer(tmp_path / "signers", "vantaa-signer")
    documents = {f"/{name}": sign(metadata_descriptor([key.cert], entity_id=f"{SAML_BASE}/{name}/idp"), key)
                 for name in ("vantaa", "lahti-public", "lahti-own")}

    def app(environ, start_response):
        body = documents.get(environ["PATH_INFO"])
        start_response("200 OK" if body else "404 Not Found", [("Content-Type", "application/samlmetadata+xml")])
        return [body or b""]

    server = serve_https(app, *city_ca.issue(tmp_path / "tls"))
    try:
        tenants_dir = tmp_path / "tenants"
        tenants_dir.mkdir()
        (tenants_dir / "vantaa.yaml").write_text(yaml.safe_dump(_tenant("vantaa", "092", [
            _idp("koulu", f"{server.url}/vantaa", key.pin, f"{SAML_BASE}/vantaa/idp", "vantaa/metadata-ca.pem")])))
        (tenants_dir / "lahti.yaml").write_text(yaml.safe_dump(_tenant("lahti", "398", [
            _idp("julkinen", f"{server.url}/lahti-public", key.pin, f"{SAML_BASE}/lahti-public/idp", None),
            _idp("oma", f"{server.url}/lahti-own", key.pin, f"{SAML_BASE}/lahti-own/idp", "lahti-ca.pem")])))
        tenants = load_tenants(tenants_dir, metadata_dir=tmp_path / "metadata", root=tmp_path,
                               environ={"BROKER_CA_DIR": str(ca_dir)})
        store = MemoryStore()
        fetched = documents_for_build(tenants, store=store, http=requests.Session())
        assert fetched["vantaa/koulu"] and f"{SAML_BASE}/vantaa/idp" in fetched["vantaa/koulu"]
        assert fetched["lahti/julkinen"] is None, "the public CAs do not know Vantaa's CA"
        assert fetched["lahti/oma"] is None, "Lahti's own CA did not issue the host's certificate"
        sources = {s.idp: s for s in pinned_sources(tenants)}
        assert sources["vantaa/koulu"].ca_file.relative == "vantaa/metadata-ca.pem"
        assert store.get(sources["vantaa/koulu"].copy_key)
        assert sources["lahti/julkinen"].ca_file is None and not store.get(sources["lahti/julkinen"].copy_key)
    finally:
        server.shutdown()
