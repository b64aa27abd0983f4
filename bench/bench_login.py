"""Login benchmark (issue 5): our broker and vanilla SATOSA 8.6, same flow, same run, side by side.

    .venv/bin/python bench/bench_login.py --logins 300 --workers 2 --concurrency 4
    .venv/bin/python bench/bench_login.py --logins 300 --prefill 1000000 --only ours
    .venv/bin/python bench/bench_login.py --logins 200 --profile --only ours

Each implementation runs under gunicorn with ``--workers`` sync workers, on Redis:

* **ours**: ``broker serve`` with ``BROKER_REDIS_URL`` (db ``--ours-db``), a unique
  ``BROKER_REDIS_PREFIX``, and tenants / registry / keys in a temporary directory (the shipped
  ``tenants/vantaa.yaml``, whose SAML IdP is the benchmark's and whose OIDC IdP is the demo
  Entra ID served by the benchmark);
* **satosa**: ``gunicorn satosa.wsgi:app`` on a generated ``proxy_conf.yaml``
  (``bench/login/satosa_vanilla``): pyop OIDC frontend on Redis (db ``--satosa-db``), SAML2
  backend with the benchmark IdP's metadata and pysaml2's stock ``xmlsec1`` backend; for the
  OIDC upstream, SATOSA's ``OpenIDConnectBackend`` on the same demo Entra ID.

``--concurrency`` client processes each play the relying party (``bench/login/client.py``):
authorize (with ``idp_hint`` for ours) → upstream IdP (a pysaml2 IdP in the client process
signs a Response for a new pupil; or the demo Entra ID) → ACS / callback → code → token →
ID token verified against the JWKS and its claims checked → userinfo.  Every login is
validated; any failure is printed and makes the exit status non-zero.

Reported per implementation and upstream: logins/s, latency p50/p95 of a whole login (wall,
including the benchmark IdP) and of the server's part of it, **server CPU ms per login**
(``/proc/<pid>/stat`` utime+stime of the gunicorn master and all its descendants, plus
cutime+cstime of reaped children such as ``xmlsec1``), Redis CPU ms per login (``INFO cpu``),
Redis commands and ``KEYS`` calls per login (``INFO stats`` / ``commandstats``; the Redis is
shared, so other clients' commands show up too), processes started per login on the whole
machine (``/proc/stat`` counts every process and thread created: pysaml2's ``xmlsec1`` runs;
the threads of the benchmark's own Entra server are subtracted; anything else running on the
machine shows up too), the
client's own CPU per login, peak RSS (VmHWM) per worker, and start-up time.

``--prefill N`` writes N users' worth of live state to Redis first (``bench/login/prefill.py``).
pyop scans every stored subject with ``KEYS`` and a ``GET`` per key three times per login,
so vanilla SATOSA gets at most ``--satosa-prefill-max`` users (default 10,000; 1,000,000 would
cost minutes of CPU per login) and, above 2,000, at most 60 logins unless ``--satosa-logins``.

``--profile`` then runs ours once more with one worker under cProfile
(``bench/login/profiled_app.py``) and prints where the CPU goes per login.  ``--callgrind N``
counts the instructions of ours' worker per login over N logins under valgrind
(``bench/login/callgrind.py``): the figure to compare two trees by on a noisy machine
(``--logins 0`` skips the timed runs).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import os
import platform
import pstats
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
warnings.filterwarnings("ignore", message=".*CFB has been moved")

from login import client, idp, prefill, procstat  # noqa: E402 - after the sys.path set-up above
from login.servers import free_port  # noqa: E402 - after the sys.path set-up above

ENTRA = {"username": idp.ENTRA_USER, "password": idp.ENTRA_PASSWORD, "given_name": "Aino Maria",
         "family_name": "Virtanen"}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- measuring one scenario ------------------------------------------------------------------

class Counter:
    """Login numbers: each login signs in a pupil no earlier login used."""

    def __init__(self):
        self.next = 0

    def take(self, n: int) -> list[int]:
        out = list(range(self.next, self.next + n))
        self.next += n
        return out


def _chunks(indices: list[int], parts: int) -> list[list[int]]:
    return [indices[i::parts] for i in range(parts) if indices[i::parts]]


def _redis_stats(rc) -> dict:
    stats = rc.info("stats")
    commands = rc.info("commandstats")
    return {"cpu": procstat.redis_cpu_seconds(rc), "commands": int(stats["total_commands_processed"]),
            "keys": int(commands.get("cmdstat_keys", {}).get("calls", 0))}


def run_logins(pool, name: str, upstream: str, indices: list[int], concurrency: int) -> dict:
    futures = [pool.submit(client.run_logins, name, upstream, chunk) for chunk in _chunks(indices, concurrency)]
    return _merge(futures)


def _merge(futures) -> dict:
    merged = {"results": [], "failures": [], "client_cpu": 0.0}
    for future in futures:
        part = future.result()
        merged["results"] += part["results"]
        merged["failures"] += part["failures"]
        merged["client_cpu"] += part["client_cpu"]
    return merged


def measure(pool, impl, upstream: str, counter: Counter, *, logins: int, concurrency: int, warmup: int,
            redis_client, passes: int = 1) -> dict:
    """Warm up, then run ``passes`` passes of ``logins`` logins and read what they cost the server and Redis.

    With several passes the row is the pass of median server CPU, and ``server_cpu_best_ms`` /
    ``server_cpu_passes_ms`` say how far the others were from it: on a shared host, interference
    only ever adds CPU time, so the spread is the noise and the best pass its floor.
    """
    warm = run_logins(pool, impl.name, upstream, counter.take(warmup), concurrency)
    if warm["failures"]:
        raise SystemExit(f"{impl.name}/{upstream}: warm-up logins failed:\n  " + "\n  ".join(warm["failures"][:5]))
    rows = [_measured_pass(pool, impl, upstream, counter, logins=logins, concurrency=concurrency,
                           redis_client=redis_client) for _ in range(max(1, passes))]
    cpu = [r["server_cpu_ms"] for r in rows]
    row = sorted(rows, key=lambda r: r["server_cpu_ms"])[(len(rows) - 1) // 2]
    row["logins"] = sum(r["logins"] for r in rows)
    row["failed"] = sum(r["failed"] for r in rows)
    row["failures"] = [f for r in rows for f in r["failures"]][:10]
    row["passes"] = len(rows)
    row["server_cpu_best_ms"] = min(cpu)
    row["server_cpu_passes_ms"] = cpu
    return row


def _measured_pass(pool, impl, upstream: str, counter: Counter, *, logins: int, concurrency: int,
                   redis_client) -> dict:
    master = impl.server.pid
    cpu0, redis0, forks0 = procstat.tree_cpu_seconds(master), _redis_stats(redis_client), _forks()
    kernel0 = procstat.tree_kernel_seconds(master)
    wall0 = time.perf_counter()
    outcome = run_logins(pool, impl.name, upstream, counter.take(logins), concurrency)
    wall = time.perf_counter() - wall0
    cpu1, redis1, forks1 = procstat.tree_cpu_seconds(master), _redis_stats(redis_client), _forks()
    kernel1 = procstat.tree_kernel_seconds(master)
    ok = len(outcome["results"])
    latencies = sorted(r[0] for r in outcome["results"])
    server_times = sorted(r[1] for r in outcome["results"])
    per = max(ok, 1)
    return {
        "impl": impl.name, "upstream": upstream, "logins": ok, "failed": len(outcome["failures"]),
        "failures": outcome["failures"][:10], "concurrency": concurrency, "wall_s": wall,
        "logins_per_s": ok / wall if wall else 0.0,
        "p50_ms": 1000 * _pct(latencies, 50), "p95_ms": 1000 * _pct(latencies, 95),
        "server_p50_ms": 1000 * _pct(server_times, 50), "server_p95_ms": 1000 * _pct(server_times, 95),
        "server_cpu_ms": 1000 * (cpu1 - cpu0) / per,
        "server_kernel_ms": 1000 * (kernel1 - kernel0) / per,
        "redis_cpu_ms": 1000 * (redis1["cpu"] - redis0["cpu"]) / per,
        "redis_commands": (redis1["commands"] - redis0["commands"] - 2) / per,
        "redis_keys_calls": (redis1["keys"] - redis0["keys"]) / per,
        "client_cpu_ms": 1000 * outcome["client_cpu"] / per,
        "forks": (forks1 - forks0) / per,
    }


def measure_grants(pool, impl, kind: str, *, count: int, concurrency: int, redis_client) -> dict:
    """Token traffic after the logins: ``count`` requests of ``kind``, with their server CPU."""
    per_process = max(1, count // concurrency)
    _merge([pool.submit(client.run_grants, impl.name, kind, min(10, per_process)) for _ in range(concurrency)])
    master = impl.server.pid
    cpu0, redis0 = procstat.tree_cpu_seconds(master), _redis_stats(redis_client)
    wall0 = time.perf_counter()
    outcome = _merge([pool.submit(client.run_grants, impl.name, kind, per_process) for _ in range(concurrency)])
    wall = time.perf_counter() - wall0
    cpu1, redis1 = procstat.tree_cpu_seconds(master), _redis_stats(redis_client)
    ok = max(len(outcome["results"]), 1)
    times = sorted(r[0] for r in outcome["results"])
    return {"impl": impl.name, "kind": kind, "requests": len(outcome["results"]),
            "failed": len(outcome["failures"]), "failures": outcome["failures"][:5],
            "per_s": len(outcome["results"]) / wall if wall else 0.0,
            "p50_ms": 1000 * _pct(times, 50), "p95_ms": 1000 * _pct(times, 95),
            "server_cpu_ms": 1000 * (cpu1 - cpu0) / ok, "redis_cpu_ms": 1000 * (redis1["cpu"] - redis0["cpu"]) / ok,
            "redis_commands": (redis1["commands"] - redis0["commands"] - 2) / ok}


def _forks() -> int:
    """Processes and threads created on the machine, less the demo Entra ID's request threads."""
    return procstat.forks_since_boot() - idp.ENTRA_REQUESTS[0]


