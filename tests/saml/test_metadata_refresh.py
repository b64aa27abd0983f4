"""IdP metadata by URL: pinned signers (one pin or up to three, for a rollover), kept current in the
background (cacheDuration, validUntil, bounds, backoff), never an expired or unpinned document, the
last good copy kept through every failure, and one fetch for all instances sharing the store.

The documents are real (pysaml2 writes and signs them, ``signed_metadata``) and are served over HTTP
by a local server that counts its requests; the refresher's clock is the ``now`` each test passes.
"""

from __future__ import annotations

import datetime
import logging
import time

import pytest
import requests
from lxml import etree
from signed_metadata import ENTITY, MetadataHost, metadata, sign, signed_metadata, signer

from broker.saml.metadata import (
    MetadataRejected,
    MetadataUnavailable,
    check_pinned,
    parse_duration,
    pinned_metadata,
    verify_pinned,
)
from broker.saml.metadata_refresh import (
    DEFAULT_POLICY,
    MetadataRefresher,
    MetadataRefreshThread,
    PinnedSource,
    current_document,
    display_url,
)


def _iso(seconds_from_now: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds_from_now)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("signers")
    return {name: signer(directory, name) for name in ("old", "new", "attacker")}


@pytest.fixture
def host():
    server = MetadataHost()
    yield server
    server.close()


def _source(host, keys, *pins: str) -> PinnedSource:
    return PinnedSource(idp="vantaa/koulu", url=host.url, pins=pins or (keys["old"].pin, keys["new"].pin),
                        entity_id=ENTITY)


def _refresher(source, store, **kwargs) -> MetadataRefresher:
    return MetadataRefresher([source], store, http=requests.Session(), **kwargs)


# -- pins -------------------------------------------------------------------------------------------

def test_any_of_the_pins_signs_and_nothing_else_does(keys):
    old, new, attacker = keys["old"], keys["new"], keys["attacker"]
    pins = [old.pin, new.pin_with_colons]          # as a tenant file may write them
    for by in (old, new):
        document = check_pinned(signed_metadata(by), pins, entity_id=ENTITY)
        assert document.signer == by.pin
        assert ENTITY in verify_pinned(signed_metadata(by), pins)
    with pytest.raises(MetadataRejected, match="none of the pinned"):
        check_pinned(signed_metadata(attacker), pins)
    assert ENTITY in verify_pinned(signed_metadata(old), old.pin), "one pin, as a string, still works"
    with pytest.raises(MetadataRejected, match="none of the pinned"):
        verify_pinned(signed_metadata(new), old.pin)


def test_a_pinned_certificate_in_keyinfo_does_not_make_another_key_trusted(keys):
    """The attacker signs with their key and names the pinned certificate in KeyInfo: the signature
    is checked with the pinned certificate's key, and fails."""
    old, attacker = keys["old"], keys["attacker"]
    forged = signed_metadata(attacker, sso="https://evil.example/sso").replace(
        _body(attacker.cert), _body(old.cert))
    assert _body(old.cert) in forged
    with pytest.raises(MetadataRejected, match="signature check failed"):
        check_pinned(forged, [old.pin])


def _body(cert) -> bytes:
    return "".join(line for line in cert.read_text().splitlines() if "-----" not in line).encode()


@pytest.mark.parametrize("change", ["tampered", "unsigned", "other-entity", "expired", "bad-validuntil"])
def test_refused_documents(keys, change):
    old = keys["old"]
    xml = {
        "tampered": signed_metadata(old).replace(b"https://idp.city.example/sso", b"https://evil.example/sso"),
        "unsigned": str(metadata([old.cert])).encode(),
        "other-entity": signed_metadata(old, entity_id="https://other.example/idp"),
        "expired": signed_metadata(old, valid_until=_iso(-60)),
        "bad-validuntil": signed_metadata(old, valid_until="next tuesday"),
    }[change]
    with pytest.raises(MetadataRejected):
        check_pinned(xml, [old.pin], entity_id=ENTITY)


def test_a_signed_document_must_pass_the_checks_a_metadata_file_gets(keys):
    old = keys["old"]
    descriptor = metadata([old.cert])
    descriptor.idpsso_descriptor.single_sign_on_service = []
    with pytest.raises(MetadataRejected, match="SingleSignOnService"):
        check_pinned(sign(descriptor, old), [old.pin], entity_id=ENTITY)


