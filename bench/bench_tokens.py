"""Token benchmark: what the OIDC provider and ``digione_verify`` cost per request, per core.

Run::

    .venv/bin/python bench/bench_tokens.py                 # memory store, and Redis if reachable
    .venv/bin/python bench/bench_tokens.py --store redis --redis-url redis://127.0.0.1:6379/15 -n 5000

Each operation runs in-process on one thread (the provider is pure protocol: a
:class:`~broker.tokens.http.Request` in, a :class:`~broker.tokens.http.Response` out), so the
figures are the provider's own CPU cost per request without HTTP server overhead:

* ``code (authorization response)``: issue a code for an authenticated identity;
* ``token (authorization_code)``: client_secret_basic + code redemption + PKCE + ID token
  (ES256) + access token (ES256) + refresh token;
* ``token (refresh_token)``: refresh with rotation;
* ``userinfo``, ``introspection`` (by a resource server);
* ``digione_verify`` ES256 and RS256 access tokens (JWKS cached).

``ops/s per core`` is 1 / (process CPU per op).  With Redis, Redis's own CPU per op is read
from ``INFO cpu`` before and after (it includes the server's other clients, if any).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.registry.relying_parties import Client, hash_secret  # noqa: E402
from broker.store import MemoryStore  # noqa: E402
from broker.tokens import KeyRing, build_provider  # noqa: E402
from broker.tokens.authorize import AuthorizationRequest  # noqa: E402
from broker.tokens.http import Request  # noqa: E402
from digione_verify import TokenVerifier  # noqa: E402

ISSUER = "https://login.bench.example"
IDENTITY = {"user_id": "1.2.246.562.24.10000000001", "name": "Maija Meikäläinen", "given_name": "Maija",
            "family_name": "Meikäläinen", "roles": ["teacher"], "school": "00001"}


class Clients:
    def __init__(self, *clients: Client):
        self._clients = {c.client_id: c for c in clients}

    def client(self, client_id):
        return self._clients.get(client_id) if client_id else None


def release(client, identity, scopes):
    claims = {}
    if "profile" in scopes:
        claims.update(name=identity["name"], given_name=identity["given_name"], family_name=identity["family_name"])
    if "roles" in scopes:
        claims["roles"] = identity["roles"]
    return claims


def subject(client, identity):
    return hashlib.sha256(f"{client.sector}|{identity['user_id']}".encode()).hexdigest()


def redis_cpu(store) -> float:
    info = store.client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def measure(name: str, n: int, fn, store, rows: list) -> None:
    """Run ``fn(i)`` for i in range(n); record CPU/op, wall/op and Redis CPU/op."""
    for i in range(min(50, n)):  # warm up (caches, connections)
        fn(-1 - i)
    r0 = redis_cpu(store) if store.shared else None
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    redis = (redis_cpu(store) - r0) / n * 1e6 if r0 is not None else None
    rows.append((name, n / cpu if cpu else float("inf"), cpu / n * 1e6, wall / n * 1e6, redis))


def bench_store(store, label: str, n: int) -> list:
    keyring = KeyRing(store, "bench-master-secret-0123456789abcdef", retention=3600, prepublish=600)
    keyring.ensure()
    rp = Client.from_dict({"client_id": "rp1", "redirect_uris": ["https://rp1.example/cb"],
                           "secret_sha256": hash_secret("rp1-secret"),
                           "policy": {"scopes": ["openid", "profile", "roles"]}})
    rs = Client.from_dict({"client_id": "rs", "redirect_uris": ["https://rs.example/cb"],
                           "secret_sha256": hash_secret("rs-secret")})
    provider = build_provider(issuer=ISSUER, store=store, clients=Clients(rp, rs), keyring=keyring, release=release,
                              subject=subject, resource_audiences=("https://api.example",),
                              introspection_clients=("rs",))
    basic = {"authorization": "Basic " + base64.b64encode(b"rp1:rp1-secret").decode(),
             "content-type": "application/x-www-form-urlencoded"}
    rs_basic = {"authorization": "Basic " + base64.b64encode(b"rs:rs-secret").decode()}
    verifier_code = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier_code.encode()).digest()).rstrip(b"=").decode()
    authz = AuthorizationRequest(client_id="rp1", redirect_uri="https://rp1.example/cb",
                                 scopes=("openid", "profile", "roles"), state="s", nonce="n",
                                 code_challenge=challenge)
    total = n + 50
    rows: list = []

    codes: list[str] = []

    def issue(i):
        response = provider.authorization_response(authz, IDENTITY, auth_time=time.time(), sid="sso-1")
        codes.append(parse_qs(urlsplit(response.location).query)["code"][0])

    measure("code (authorization response)", total - 50, issue, store, rows)
    while len(codes) < 2 * total:
        issue(0)

    tokens: list[dict] = []

    def redeem(i):
        form = {"grant_type": ["authorization_code"], "code": [codes.pop()], "code_verifier": [verifier_code],
                "redirect_uri": ["https://rp1.example/cb"]}
        response = provider.handle(Request("POST", "/token", basic, {}, form))
        assert response.status == 200, response.body
        tokens.append(response)

    measure("token (authorization_code)", n, redeem, store, rows)
    import json

    issued = [json.loads(r.body) for r in tokens]
    refresh_tokens = [t["refresh_token"] for t in issued]

    def refresh(i):
        form = {"grant_type": ["refresh_token"], "refresh_token": [refresh_tokens.pop()]}
        response = provider.handle(Request("POST", "/token", basic, {}, form))
        assert response.status == 200, response.body

    measure("token (refresh_token)", min(n, len(refresh_tokens) - 50), refresh, store, rows)

    access = issued[-1]["access_token"]
    bearer = {"authorization": "Bearer " + access}

    def userinfo(i):
        response = provider.handle(Request("GET", "/userinfo", bearer, {}, {}))
        assert response.status == 200, response.body

    measure("userinfo", n, userinfo, store, rows)

    def introspect(i):
        response = provider.handle(Request("POST", "/introspect", rs_basic, {}, {"token": [access]}))
        assert response.status == 200 and b'"active":true' in response.body, response.body

    measure("introspection", n, introspect, store, rows)

    jwks = keyring.jwks_json()
    discovery = provider._discovery_json

    def http_get(url):
        return discovery if url.endswith("openid-configuration") else jwks

    verifier = TokenVerifier(ISSUER, "https://api.example", http_get=http_get, required_scopes=("openid",),
                             required_roles=("teacher",))
    verifier.verify(access)
    measure("digione_verify (ES256)", n * 2, lambda i: verifier.verify(access), store, rows)
    rs256 = keyring.signing_key("RS256").sign(verifier.verify(access), typ="at+jwt")
    measure("digione_verify (RS256)", n * 2, lambda i: verifier.verify(rs256), store, rows)
    return [(label, *row) for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="requests per operation (default 3000)")
    parser.add_argument("--store", choices=("memory", "redis", "both"), default="both")
    parser.add_argument("--redis-url", default=os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args(argv)

    results = []
    if args.store in ("memory", "both"):
        results += bench_store(MemoryStore(), "memory", args.n)
    if args.store in ("redis", "both"):
        from broker.store.redis import RedisStore

        prefix = f"bench:tokens:{secrets.token_hex(4)}:"
        store = RedisStore.from_url(args.redis_url, prefix=prefix)
        if store.ping():
            try:
                results += bench_store(store, "redis", args.n)
            finally:
                keys = list(store.client.scan_iter(match=prefix + "*", count=1000))
                if keys:
                    store.client.delete(*keys)
        elif args.store == "redis":
            print(f"no Redis at {args.redis_url}", file=sys.stderr)
            return 1

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    print(f"# broker token benchmark — {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"single thread, in-process (no HTTP server)")
    print(f"{'store':<7} {'operation':<31} {'ops/s per core':>14} {'CPU µs/op':>10} {'wall µs/op':>11} "
          f"{'Redis CPU µs/op':>16}")
    for label, name, rate, cpu_us, wall_us, redis_us in results:
        redis_text = f"{redis_us:16.1f}" if redis_us is not None else f"{'-':>16}"
        print(f"{label:<7} {name:<31} {rate:14,.0f} {cpu_us:10.1f} {wall_us:11.1f} {redis_text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
