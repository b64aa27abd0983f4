"""Rate limits over real HTTP, counted in the real Redis and shared by two broker instances.

Login starts per source (``/authorize`` and the SAML SSO endpoints, one counter), token
requests per client and wrong client secrets per client and source, each refused with 429,
``Retry-After`` to the second, the correlation id, and log lines free of addresses; the
limits fail open (login starts, tokens) or closed (client secrets) when their store is away.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError as AuthlibOAuthError
from authlib.integrations.requests_client import OAuth2Session

from broker.demo.servers import free_port
from broker.ratelimit import Limit, RateLimits
from broker.store.redis import RedisStore

pytestmark = pytest.mark.redis

CLIENT = "demo-service-a"
OFF = Limit(0, 1)


def authorize_url(broker_url: str, demo) -> str:
    return (f"{broker_url}/authorize?response_type=code&client_id={CLIENT}&redirect_uri="
            f"{quote(demo.service_urls[0] + '/callback', safe='')}&scope=openid&state=s&nonce=n"
            "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")


def get(url: str, **kwargs) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=10, **kwargs)


def start_behind(broker_url: str, demo, forwarded: str) -> int:
    """The status of a login start that the load balancer (loopback) forwards for ``forwarded``."""
    return get(authorize_url(broker_url, demo), headers={"X-Forwarded-For": forwarded}).status_code


def token(broker_url: str, secret: str, **headers: str) -> requests.Response:
    """A token request with client_secret_basic (RFC 6749 §2.3.1) for a code that does not exist."""
    return requests.post(f"{broker_url}/token", auth=(CLIENT, secret), headers=headers, timeout=10,
                         data={"grant_type": "authorization_code", "code": "no-such-code",
                               "redirect_uri": "https://x.example/cb"})


@pytest.fixture
def counted(monkeypatch):
    """The kinds ``broker.metrics.rate_limited`` is called with."""
    import broker.metrics

    kinds: list[str] = []
    monkeypatch.setattr(broker.metrics, "rate_limited", kinds.append)
    return kinds


def test_login_starts_are_limited_per_source_across_instances(brokers, demo, clock, counted, caplog):
    caplog.set_level(logging.INFO)
    first, second = brokers(RateLimits(login_start=Limit(4, 60), token=OFF, client_auth_failures=OFF), count=2)
    # /authorize and the SAML SSO endpoint count in one counter, on either instance, valid or not.
    assert get(authorize_url(first.url, demo)).status_code == 302
    assert get(authorize_url(second.url, demo)).status_code == 302
    assert get(f"{first.url}/saml2/idp/sso/redirect").status_code == 400    # no SAMLRequest: refused, counted
    assert get(authorize_url(second.url, demo), headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 302

    page = get(authorize_url(first.url, demo), headers={"Accept-Language": "sv"})
    assert page.status_code == 429
    assert page.headers["Retry-After"] == str(60 - 13)     # the window (aligned on the clock) ends in 46.75 s
    assert "text/html" in page.headers["Content-Type"] and 'lang="sv"' in page.text
    assert "Vänta en stund" in page.text
    cid = re.search(r'id="correlation-id">([0-9a-f]{16})<', page.text).group(1)
    assert get(f"{second.url}/saml2/idp/sso/post", headers={"Accept": "application/json"}).status_code == 429
    machine = get(authorize_url(second.url, demo) + "&lang=en", headers={"Accept": "application/json"})
    assert machine.status_code == 429 and machine.headers["Retry-After"] == "47"
    assert machine.json()["error"] == "temporarily_unavailable" and machine.json()["correlation_id"]
    for lang, words in (("fi", "Odota hetki"), ("en", "Wait a moment")):
        assert words in get(authorize_url(first.url, demo) + f"&lang={lang}").text

    # Logged with the correlation id and the source's keyed name, never the address.
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("broker")]
    refused = [line for line in lines if cid in line]
    assert refused and "status=429" in refused[0] and re.search(r"source [0-9a-f]{16}", refused[0])
    assert not any("127.0.0.1" in line or "198.51.100.1" in line for line in lines)
    assert counted == ["login_start"] * 5

    # The token endpoint is not a login start, and the next window lets the source in again.
    assert token(first.url, "wrong").status_code == 401
    clock.now += 47
    assert get(authorize_url(second.url, demo)).status_code == 302


def test_forwarded_for_is_believed_only_from_trusted_proxies(brokers, demo):
    limits = RateLimits(login_start=Limit(2, 60), token=OFF, client_auth_failures=OFF)
    # No trusted proxy: X-Forwarded-For is the attacker's text; every request counts as the peer's.
    (direct,) = brokers(limits)
    statuses = [get(authorize_url(direct.url, demo), headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                for i in range(3)]
    assert statuses == [302, 302, 429]


def test_a_trusted_proxy_names_the_client_and_the_client_cannot_pick_its_key(brokers, demo):
    limits = RateLimits(login_start=Limit(2, 60), token=OFF, client_auth_failures=OFF)
    (behind,) = brokers(limits, trusted="127.0.0.1/32, 10.0.0.0/8")   # loopback plays the load balancer

    def start(forwarded: str) -> int:
        return start_behind(behind.url, demo, forwarded)

    assert [start("203.0.113.7") for _ in range(3)] == [302, 302, 429]
    # The attacker at 203.0.113.7 writes another address in front: the proxy appends the real one.
    assert start("198.51.100.9, 203.0.113.7") == 429
    assert start("198.51.100.9, 203.0.113.7, 10.1.2.3") == 429      # through two of our proxies
    # Another school behind the same load balancer has its own count.
    assert start("198.51.100.9") == 302
    # IPv6: one subscriber's /64 is one source.
    assert [start(f"2001:db8:1:2::{i}") for i in (1, 2, 3)] == [302, 302, 429]
    assert start("2001:db8:1:3::1") == 302


def test_a_client_is_one_source_whatever_port_the_load_balancer_names(brokers, demo):
    """Azure Application Gateway forwards ``ip:port``; each new connection of a client has a new port."""
    limits = RateLimits(login_start=Limit(2, 60), token=OFF, client_auth_failures=OFF)
    (behind,) = brokers(limits, trusted="127.0.0.1/32, 10.0.0.0/8")

    def start(forwarded: str) -> int:
        return start_behind(behind.url, demo, forwarded)

    assert [start("203.0.113.7:51234"), start("203.0.113.7:51235"), start("203.0.113.7")] == [302, 302, 429]
    assert [start("[2001:db8:1:2::1]:443"), start("[2001:db8:1:2::1]:444, 10.0.0.2:8080"),
            start("[2001:db8:1:2::1]")] == [302, 302, 429]
    # Not an address (a port out of range, a bracketed IPv4): the load balancer itself is counted.
    assert [start("198.51.100.9:99999"), start("[198.51.100.9]:80")] == [302, 302]
    assert get(authorize_url(behind.url, demo)).status_code == 429     # loopback, the peer: its third start
    assert start("198.51.100.9") == 302                                  # the client named by neither


def test_token_requests_are_limited_per_client_across_instances(brokers, demo, clock, counted):
    first, second = brokers(RateLimits(login_start=OFF, token=Limit(3, 60), client_auth_failures=OFF), count=2)
    secret = demo._secret(CLIENT)
    # A real OAuth client library (client_secret_basic): the code is unknown, the request is counted.
    oauth = OAuth2Session(CLIENT, secret, token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(AuthlibOAuthError) as refused:
        oauth.fetch_token(f"{first.url}/token", grant_type="authorization_code", code="no-such-code",
                          redirect_uri="https://x.example/cb")
    assert refused.value.error == "invalid_grant"
    assert token(second.url, secret).status_code == 400
    assert token(first.url, secret).status_code == 400
    # Unauthenticated requests naming the client do not spend its budget.
    assert token(second.url, "wrong").status_code == 401

    limited = token(second.url, secret)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "47"
    body = limited.json()
    assert body["error"] == "temporarily_unavailable" and body["correlation_id"]
    assert limited.headers["Cache-Control"] == "no-store"
    with pytest.raises(AuthlibOAuthError) as refused:
        oauth.fetch_token(f"{first.url}/token", grant_type="authorization_code", code="no-such-code",
                          redirect_uri="https://x.example/cb")
    assert refused.value.error == "temporarily_unavailable"
    assert counted == ["token", "token"]

    clock.now = clock.epoch + 60   # the next window
    assert token(first.url, secret).status_code == 400


def test_wrong_secrets_lock_the_client_from_that_source_only(brokers, demo, clock, counted):
    first, second = brokers(RateLimits(login_start=OFF, token=OFF, client_auth_failures=Limit(3, 300)),
                            count=2, trusted="127.0.0.1/32")
    secret = demo._secret(CLIENT)
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    assert [token(b.url, f"guess-{i}", **attacker).status_code
            for i, b in enumerate((first, second, first))] == [401, 401, 401]
    guessed = token(second.url, "guess-3", **attacker)
    assert guessed.status_code == 429 and guessed.headers["Retry-After"] == str(300 - 13)
    # While locked, the right secret gets the very same answer: the brute force learns nothing.
    right = token(first.url, secret, **attacker)
    assert right.status_code == 429 and right.json()["error"] == guessed.json()["error"]
    assert right.headers["Retry-After"] == guessed.headers["Retry-After"]
    # The service's own servers, elsewhere, are not locked out by the attacker.
    assert token(second.url, secret, **{"X-Forwarded-For": "192.0.2.10"}).status_code == 400
    assert counted == ["client_auth", "client_auth"]

    clock.now = clock.epoch + 300   # the window is over: the source may try again
    assert token(first.url, secret, **attacker).status_code == 400
    # Every key carries its TTL: nothing of the limiter stays in Redis past its window.
    keys = list(brokers.redis.scan_iter(match=brokers.prefix + "rl:*"))
    assert keys and all(0 < brokers.redis.ttl(key) <= 301 for key in keys)
    assert not any(b"203.0.113" in key or b"192.0.2" in key for key in keys)


def test_store_unreachable_login_starts_fail_open_client_secrets_fail_closed(brokers, demo, caplog):
    caplog.set_level(logging.WARNING)
    (broker,) = brokers(RateLimits(login_start=Limit(1, 60), token=Limit(1, 60), client_auth_failures=Limit(1, 60)))
    nowhere = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")   # nothing listens there
    broker.app.proxy.limiter.store = nowhere
    try:
        # The login goes on to the city page although the limiter cannot count.
        assert [get(authorize_url(broker.url, demo)).status_code for _ in range(3)] == [302, 302, 302]
        assert any("rate limit not counted" in r.getMessage() for r in caplog.records)
        # Whether the client is locked cannot be known: no secret is checked against the clock.
        answer = token(broker.url, demo._secret(CLIENT))
        assert answer.status_code == 503 and answer.json()["error"] == "temporarily_unavailable"
    finally:
        nowhere.close()


def test_a_saml_service_providers_login_starts_count_with_the_oidc_ones(brokers, demo, clock, tmp_path):
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.client import Saml2Client
    from saml2.config import SPConfig
    from saml2.metadata import create_metadata_string

    from broker.pki import ensure_keypair
    from broker.registry.relying_parties import ReleasePolicy

    (broker,) = brokers(RateLimits(login_start=Limit(3, 60), token=OFF, client_auth_failures=OFF))
    # A stock pysaml2 service provider, registered with the broker by its metadata.
    entity_id = "https://ratelimit.sp.example/sp"
    key, cert = ensure_keypair(tmp_path, "sp", common_name=entity_id)
    config = SPConfig().load({
        "entityid": entity_id, "key_file": str(key), "cert_file": str(cert),
        "metadata": {"inline": [requests.get(f"{broker.url}/saml2/idp/metadata", timeout=10).text]},
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [
            ("https://ratelimit.sp.example/acs", BINDING_HTTP_POST)]}}}})
    broker.app.registry_service.register_sp(create_metadata_string(None, config=config).decode(),
                                            name="ratelimit-sp", by="test",
                                            policy=ReleasePolicy(scopes=("openid",), profile="mpassid"))
    assert broker.app.rebuild()
    broker.app.proxy.limiter.clock = clock
    sp = Saml2Client(config)

    def saml_start() -> requests.Response:
        _, info = sp.prepare_for_authenticate(entityid=f"{demo.broker_url}/saml2/idp/metadata",
                                              binding=BINDING_HTTP_REDIRECT)
        return get(dict(info["headers"])["Location"].replace(demo.broker_url, broker.url))

    first = saml_start()
    assert first.status_code in (302, 303) and "/disco" in first.headers["Location"]   # on to the city page
    assert get(authorize_url(broker.url, demo)).status_code == 302
    assert saml_start().status_code in (302, 303)
    refused = saml_start()
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "47"
    assert 'id="correlation-id"' in refused.text


def test_refusals_reach_the_prometheus_counter_by_kind(brokers, demo):
    """Without a stand-in: a refused login start moves ``digione_rate_limited_total{kind="login_start"}`` by one."""
    from prometheus_client import REGISTRY

    def count(kind: str) -> float:
        return REGISTRY.get_sample_value("digione_rate_limited_total", {"kind": kind}) or 0.0

    (broker,) = brokers(RateLimits(login_start=Limit(1, 60), token=OFF, client_auth_failures=OFF))
    before = {kind: count(kind) for kind in ("login_start", "token", "client_auth")}
    assert get(authorize_url(broker.url, demo)).status_code == 302
    assert get(authorize_url(broker.url, demo)).status_code == 429
    assert count("login_start") == before["login_start"] + 1
    assert count("token") == before["token"] and count("client_auth") == before["client_auth"]
