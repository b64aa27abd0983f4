"""Multi-instance soak test (issue 12): logins at a fixed rate while an instance dies and Redis restarts.

    .venv/bin/python bench/soak.py                       # 40 s at 45 logins/s (half of docs/performance.md's 90)
    .venv/bin/python bench/soak.py --capacity 8          # measure capacity first, run at half of it (tests/soak)
    .venv/bin/python bench/soak.py --seconds 300 --capacity 15 --json soak.json
    .venv/bin/python bench/soak.py --redis-without-persistence   # what a Redis without persistence loses

What runs, all on loopback, all started here and all stopped here (by process id, also on failure):

* a private ``redis-server`` on a free port in the run's directory (``bench/login/redis_server.py``);
* ``--instances`` ``broker serve --workers N`` (uWSGI) on their own ports, sharing that Redis, one
  registry database (``--database-url``; by default a SQLite file in the shared registry
  directory), one master secret and one set of files (``bench/login/ours.py``: the shipped
  ``tenants/vantaa.yaml`` with the benchmark's SAML IdP and the demo Entra ID);
* Debian's ``haproxy`` in front, round robin, health checks on ``/readyz`` (``bench/login/haproxy.py``);
  the broker's base URL (its issuer, ACS and callback URLs) is the proxy's;
* ``--clients`` client processes doing validated logins end to end at ``--rate`` per second
  (``bench/login/schedule.py``: three in four through SAML, one in four through OIDC).

During the run (times as fractions of ``--seconds``): at ``--kill-at`` one instance is SIGKILLed
(its uWSGI master and workers, the whole process group: a machine gone); at ``--redis-at`` Redis is
stopped with ``SHUTDOWN SAVE``, kept down ``--redis-down`` seconds and started again on the same
port and directory; at ``--restart-at`` the killed instance is started again.  Afterwards the tokens
of logins completed before the kill and before the Redis restart are used again (userinfo, refresh
grant, userinfo).  The report (``bench/login/soak_report.py``) gives logins completed and failed,
which event explains each failure, the recovery time after each event and the violated invariants;
the exit status is 1 if any.  ``--json FILE`` writes it as JSON.  No token is printed or written.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
warnings.filterwarnings("ignore", message=".*CFB has been moved")

from login import idp, schedule, soak_report  # noqa: E402 - after the sys.path set-up above
from login.haproxy import Haproxy  # noqa: E402 - after the sys.path set-up above
from login.ours import Ours  # noqa: E402 - after the sys.path set-up above
from login.procstat import descendants  # noqa: E402 - after the sys.path set-up above
from login.redis_server import RedisServer  # noqa: E402 - after the sys.path set-up above
from login.servers import Server, free_port  # noqa: E402 - after the sys.path set-up above

#: Capacity of this 2-core machine with 2 workers, all clients on it too (docs/performance.md).
DOCUMENTED_CAPACITY = 90.0
ENTRA = {"username": idp.ENTRA_USER, "password": idp.ENTRA_PASSWORD, "given_name": "Aino Maria",
         "family_name": "Virtanen"}
#: Tokens of earlier logins used again per phase (before the kill, before the Redis restart).
TOKEN_SAMPLE = 25
#: The access token's lifetime less a margin (config/broker.yaml): older ones are not tried.
ACCESS_TOKEN_USABLE_S = 570


_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[soak {time.monotonic() - _STARTED:6.1f}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BROKER_SOAK_SECONDS", "40")),
                   help="length of the run (default 40, or BROKER_SOAK_SECONDS); at least 30")
    p.add_argument("--rate", type=float, default=None,
                   help="logins per second (default: half of --capacity if measured, else "
                        f"{DOCUMENTED_CAPACITY / 2:.0f})")
    p.add_argument("--capacity", type=float, default=0.0, metavar="SECONDS",
                   help="first measure the capacity through the proxy for SECONDS (closed loop)")
    p.add_argument("--instances", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="uWSGI workers per instance")
    p.add_argument("--clients", type=int, default=6, help="client processes (logins in flight at most)")
    p.add_argument("--kill-at", type=float, default=0.2)
    p.add_argument("--redis-at", type=float, default=0.4)
    p.add_argument("--redis-down", type=float, default=1.0, help="seconds Redis stays down")
    p.add_argument("--redis-without-persistence", action="store_true",
                   help="restart Redis empty (SHUTDOWN NOSAVE): shows what a Redis without persistence loses")
    p.add_argument("--restart-at", type=float, default=0.5, help="restart the killed instance (negative: never)")
    p.add_argument("--database-url", default="", help="the registry's database (default: a shared SQLite file)")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--keep", action="store_true", help="keep the run's directory (logs, configuration)")
    args = p.parse_args(argv)
    if args.seconds < 30:
        p.error("--seconds must be at least 30: the events are 5 s recovery windows apart")
    if args.instances < 2:
        p.error("--instances must be at least 2: one is killed")
    if not 0 < args.kill_at < args.redis_at < 1 or (args.restart_at >= 0 and not args.redis_at < args.restart_at < 1):
        p.error("need 0 < --kill-at < --redis-at < --restart-at < 1")
    return args


class Instance:
    """One ``broker serve`` of the run, on its own port, in the shared directory."""

    def __init__(self, name: str, ours: Ours, port: int, workers: int, env: dict[str, str]):
        # Each instance its own metrics port (decision 16): they share one host.
        self.name, self.ours, self.port, self.workers = name, ours, port, workers
        self.env = {**env, "BROKER_METRICS_PORT": str(free_port())}
        self.server: Server | None = None

    def start(self) -> None:
        argv = [str(Path(sys.executable).parent / "broker"), "serve", "--workers", str(self.workers),
                "--bind", f"127.0.0.1:{self.port}"]
        self.server = Server(self.name, argv, env=self.env, cwd=self.ours.root, log=self.ours.root / f"{self.name}.log",
                             ready_url=f"http://127.0.0.1:{self.port}/readyz")

    def wait_ready(self) -> float:
        assert self.server is not None
        return self.server.wait_ready(self.workers, timeout=90)

    def kill(self) -> None:
        """SIGKILL to the master and its workers (one process group: started as its own session);
        returns once every one of them is gone (a zombie holds no socket), which is when the kernel
        stops completing connections on the instance's listening socket."""
        assert self.server is not None
        processes = descendants(self.server.pid)
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.process.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in processes) and time.monotonic() < deadline:
            time.sleep(0.001)
        self.server.stop()  # closes the log file
        self.server = None  # nothing left to stop (and its process group id is free for reuse)

    def terminate(self) -> None:
        if self.server is not None and self.server.process.poll() is None:
            self.server.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            try:
                os.killpg(self.server.pid, signal.SIGKILL)  # any worker the master left behind
            except ProcessLookupError:
                pass
            self.server = None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def run(args: argparse.Namespace) -> dict:
    seed = secrets.token_hex(4)
    root = Path(tempfile.mkdtemp(prefix="broker-soak-"))
    log(f"run directory {root}")
    redis_server = RedisServer(root / "redis", free_port())
    proxy_port, entra_port = free_port(), free_port()
    instances: list[Instance] = []
    proxy = entra = pool = None
    try:
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=args.clients,
                                                      mp_context=multiprocessing.get_context("spawn"))
        spawned = [pool.submit(schedule.warm, 2.0) for _ in range(args.clients)]  # start them all now
        redis_server.start()
        idp_keys = root / "idp-keys"
        idp.write_metadata(idp_keys, root / "idp-metadata.xml")
        entra_secret = secrets.token_urlsafe(24)
        entra = idp.start_entra(port=entra_port, key_dir=root / "entra-keys", secret=entra_secret,
                                redirect_uris=[f"http://127.0.0.1:{proxy_port}/oidc/{idp.CITY}/entra/callback"])
        # One set of files for every instance; its base URL (issuer, ACS, callbacks) is the proxy's.
        ours = Ours(root / "broker", port=proxy_port, entra_port=entra_port, redis_url=redis_server.url,
                    prefix=f"soak-{seed}:", idp_keys=idp_keys, entra_secret=entra_secret)
        env = {**ours.env, "BROKER_LOG_LEVEL": "WARNING"}
        if args.database_url:
            env["BROKER_DATABASE_URL"] = args.database_url
        instances = [Instance(f"b{i + 1}", ours, free_port(), args.workers, env) for i in range(args.instances)]
        # The first creates the SAML keys and the registry's first version; the others find them.
        instances[0].start()
        instances[0].wait_ready()
        for inst in instances[1:]:
            inst.start()
        for inst in instances[1:]:
            inst.wait_ready()
        log(f"{args.instances} instances ready: " + ", ".join(f"{i.name} :{i.port}" for i in instances))
        log("haproxy")
        proxy = Haproxy(root / "haproxy", proxy_port, {i.name: i.port for i in instances})
        proxy.wait_ready()
        setup = {"seed": seed, "idp_keys": str(idp_keys), "client": ours.client_config(),
                 "sp_metadata": ours.sp_metadata(), "entra": {**ENTRA, "url": f"http://127.0.0.1:{entra_port}"}}
        concurrent.futures.wait(spawned)
        config = {"instances": args.instances, "workers": args.workers, "clients": args.clients,
                  "seconds": args.seconds, "database": "PostgreSQL" if args.database_url.startswith("postgres")
                  else "SQLite (shared file)" if not args.database_url else args.database_url.split(":")[0]}
        log(f"{args.clients} client processes: warm-up")
        # Warm-up: two seconds of logins from every client process (its relying party built, the
        # JWKS fetched, the instances' first requests served), not counted.
        closed(pool, setup, args.clients, 1_000_000, 2.0)
        if args.capacity:
            measured = closed(pool, setup, args.clients, 2_000_000, args.capacity)
            ok = sum(1 for r in measured if r["ok"])
            config["capacity"] = {"seconds": args.capacity, "logins": ok, "logins_per_s": ok / args.capacity,
                                  "failed": len(measured) - ok}
            log(f"capacity: {ok / args.capacity:.1f} logins/s ({len(measured) - ok} failed)")
        if args.rate:
            config["rate"], config["rate_source"] = args.rate, "--rate"
        elif args.capacity:
            config["rate"], config["rate_source"] = config["capacity"]["logins_per_s"] / 2, "half the measured capacity"
        else:
            config["rate"], config["rate_source"] = DOCUMENTED_CAPACITY / 2, "half the capacity in docs/performance.md"
        records, events, t0 = soak(pool, setup, args, config["rate"], instances, redis_server)
        log("tokens of earlier logins")
        tokens = check_tokens(pool, setup, args.clients, records, events)
        report = soak_report.analyse(records, events, t0=t0, instances=[i.name for i in instances],
                                     served_afterwards=set(tokens["served_by"]))
        report["tokens"] = tokens
        if tokens["ok"] != tokens["checked"] or not tokens["before_kill"] or not tokens["before_redis"]:
            report["violations"].append(f"earlier logins lost: {tokens['ok']}/{tokens['checked']} still work "
                                        f"({tokens['problems'][:3]})")
        config["redis_restart"] = "empty (no persistence)" if args.redis_without_persistence else "SHUTDOWN SAVE"
        report["config"] = config
        return report
    finally:
        log("stopping everything")
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if proxy is not None:
            proxy.stop()
        for inst in instances:
            inst.terminate()  # all at once: each takes a second to bury its workers
        for inst in instances:
            inst.stop()
        redis_server.stop()
        if entra is not None:
            entra.shutdown()
        log("stopped")
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def closed(pool, setup: dict, clients: int, first: int, seconds: float) -> list[dict]:
    until = time.monotonic() + seconds
    futures = [pool.submit(schedule.run_closed, setup, first + k, clients, until) for k in range(clients)]
    return [r for f in futures for r in f.result()]


