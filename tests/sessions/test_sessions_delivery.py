"""Back-channel logout delivery against real HTTP endpoints on loopback, on the memory store and a real Redis."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
import uuid

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from broker.sessions.delivery import JOB_KEY, QUEUE_KEY, BackchannelDelivery, Delivery
from broker.store import MemoryStore, StoreError, StoreOutcomeUnknown

FAST = (0.5, 0.5)   # connect and read timeouts for endpoints that answer at once


class Endpoint:
    """A back-channel logout endpoint: werkzeug's threaded server on 127.0.0.1, recording every POST."""

    def __init__(self, *, status: int = 200, delay: float = 0.0, location: str | None = None, port: int = 0):
        self.status = status
        self.delay = delay
        self.location = location
        self.hits: list[dict] = []
        self.active = self.max_active = 0
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", port, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}/backchannel"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    def _app(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
        finally:
            with self._lock:
                self.active -= 1
                self.hits.append({"at": time.monotonic(), "method": request.method, "path": request.path,
                                  "body": body, "form": urllib.parse.parse_qs(body.decode()),
                                  "headers": dict(request.headers)})
        headers = {"Location": self.location} if self.location else {}
        return Response("", status=self.status, headers=headers)(environ, start_response)

    def tokens(self) -> list[str]:
        with self._lock:
            return [token for hit in self.hits for token in hit["form"].get("logout_token", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def engines():
    made: list[BackchannelDelivery] = []

    def make(store, **options) -> BackchannelDelivery:
        options.setdefault("timeout", FAST)
        options.setdefault("backoff", (0.2,))
        engine = BackchannelDelivery(store, **options)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


@pytest.fixture
def endpoints():
    made: list[Endpoint] = []

    def make(**options) -> Endpoint:
        endpoint = Endpoint(**options)
        made.append(endpoint)
        return endpoint

    yield make
    for endpoint in made:
        endpoint.close()


def token(n: int | str = 0) -> str:
    return f"eyJhbGciOiJSUzI1NiJ9.secret-logout-token-{n}-{uuid.uuid4().hex}.c2ln"


def run_until(engine: BackchannelDelivery, predicate, *, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        engine.run_due()
        time.sleep(0.02)


def test_the_token_is_posted_as_the_spec_says_and_dropped_from_the_store(store, engines, endpoints):
    endpoint = endpoints()
    engine = engines(store)
    secret = token()
    [queued] = engine.enqueue([Delivery("service-a", endpoint.url, secret)])
    assert queued.id and engine.status(queued.id) == "pending"
    assert engine.deliver([queued], deadline=time.time() + 3) == {queued.id: "delivered"}
    [hit] = endpoint.hits
    assert hit["method"] == "POST" and hit["path"] == "/backchannel"
    assert hit["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert hit["headers"]["Cache-Control"] == "no-store"
    assert hit["body"] == urllib.parse.urlencode({"logout_token": secret}).encode()
    assert engine.status(queued.id) == "delivered"
    assert "logout_token" not in store.get(JOB_KEY + queued.id)
    assert store.zset_claim(QUEUE_KEY, max_score=float("inf"), count=10, new_score=0.0) == []
    assert secret not in repr(queued)


def test_deliveries_go_out_in_parallel(store, engines, endpoints):
    slow = [endpoints(delay=0.5) for _ in range(3)]
    engine = engines(store, timeout=(1.0, 2.0))
    queued = engine.enqueue([Delivery(f"service-{i}", e.url, token(i)) for i, e in enumerate(slow)])
    started = time.monotonic()
    outcome = engine.deliver(queued, deadline=time.time() + 3)
    assert time.monotonic() - started < 1.0
    assert outcome == {d.id: "delivered" for d in queued}


def test_requests_in_flight_are_bounded_by_concurrency(store, engines, endpoints):
    endpoint = endpoints(delay=0.2)
    engine = engines(store, concurrency=2, timeout=(1.0, 2.0))
    queued = engine.enqueue([Delivery("service", endpoint.url, token(i)) for i in range(6)])
    started = time.monotonic()
    assert set(engine.deliver(queued, deadline=time.time() + 3).values()) == {"delivered"}
    assert endpoint.max_active == 2 and time.monotonic() - started >= 0.6


def test_an_endpoint_that_is_down_does_not_hold_up_the_others_and_is_retried_when_up(store, engines, endpoints):
    up = [endpoints(), endpoints()]
    down_port = free_port()                                    # connection refused
    blackhole = socket.socket()                                # accepts connections, never answers
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(8)
    try:
        engine = engines(store, timeout=(0.5, 0.5), backoff=(1.0,))
        queued = engine.enqueue([
            Delivery("down", f"http://127.0.0.1:{down_port}/backchannel", token("down")),
            Delivery("silent", f"http://127.0.0.1:{blackhole.getsockname()[1]}/backchannel", token("silent")),
            *(Delivery(f"up-{i}", e.url, token(i)) for i, e in enumerate(up)),
        ])
        started = time.monotonic()
        outcome = engine.deliver(queued, deadline=time.time() + 3)
        assert time.monotonic() - started < 1.5
        assert [outcome[d.id] for d in queued] == ["retrying", "retrying", "delivered", "delivered"]
        assert all(e.hits[0]["at"] - started < 0.3 for e in up), "the others did not wait for the silent one"

        assert engine.run_due() == 0                           # not due before its backoff (1 s)
        revived = endpoints(port=down_port)
        run_until(engine, lambda: engine.status(queued[0].id) == "delivered")
        assert revived.tokens() == [queued[0].logout_token]
        assert engine.status(queued[1].id) == "retrying"
        assert all(len(e.hits) == 1 for e in up)
    finally:
        blackhole.close()


def test_a_slow_endpoint_past_the_deadline_is_pending_and_finishes_in_the_background(store, engines, endpoints):
    slow = endpoints(delay=1.0)
    fast = endpoints()
    engine = engines(store, timeout=(0.5, 3.0))
    queued = engine.enqueue([Delivery("slow", slow.url, token("slow")), Delivery("fast", fast.url, token("fast"))])
    started = time.monotonic()
    outcome = engine.deliver(queued, deadline=time.time() + 0.3)
    assert time.monotonic() - started < 0.5
    assert outcome == {queued[0].id: "pending", queued[1].id: "delivered"}
    assert engine.run_due() == 0                               # leased to the attempt still running
    deadline = time.monotonic() + 3
    while engine.status(queued[0].id) != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(slow.hits) == 1


def test_a_slow_endpoint_that_fails_after_the_deadline_is_retried(store, engines, endpoints):
    slow = endpoints(delay=0.6, status=503)
    engine = engines(store, timeout=(0.5, 3.0))
    queued = engine.enqueue([Delivery("slow", slow.url, token())])
    assert engine.deliver(queued, deadline=time.time() + 0.2) == {queued[0].id: "pending"}
    deadline = time.monotonic() + 3
    while engine.status(queued[0].id) != "retrying":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    slow.status, slow.delay = 200, 0.0
    run_until(engine, lambda: engine.status(queued[0].id) == "delivered")
    assert len(slow.hits) == 2


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "delivered"), (204, "delivered"),
    (400, "refused"), (401, "refused"), (404, "refused"),
    (429, "retrying"), (500, "retrying"), (503, "retrying"),
])
def test_answers_and_what_they_mean(store, engines, endpoints, status, outcome):
    endpoint = endpoints(status=status)
    engine = engines(store)
    queued = engine.enqueue([Delivery("service", endpoint.url, token())])
    assert engine.deliver(queued, deadline=time.time() + 3) == {queued[0].id: outcome}
    assert engine.status(queued[0].id) == outcome


def test_refused_is_final(store, engines, endpoints):
    endpoint = endpoints(status=400)
    engine = engines(store, backoff=(0.05,))
    queued = engine.enqueue([Delivery("service", endpoint.url, token())])
    assert engine.deliver(queued, deadline=time.time() + 3) == {queued[0].id: "refused"}
    time.sleep(0.1)
    assert engine.run_due() == 0
    assert len(endpoint.hits) == 1 and engine.status(queued[0].id) == "refused"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(store, engines, endpoints, status):
    target = endpoints()
    redirecting = endpoints(status=status, location=target.url)
    engine = engines(store)
    queued = engine.enqueue([Delivery("service", redirecting.url, token())])
    assert engine.deliver(queued, deadline=time.time() + 3) == {queued[0].id: "refused"}
    assert len(redirecting.hits) == 1 and target.hits == []


def test_a_job_that_exhausts_its_attempts_is_dropped_with_a_warning(store, engines, endpoints, caplog):
    caplog.set_level(logging.INFO, logger="broker.sessions.delivery")
    endpoint = endpoints(status=503)
    engine = engines(store, attempts=3, backoff=(0.05, 0.1))
    queued = engine.enqueue([Delivery("service-x", endpoint.url, token())])
    assert engine.deliver(queued, deadline=time.time() + 3) == {queued[0].id: "retrying"}
    run_until(engine, lambda: engine.status(queued[0].id) == "dropped")
    assert len(endpoint.hits) == 3
    time.sleep(0.15)
    assert engine.run_due() == 0 and len(endpoint.hits) == 3
    assert "logout_token" not in store.get(JOB_KEY + queued[0].id)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and queued[0].id in r.getMessage()]
    assert "dropped" in warning.getMessage() and f"id={queued[0].id}" in warning.getMessage()
    assert "client_id=service-x" in warning.getMessage() and "attempt=3" in warning.getMessage()


def test_one_attempt_only_is_dropped_at_once(store, engines):
    engine = engines(store, attempts=1)
    queued = engine.enqueue([Delivery("down", f"http://127.0.0.1:{free_port()}/", token())])
    assert engine.deliver(queued, deadline=time.time() + 3) == {queued[0].id: "dropped"}


def test_an_unusable_url_is_dropped_without_retries(store, engines):
    engine = engines(store)
    queued = engine.enqueue([Delivery("broken", "not a url", token())])
    assert engine.deliver(queued, deadline=time.time() + 3) == {queued[0].id: "dropped"}


def test_another_instance_finishes_a_retry_the_first_scheduled(make_store, engines, endpoints):
    endpoint = endpoints(status=503)
    first = engines(make_store())
    queued = first.enqueue([Delivery("service", endpoint.url, token())])
    assert first.deliver(queued, deadline=time.time() + 3) == {queued[0].id: "retrying"}
    first.close()                                             # this instance goes away
    endpoint.status = 200
    second = engines(make_store())
    run_until(second, lambda: second.status(queued[0].id) == "delivered")
    assert endpoint.tokens() == [queued[0].logout_token] * 2


def test_an_instance_that_dies_after_enqueue_loses_nothing(make_store, engines, endpoints):
    endpoint = endpoints()
    first = engines(make_store(), lease=0.3)
    queued = first.enqueue([Delivery("service", endpoint.url, token())])   # and never delivers them
    second = engines(make_store())
    assert second.run_due() == 0                              # leased to the first instance's deliver()
    time.sleep(0.35)
    assert second.run_due() == 1
    assert second.status(queued[0].id) == "delivered" and len(endpoint.hits) == 1


def test_instances_racing_run_due_deliver_each_job_exactly_once(make_store, engines, endpoints):
    endpoint = endpoints(delay=0.01)
    producer = engines(make_store(), lease=0)                 # jobs due at once, for whichever instance claims
    queued = producer.enqueue([Delivery("service", endpoint.url, token(i)) for i in range(40)])
    racers = [engines(make_store(), concurrency=4) for _ in range(3)]
    counts = [0] * len(racers)
    start = threading.Barrier(len(racers))

    def race(i: int) -> None:
        start.wait()
        counts[i] = racers[i].run_due()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(racers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(counts) == 40
    assert sorted(endpoint.tokens()) == sorted(d.logout_token for d in queued)
    assert {racers[0].status(d.id) for d in queued} == {"delivered"}


def test_run_due_keeps_at_most_concurrency_in_flight_and_stops_at_limit(store, engines, endpoints):
    endpoint = endpoints(delay=0.05)
    producer = engines(store, lease=0)
    producer.enqueue([Delivery("service", endpoint.url, token(i)) for i in range(10)])
    engine = engines(store, concurrency=3)
    assert engine.run_due(limit=7) == 7
    assert endpoint.max_active <= 3 and len(endpoint.hits) == 7
    assert engine.run_due() == 3


def test_start_retries_in_the_background_and_stop_stops_it(store, engines, endpoints):
    endpoint = endpoints(status=503)
    engine = engines(store, backoff=(0.1,))
    queued = engine.enqueue([Delivery("service", endpoint.url, token())])
    assert engine.deliver(queued, deadline=time.time() + 3) == {queued[0].id: "retrying"}
    engine.start(interval=0.05)
    first = engine._thread
    engine.start(interval=0.05)  # idempotent: the same thread (other engines of the process have their own)
    assert first is not None and engine._thread is first and first.is_alive()
    endpoint.status = 200
    deadline = time.monotonic() + 3
    while engine.status(queued[0].id) != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    engine.stop()
    assert not first.is_alive()


def test_a_lost_store_reply_loses_no_job(store, engines, endpoints):
    endpoint = endpoints()
    engine = engines(store, lease=0.3)
    lost = {"zset_add": 1, "zset_claim": 1}

    def losing(name):
        original = getattr(store, name)

        def call(*args, **kwargs):
            result = original(*args, **kwargs)   # memory: it ran; redis in a batch: queued, then abandoned
            if lost[name]:
                lost[name] -= 1
                raise StoreOutcomeUnknown("reply lost")
            return result
        return call

    store.zset_add = losing("zset_add")
    store.zset_claim = losing("zset_claim")
    queued = engine.enqueue([Delivery("service", endpoint.url, token())])   # the write is sent once more
    assert lost["zset_add"] == 0 and engine.status(queued[0].id) == "pending"
    time.sleep(0.35)                                          # as if the deliver() after it never ran
    assert engine.run_due() == 0                              # claimed, but the reply was lost
    assert endpoint.hits == []
    time.sleep(0.35)                                          # the lease of that lost claim ends
    assert engine.run_due() == 1 and engine.status(queued[0].id) == "delivered"


def test_tokens_go_out_even_when_the_store_is_down(engines, endpoints, caplog):
    class Down(MemoryStore):
        def put(self, key, value, ttl):
            raise StoreError("redis unreachable (ConnectionError); nothing was sent")

    endpoint = endpoints()
    engine = engines(Down())
    queued = engine.enqueue([Delivery("service", endpoint.url, token())])
    assert queued[0].id and "not queued" in caplog.text
    assert engine.deliver(queued, deadline=time.time() + 3) == {queued[0].id: "delivered"}
    assert endpoint.tokens() == [queued[0].logout_token]


def test_deliver_takes_enqueued_deliveries_only(store, engines):
    with pytest.raises(ValueError):
        engines(store).deliver([Delivery("service", "http://127.0.0.1:1/", token())], deadline=time.time() + 1)


def test_the_token_never_reaches_a_log_record(store, engines, endpoints, caplog):
    caplog.set_level(logging.DEBUG)   # every logger, urllib3's and werkzeug's included
    ok, refusing, failing = endpoints(), endpoints(status=400), endpoints(status=503)
    target = endpoints()
    redirecting = endpoints(status=302, location=target.url)
    engine = engines(store, attempts=2, backoff=(0.05,))
    deliveries = [Delivery("ok", ok.url, token("ok")), Delivery("refusing", refusing.url, token("refusing")),
                  Delivery("failing", failing.url, token("failing")),
                  Delivery("redirecting", redirecting.url, token("redirect")),
                  Delivery("down", f"http://127.0.0.1:{free_port()}/", token("down")),
                  Delivery("broken", "http://[::1/", token("broken"))]
    queued = engine.enqueue(deliveries)
    engine.deliver(queued, deadline=time.time() + 3)
    run_until(engine, lambda: engine.status(queued[2].id) == "dropped")
    assert caplog.records
    secrets = [d.logout_token for d in deliveries]
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        assert not any(secret in text or secret.split(".")[1] in text for secret in secrets), record
    assert not any(secret in caplog.text for secret in secrets)
    assert {r.getMessage().split()[2] for r in caplog.records if r.name == "broker.sessions.delivery"} >= {
        "delivered", "refused", "failed", "dropped"}
