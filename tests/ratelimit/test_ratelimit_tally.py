"""Counts sent in steps (broker/ratelimit/tally.py): fewer round trips, a bounded overshoot, exact small limits."""

from __future__ import annotations

import pytest

from broker.ratelimit import Limit, RateLimits
from broker.ratelimit.limits import LoginStartsLimited, RateLimiter
from broker.ratelimit.source import Sources
from broker.ratelimit.tally import MAX_KEYS, Tally, step_for
from broker.store import StoreError
from broker.tokens.errors import OAuthError

KEY = b"k" * 32
OFF = Limit(0, 1)
NOW = 600_000.5


class Counting:
    """The real store, with its round trips counted."""

    def __init__(self, store):
        self.store, self.incrs, self.gets = store, [], 0

    def incr(self, key, ttl, by=1):
        self.incrs.append(by)
        return self.store.incr(key, ttl, by)

    def incr_and_get(self, key, ttl, other, by=1):
        self.incrs.append(by)
        return self.store.incr_and_get(key, ttl, other, by)

    def get(self, key):
        self.gets += 1
        return self.store.get(key)


def test_steps_are_a_thousandth_of_the_limit_and_small_limits_are_exact():
    assert [step_for(n) for n in (1, 20, 1999, 2000, 12000, 120000)] == [1, 1, 1, 2, 12, 120]


def test_a_tally_sends_in_steps_and_keeps_what_it_could_not_send():
    tally = Tally()
    assert [tally.add("k", 1, 3) for _ in range(3)] == [(0, 1), (0, 2), (3, 3)]
    tally.sent("k", 10)                      # others had sent 7
    assert tally.add("k", 1, 3) == (0, 11)
    assert tally.add("k", 1, 3) == (0, 12)
    to_send, _ = tally.add("k", 1, 3)
    tally.unsent("k", to_send)               # the store was away: they go with the next send
    assert tally.add("k", 1, 3) == (4, 14)
    assert tally.add("k", 2, 3) == (0, 1)    # a new window starts from nothing


def test_a_tally_forgets_rather_than_grows_past_its_bound():
    tally = Tally()
    for n in range(MAX_KEYS):
        tally.add(f"source-{n}", 1, 5)
    assert tally.add("source-0", 1, 5) == (0, 1)   # cleared: an undercount, never a refusal
    assert len(tally._entries) == 1


def test_login_starts_of_a_large_limit_cost_a_round_trip_per_step_on_redis(redis_store):
    store = Counting(redis_store)
    limiter = RateLimiter(store, RateLimits(login_start=Limit(12000, 60), token=OFF, client_auth_failures=OFF),
                          Sources(KEY), clock=lambda: NOW)
    for _ in range(120):
        limiter.login_start({"REMOTE_ADDR": "198.51.100.1"})
    assert store.incrs == [12] * 10     # 120 login starts, ten round trips
    limiter.login_start({"REMOTE_ADDR": "198.51.100.2"})   # a pupil at home: no round trip
    assert len(store.incrs) == 10


@pytest.mark.parametrize("store_kind", ["redis"])   # instances share Redis
def test_a_source_spread_over_instances_is_refused_within_one_step_per_instance(make_store, store_kind):
    limits = RateLimits(login_start=Limit(4000, 60), token=OFF, client_auth_failures=OFF)   # step 4
    instances = [RateLimiter(make_store(), limits, Sources(KEY), clock=lambda: NOW) for _ in range(3)]
    admitted = 0
    try:
        for n in range(6000):
            instances[n % 3].login_start({"REMOTE_ADDR": "203.0.113.9"})
            admitted += 1
    except LoginStartsLimited:
        pass
    assert 4000 - 3 * 3 <= admitted <= 4000 + 3 * 3   # each instance may hold back step - 1 events
    for limiter in instances:                          # and once over, every instance refuses
        with pytest.raises(LoginStartsLimited):
            for _ in range(4):
                limiter.login_start({"REMOTE_ADDR": "203.0.113.9"})


def test_token_counts_go_with_the_lock_check_and_a_lock_still_refuses_at_once(redis_store):
    store = Counting(redis_store)
    limiter = RateLimiter(store, RateLimits(login_start=OFF, token=Limit(4000, 60), client_auth_failures=Limit(1, 60)),
                          Sources(KEY), clock=lambda: NOW)

    def token(source="198.51.100.1"):
        limiter.authenticated("svc", secret=True, token=True, remote_addr=source, forwarded_for=None)

    for _ in range(8):
        token()
    assert store.incrs == [4, 4] and store.gets == 6   # every request reads the lock; every 4th counts too
    limiter.failed_secret("svc", "198.51.100.1", None)
    with pytest.raises(OAuthError, match="failed authentications"):
        limiter.failed_secret("svc", "198.51.100.1", None)
    with pytest.raises(OAuthError, match="failed authentications"):
        token()                                        # the right secret, while locked: not a step later
    token("198.51.100.7")                              # another source


def test_a_count_that_cannot_be_sent_fails_open_and_a_lock_check_fails_closed():
    class Away:
        def incr(self, *args):
            raise StoreError("away")

        incr_and_get = incr
        get = incr

    limiter = RateLimiter(Away(), RateLimits(login_start=Limit(1, 60), token=Limit(1, 60),
                                             client_auth_failures=Limit(1, 60)), Sources(KEY), clock=lambda: NOW)
    limiter.login_start({"REMOTE_ADDR": "198.51.100.1"})
    limiter.login_start({"REMOTE_ADDR": "198.51.100.1"})   # not counted: let through
    limiter.authenticated("svc", secret=False, token=True, remote_addr="198.51.100.1", forwarded_for=None)
    with pytest.raises(StoreError):
        limiter.authenticated("svc", secret=True, token=True, remote_addr="198.51.100.1", forwarded_for=None)
