"""A locked client's lock is read beside the code it redeems, and judged before any other answer.

The rate limiter hands the token endpoint its lock check unread (broker.ratelimit.limits.LockGate);
the grant reads it in the round trip that takes the code or refresh token. A locked client must
get 429 whatever else is wrong or right with its request: a 400 or a token would tell a guesser
that its secret was right. A code taken in that round trip is put back: the lock spends nothing.
"""

from __future__ import annotations

import requests
from authlib.common.security import generate_token
from tokens_env import rebuild
from tokens_rp import authorize, session

from broker.ratelimit import Limit, RateLimits
from broker.ratelimit.config import parse_networks
from broker.ratelimit.limits import RateLimiter
from broker.ratelimit.source import Sources

OFF = Limit(0, 1)


def _post(env, data, *, secret, source):
    return requests.post(env.url("token"), data=data, auth=("rp1", secret), timeout=5,
                         headers={"X-Forwarded-For": source})


def test_a_locked_client_gets_429_first_and_its_code_is_not_spent(env, server):
    limiter = RateLimiter(env.store, RateLimits(login_start=OFF, token=Limit(100_000, 60),
                                                client_auth_failures=Limit(1, 300)),
                          Sources(b"k" * 32, trusted_proxies=parse_networks("127.0.0.1/32", "t")), clock=env.clock)
    rebuild(env, server, limiter=limiter)
    secret = env.clients["rp1"].secret
    s = session(env, "rp1")
    verifier = generate_token(48)
    _, query = authorize(env, s, nonce="n", code_verifier=verifier)
    redeem = {"grant_type": "authorization_code", "code": query["code"], "code_verifier": verifier,
              "redirect_uri": env.clients["rp1"].redirect_uri}
    attacker = "203.0.113.66"
    assert [_post(env, redeem, secret=f"guess-{n}", source=attacker).status_code for n in range(2)] == [401, 429]

    for data in (redeem,                                                     # the right secret and a good code
                 {**redeem, "code": "no-such-code"},                          # an unknown code
                 {**redeem, "grant_type": "password"},                        # a grant it may not use
                 {"grant_type": "refresh_token", "refresh_token": "nope"}):   # a refresh token that is none
        locked = _post(env, data, secret=secret, source=attacker)
        assert locked.status_code == 429, (data, locked.text)
        assert locked.json()["error"] == "temporarily_unavailable"

    # The code was taken beside the lock and put back: the service's own server redeems it.
    tokens = _post(env, redeem, secret=secret, source="198.51.100.10")
    assert tokens.status_code == 200 and tokens.json()["access_token"]
    assert _post(env, redeem, secret=secret, source="198.51.100.10").json()["error"] == "invalid_grant"   # spent now
