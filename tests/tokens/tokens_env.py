"""The token tests' environment: pooled keys, stores, a movable clock, registered clients, a live provider."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey
from tokens_harness import Login, ProviderApp, SatosaApp, Server, release, subject

from broker.frontends.oidc import OIDCFrontend
from broker.registry.relying_parties import RelyingParties
from broker.tokens import KeyRing, build_provider

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MASTER_SECRET = "test-master-secret-0123456789abcdef"

# --------------------------------------------------------------------------- speed: pooled RSA keys

_RSA_POOL = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(6)]
_rsa_cycle = itertools.cycle(_RSA_POOL)
_CLIENT_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # never in a key ring


def next_pooled_rsa() -> rsa.RSAPrivateKey:
    return next(_rsa_cycle)


# --------------------------------------------------------------------------- stores


def redis_store(prefix: str):
    import redis

    from broker.store.redis import RedisStore

    store = RedisStore.from_url(REDIS_URL, prefix=prefix)
    try:
        store.client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    return store


def cleanup_redis(store, prefix: str) -> None:
    keys = list(store.client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        store.client.delete(*keys)
    store.close()


# --------------------------------------------------------------------------- clocks


class Clock:
    """A frozen clock the test moves: ``clock.advance(seconds)``.

    Frozen at the real time it was made, so that a window checked to the second (a token's
    ``exp`` plus leeway) does not move while the test runs: a clock that kept ticking made
    ``advance(exp - now - 1)`` land past the window whenever the test crossed a second.
    """

    def __init__(self):
        self.base = float(int(time.time()))
        self.offset = 0.0

    def __call__(self) -> float:
        return self.base + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Registered:
    client_id: str
    secret: str | None = None
    private_key: Any = None  # a joserfc key for private_key_jwt clients
    redirect_uri: str = ""


@dataclass
class Env:
    """Everything a test needs: the issuer URL, the provider, the clients and their secrets."""

    issuer: str
    provider: Any
    keyring: KeyRing
    store: Any
    clock: Clock
    login: Login
    registry: RelyingParties
    clients: dict[str, Registered] = field(default_factory=dict)
    client_jwks: dict[str, dict] = field(default_factory=dict)
    satosa: SatosaApp | None = None

    def url(self, name: str) -> str:
        return self.provider.urls[name]


def _register(registry: RelyingParties, env: Env, client_id: str, method: str = "client_secret_basic",
              **extra) -> Registered:
    redirect_uri = f"https://{client_id}.example/cb"
    use_ec = extra.pop("use_ec", False)
    data = {"client_id": client_id, "redirect_uris": [redirect_uri], "token_endpoint_auth_method": method,
            "post_logout_redirect_uris": [f"https://{client_id}.example/bye"],
            "policy": {"scopes": ["openid", "profile", "email", "roles"]}, **extra}
    private_key = None
    if method == "private_key_jwt":
        if use_ec:
            raw = ec.generate_private_key(ec.SECP256R1())
            private_key = ECKey.import_key(raw, {"kid": f"{client_id}-key", "alg": "ES256", "use": "sig"})
        else:
            private_key = RSAKey.import_key(_CLIENT_RSA, {"kid": f"{client_id}-key", "alg": "RS256", "use": "sig"})
        public = private_key.as_dict(private=False)
        if client_id.startswith("pkjwt-uri"):
            env.client_jwks[client_id] = {"keys": [public]}
            data["jwks_uri"] = f"{env.issuer}/client-jwks/{client_id}"
        else:
            data["jwks"] = {"keys": [public]}
    client, secret = registry.add_client(data)
    registered = Registered(client_id, secret, private_key, redirect_uri)
    env.clients[client_id] = registered
    return registered


def make_env(store, clock: Clock, server: Server, tmp_path: Path, *, mode: str = "provider",
             lifetimes: dict | None = None, retention: float = 900, prepublish: float = 600,
             refresh_interval: float = 30) -> Env:
    keyring = KeyRing(store, MASTER_SECRET, retention=retention, prepublish=prepublish,
                      refresh_interval=refresh_interval, clock=clock)
    keyring.ensure()
    registry = RelyingParties()
    env = Env(issuer=server.url, provider=None, keyring=keyring, store=store, clock=clock, login=Login(),
              registry=registry)
    _register(registry, env, "rp1")
    _register(registry, env, "rp2")
    _register(registry, env, "post", "client_secret_post")
    _register(registry, env, "pkjwt", "private_key_jwt")
    _register(registry, env, "pkjwt-ec", "private_key_jwt", use_ec=True)
    _register(registry, env, "pkjwt-uri", "private_key_jwt")
    _register(registry, env, "spa", "none")
    _register(registry, env, "nofresh", grant_types=["authorization_code"])
    _register(registry, env, "rs")  # a resource server that may introspect any token
    env.provider = build_provider(
        issuer=server.url, store=store, clients=registry, keyring=keyring, release=release, subject=subject,
        scopes_supported=("openid", "profile", "email", "roles"),
        claims_supported=("name", "given_name", "family_name", "email", "roles"),
        lifetimes=lifetimes, resource_audiences=("https://api.example",), introspection_clients=("rs",),
        clock=clock, jwks_max_age=300)
    if mode == "satosa":
        frontend = OIDCFrontend(lambda ctx, req: None, {"attributes": {}}, {"provider": env.provider},
                                server.url, "OIDC")
        env.satosa = SatosaApp(frontend, env.login)
        server.app = env.satosa
    else:
        server.app = ProviderApp(env.provider, env.login, env.client_jwks)
    return env


def rebuild(env: Env, server: Server, **extra) -> Env:
    """The harness's provider again, with ``extra`` (``grant_hook``, ``claims_by_scope``), served over HTTP."""
    env.provider = build_provider(
        issuer=env.issuer, store=env.store, clients=env.registry, keyring=env.keyring, release=release,
        subject=subject, scopes_supported=("openid", "profile", "email", "roles"),
        claims_supported=("name", "given_name", "family_name", "email", "roles"),
        resource_audiences=("https://api.example",), introspection_clients=("rs",), clock=env.clock,
        jwks_max_age=300, **extra)
    server.app = ProviderApp(env.provider, env.login, env.client_jwks)
    return env
