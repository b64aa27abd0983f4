"""Audit benchmark: what recording releases adds to a login's broker CPU, and what the flusher costs.

Run::

    .venv/bin/python bench/bench_audit.py                       # Redis at BROKER_TEST_REDIS_URL (db 15)
    .venv/bin/python bench/bench_audit.py -n 5000 --rounds 6

In process, on the real Redis store under a unique prefix (deleted afterwards):

* **OIDC**: the authorization response (code issued: the record is prepared and kept with the
  code) and the code's redemption at ``/token`` (the record joins the grant's store batch), with
  a grant hook that records the grant in the session and reads it back in the same round trip,
  as the broker's does — with the audit off and on, alternating login by login, ``--rounds``
  times; the median difference per login is the audit's CPU on the login path.
* **SAML**: the release step's store batch (the session writes) with and without
  :meth:`ReleaseAudit.saml`.
* **flusher**: CPU per record moved from Redis to the database (SQLite file; off the login path).

CPU is this process's (``time.process_time``); Redis's own CPU per login from ``INFO cpu``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.audit import AuditBuffer, AuditFlusher, AuditLog, ReleaseAudit  # noqa: E402
from broker.registry.database import open_database  # noqa: E402
from broker.registry.relying_parties import Client, hash_secret  # noqa: E402
from broker.store.redis import RedisStore  # noqa: E402
from broker.tokens import KeyRing, build_provider  # noqa: E402
from broker.tokens.authorize import AuthorizationRequest  # noqa: E402
from broker.tokens.http import Request  # noqa: E402

ISSUER = "https://login.bench.example"
IDENTITY = {"user_id": "8a9f50bb3c1d4e2f8a9f50bb3c1d4e2f", "tenant": "vantaa", "idp": "vantaa/koulu",
            "given_name": "Aino Maria", "family_name": "Virtanen", "learner_id": "1.2.246.562.98.09200000001",
            "schools": [{"code": "90921", "oid": "1.2.246.562.10.90920000001", "names": {"fi": "Tikkurila"}}],
            "roles": [{"role": "learner", "code": 1, "school": "90921"}]}


SAML_ATTRIBUTES = ("urn:mpass.id:uid", "urn:mpass.id:role", "urn:mpass.id:schoolInfo", "urn:oid:2.5.4.42")


class Clients:
    def __init__(self, *clients: Client):
        self._clients = {c.client_id: c for c in clients}

    def client(self, client_id):
        return self._clients.get(client_id) if client_id else None


def release(client, identity, scopes):
    from broker import mapping

    return mapping.release_claims(identity, policy=client.policy, granted_scopes=scopes, subject="s")


def redis_cpu(store) -> float:
    info = store.client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def oidc_logins(store, audit) -> Callable[[], None]:
    """One OIDC login's broker side (code issued, then redeemed), with ``audit`` or without (None)."""
    keyring = KeyRing(store, "bench-master-secret-0123456789abcdef", retention=3600, prepublish=600)
    keyring.ensure()
    rp = Client.from_dict({"client_id": "rp1", "redirect_uris": ["https://rp1.example/cb"],
                           "secret_sha256": hash_secret("rp1-secret"),
                           "policy": {"scopes": ["openid", "roles", "schools", "profile", "learner_id"]}})

    def hook(session, client_id, gid):   # the broker's SessionStore.add_grant: a write and a read after it
        store.set_add(f"ses:{session}:grants", gid, 3600)
        return store.get_after_writes(f"ses:{session}") is not None

    store.put("ses:bench", {"live": True}, 3600)
    provider = build_provider(issuer=ISSUER, store=store, clients=Clients(rp), keyring=keyring, release=release,
                              subject=lambda c, i: hashlib.sha256(i["user_id"].encode()).hexdigest(),
                              grant_hook=hook, audit=audit)
    basic = {"authorization": "Basic " + base64.b64encode(b"rp1:rp1-secret").decode(),
             "content-type": "application/x-www-form-urlencoded"}
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    authz = AuthorizationRequest(client_id="rp1", redirect_uri="https://rp1.example/cb",
                                 scopes=("openid", "roles", "schools", "profile", "learner_id"), state="s",
                                 nonce="n", code_challenge=challenge)

    def login() -> None:
        response = provider.authorization_response(authz, IDENTITY, auth_time=time.time(), sid="x", session="bench")
        code = parse_qs(urlsplit(response.location).query)["code"][0]
        form = {"grant_type": ["authorization_code"], "code": [code], "code_verifier": [verifier],
                "redirect_uri": ["https://rp1.example/cb"]}
        answer = provider.handle(Request("POST", "/token", basic, {}, form))
        assert answer.status == 200, answer.body

    return login


