"""The parts of the rate limits without HTTP: settings, source addresses, windows on both stores."""

from __future__ import annotations

import ipaddress

import pytest

from broker.ratelimit import Limit, RateLimits, RateLimitSettingError
from broker.ratelimit.config import parse_networks
from broker.ratelimit.limits import LoginStartsLimited, RateLimiter
from broker.ratelimit.source import Sources, forwarded_address
from broker.settings import Settings, SettingsError
from broker.tokens.errors import OAuthError

KEY = b"k" * 32


def test_limits_parse_and_malformed_ones_are_refused_by_name():
    assert Limit.parse("6000/60", "x") == Limit(6000, 60)
    assert Limit.parse({"count": 5, "window": "10s"}, "x") == Limit(5, 10)
    assert not Limit.parse("off", "x").enabled and not Limit.parse(0, "x").enabled
    for bad in ("6000", "a/60", "10/0", "-1/60", "10/100000", 12):
        with pytest.raises(RateLimitSettingError, match="rate_limits.token"):
            Limit.parse(bad, "rate_limits.token")
    with pytest.raises(RateLimitSettingError, match="trusted"):
        parse_networks("10.0.0.0/8, not-a-network", "trusted")


def test_settings_read_yaml_and_the_environment_wins(tmp_path):
    (tmp_path / "broker.yaml").write_text(
        "rate_limits:\n  login_start: 100/10\n  token: 'off'\n  exempt: [192.0.2.0/28]\n"
        "trusted_proxies: [10.0.0.0/8]\n")
    env = {"BROKER_SECRET": "s" * 40, "BROKER_CONFIG_DIR": str(tmp_path), "BROKER_VAR_DIR": str(tmp_path / "var"),
           "BROKER_RATE_LIMIT_CLIENT_AUTH_FAILURES": "5/120"}
    settings = Settings.from_env(env)
    assert settings.rate_limits == RateLimits(login_start=Limit(100, 10), token=Limit(0, 1),
                                              client_auth_failures=Limit(5, 120),
                                              exempt=(ipaddress.ip_network("192.0.2.0/28"),))
    assert settings.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)
    env["BROKER_TRUSTED_PROXIES"] = ""
    assert Settings.from_env(env).trusted_proxies == ()
    defaults = Settings.from_env({**env, "BROKER_CONFIG_DIR": str(tmp_path / "none"),
                                  "BROKER_RATE_LIMIT_CLIENT_AUTH_FAILURES": "20/300"})
    assert defaults.rate_limits == RateLimits() and RateLimits().login_start == Limit(12000, 60)
    with pytest.raises(SettingsError, match="BROKER_RATE_LIMIT_LOGIN_START"):
        Settings.from_env({**env, "BROKER_RATE_LIMIT_LOGIN_START": "lots"})
    (tmp_path / "broker.yaml").write_text("rate_limits:\n  login_starts: 1/1\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.from_env(env)


def test_trusting_every_address_as_a_proxy_is_refused(tmp_path):
    """``0.0.0.0/0`` or ``::/0`` would let any client name the source it is counted as (X-Forwarded-For)."""
    env = {"BROKER_SECRET": "s" * 40, "BROKER_CONFIG_DIR": str(tmp_path), "BROKER_VAR_DIR": str(tmp_path / "var")}
    for everyone in ("0.0.0.0/0", "10.0.0.0/8, ::/0", "0.0.0.0"):
        expect = "would trust every client" if everyone != "0.0.0.0" else None
        if expect is None:   # a single address (0.0.0.0/32) is no wildcard: accepted
            assert Settings.from_env({**env, "BROKER_TRUSTED_PROXIES": everyone}).trusted_proxies
            continue
        with pytest.raises(SettingsError, match="BROKER_TRUSTED_PROXIES: .*would trust every client"):
            Settings.from_env({**env, "BROKER_TRUSTED_PROXIES": everyone})
    (tmp_path / "broker.yaml").write_text("trusted_proxies: ['::/0']\n")
    with pytest.raises(SettingsError, match="trusted_proxies: ::/0 would trust every client"):
        Settings.from_env(env)


def test_sources_believe_forwarded_for_only_from_trusted_peers():
    sources = Sources(KEY, trusted_proxies=parse_networks("10.0.0.0/8, ::1", "t"))
    assert sources.address("203.0.113.1", "198.51.100.1") == "203.0.113.1"   # an untrusted peer
    assert sources.address("10.0.0.1", "198.51.100.1") == "198.51.100.1"
    assert sources.address("10.0.0.1", "6.6.6.6, 198.51.100.1, 10.2.3.4") == "198.51.100.1"
    assert sources.address("10.0.0.1", "junk") == "10.0.0.1"                 # never a text as a key
    assert sources.address("10.0.0.1", "198.51.100.1, junk") == "10.0.0.1"
    assert sources.address("10.0.0.1", "10.9.9.9") == "10.9.9.9"             # all ours: the first hop
    assert sources.address("::1", "2001:db8::5") == "2001:db8::5"
    padded = ", ".join(["10.0.0.9"] * 5000)                                  # never walked to its end
    assert sources.address("10.0.0.1", "6.6.6.6, " + padded) == "10.0.0.9"
    assert sources.address("10.0.0.1", "6.6.6.6, " + padded + ", 198.51.100.1") == "198.51.100.1"
    assert sources.address(None, None) == ""
    assert Sources(KEY).address("10.0.0.1", "198.51.100.1") == "10.0.0.1"    # no proxy is trusted by default


def test_forwarded_entries_with_a_port_name_the_bare_address():
    """``ip:port``, ``[v6]:port`` and ``[v6]`` (Azure Application Gateway, some nginx set-ups)."""
    taken = {"203.0.113.7": "203.0.113.7", " 203.0.113.7:51234 ": "203.0.113.7", "203.0.113.7:65535": "203.0.113.7",
             "2001:DB8::1": "2001:db8::1", "[2001:db8::1]": "2001:db8::1", "[2001:db8::1]:443": "2001:db8::1",
             "[::ffff:198.51.100.1]:1": "::ffff:c633:6401",
             # Unbracketed, a "port" is the last group of an IPv6 address: the same /64, so the same source.
             "2001:db8::1:443": "2001:db8::1:443"}
    assert {entry: forwarded_address(entry) for entry in taken} == taken
    refused = ["", " ", "junk", "host.example:443", "203.0.113.7:", "203.0.113.7:0", "203.0.113.7:65536",
               "203.0.113.7:123456", "203.0.113.7:+80", "203.0.113.7:8_0", "203.0.113.7:\u0668\u0660",
               "203.0.113.7: 80", "203.0.113.7:80:80", "203.0.113.007:80", "[203.0.113.7]", "[203.0.113.7]:80",
               "[2001:db8::1", "[2001:db8::1]:", "[2001:db8::1]x", "[2001:db8::1]:80:80", "[2001:db8::1]80",
               "[[2001:db8::1]]", "[]", "[]:80", ":80", "[junk]:80"]
    assert [entry for entry in refused if forwarded_address(entry) is not None] == []

    sources = Sources(KEY, trusted_proxies=parse_networks("10.0.0.0/8", "t"))
    assert sources.address("10.0.0.1", "203.0.113.7:51234") == "203.0.113.7"
    assert sources.address("10.0.0.1", "[2001:db8::1]:443") == "2001:db8::1"
    assert sources.address("10.0.0.1", "203.0.113.7:51234, 10.0.0.2:8080") == "203.0.113.7"   # a proxy with a port
    assert sources.address("10.0.0.1", "10.0.0.2:8080") == "10.0.0.2"                         # all ours: the first
    assert sources.address("10.0.0.1", "203.0.113.7:99999") == "10.0.0.1"                     # garbage: the peer
    assert sources.address("10.0.0.1", "6.6.6.6:1, [2001:db8::1]:") == "10.0.0.1"
    assert sources.name(sources.address("10.0.0.1", "203.0.113.7:1")) == sources.name("203.0.113.7")


def test_source_names_are_keyed_and_group_an_ipv6_subscriber():
    sources = Sources(KEY)
    name = sources.name("198.51.100.1")
    assert len(name) == 16 and "198" not in name
    assert Sources(b"another key" * 3).name("198.51.100.1") != name
    assert sources.name("::ffff:198.51.100.1") == name
    assert sources.name("2001:db8:1:2::1") == sources.name("2001:db8:1:2:ffff::9")
    assert sources.name("2001:db8:1:2::1") != sources.name("2001:db8:1:3::1")
    exempt = Sources(KEY, exempt=parse_networks("192.0.2.0/28", "e"))
    assert exempt.exempt("192.0.2.3") and not exempt.exempt("192.0.2.17") and not exempt.exempt("::1")


def test_windows_count_and_expire_on_both_stores(store):
    now = [600_000.5]
    limiter = RateLimiter(store, RateLimits(login_start=Limit(2, 60), token=Limit(1, 10),
                                            client_auth_failures=Limit(1, 60)),
                          Sources(KEY), clock=lambda: now[0])
    environ = {"REMOTE_ADDR": "198.51.100.1"}
    limiter.login_start(environ)
    limiter.login_start(environ)
    with pytest.raises(LoginStartsLimited) as refused:
        limiter.login_start(environ)
    assert refused.value.status == 429 and refused.value.headers == (("Retry-After", "60"),)
    limiter.login_start({"REMOTE_ADDR": "198.51.100.2"})     # another source
    now[0] += 59.0
    with pytest.raises(LoginStartsLimited) as refused:
        limiter.login_start(environ)
    assert refused.value.retry_after == 1                  # never 0: the client must wait
    now[0] += 0.5                                          # the next window
    limiter.login_start(environ)

    def authenticated(client: str, source: str = "198.51.100.1", *, secret: bool = True, token: bool = True):
        limiter.authenticated(client, secret=secret, token=token, remote_addr=source, forwarded_for=None)

    authenticated("client-a", secret=False)
    with pytest.raises(OAuthError) as limited:
        authenticated("client-a", secret=False)
    assert limited.value.status == 429 and limited.value.code == "temporarily_unavailable"
    authenticated("client-b")                              # counted with the lock check: one round trip
    with pytest.raises(OAuthError, match="token requests"):
        authenticated("client-b")
    authenticated("client-b", token=False)                 # introspection: not a token request

    authenticated("c", token=False)                        # nothing counted yet
    limiter.failed_secret("c", "198.51.100.1", None)       # one wrong secret: allowed
    authenticated("c", token=False)
    with pytest.raises(OAuthError, match="failed authentications"):
        limiter.failed_secret("c", "198.51.100.1", None)
    with pytest.raises(OAuthError, match="failed authentications"):
        authenticated("c")                                 # the right secret, while locked
    authenticated("c", "198.51.100.9", token=False)        # another source
    authenticated("c", secret=False, token=False)          # a signed assertion is not locked out


def test_limits_that_are_off_never_touch_the_store():
    class NoStore:
        def __getattr__(self, name):
            raise AssertionError(f"store.{name} called")

    off = Limit(0, 1)
    limiter = RateLimiter(NoStore(), RateLimits(login_start=off, token=off, client_auth_failures=off), Sources(KEY))
    limiter.login_start({"REMOTE_ADDR": "198.51.100.1"})
    limiter.authenticated("c", secret=True, token=True, remote_addr="198.51.100.1", forwarded_for=None)
    limiter.failed_secret("c", "198.51.100.1", None)
    exempt = RateLimiter(NoStore(), RateLimits(), Sources(KEY, exempt=parse_networks("198.51.100.0/24", "e")))
    exempt.login_start({"REMOTE_ADDR": "198.51.100.1"})
