"""Our broker, as an operator runs it: ``broker serve`` on Redis, from files in a temporary directory.

The directory holds what the broker reads at start: the tenants (``bench/login/tenants.py``:
the shipped ``tenants/vantaa.yaml``, unchanged, whose SAML IdP's metadata file is the
benchmark IdP's and whose OIDC IdP is the demo Entra ID the benchmark serves; or the seven
cities plus generated ones), the relying party's and a resource server's registrations, the
shared settings (``config/broker.yaml`` with the resource server allowed to introspect), the
broker's keys.  State goes to Redis under a unique key prefix.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from broker.demo.servers import free_port
from broker.settings import ROOT

from . import idp
from .servers import Server

CLIENT_ID = "bench-rp"
RESOURCE_SERVER = "bench-rs"
REDIRECT_URI = "https://rp.bench.example/cb"
SCOPE = "openid profile roles schools"
SAML_HINT = f"{idp.CITY}/koulu"
OIDC_HINT = f"{idp.CITY}/entra"
BIN = Path(sys.executable).parent


class Ours:
    name = "ours"

    def __init__(self, root: Path, *, port: int, entra_port: int, redis_url: str, prefix: str, idp_keys: Path,
                 entra_secret: str, generated_tenants: int = 0, idps: int | None = None):
        self.root = root
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.redis_url = redis_url
        self.prefix = prefix
        self.server: Server | None = None
        from . import tenants as tenant_files

        tenants = root / "tenants"
        self.registry_counts = tenant_files.write(root, idp_keys=idp_keys, entra_secret=entra_secret,
                                                  generated=generated_tenants, idps=idps)
        from broker.registry.relying_parties import client_document, write_registration_files

        client, self.client_secret = client_document({
            "client_id": CLIENT_ID, "name": "Benchmark RP", "redirect_uris": [REDIRECT_URI],
            "client_secret": secrets.token_urlsafe(32),
            "policy": {"scopes": SCOPE.split(), "profile": "digione"}})
        # A platform service that introspects tokens (RFC 7662), as services will at ~10x the login rate.
        resource_server, self.rs_secret = client_document({
            "client_id": RESOURCE_SERVER, "name": "Benchmark resource server",
            "redirect_uris": ["https://rs.bench.example/cb"], "client_secret": secrets.token_urlsafe(32)})
        # The file form: the broker makes it the registry's first version when it starts.
        write_registration_files(root / "registry", {c.client_id: c.to_dict() for c in (client, resource_server)},
                                 {})
        config_dir = root / "config"
        config_dir.mkdir()
        shared = (ROOT / "config" / "broker.yaml").read_text()
        (config_dir / "broker.yaml").write_text(
            shared.replace("introspection_clients: []", f"introspection_clients: [{RESOURCE_SERVER}]"))
        self.env = {
            "PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8",
            "BROKER_TENANTS_DIR": str(tenants), "BROKER_CONFIG_DIR": str(root / "config"),
            "BROKER_METADATA_DIR": str(root / "metadata"),
            "BROKER_REGISTRY_DIR": str(root / "registry"), "BROKER_KEYS_DIR": str(root / "broker-keys"),
            "BROKER_DEMO_DIR": str(root / "demo"), "DEMO_ENTRA_URL": f"http://127.0.0.1:{entra_port}",
            "BROKER_BASE_URL": self.base_url, "BROKER_PORT": str(port),
            "BROKER_REDIS_URL": redis_url, "BROKER_REDIS_PREFIX": prefix,
            "BROKER_SECRET": secrets.token_urlsafe(48), "BROKER_LOG_LEVEL": "INFO",
            # Metrics on, as in production, on a port of this run's own (runs may overlap).
            "BROKER_METRICS_PORT": str(free_port()),
        }

    def start(self, workers: int, *, profile_out: Path | None = None, profile_mode: str = "cprofile",
              callgrind: Path | None = None, timeout: float = 60.0) -> float:
        """Start ``broker serve`` (or, to profile, the same app instrumented); return seconds to ready.

        ``callgrind``: one uWSGI process under valgrind, its output there (``bench/login/callgrind.py``)."""
        if callgrind is not None:
            from . import callgrind as cg

            argv, env, workers = cg.argv(sys.executable, f"127.0.0.1:{self.port}", callgrind), self.env, 0
        elif profile_out is None:
            argv = [str(BIN / "broker"), "serve", "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}"]
            env = self.env
        else:
            argv = [str(BIN / "gunicorn"), "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
                    "--worker-class", "sync", "--timeout", "120", "--access-logfile", "-",
                    "--pythonpath", str(Path(__file__).resolve().parent.parent), "login.profiled_app:app"]
            env = {**self.env, "BENCH_PROFILE_OUT": str(profile_out), "BENCH_PROFILE_MODE": profile_mode}
        self.server = Server(self.name, argv, env=env, cwd=self.root, log=self.root / "server.log",
                             ready_url=f"{self.base_url}/healthz")
        return self.server.wait_ready(workers, timeout=timeout)

    def stop(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None

    def sp_metadata(self) -> str:
        import requests

        return requests.get(f"{self.base_url}/saml2/sp/metadata", timeout=10).text

    def client_config(self) -> dict:
        return {"impl": "ours", "base_url": self.base_url, "issuer": self.base_url,
                "authorize": f"{self.base_url}/authorize", "token": f"{self.base_url}/token",
                "userinfo": f"{self.base_url}/userinfo", "jwks": f"{self.base_url}/jwks",
                "client_id": CLIENT_ID, "client_secret": self.client_secret, "redirect_uri": REDIRECT_URI,
                "scope": SCOPE, "hints": {"saml": SAML_HINT, "oidc": OIDC_HINT},
                "introspect": f"{self.base_url}/introspect", "resource_server": [RESOURCE_SERVER, self.rs_secret]}

    def redis_client(self):
        import redis

        return redis.Redis.from_url(self.redis_url)
