"""The Sentinel and Cluster URL formats (docs/operations.md): what they give, and clear refusals."""

from __future__ import annotations

import pytest

from broker.store import cluster, sentinel, slots


def test_a_sentinel_url_names_sentinels_service_db_and_options():
    spec = sentinel.parse("redis+sentinel://broker:s%40cret@10.0.0.1:26379,[::1]:26380/mymaster/3"
                          "?replicas=2&wait_ms=250&sentinel_password=x")
    assert spec.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (spec.service, spec.db, spec.username, spec.password) == ("mymaster", 3, "broker", "s@cret")
    assert (spec.replicas, spec.wait_ms, spec.sentinel_password, spec.tls) == (2, 250, "x", False)
    plain = sentinel.parse("rediss+sentinel://h:26379/svc")
    assert (plain.db, plain.replicas, plain.wait_ms, plain.tls, plain.password) == (0, 1, 500, True, None)


@pytest.mark.parametrize(("url", "why"), [
    ("redis+sentinel://h:26379", "/<service_name>"),
    ("redis+sentinel://h:26379/svc/x", "database must be a number"),
    ("redis+sentinel://h/svc", "not host:port"),
    ("redis+sentinel://u:topsecret@h:x/svc", "not host:port"),
    ("redis+sentinel://h:26379/svc?wait_ms=5000", "wait_ms"),
    ("redis+sentinel://h:26379/svc?replicas=-1", "replicas"),
    ("redis://h:6379/0", "not a sentinel URL"),
])
def test_a_bad_sentinel_url_is_refused_saying_why(url, why):
    with pytest.raises(ValueError, match=why) as refused:
        sentinel.parse(url)
    assert "topsecret" not in str(refused.value)


def test_a_cluster_url_names_startup_nodes_and_options():
    options = cluster.parse("rediss+cluster://u:p@a:7000,b:7001?replicas=0&wait_ms=100")
    assert [(n.host, n.port) for n in options["startup_nodes"]] == [("a", 7000), ("b", 7001)]
    assert (options["username"], options["password"], options["ssl"]) == ("u", "p", True)
    assert (options["replicas"], options["wait_ms"]) == (0, 100)
    for bad, why in (("redis+cluster://a:7000/1", "no path"), ("redis+cluster://a", "not host:port"),
                     ("redis+cluster://a:1?wait_ms=2000", "wait_ms")):
        with pytest.raises(ValueError, match=why):
            cluster.parse(bad)


def test_keys_sent_together_must_share_a_slot():
    tag = slots.new_tag()
    code = slots.with_tag(tag, "random")
    assert slots.tag_of(code) == tag and slots.key("tok:code:", tag, "h") == f"tok:code:{{{tag}}}h"
    assert cluster.slot_of((("SET", f"p:{{{tag}}}a", "1"), ("GET", f"p:{{{tag}}}b"), ("WAIT", 1, 5))) is not None
    assert cluster.slot_of((("PING",),)) is None
    with pytest.raises(slots.CrossSlot):
        cluster.slot_of((("MGET", "p:{a}1", "p:{b}1"),))
    with pytest.raises(slots.CrossSlot):   # EVAL's keys are counted, its arguments are not
        cluster.slot_of((("EVAL", "script", 2, "p:{a}1", "p:{b}1"),))
    assert cluster.slot_of((("EVAL", "script", 1, "p:{a}1", "p:{b}not-a-key"),)) is not None


@pytest.mark.parametrize("value", ["", "x", "nothex12~abc", "0123456~x", "0123456789~x", "01234567.x", None])
def test_a_value_without_a_well_formed_tag_keeps_its_untagged_key(value):
    assert slots.tag_of(value) == ""
    assert slots.key("tok:rt:", slots.tag_of(value), "h") == "tok:rt:h"


@pytest.mark.parametrize("prefix", ["digione{x}:", "dig{", "a{}:", "a}:"])
def test_a_cluster_refuses_a_key_prefix_with_a_brace_before_connecting(prefix):
    """``dig{`` would make ``dig{sso:{t}…`` and ``dig{tok:code:{t}…`` hash ``sso:{t`` and ``tok:code:{t``:
    a login's keys in different slots, every login a CrossSlot."""
    with pytest.raises(ValueError, match="BROKER_REDIS_PREFIX.*no \\{ or \\}"):
        cluster.ClusterStore.from_url("redis+cluster://127.0.0.1:1", prefix=prefix)   # nothing listens there
    cluster.check_prefix("digione:")