@pytest.mark.parametrize("text,seconds", [
    ("PT1H", 3600), ("PT30M", 1800), ("PT90.5S", 90.5), ("P1D", 86400), ("P1DT2H", 93600), ("P1W", 604800),
    ("P1Y", 365 * 86400), ("P2M", 60 * 86400), ("-PT1H", None), ("P", None), ("PT", None), ("1H", None),
    ("P1DT", None), ("PT1H30", None),
])
def test_cache_duration_is_an_iso_8601_duration(text, seconds):
    assert parse_duration(text) == seconds


# -- when a document is fetched ----------------------------------------------------------------------

@pytest.mark.parametrize("cache_duration,interval", [
    ("PT2H", 7200),        # as the document says
    (None, 3600),          # the default
    ("PT1M", 300),         # never more often than every five minutes
    ("P7D", 86400),        # never less often than daily
])
def test_the_next_refresh_honours_cache_duration_within_bounds(keys, host, store, cache_duration, interval):
    host.serve(signed_metadata(keys["old"], cache_duration=cache_duration))
    now = time.time()
    source = _source(host, keys)
    current_document(source, store=store, http=requests.Session(), now=now)        # the build
    assert host.hits == 1
    refresher = _refresher(source, store)
    refresher.prime(now)
    assert refresher.refresh_due(now + interval - 1) is False and host.hits == 1, "not due yet: no fetch"
    assert current_document(source, store=store, http=requests.Session(), now=now + interval - 1)
    assert host.hits == 1, "a rebuild before the refresh is due reads the stored copy"
    assert refresher.refresh_due(now + interval + 1) is False, "fetched again, the same document"
    assert host.hits == 2
    assert refresher.status()[0].next_refresh_at == pytest.approx(now + interval + 1 + interval)


def test_refreshed_before_valid_until(keys, host, store):
    host.serve(signed_metadata(keys["old"], cache_duration="PT6H", valid_until=_iso(3600)))
    now = time.time()
    source = _source(host, keys)
    current_document(source, store=store, http=requests.Session(), now=now)
    refresher = _refresher(source, store)
    refresher.refresh_due(now)
    (status,) = refresher.status()
    assert status.valid_until == pytest.approx(now + 3600, abs=2)
    assert status.next_refresh_at == pytest.approx(now + 3600 - DEFAULT_POLICY.min_interval, abs=2)


def test_a_changed_document_is_reported_once_and_used_by_the_rebuild(keys, host, store):
    old, new = keys["old"], keys["new"]
    first = signed_metadata(old)
    host.serve(first)
    now = time.time()
    source = _source(host, keys)
    assert current_document(source, store=store, http=requests.Session(), now=now).xml == first.decode()
    refresher = _refresher(source, store)
    refresher.prime(now)
    # The city adds its next signing certificate, and signs with the new key.
    second = signed_metadata(new, [old.cert, new.cert])
    host.serve(second)
    assert refresher.refresh_due(now + 3601) is True
    assert refresher.refresh_due(now + 3602) is False, "reported once"
    hits = host.hits
    assert current_document(source, store=store, http=requests.Session(), now=now + 3603).xml == second.decode()
    assert host.hits == hits, "the rebuild reads what the refresher stored"


@pytest.mark.parametrize("bad", ["down", "http-500", "tampered", "unsigned", "other-key", "expired", "not-xml"])
def test_a_failed_refresh_keeps_the_last_good_copy(keys, host, store, bad, caplog):
    old, attacker = keys["old"], keys["attacker"]
    good = signed_metadata(old)
    host.serve(good)
    now = time.time()
    source = _source(host, keys)
    current_document(source, store=store, http=requests.Session(), now=now)
    refresher = _refresher(source, store)
    refresher.prime(now)
    if bad == "down":
        host.serve(b"", status="503 Service Unavailable")
    elif bad == "http-500":
        host.serve(b"oops", status="500 Internal Server Error")
    else:
        host.serve({
            "tampered": good.replace(b"https://idp.city.example/sso", b"https://evil.example/sso"),
            "unsigned": str(metadata([old.cert, attacker.cert])).encode(),
            "other-key": signed_metadata(attacker, [old.cert, attacker.cert]),   # re-signed by an unpinned key
            "expired": signed_metadata(old, valid_until=_iso(-60)),
            "not-xml": b"<html>maintenance</html",
        }[bad])
    caplog.set_level(logging.INFO, logger="broker.saml.metadata_refresh")
    assert refresher.refresh_due(now + 3601) is False, "nothing changed for the proxy"
    assert current_document(source, store=store, http=requests.Session(), now=now + 3602).xml == good.decode()
    failures = [r.getMessage() for r in caplog.records if "metadata fetch failed" in r.getMessage()]
    assert failures and "using the last good copy" in failures[0] and "vantaa/koulu" in failures[0]
    assert all("s3cret" not in r.getMessage() for r in caplog.records if r.name.startswith("broker")), \
        "the URL's query is never logged"
    assert refresher.status()[0].failures == 1


