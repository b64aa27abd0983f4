"""What the login-start rate limit costs: broker CPU and store round trips per login start.

    .venv/bin/python bench/bench_ratelimit.py                    # 3,000 starts each way, Redis db 15
    .venv/bin/python bench/bench_ratelimit.py --starts 10000 --redis-url redis://127.0.0.1:6379/14

The demo's registry is built in this process as ``broker serve`` builds it, on the real Redis
(a fresh key prefix, deleted afterwards), twice: with the default limits and with the
login-start limit off.  Each login start is ``GET /authorize`` of the demo's service A without
a hint or a broker session (the guard, the router, the limiter, the provider's validation, a
new flow, the redirect to the city page), called on the WSGI application directly, from
sources spread over 500 addresses; the two applications take turns in rounds of 100 so that
both see the same machine.  Reported: CPU time of this process per start (the limiter's
``INCR`` included: building, sending and parsing it), and store round trips per start; then
the limiter alone, at a login start and at the token endpoint.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from broker.app import create_app  # noqa: E402
from broker.demo.servers import free_port  # noqa: E402
from broker.demo.stack import DemoStack, Ports  # noqa: E402
from broker.ratelimit import Limit, RateLimits  # noqa: E402
from broker.store.redis import RedisStore  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=3000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    prefix = f"bench-ratelimit:{uuid.uuid4().hex}:"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata",
                          ports=Ports(*(free_port() for _ in range(5))), environ={})
        stack.prepare()
        query = (f"response_type=code&client_id=demo-service-a&redirect_uri="
                 f"{quote(stack.service_urls[0] + '/callback', safe='')}&scope=openid&state=s&nonce=n"
                 "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")
        apps: dict = {}
        trips: dict = {}
        for name, limits in (("limit on", RateLimits()), ("limit off", RateLimits(login_start=Limit(0, 1)))):
            store = RedisStore.from_url(args.redis_url, prefix=prefix)
            apps[name] = create_app(stack.settings(rate_limits=limits),
                                    store=store, watch=False)
            trips[name] = _count_round_trips(store)
        cpu = {name: 0.0 for name in apps}
        counted = {name: 0 for name in apps}
        done = 0
        try:
            for name in apps:   # warm up
                for i in range(50):
                    _start(apps[name], query, i)
            for counter in trips.values():
                counter[0] = 0
            while done < args.starts:
                for name, app in apps.items():
                    before = time.process_time()
                    for i in range(100):
                        _start(app, query, done + i)
                    cpu[name] += time.process_time() - before
                    counted[name] += 100
                done += 100
            per_start = {name: counter[0] / counted[name] for name, counter in trips.items()}
            limiter = apps["limit on"].proxy.limiter
            before = time.process_time()
            for i in range(done):
                limiter.login_start({"REMOTE_ADDR": f"198.51.{(i % 500) // 250}.{i % 250}"})
            alone = time.process_time() - before
            before, sent = time.process_time(), trips["limit on"][0]
            for _ in range(done):
                limiter.authenticated("demo-service-a", secret=True, token=True, remote_addr="192.0.2.1",
                                      forwarded_for=None)
            at_token = time.process_time() - before
            token_trips = (trips["limit on"][0] - sent) / done
        finally:
            for app in apps.values():
                app.close()
            client = redis.Redis.from_url(args.redis_url)
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
    print(f"login starts: {done} each way (GET /authorize, no session, on the WSGI app, Redis store)")
    for name in apps:
        print(f"  {name:9}: {cpu[name] / counted[name] * 1e6:7.1f} µs CPU per start, "
              f"{per_start[name]:.2f} store round trips per start")
    print(f"  the limit costs {(cpu['limit on'] - cpu['limit off']) / done * 1e6:.1f} µs CPU per start "
          f"(difference of the two); the limiter alone {alone / done * 1e6:.1f} µs")
    print(f"  at the token endpoint (lock check + token count of a client_secret_basic client): "
          f"{at_token / done * 1e6:.1f} µs CPU, {token_trips:.2f} round trips per request")
    return 0


def _start(app, query: str, i: int) -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/authorize", "QUERY_STRING": query, "SERVER_NAME": "bench",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http",
               "REMOTE_ADDR": f"198.51.{(i % 500) // 250}.{i % 250}"}
    status = []
    body = app(environ, lambda s, h, exc_info=None: status.append(s))
    b"".join(body)
    if not status or not status[0].startswith("302"):
        raise SystemExit(f"unexpected answer {status}")


def _count_round_trips(store: RedisStore) -> list[int]:
    counter = [0]
    run = store._run

    def counted(*commands):
        counter[0] += 1
        return run(*commands)

    store._run = counted  # type: ignore[method-assign]
    return counter


if __name__ == "__main__":
    sys.exit(main())
