"""Vanilla SATOSA 8.6 for the benchmark: the stock example files, filled in for the same flow.

What is stock (``example/proxy_conf.yaml.example``, ``plugins/backends/saml2_backend.yaml.example``,
``plugins/frontends/openid_connect_frontend.yaml.example`` of SATOSA 8.6):

* the OIDC frontend is pyop with its storage on Redis (``db_uri: redis://…/<db>``), clients in a
  JSON file, RS256 ID tokens, pairwise subjects;
* the SAML2 backend is pysaml2's SP with ``key_file``/``cert_file`` (which SATOSA also uses as the
  decryption key pair), ``want_response_signed: true``, ``crypto_backend`` left at pysaml2's
  default (``xmlsec1``: a subprocess per signature operation), one IdP in its metadata so it
  needs no discovery service;
* the state cookie is SATOSA's (AES-CBC + LZMA).

What is set to match our broker's flow: AuthnRequests are not signed (ours does not sign them),
``user_id_from_attrs`` is the MPASSid uid, the attributes are the MPASSid ones under the same
OIDC claim names and scopes, token lifetimes equal ours, refresh tokens issued (as ours does),
and logging is INFO for ``satosa`` and WARNING for libraries (the example's DEBUG everywhere
would be unfair).  The same IdP (same key, same signed Response and Assertion) answers both.

For the OIDC upstream a second configuration replaces the SAML backend with SATOSA's
``OpenIDConnectBackend`` (pyoidc) pointed at the same demo Entra ID; SATOSA's OIDC frontend
serves one backend per instance without a routing micro-service, so it is its own instance.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import yaml

from broker.demo.mpassid import ATTRIBUTE_MAP
from broker.pki import ensure_keypair

from ..servers import Server

BIN = Path(sys.executable).parent
FRONTEND = "OIDC"
SAML_BACKEND = "Saml2"
OIDC_BACKEND = "entra"
CLIENT_ID = "bench-rp"
REDIRECT_URI = "https://rp.bench.example/cb"
SCOPE = "openid profile roles schools"

#: internal name -> (SAML local name from the MPASSid attribute map, OIDC claim)
ATTRIBUTES = {
    "uid": ("mpassUsername", None),
    "givenname": ("givenName", "given_name"),
    "surname": ("sn", "family_name"),
    "nickname": ("nickname", "nickname"),
    "learnerid": ("learnerId", "learner_id"),
    "schoolinfo": ("mpassSchoolInfo", "schools"),
    "role": ("mpassRole", "roles"),
    "classlevel": ("mpassClassLevel", "class_level"),
    "educationprovider": ("mpassEducationProviderInfo", "education_providers"),
}


def _dump(path: Path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def generate(directory: Path, *, base_url: str, redis_url: str, idp_metadata_xml: str | None = None,
             entra: dict | None = None) -> dict:
    """Write a SATOSA configuration into ``directory``; return what the client needs to know.

    ``idp_metadata_xml``: the SAML upstream (the benchmark IdP's metadata).
    ``entra``: instead, the OIDC upstream (``issuer``, ``client_id``, ``client_secret``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = directory / "pki"
    backend_key, backend_cert = ensure_keypair(pki, "backend", common_name="satosa-bench-sp")
    frontend_key, _ = ensure_keypair(pki, "frontend", common_name="satosa-bench-op")
    client_secret = secrets.token_urlsafe(32)
    (directory / "cdb.json").write_text(json.dumps({CLIENT_ID: {
        "client_secret": client_secret, "redirect_uris": [REDIRECT_URI], "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic", "client_name": "Benchmark RP"}}))

    if idp_metadata_xml is not None:
        (directory / "metadata").mkdir(exist_ok=True)
        (directory / "metadata" / "idp.xml").write_text(idp_metadata_xml)
        (directory / "attributemaps").mkdir(exist_ok=True)
        (directory / "attributemaps" / "__init__.py").write_text("")
        (directory / "attributemaps" / "mpassid.py").write_text(f"MAP = {ATTRIBUTE_MAP!r}\n")
        backend_name = SAML_BACKEND
        backend = {
            "module": "satosa.backends.saml2.SAMLBackend",
            "name": SAML_BACKEND,
            "config": {
                "entityid_endpoint": True, "mirror_force_authn": False, "memorize_idp": False,
                "use_memorized_idp_when_force_authn": False, "send_requester_id": False,
                "enable_metadata_reload": False,
                "sp_config": {
                    "name": "SATOSA benchmark SP", "description": "SATOSA benchmark SP",
                    "key_file": str(backend_key), "cert_file": str(backend_cert),
                    "organization": {"display_name": "Bench", "name": "Bench", "url": base_url},
                    "contact_person": [{"contact_type": "technical", "email_address": "tech@bench.example",
                                        "given_name": "Technical"}],
                    "metadata": {"local": [str(directory / "metadata" / "idp.xml")]},
                    "attribute_map_dir": str(directory / "attributemaps"),
                    "entityid": f"{base_url}/{SAML_BACKEND}/proxy_saml2_backend.xml",
                    "accepted_time_diff": 60,
                    "service": {"sp": {
                        "authn_requests_signed": False,
                        "want_response_signed": True,
                        "allow_unsolicited": True,
                        "endpoints": {"assertion_consumer_service": [
                            [f"{base_url}/{SAML_BACKEND}/acs/post",
                             "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"]]},
                        "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
                        "name_id_format_allow_create": True,
                    }},
                },
            },
        }
        internal = {"attributes": {name: ({"saml": [saml]} | ({"openid": [claim]} if claim else {}))
                                   for name, (saml, claim) in ATTRIBUTES.items()},
                    "user_id_from_attrs": ["uid"]}
    else:
        backend_name = OIDC_BACKEND
        backend = {
            "module": "satosa.backends.openid_connect.OpenIDConnectBackend",
            "name": OIDC_BACKEND,
            "config": {
                "provider_metadata": {"issuer": entra["issuer"]},
                "client": {
                    "verify_ssl": False,
                    "auth_req_params": {"response_type": "code", "scope": ["openid", "profile", "email"]},
                    "client_metadata": {
                        "client_id": entra["client_id"], "client_secret": entra["client_secret"],
                        "application_name": "SATOSA", "application_type": "web",
                        "contacts": ["tech@bench.example"],
                        "redirect_uris": [f"{base_url}/{OIDC_BACKEND}"], "subject_type": "public",
                    },
                },
                "entity_info": {"organization": {"display_name": [["Entra", "en"]], "name": [["Entra", "en"]],
                                                 "url": [[entra["issuer"], "en"]]},
                                "ui_info": {"display_name": [["Entra", "en"]]}},
            },
        }
        internal = {"attributes": {"givenname": {"openid": ["given_name"]},
                                   "surname": {"openid": ["family_name"]},
                                   "nickname": {"openid": ["nickname"]},
                                   "learnerid": {"openid": ["learner_id", "extn_learnerId"]},
                                   "schoolinfo": {"openid": ["schools", "schoolIds"]},
                                   "role": {"openid": ["roles"]}}}

    frontend = {
        "module": "satosa.frontends.openid_connect.OpenIDConnectFrontend",
        "name": FRONTEND,
        "config": {
            "signing_key_path": str(frontend_key),
            "signing_key_id": "frontend.key1",
            "db_uri": redis_url,
            "client_db_path": str(directory / "cdb.json"),
            "sub_hash_salt": secrets.token_urlsafe(16),
            "provider": {
                "client_registration_supported": False,
                "response_types_supported": ["code"],
                "subject_types_supported": ["pairwise"],
                "scopes_supported": ["openid", "profile", "roles", "schools"],
                "extra_scopes": {"roles": ["roles"], "schools": ["schools"]},
                "id_token_lifetime": 600,
                "authorization_code_lifetime": 60,
                "access_token_lifetime": 600,
                "refresh_token_lifetime": 28800,
            },
        },
    }
    proxy = {
        "BASE": base_url,
        "COOKIE_STATE_NAME": "SATOSA_STATE",
        "CONTEXT_STATE_DELETE": True,
        "STATE_ENCRYPTION_KEY": secrets.token_urlsafe(24),
        "INTERNAL_ATTRIBUTES": _dump(directory / "internal_attributes.yaml", internal),
        "BACKEND_MODULES": [_dump(directory / "plugins" / "backend.yaml", backend)],
        "FRONTEND_MODULES": [_dump(directory / "plugins" / "openid_connect_frontend.yaml", frontend)],
        "MICRO_SERVICES": [],
        "LOGGING": {
            "version": 1,
            "formatters": {"simple": {"format": "[%(asctime)s] [%(levelname)s] [%(name)s.%(funcName)s] %(message)s"}},
            "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                                    "level": "INFO", "formatter": "simple"}},
            "loggers": {"satosa": {"level": "INFO"}},
            "root": {"level": "WARNING", "handlers": ["stdout"]},
        },
    }
    _dump(directory / "proxy_conf.yaml", proxy)
    return {"client_secret": client_secret, "backend": backend_name}


class Vanilla:
    """One vanilla SATOSA instance under ``gunicorn satosa.wsgi:app``."""

    def __init__(self, name: str, root: Path, *, port: int, redis_url: str, **upstream):
        self.name = name
        self.root = root
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        # pyop refuses an issuer that is not https: the proxy's BASE is https, served over plain
        # HTTP on loopback (neither implementation pays for TLS); the client maps one to the other.
        self.public_url = f"https://127.0.0.1:{port}"
        self.redis_url = redis_url
        self.server: Server | None = None
        self.generated = generate(root, base_url=self.public_url, redis_url=redis_url, **upstream)
        self.env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8",
                    "SATOSA_CONFIG": str(root / "proxy_conf.yaml")}
        self._discovery: dict | None = None

    def start(self, workers: int) -> float:
        argv = [str(BIN / "gunicorn"), "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
                "--worker-class", "sync", "--timeout", "120", "--access-logfile", "-", "satosa.wsgi:app"]
        self.server = Server(self.name, argv, env=self.env, cwd=self.root, log=self.root / "server.log",
                             ready_url=f"{self.base_url}/.well-known/openid-configuration")
        return self.server.wait_ready(workers, timeout=120)

    def stop(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None

    def discovery(self) -> dict:
        if self._discovery is None:
            import requests

            self._discovery = requests.get(f"{self.base_url}/.well-known/openid-configuration", timeout=10).json()
        return self._discovery

    def sp_metadata(self) -> str:
        import requests

        return requests.get(f"{self.base_url}/{SAML_BACKEND}/proxy_saml2_backend.xml", timeout=10).text

    def client_config(self) -> dict:
        d = self.discovery()
        return {"impl": "satosa", "base_url": self.base_url, "public_url": self.public_url, "issuer": d["issuer"],
                "authorize": d["authorization_endpoint"], "token": d["token_endpoint"],
                "userinfo": d["userinfo_endpoint"], "jwks": d["jwks_uri"],
                "client_id": CLIENT_ID, "client_secret": self.generated["client_secret"],
                "redirect_uri": REDIRECT_URI, "scope": SCOPE, "hints": {}}

    def redis_client(self):
        import redis

        return redis.Redis.from_url(self.redis_url)