def interleaved(off: Callable[[], None], on: Callable[[], None], n: int) -> tuple[float, float]:
    """CPU seconds of ``n`` calls of each, alternating one by one (drift and noise hit both alike)."""
    clock = time.process_time
    spent = [0.0, 0.0]
    for _ in range(50):
        off(), on()
    for i in range(2 * n):
        which = i & 1
        t0 = clock()
        (on if which else off)()
        spent[which] += clock() - t0
    return spent[0], spent[1]


def saml_batch(store, audit) -> None:
    """The SAML release step's store batch (two session writes), with ``audit`` recording or not."""
    with store.batch():
        store.put("ses:saml", {"identity": "x" * 200}, 3600)
        store.set_add("ses:saml:svcs", "https://sp.example/sp", 3600)
        if audit is not None:
            audit.saml("https://sp.example/sp", IDENTITY, SAML_ATTRIBUTES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="logins per round and setting (default 2000)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating off/on rounds (default 4)")
    parser.add_argument("--redis-url", default=os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args(argv)
    prefix = f"bench:audit:{secrets.token_hex(4)}:"
    store = RedisStore.from_url(args.redis_url, prefix=prefix)
    if not store.ping():
        print(f"no Redis at {args.redis_url}", file=sys.stderr)
        return 1
    audit = ReleaseAudit(AuditBuffer(store, limit=10**6), b"k" * 32, correlation_id=lambda: "3147fa7544ace600")
    try:
        login_off, login_on = oidc_logins(store, None), oidc_logins(store, audit)
        off, on, saml_off, saml_on = [], [], [], []
        for _ in range(args.rounds):
            a, b = interleaved(login_off, login_on, args.n)
            off.append(a / args.n), on.append(b / args.n)
            a, b = interleaved(lambda: saml_batch(store, None), lambda: saml_batch(store, audit), args.n)
            saml_off.append(a / args.n), saml_on.append(b / args.n)
        r0 = redis_cpu(store)
        for _ in range(args.n):
            login_off()
        r1 = redis_cpu(store)
        for _ in range(args.n):
            login_on()
        r2 = redis_cpu(store)
        ms = 1e3
        added = statistics.median(b - a for a, b in zip(off, on, strict=True))
        print(f"OIDC code + token, broker CPU per login: audit off {statistics.median(off) * ms:.3f} ms, "
              f"on {statistics.median(on) * ms:.3f} ms, added {added * ms:.3f} ms (median of rounds: "
              f"{', '.join(f'{(b - a) * ms:+.3f}' for a, b in zip(off, on, strict=True))})")
        print(f"  Redis CPU per login: off {(r1 - r0) / args.n * ms:.3f} ms, on {(r2 - r1) / args.n * ms:.3f} ms")
        added = statistics.median(b - a for a, b in zip(saml_off, saml_on, strict=True))
        print(f"SAML release batch, broker CPU per login: off {statistics.median(saml_off) * ms:.3f} ms, on "
              f"{statistics.median(saml_on) * ms:.3f} ms, added {added * ms:.3f} ms")
        with tempfile.TemporaryDirectory() as tmp:
            log = AuditLog(open_database(f"sqlite:///{tmp}/registry.sqlite3"))
            flusher = AuditFlusher(AuditBuffer(store, limit=10**6), log, retention_days=30, batch=500)
            flusher.run_once()   # what the rounds above buffered, and the purge
            count = args.n * 2
            for _ in range(count):
                audit.saml("https://sp.example/sp", IDENTITY, ["urn:mpass.id:role"])
            c0 = time.process_time()
            written = flusher.run_once()
            while written < count:
                written += flusher.run_once()
            print(f"flusher (SQLite): {(time.process_time() - c0) / count * ms:.3f} ms CPU per record, off the "
                  f"login path")
    finally:
        keys = list(store.client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            store.client.delete(*keys)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