def test_backoff_doubles_after_failures_up_to_the_cap(keys, host, store):
    host.serve(signed_metadata(keys["old"]))
    now = time.time()
    source = _source(host, keys)
    current_document(source, store=store, http=requests.Session(), now=now)
    refresher = _refresher(source, store)
    host.serve(b"", status="503 Service Unavailable")
    at = now + 3600
    delays = []
    for _ in range(6):
        refresher.refresh_due(at)
        (status,) = refresher.status()
        delays.append(round(status.next_refresh_at - at))
        at = status.next_refresh_at
    assert delays == [300, 600, 1200, 2400, 3600, 3600]
    hits = host.hits
    refresher.refresh_due(at - 1)
    assert host.hits == hits, "no fetch before the backoff is over"
    host.serve(signed_metadata(keys["old"]))
    refresher.refresh_due(at)
    (status,) = refresher.status()
    assert status.failures == 0 and round(status.next_refresh_at - at) == 3600


def test_an_expired_document_is_never_kept_in_use(keys, host, store):
    host.serve(signed_metadata(keys["old"], valid_until=_iso(1800)))
    now = time.time()
    source = _source(host, keys)
    current_document(source, store=store, http=requests.Session(), now=now)
    refresher = _refresher(source, store)
    refresher.prime(now)
    host.serve(b"", status="503 Service Unavailable")      # the city's host is down from now on
    assert refresher.refresh_due(now + 1500) is False, "still valid: kept"
    assert refresher.refresh_due(now + 1801) is True, "expired: the proxy must drop it"
    assert refresher.status()[0].digest is None
    with pytest.raises(MetadataUnavailable):
        current_document(source, store=store, http=requests.Session(), now=now + 1802)
    assert refresher.refresh_due(now + 1900) is False, "reported once"
    # The city is back, with a fresh document: in use again.
    host.serve(signed_metadata(keys["old"], valid_until=_iso(86400)))
    assert refresher.refresh_due(now + 7200) is True
    assert current_document(source, store=store, http=requests.Session(), now=now + 7201)


def test_a_retired_pin_makes_the_stored_copy_unusable(keys, host, store):
    """After the rollover the city (or the operator) removes the old pin: a copy the old key signed
    is no longer good, even before it is due for a refresh."""
    old, new = keys["old"], keys["new"]
    host.serve(signed_metadata(old))
    now = time.time()
    current_document(_source(host, keys), store=store, http=requests.Session(), now=now)
    host.serve(signed_metadata(new, [new.cert]))
    only_new = _source(host, keys, new.pin)
    document = current_document(only_new, store=store, http=requests.Session(), now=now + 10)
    assert document.signer == new.pin
    host.serve(b"", status="503 Service Unavailable")
    only_old = _source(host, keys, old.pin)
    with pytest.raises(MetadataUnavailable):
        current_document(only_old, store=store, http=requests.Session(), now=now + 20)


def test_instances_sharing_the_store_fetch_once(keys, host, make_store):
    host.serve(signed_metadata(keys["old"]))
    now = time.time()
    source = _source(host, keys)
    one, two = make_store(), make_store()
    current_document(source, store=one, http=requests.Session(), now=now)
    assert current_document(source, store=two, http=requests.Session(), now=now + 1)
    assert host.hits == 1, "the second instance's build read the copy the first stored"
    first, second = _refresher(source, one), _refresher(source, two)
    first.prime(now)
    second.prime(now)
    host.serve(signed_metadata(keys["new"], [keys["old"].cert, keys["new"].cert]))
    assert first.refresh_due(now + 3601) is True
    assert second.refresh_due(now + 3602) is True, "the other instance sees the new copy and rebuilds"
    assert host.hits == 2, "only one of them fetched"