def soak(pool, setup: dict, args, rate: float, instances: list[Instance], redis_server: RedisServer):
    """The run: the schedule in the client processes, the events here; returns (records, events, t0)."""
    t0 = time.monotonic() + 0.5
    until = t0 + args.seconds
    futures = [pool.submit(schedule.run_schedule, setup, t0, rate, k, args.clients, until)
               for k in range(args.clients)]
    log(f"{args.seconds:.0f} s at {rate:.1f} logins/s")
    victim = instances[len(instances) // 2]
    events: list[dict] = []

    def at(fraction: float) -> None:
        time.sleep(max(0.0, t0 + fraction * args.seconds - time.monotonic()))

    at(args.kill_at)
    t = time.monotonic()
    victim.kill()
    events.append({"kind": "kill", "t": t, "gone": time.monotonic(), "instance": victim.name})
    log(f"{t - t0:.1f} s: SIGKILL {victim.name}, all its processes gone after {time.monotonic() - t:.3f} s")
    at(args.redis_at)
    t = time.monotonic()
    if args.redis_without_persistence:
        redis_server.shutdown_empty()
    else:
        redis_server.shutdown_saving()
    time.sleep(args.redis_down)
    redis_server.start()
    events.append({"kind": "redis-restart", "t": t, "up": time.monotonic()})
    how = "NOSAVE" if args.redis_without_persistence else "SAVE"
    log(f"{t - t0:.1f} s: Redis SHUTDOWN {how}, started again after {time.monotonic() - t:.2f} s")
    if args.restart_at >= 0:
        at(args.restart_at)
        t = time.monotonic()
        victim.start()
        victim.wait_ready()
        events.append({"kind": "instance-restart", "t": t, "up": time.monotonic(), "instance": victim.name})
        log(f"{t - t0:.1f} s: {victim.name} started again, ready after {time.monotonic() - t:.2f} s")
    records = [r for f in futures for r in f.result()]
    return records, events, t0


def check_tokens(pool, setup: dict, clients: int, records: list[dict], events: list[dict]) -> dict:
    """Tokens of logins completed before the kill and before the Redis restart, used again now."""
    kill = next(e["t"] for e in events if e["kind"] == "kill")
    restart = next(e["t"] for e in events if e["kind"] == "redis-restart")
    ok = sorted((r for r in records if r["ok"] and r["tokens"][0]), key=lambda r: r["end"])
    before_kill = [r for r in ok if r["end"] < kill][-TOKEN_SAMPLE:]
    before_redis = [r for r in ok if kill < r["end"] < restart][-TOKEN_SAMPLE:]
    now = time.monotonic()
    pairs = [(r["sub"], r["tokens"][0], r["tokens"][1], now - r["end"] < ACCESS_TOKEN_USABLE_S)
             for r in before_kill + before_redis]
    futures = [pool.submit(schedule.use_tokens, setup, pairs[k::clients]) for k in range(clients) if pairs[k::clients]]
    results = [f.result() for f in futures]
    problems = [p for problems, _ in results for p in problems]
    served = sorted({s for _, servers in results for s in servers} - {"-"})
    for r in records:
        r.pop("tokens", None)  # never reported
    return {"checked": len(pairs), "ok": len(pairs) - len(problems), "before_kill": len(before_kill),
            "before_redis": len(before_redis), "problems": problems[:10], "served_by": served}


def _stop_on_sigterm(signum, frame) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds through run()'s clean-up


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    report = run(args)
    print(soak_report.render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