def _pct(values: list[float], pct: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


# -- implementations ----------------------------------------------------------------------------

def client_pool(setup: dict, concurrency: int):
    return concurrent.futures.ProcessPoolExecutor(max_workers=concurrency,
                                                  mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=client.init_process, initargs=(setup,))


def run_implementation(impl, upstreams: list[str], args, *, setup_base: dict, counter: Counter, redis_client,
                       prefill_users: int, logins: int, prefill_fn=None,
                       grants: tuple[str, ...] = ()) -> tuple[list[dict], dict]:
    """Start ``impl``, prefill, measure each upstream, read peak RSS; stop it."""
    info: dict = {"impl": impl.name, "workers": args.workers}
    log(f"{impl.name}: starting {args.workers} worker(s)")
    info["startup_s"] = impl.start(args.workers)
    rows = []
    try:
        setup = {**setup_base, "impls": {impl.name: {"client": impl.client_config(),
                                                     "sp_metadata": impl.sp_metadata() if "saml" in upstreams
                                                     else None}}}
        with client_pool(setup, args.concurrency) as pool:
            if prefill_users and prefill_fn:
                index = counter.take(1)[0]
                sample = pool.submit(client.sample_login, impl.name, upstreams[0], index).result()
                sample["index"] = index
                info["prefill"] = prefill_fn(sample, prefill_users)
            for upstream in upstreams:
                log(f"{impl.name}/{upstream}: {args.warmup} warm-up + {logins} logins, "
                    f"concurrency {args.concurrency}")
                row = measure(pool, impl, upstream, counter, logins=logins, concurrency=args.concurrency,
                              warmup=args.warmup, redis_client=redis_client, passes=args.passes)
                row["prefill"] = prefill_users
                rows.append(row)
                if row["failed"]:
                    log(f"{impl.name}/{upstream}: {row['failed']} login(s) FAILED, e.g. {row['failures'][0]}")
            if args.grants:
                info["grants"] = []
                for kind in grants:
                    log(f"{impl.name}: {args.grants} {kind} requests, concurrency {args.concurrency}")
                    g = measure_grants(pool, impl, kind, count=args.grants, concurrency=args.concurrency,
                                       redis_client=redis_client)
                    info["grants"].append(g)
                    if g["failed"]:
                        log(f"{impl.name}/{kind}: {g['failed']} request(s) FAILED, e.g. {g['failures'][0]}")
        peaks = procstat.worker_peak_rss_mb(impl.server.pid)
        info["peak_rss_mb"] = max(peaks) if peaks else float("nan")
        for row in rows:
            row["peak_rss_mb"] = info["peak_rss_mb"]
            row["startup_s"] = info["startup_s"]
    finally:
        impl.stop()
    return rows, info


# -- profile ---------------------------------------------------------------------------------------

def _instrumented_pass(ours, mode: str, args, *, setup_base: dict, counter: Counter, out: Path) -> dict:
    import requests

    ours.start(1, profile_out=out, profile_mode=mode)
    try:
        setup = {**setup_base, "impls": {"ours": {"client": ours.client_config(), "sp_metadata": ours.sp_metadata()}}}
        concurrency = min(2, args.concurrency)
        with client_pool(setup, concurrency) as pool:
            run_logins(pool, "ours", "saml", counter.take(args.warmup), concurrency)
            requests.post(f"{ours.base_url}/__bench__/profile/reset", timeout=10)
            cpu0 = procstat.tree_cpu_seconds(ours.server.pid)
            outcome = run_logins(pool, "ours", "saml", counter.take(args.profile_logins), concurrency)
            cpu1 = procstat.tree_cpu_seconds(ours.server.pid)
            requests.post(f"{ours.base_url}/__bench__/profile/dump", timeout=30)
        if outcome["failures"]:
            raise SystemExit(f"{mode} pass: logins failed: " + outcome["failures"][0])
    finally:
        ours.stop()
    return {"logins": len(outcome["results"]), "server_cpu_ms": 1000 * (cpu1 - cpu0) / len(outcome["results"])}


def profile_ours(ours, args, *, setup_base: dict, counter: Counter) -> str:
    """Two passes with one worker: exact CPU per endpoint, then cProfile for where it goes."""
    root = Path(ours.root)
    log("profile: ours, 1 worker, per-endpoint CPU (no profiler)")
    timing = _instrumented_pass(ours, "timing", args, setup_base=setup_base, counter=counter,
                                out=root / "timing.json")
    endpoints = json.loads((root / "timing.json").read_text())
    app_ms = 1000 * sum(cpu for _, cpu in endpoints.values()) / timing["logins"]
    lines = [f"where ours spends its CPU, SAML upstream, one worker, {timing['logins']} logins:",
             f"  worker total (from /proc)        {timing['server_cpu_ms']:7.2f} ms/login",
             f"  in the broker's WSGI app         {app_ms:7.2f} ms/login",
             (f"  gunicorn (HTTP parse/write, accept, access log)  "
              f"{timing['server_cpu_ms'] - app_ms:7.2f} ms/login (by difference)")]
    for path, (count, cpu) in sorted(endpoints.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"    {path:<30} {1000 * cpu / timing['logins']:7.3f} ms/login  "
                     f"({count / timing['logins']:.1f} requests/login, {1000 * cpu / count:.3f} ms each)")
    log("profile: ours, 1 worker, cProfile")
    stats_path = root / "profile.pstats"
    cprof = _instrumented_pass(ours, "cprofile", args, setup_base=setup_base, counter=counter, out=stats_path)
    lines.append("")
    lines.append(format_profile(stats_path, cprof["logins"], args.profile_top, app_ms=app_ms))
    return "\n".join(lines)


def scale_ours(ours, upstreams: list[str], args, *, setup_base: dict, counter: Counter, redis_client) -> str:
    """Ours at each worker count of ``--scale``: what a login costs the broker and Redis, and how that
    grows with the workers (lock and cache contention, the master, Redis's one thread)."""
    counts = [int(n) for n in args.scale.split(",") if n.strip()]
    by: dict[tuple[str, int], dict] = {}
    for workers in counts:
        scaled = argparse.Namespace(**{**vars(args), "workers": workers, "grants": 0})
        rows, _info = run_implementation(ours, upstreams, scaled, setup_base=setup_base, counter=counter,
                                         redis_client=redis_client, prefill_users=0, logins=args.logins)
        for row in rows:
            if row["failed"]:
                raise SystemExit(f"scale: {row['failed']} login(s) failed with {workers} worker(s): "
                                 + row["failures"][0])
            by[(row["upstream"], workers)] = row
    lines = [f"== ours by worker count ({args.logins} logins each, {args.concurrency} client processes) ==",
             f"{'':10}{'workers':>8}{'logins/s':>10}{'CPU ms/login':>14}{'kernel ms':>11}{'logins/s per core':>19}"
             f"{'Redis CPU ms':>14}{'Redis cmds':>12}{'CPU vs first':>14}"]
    for upstream in upstreams:
        first = by[(upstream, counts[0])]
        for workers in counts:
            row = by[(upstream, workers)]
            lines.append(f"{upstream:10}{workers:>8}{row['logins_per_s']:>10.1f}{row['server_cpu_ms']:>14.2f}"
                         f"{row['server_kernel_ms']:>11.2f}{1000 / row['server_cpu_ms']:>19.0f}"
                         f"{row['redis_cpu_ms']:>14.3f}{row['redis_commands']:>12.1f}"
                         f"{row['server_cpu_ms'] / first['server_cpu_ms']:>13.2f}x")
    return "\n".join(lines)


def callgrind_ours(ours, args, *, setup_base: dict, counter: Counter) -> str:
    """Instructions per login of ours' worker (one worker, uWSGI, under callgrind): a figure that
    the machine's noise barely moves, for comparing two trees."""
    import requests
    from login import callgrind

    out_dir = Path(ours.root) / "callgrind"
    out_dir.mkdir(exist_ok=True)
    lines = []
    for upstream in (["saml", "oidc"] if args.upstream == "both" else [args.upstream]):
        log(f"callgrind: ours/{upstream}, 1 worker under valgrind, {args.callgrind} logins")
        ours.start(1, callgrind=out_dir, timeout=600)
        try:
            setup = {**setup_base, "impls": {"ours": {"client": ours.client_config(),
                                                      "sp_metadata": ours.sp_metadata()}}}
            with client_pool(setup, 1) as pool:
                run_logins(pool, "ours", upstream, counter.take(max(args.warmup, 5)), 1)
                outcome: dict = {}

                def run(upstream=upstream, pool=pool, outcome=outcome):
                    outcome.update(run_logins(pool, "ours", upstream, counter.take(args.callgrind), 1))

                instructions = callgrind.collect(
                    ours.server.pid, out_dir, run, nudge=lambda: requests.get(f"{ours.base_url}/healthz", timeout=60))
        finally:
            ours.stop()
        if outcome["failures"]:
            raise SystemExit(f"callgrind pass: logins failed: {outcome['failures'][0]}")
        logins = len(outcome["results"])
        lines.append(f"callgrind, ours/{upstream}: {instructions / logins / 1e6:.2f} M instructions per login "
                     f"(worker only, uWSGI, {logins} logins)")
    return "\n".join(lines)


def format_profile(path: Path, logins: int, top: int, *, app_ms: float) -> str:
    """Top functions; ``est ms`` = share of the profile x the app's unprofiled CPU per login."""
    stats = pstats.Stats(str(path))
    total = stats.total_tt
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        rows.append((filename, line, func, nc, tt, ct))
    scale = app_ms / (1000 * total / logins)
    lines = [(f"cProfile of ours, SAML upstream: {logins} logins, {1000 * total / logins:.2f} ms profiled per login; "
              f"est ms = share x {app_ms:.2f} ms (the app's CPU without profiler)")]

    def name(filename, line, func):
        short = filename
        for marker in ("site-packages/", "/work/main/"):
            if marker in short:
                short = short.split(marker, 1)[1]
        return f"{short}:{line}({func})" if line else func

    lines.append(f"\n  top {top} by cumulative time\n    est ms   share  calls/login")
    for filename, line, func, nc, _tt, ct in sorted(rows, key=lambda r: -r[5])[:top]:
        lines.append(f"  {scale * 1000 * ct / logins:8.3f} {100 * ct / total:6.1f}% {nc / logins:8.1f}  "
                     f"{name(filename, line, func)}")
    lines.append(f"\n  top {top} by own time (tottime)\n    est ms   share  calls/login")
    for filename, line, func, nc, tt, _ct in sorted(rows, key=lambda r: -r[4])[:top]:
        lines.append(f"  {scale * 1000 * tt / logins:8.3f} {100 * tt / total:6.1f}% {nc / logins:8.1f}  "
                     f"{name(filename, line, func)}")
    lines.append("\n  the login, step by step (cumulative; steps overlap their sub-steps)"
                 "\n    est ms   share  calls/login")
    for label, file_part, func_name in LOGIN_STEPS:
        hits = [r for r in rows if file_part in r[0] and r[2] == func_name]
        if hits:
            ct, nc = sum(r[5] for r in hits), sum(r[3] for r in hits)
            lines.append(f"  {scale * 1000 * ct / logins:8.3f} {100 * ct / total:6.1f}% {nc / logins:8.1f}  {label}")
    groups: dict[str, float] = {}
    for filename, _line, func, _nc, tt, _ct in rows:
        groups[_area(filename, func)] = groups.get(_area(filename, func), 0.0) + tt
    lines.append("\n  own time by area\n    est ms   share")
    for area, tt in sorted(groups.items(), key=lambda kv: -kv[1])[:18]:
        lines.append(f"  {scale * 1000 * tt / logins:8.3f} {100 * tt / total:6.1f}%  {area}")
    return "\n".join(lines)


#: (label, file name part, function) of the steps of a brokered SAML login, for the profile summary.
LOGIN_STEPS = [
    ("GET /authorize: request checks, IdP choice, AuthnRequest", "broker/frontends/oidc.py", "authorization_endpoint"),
    ("  the login's request and selection steps", "broker/login/steps.py", "begin"),
    ("  the AuthnRequest (redirect binding)", "broker/backends/saml.py", "start_auth"),
    ("POST /saml2/acs/post: the SAML response", "broker/backends/saml.py", "acs"),
    ("  SAML response checked in one pass (lxml + libxmlsec1)", "broker/saml/response.py", "process_response"),
    ("    base64 + XML parse", "broker/saml/response.py", "_parse"),
    ("    algorithms checked against the IdP's crypto policy", "broker/saml/response.py", "_check_algorithms"),
    ("    Response and Assertion signatures verified", "broker/saml/response.py", "_verify"),
    ("    assertion read (subject, conditions, attributes)", "broker/saml/response.py", "_read_assertion"),
    ("  attributes to internal data", "broker/backends/saml.py", "_internal_data"),
    ("  the answer checked against the flow, then mapped", "broker/login/steps.py", "upstream_answered"),
    ("    mapping rules (canonical identity)", "broker/mapping/ruleset.py", "apply"),
    ("  release: session, then the frontend's answer", "broker/login/steps.py", "release"),
    ("    SSO session stored (session + user set)", "broker/sessions/sso.py", "create"),
    ("    authorization code issued (claims released, 2 writes)", "broker/tokens/provider.py",
     "authorization_response"),
    ("POST /token: client auth, code redeemed, ID + access + refresh token", "broker/tokens/provider.py", "_token"),
    ("  ES256 signatures (ID token, access token)", "broker/tokens/jws.py", "sign"),
    ("GET /userinfo", "broker/tokens/provider.py", "_userinfo"),
    ("flow cookie sealed (AES-GCM)", "broker/login/seal.py", "seal_data"),
    ("flow cookie opened", "broker/login/seal.py", "open_data"),
    ("every Redis command through redis-py", "broker/store/redis.py", "_run"),
    ("log records (logging)", "logging/__init__.py", "_log"),
]


def _area(filename: str, func: str) -> str:
    if filename == "~":  # built-ins: name the C function's owner where cProfile says it
        for key in ("lxml", "xmlsec", "cryptography", "_hashlib", "json", "socket", "re.Pattern", "zlib"):
            if key in func:
                return f"C: {key}"
        return "C: other built-ins"
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            parts = rest.split("/")
            if marker == "/lib/python3":
                return "stdlib: " + (parts[1] if len(parts) > 1 else rest).removesuffix(".py")
            if parts[0] == "broker" and len(parts) > 1:
                return "/".join(parts[:2]).removesuffix(".py")
            return parts[0].removesuffix(".py")
    return filename


# -- the ID-token signing choice --------------------------------------------------------------------

def jose_costs(n: int = 2000) -> list[tuple[str, float, float]]:
    """CPU µs to sign and to verify one ID token with ES256 and RS256-2048: the broker's own code
    (``broker.tokens.jws``, ``digione_verify``: JSON and base64 included), and bare ``cryptography``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    from broker.tokens.jws import SigningKey
    from digione_verify import verify_jws

    claims = {"iss": "https://login.example", "sub": "a" * 40, "aud": "rp", "iat": 1, "exp": 2, "nonce": "n" * 22,
              "given_name": "Aino", "family_name": "Virtanen", "roles": [{"role": "learner", "school": "90921"}]}

    def cpu_us(fn) -> float:
        start = time.process_time()
        for _ in range(n):
            fn()
        return 1e6 * (time.process_time() - start) / n

    out = []
    for alg in ("ES256", "RS256"):
        key = SigningKey.generate(alg)
        token = key.sign(claims)
        out.append((f"{alg} (broker)", cpu_us(lambda key=key: key.sign(claims)),
                    cpu_us(lambda key=key, token=token, alg=alg: verify_jws(token, lambda kid: key.public, (alg,)))))
        private, public = key.private_key, key.private_key.public_key()
        data = token.rsplit(".", 1)[0].encode()
        if alg == "ES256":
            ecdsa = ec.ECDSA(hashes.SHA256())
            sig = private.sign(data, ecdsa)
            out.append((f"{alg} (bare)", cpu_us(lambda p=private, d=data: p.sign(d, ec.ECDSA(hashes.SHA256()))),
                        cpu_us(lambda k=public, g=sig, d=data: k.verify(g, d, ec.ECDSA(hashes.SHA256())))))
        else:
            sig = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
            out.append((f"{alg} (bare)",
                        cpu_us(lambda p=private, d=data: p.sign(d, padding.PKCS1v15(), hashes.SHA256())),
                        cpu_us(lambda k=public, g=sig, d=data: k.verify(g, d, padding.PKCS1v15(), hashes.SHA256()))))
    return out


# -- output ------------------------------------------------------------------------------------------

METRICS = [
    ("logins", "logins validated", "{:.0f}"),
    ("failed", "logins failed", "{:.0f}"),
    ("logins_per_s", "logins/s", "{:.1f}"),
    ("p50_ms", "latency p50 ms (whole login)", "{:.1f}"),
    ("p95_ms", "latency p95 ms (whole login)", "{:.1f}"),
    ("server_p50_ms", "server part p50 ms", "{:.1f}"),
    ("server_p95_ms", "server part p95 ms", "{:.1f}"),
    ("server_cpu_ms", "SERVER CPU ms/login", "{:.2f}"),
    ("server_kernel_ms", "  of which in the kernel", "{:.2f}"),
    ("server_cpu_best_ms", "  best of the passes", "{:.2f}"),
    ("server_cpu_passes_ms", "  every pass", "{:.2f}"),
    ("redis_cpu_ms", "Redis CPU ms/login", "{:.3f}"),
    ("redis_commands", "Redis commands/login", "{:.1f}"),
    ("redis_keys_calls", "Redis KEYS calls/login", "{:.1f}"),
    ("forks", "processes+threads started/login", "{:.1f}"),
    ("client_cpu_ms", "client CPU ms/login (bench)", "{:.2f}"),
    ("peak_rss_mb", "peak RSS per worker MB", "{:.1f}"),
    ("startup_s", "start-up s (to ready)", "{:.2f}"),
    ("prefill", "prefilled users", "{:,}"),
    ("tenants", "tenants loaded", "{:,}"),
    ("idps", "identity providers loaded", "{:,}"),
]


def table(rows: list[dict]) -> str:
    out = []
    by = {(r["impl"], r["upstream"]): r for r in rows}
    for upstream in ("saml", "oidc"):
        ours, theirs = by.get(("ours", upstream)), by.get(("satosa", upstream))
        if not ours and not theirs:
            continue
        out.append(f"\n== {upstream.upper()} upstream ==")
        out.append(f"{'':32}{'ours':>14}{'satosa 8.6':>14}{'satosa/ours':>13}")
        for key, label, fmt in METRICS:
            a = ours.get(key) if ours else None
            b = theirs.get(key) if theirs else None
            ratio = ""
            if key in ("server_cpu_ms", "redis_cpu_ms", "p50_ms", "p95_ms", "server_p50_ms", "server_p95_ms",
                       "redis_commands") and a and b:
                ratio = f"{b / a:.1f}x"
            elif key == "logins_per_s" and a and b:
                ratio = f"{b / a:.2f}x"
            out.append(f"{label:32}{_fmt(fmt, a):>14}{_fmt(fmt, b):>14}{ratio:>13}")
    return "\n".join(out)


def _fmt(fmt: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(_fmt(fmt, v) for v in value)
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def revision() -> str:
    """The commit measured, and whether ``broker/`` had uncommitted changes."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "broker"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown revision"
    return f"{head or 'unknown'}{' + uncommitted changes in broker/' if dirty else ''}"


def _revisions(at_start: str) -> str:
    at_end = revision()
    return at_start if at_end == at_start else f"{at_start} at the start, {at_end} at the end (changed during the run)"


# -- main --------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--logins", type=int, default=300, help="measured logins per implementation and upstream")
    p.add_argument("--workers", type=int, default=2,
                   help="workers per server: ours under broker serve (uWSGI), SATOSA under gunicorn (default 2)")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent client processes (default 4)")
    p.add_argument("--passes", type=int, default=1,
                   help="measured passes of --logins each (default 1); the row is the median pass, with the best "
                        "and every pass's server CPU below it")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured logins first (default 20)")
    p.add_argument("--prefill", type=int, default=0, help="users' worth of live state in Redis before measuring")
    p.add_argument("--satosa-prefill-max", type=int, default=10_000,
                   help="cap of --prefill for vanilla SATOSA (pyop scans all subjects per login)")
    p.add_argument("--satosa-logins", type=int, default=None,
                   help="measured logins for SATOSA (default --logins; at most 60 when its prefill > 2000)")
    p.add_argument("--grants", type=int, default=300,
                   help="after the logins, this many refresh grants, introspections (ours) and userinfo calls, "
                        "each measured like a login (0: none)")
    p.add_argument("--tenants", type=int, default=0,
                   help="ours with the seven cities plus this many generated tenants (default: Vantaa alone)")
    p.add_argument("--idps", type=int, default=None,
                   help="with --tenants: identity providers in all (default 3 per generated tenant + 10)")
    p.add_argument("--only", choices=("ours", "satosa"), default=None, help="run one implementation only")
    p.add_argument("--upstream", choices=("saml", "oidc", "both"), default="both")
    p.add_argument("--profile", action="store_true", help="also profile ours (1 worker, cProfile)")
    p.add_argument("--profile-logins", type=int, default=200)
    p.add_argument("--profile-top", type=int, default=25)
    p.add_argument("--scale", default=None, metavar="1,2",
                   help="ours only, once per worker count listed: CPU per login and per core, Redis CPU and "
                        "commands per login at each, and their growth (the national-peak extrapolation)")
    p.add_argument("--callgrind", type=int, default=0, metavar="N",
                   help="also count ours' instructions per login over N logins under valgrind (1 worker)")
    p.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379"),
                   help="Redis server (no database number)")
    p.add_argument("--ours-db", type=int, default=14, help="Redis database of ours (keys under a unique prefix)")
    p.add_argument("--satosa-db", type=int, default=13,
                   help="Redis database of vanilla SATOSA, for it alone (pyop's KEYS scans the whole database)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, server logs)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.disable(logging.WARNING)
    import redis

    upstreams = ["saml", "oidc"] if args.upstream == "both" else [args.upstream]
    impls = ["ours", "satosa"] if args.only is None else [args.only]
    seed = secrets.token_hex(4)
    ours_url, satosa_url = f"{args.redis.rstrip('/')}/{args.ours_db}", f"{args.redis.rstrip('/')}/{args.satosa_db}"
    ours_redis, satosa_redis = redis.Redis.from_url(ours_url), redis.Redis.from_url(satosa_url)
    try:
        ours_redis.ping()
    except redis.RedisError as exc:
        print(f"no Redis at {args.redis}: {exc}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="bench-login-"))
    prefix = f"bench-login-{seed}:"
    idp_keys = root / "idp-keys"
    idp_metadata = idp.write_metadata(idp_keys, root / "idp-metadata.xml")
    entra_port, entra_secret = free_port(), secrets.token_urlsafe(24)
    ports = {"ours": free_port(), "satosa": free_port(), "satosa-oidc": free_port()}
    redirect_uris = [f"http://127.0.0.1:{ports['ours']}/oidc/{idp.CITY}/entra/callback",
                     f"https://127.0.0.1:{ports['satosa-oidc']}/entra"]
    entra = idp.start_entra(port=entra_port, key_dir=root / "entra-keys", secret=entra_secret,
                            redirect_uris=redirect_uris)
    setup_base = {"seed": seed, "idp_keys": str(idp_keys),
                  "entra": {**ENTRA, "url": f"http://127.0.0.1:{entra_port}"}}
    counter = Counter()
    rows: list[dict] = []
    infos: list[dict] = []
    profile_text = callgrind_text = scale_text = None
    cpu = procstat.machine()
    revision_at_start = revision()
    log(f"machine: {cpu['cpu']}, {cpu['cores']} cores, {cpu['memory']}; temp dir {root}")
    stale = prefill.delete_matching(satosa_redis, [f"{c}:*" for c in prefill.PYOP_COLLECTIONS]) \
        if "satosa" in impls else 0
    if stale:
        log(f"satosa: deleted {stale} pyop keys left in db {args.satosa_db} by an earlier run")
    try:
        if "ours" in impls:
            from login.ours import CLIENT_ID, Ours

            ours = Ours(root / "ours", port=ports["ours"], entra_port=entra_port, redis_url=ours_url, prefix=prefix,
                        idp_keys=idp_keys, entra_secret=entra_secret, generated_tenants=args.tenants,
                        idps=args.idps)
            log(f"ours: {ours.registry_counts['tenants']} tenant(s), {ours.registry_counts['idps']} IdPs")

            def prefill_ours(sample, users):
                templates = prefill.ours_templates(ours_redis, prefix, sample, CLIENT_ID)
                before = ours_redis.info("memory")["used_memory"]
                log(f"ours: prefilling {users:,} users into db {args.ours_db}")
                result = prefill.prefill_ours(ours_url, prefix, templates, users, seed=seed,
                                              progress=(lambda n: log(f"  {n:,}")) if users >= 200_000 else None)
                if result["errors"]:
                    raise SystemExit(f"prefill: Redis answered {result['errors']} errors")
                result["redis_bytes_per_user"] = (ours_redis.info("memory")["used_memory"] - before) / users
                log(f"ours: prefill took {result['seconds']:.1f} s, "
                    f"{result['redis_bytes_per_user']:.0f} bytes of Redis memory per user")
                return result

            info_registry = dict(ours.registry_counts)
            if args.logins and not args.scale:  # --logins 0: only the --profile / --callgrind passes
                ours_rows, info = run_implementation(ours, upstreams, args, setup_base=setup_base, counter=counter,
                                                     redis_client=ours_redis, prefill_users=args.prefill,
                                                     logins=args.logins, prefill_fn=prefill_ours,
                                                     grants=("refresh", "introspect", "userinfo"))
                for row in ours_rows:
                    row.update(tenants=info_registry["tenants"], idps=info_registry["idps"])
                rows += ours_rows
                infos.append({**info, **info_registry})
            if args.scale:
                scale_text = scale_ours(ours, upstreams, args, setup_base=setup_base, counter=counter,
                                        redis_client=ours_redis)
            if args.profile:
                profile_text = profile_ours(ours, args, setup_base=setup_base, counter=counter)
            if args.callgrind:
                callgrind_text = callgrind_ours(ours, args, setup_base=setup_base, counter=counter)
        if "satosa" in impls:
            from login.satosa_vanilla import Vanilla

            satosa_prefill = min(args.prefill, args.satosa_prefill_max)
            satosa_logins = args.satosa_logins or (args.logins if satosa_prefill <= 2000 else min(args.logins, 60))
            if satosa_prefill < args.prefill:
                log(f"satosa: prefill capped at {satosa_prefill:,} users (pyop scans every subject per login)")

            def prefill_satosa(sample, users):
                templates = prefill.satosa_templates(satosa_redis)
                log(f"satosa: prefilling {users:,} users into db {args.satosa_db}")
                result = prefill.prefill_satosa(satosa_url, templates, users, seed=seed)
                log(f"satosa: prefill took {result['seconds']:.1f} s")
                return result

            for upstream in upstreams:
                # Each scenario starts from the same store: pyop never expires subject identifiers,
                # so the previous scenario's logins would otherwise make this one's scans longer.
                prefill.delete_matching(satosa_redis, [f"{c}:*" for c in prefill.PYOP_COLLECTIONS])
                if upstream == "saml":
                    vanilla = Vanilla("satosa", root / "satosa", port=ports["satosa"], redis_url=satosa_url,
                                      idp_metadata_xml=idp_metadata)
                else:
                    vanilla = Vanilla("satosa", root / "satosa-oidc", port=ports["satosa-oidc"],
                                      redis_url=satosa_url,
                                      entra={"issuer": idp.entra_issuer(entra_port), "client_id": f"digione-{idp.CITY}",
                                             "client_secret": entra_secret})
                try:
                    v_rows, info = run_implementation(
                        vanilla, [upstream], args, setup_base=setup_base, counter=counter, redis_client=satosa_redis,
                        prefill_users=satosa_prefill, logins=satosa_logins, prefill_fn=prefill_satosa,
                        grants=("refresh", "userinfo") if upstream == upstreams[0] else ())
                except Exception as exc:  # noqa: BLE001 - report and go on with what can be measured
                    log(f"satosa/{upstream}: could not be measured: {type(exc).__name__}: {str(exc)[:400]}")
                    if vanilla.server:
                        log(vanilla.server.tail(15))
                    continue
                for row in v_rows:
                    row.update(tenants=1, idps=1)
                rows += v_rows
                infos.append({**info, "upstream": upstream})
    finally:
        entra.shutdown()
        if "ours" in impls:
            n = prefill.delete_matching(ours_redis, [prefix + "*"])
            log(f"cleanup: deleted {n:,} keys under {prefix}")
        if "satosa" in impls:
            n = prefill.delete_matching(satosa_redis, [f"{c}:*" for c in prefill.PYOP_COLLECTIONS])
            log(f"cleanup: deleted {n:,} pyop keys in db {args.satosa_db}")
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print(f"# login benchmark — {cpu['cpu']}, {cpu['cores']} cores, {cpu['memory']}, Python "
          f"{platform.python_version()}; {args.workers} worker(s) per server "
          f"(ours: broker serve, uWSGI; SATOSA: gunicorn sync), "
          f"{args.concurrency} client processes on the same machine; broker at {_revisions(revision_at_start)}")
    print(table(rows))
    for info in infos:
        if info.get("prefill"):
            p = info["prefill"]
            extra = (f", {p['redis_bytes_per_user']:.0f} B of Redis memory per user"
                     if "redis_bytes_per_user" in p else "")
            sizes = (", values " + ", ".join(f"{k} {v} B" for k, v in p["value_bytes"].items())
                     if "value_bytes" in p else "")
            print(f"\nprefill {info['impl']}: {p['users']:,} users, {p['keys']:,} keys in {p['seconds']:.1f} s"
                  f"{extra}{sizes}")
    grant_rows = [g for info in infos for g in info.get("grants", [])]
    if grant_rows:
        print("\n== token traffic after the logins (each request over HTTP, validated) ==")
        print(f"{'':34}{'requests':>9}{'per s':>8}{'p50 ms':>8}{'p95 ms':>8}{'SERVER CPU ms':>15}"
              f"{'Redis CPU ms':>14}{'Redis cmds':>11}")
        for g in grant_rows:
            print(f"{g['impl'] + ' ' + g['kind']:34}{g['requests']:>9}{g['per_s']:>8.0f}{g['p50_ms']:>8.2f}"
                  f"{g['p95_ms']:>8.2f}{g['server_cpu_ms']:>15.3f}{g['redis_cpu_ms']:>14.3f}{g['redis_commands']:>11.1f}")
    failures = [f for r in rows for f in r["failures"]] + [f for g in grant_rows for f in g["failures"]]
    for failure in failures[:10]:
        print(f"FAILED: {failure}")
    print("\n== ID-token signing on this machine, CPU per token ==")
    for alg, sign_us, verify_us in jose_costs():
        print(f"{alg:16} sign {sign_us:7.1f} µs   verify {verify_us:7.1f} µs")
    if profile_text:
        print("\n" + profile_text)
    if scale_text:
        print("\n" + scale_text)
    if callgrind_text:
        print("\n" + callgrind_text)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "infos": infos, "machine": cpu,
                                         "revision": _revisions(revision_at_start),
                                         "args": vars(args)},
                                        indent=2, default=str))
    return 1 if failures or not (rows or profile_text or callgrind_text or scale_text) else 0


if __name__ == "__main__":
    raise SystemExit(main())