def test_a_claimed_refresh_is_left_to_the_instance_fetching(keys, host, store):
    host.serve(signed_metadata(keys["old"]))
    now = time.time()
    source = _source(host, keys)
    current_document(source, store=store, http=requests.Session(), now=now)
    store.add(source.claim_key, "another-instance", 60)
    _refresher(source, store).refresh_due(now + 3601)
    assert host.hits == 1


def test_unavailable_without_a_copy_and_without_the_host(keys, host, store):
    host.serve(b"", status="404 Not Found")
    with pytest.raises(MetadataUnavailable) as error:
        current_document(_source(host, keys), store=store, http=requests.Session())
    assert "s3cret" not in str(error.value)


def test_pinned_metadata_keeps_its_signature(keys, host, store):
    """What a build calls (broker.assemble): one pin or several."""
    host.serve(signed_metadata(keys["new"]))
    assert ENTITY in pinned_metadata(host.url, [keys["old"].pin, keys["new"].pin], store=store,
                                     http=requests.Session(), entity_id=ENTITY)


def test_display_url_drops_credentials_and_query():
    assert display_url("https://user:pw@idp.example:8443/md.xml?key=secret#x") == "https://idp.example:8443/md.xml"


# -- the thread -----------------------------------------------------------------------------------------

def test_the_thread_calls_on_change_and_retries_a_failed_rebuild():
    answers = iter([False, True, False, False])
    calls = []

    def on_change():
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the registry on disk is broken right now")

    clock = iter(range(1000, 2000, 10))
    thread = MetadataRefreshThread(lambda now: next(answers), on_change, clock=lambda: next(clock))
    assert thread.run_once() is False and calls == []
    assert thread.run_once() is False and calls == [0], "changed, the rebuild failed"
    assert thread.run_once() is True and calls == [0, 1], "retried at the next tick"
    assert thread.run_once() is False and calls == [0, 1]


def test_the_thread_survives_a_failing_refresh_and_runs_daily_work():
    now = [0.0]
    daily = []

    def refresh(at):
        raise RuntimeError("unexpected")

    thread = MetadataRefreshThread(refresh, lambda: None, clock=lambda: now[0], daily=lambda: daily.append(now[0]),
                                   daily_every=100)
    thread.run_once()
    assert daily == [], "the build logged at start"
    now[0] = 100
    thread.run_once()
    now[0] = 150
    thread.run_once()
    assert daily == [100]


def test_the_thread_starts_and_stops(keys, host, store):
    host.serve(signed_metadata(keys["old"]))
    source = _source(host, keys)
    refresher = _refresher(source, store)
    thread = MetadataRefreshThread(refresher, lambda: None, interval=0.05)
    thread.start()
    deadline = time.monotonic() + 10
    while host.hits == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    thread.stop()
    assert host.hits == 1, "fetched once (no copy yet), then not due"
    assert etree.fromstring(store.get(source.copy_key).encode()).get("entityID") == ENTITY


def test_one_citys_unexpected_failure_does_not_hold_up_the_others(keys, store, monkeypatch, caplog):
    import broker.saml.metadata_refresh as refresh

    hosts = [MetadataHost(signed_metadata(keys["old"])), MetadataHost(signed_metadata(keys["old"]))]
    try:
        sources = [PinnedSource(idp=f"city{i}/koulu", url=host.url, pins=(keys["old"].pin,), entity_id=ENTITY)
                   for i, host in enumerate(hosts)]
        real = refresh._fetch_and_check

        def fetch(source, *args):
            if source is sources[0]:
                raise RuntimeError("a bug")
            return real(source, *args)

        monkeypatch.setattr(refresh, "_fetch_and_check", fetch)
        refresher = MetadataRefresher(sources, store, http=requests.Session())
        assert refresher.refresh_due(time.time()) is True, "the second city's document, fetched"
        assert [h.hits for h in hosts] == [0, 1]
        assert any("metadata refresh failed idp=city0/koulu" in r.getMessage() for r in caplog.records)
        assert refresh.last_good_copies([_Tenant(sources)], store) == {"city0/koulu": None,
                                                                       "city1/koulu": hosts[1].body.decode()}
    finally:
        for host in hosts:
            host.close()


class _Tenant:
    """Just what pinned_sources reads of a tenant."""

    def __init__(self, sources):
        from types import SimpleNamespace

        self.identity_providers = [
            SimpleNamespace(type="saml", key=s.idp, entity_id=s.entity_id,
                            metadata=SimpleNamespace(url=s.url, signing_cert_sha256=s.pins)) for s in sources]
