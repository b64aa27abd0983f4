"""The audit buffer and flusher on a real Redis (and memory) and real SQLite and PostgreSQL.

Records are made by :class:`ReleaseAudit` from canonical identities, as the login path makes
them; the database is "away" as a real engine on a port nobody listens on (connection
refused), then back as the real one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading

import pytest
import sqlalchemy as sa

from broker.audit import AuditBuffer, AuditFlusher, AuditLog, ReleaseAudit
from broker.audit.buffer import BUFFER, CLAIMED
from broker.audit.flusher import DROPPED_LOCK, PURGE_LOCK
from broker.audit.records import Release
from broker.audit.storage import ReleaseQuery
from broker.registry import database as db
from broker.registry.database import open_database
from broker.store import StoreError

KEY = b"k" * 32
IDENTITY = {"user_id": "u-8a9f50bb", "tenant": "vantaa", "given_name": "Aino",
            "schools": [{"code": "90921", "oid": "1.2.246.562.10.1"}],
            "roles": [{"role": "learner", "code": 1, "school": "90921"}, {"role": "teacher", "code": 2,
                                                                          "school": "90922"}]}
SINCE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: float = 1_770_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(database_url):
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def _audit(store, clock, limit=10_000):
    return ReleaseAudit(AuditBuffer(store, limit=limit), KEY, correlation_id=lambda: "c0ffee", clock=clock)


def _flusher(store, log, clock, limit=10_000, **kwargs):
    kwargs = {"retention_days": 30, "batch": 4, "lease": 60.0, **kwargs}
    return AuditFlusher(AuditBuffer(store, limit=limit), log, clock=clock, **kwargs)


def _rows(engine, table):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def _push(audit, n, service="svc-a"):
    for _ in range(n):
        audit.record(audit.oidc(service, IDENTITY, ["roles", "role_assignments", "given_name"],
                                ["roles", "role_assignments"]))


def test_records_reach_the_database_once_with_names_schools_and_a_reference(store, engine):
    clock = Clock()
    audit, log = _audit(store, clock), AuditLog(engine)
    _push(audit, 3)
    audit.saml("https://sp.example/sp", IDENTITY, ["urn:mpass.id:role", "urn:oid:2.5.4.42"])
    flusher = _flusher(store, log, clock)
    assert flusher.run_once() == 4
    assert flusher.run_once() == 0
    releases = _rows(engine, db.audit_releases)
    assert len(releases) == 4 and len({r["id"] for r in releases}) == 4
    oidc = [r for r in releases if r["protocol"] == "oidc"]
    assert json.loads(oidc[0]["released"]) == ["given_name", "role_assignments", "roles", "sub"]
    saml = next(r for r in releases if r["protocol"] == "saml")
    assert json.loads(saml["released"]) == ["NameID", "urn:mpass.id:role", "urn:oid:2.5.4.42"]
    assert {r["subject_ref"] for r in releases} == {audit.prepare(protocol="oidc", service="x", identity=IDENTITY,
                                                                  released=())["ref"]}
    assert all(r["correlation_id"] == "c0ffee" and r["tenant"] == "vantaa" for r in releases)
    assert sorted((s["school"]) for s in _rows(engine, db.audit_release_schools)) == ["90921"] * 4 + ["90922"] * 4
    dump = repr(releases) + repr(_rows(engine, db.audit_release_schools))
    assert "u-8a9f50bb" not in dump and "Aino" not in dump
    assert store.set_size(BUFFER) == 0 and store.zset_claim(CLAIMED, max_score=2**40, count=10, new_score=0) == []


def test_database_away_keeps_records_buffered_then_flushes_each_once(store, engine, caplog):
    clock = Clock()
    audit = _audit(store, clock)
    _push(audit, 10)
    away = AuditLog(sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", pool_pre_ping=True))
    down = _flusher(store, away, clock)
    for _ in range(3):
        with pytest.raises(sa.exc.OperationalError):
            down.run_once()
        clock.now += 1
    # Nothing lost: the claims were handed back, due at once (claimed) or never taken (buffer).
    due = store.zset_claim(CLAIMED, max_score=clock.now, count=100, new_score=clock.now)  # re-scored in place
    assert len(due) + store.set_size(BUFFER) == 10
    back = _flusher(store, AuditLog(engine), clock)
    assert back.run_once() == 10
    assert len(_rows(engine, db.audit_releases)) == 10
    assert back.run_once() == 0


def test_a_flusher_dying_mid_flush_loses_nothing_and_duplicates_nothing(store, engine):
    clock = Clock()
    audit, log = _audit(store, clock), AuditLog(engine)
    _push(audit, 6)
    buffer = AuditBuffer(store, limit=10_000)
    taken = buffer.claim(4, now=clock.now, lease=60)      # a worker claims four ...
    log.write_releases([Release.from_wire(m) for m in taken[:2]])   # ... writes two, dies before settling
    other = _flusher(store, log, clock, batch=10)
    assert other.run_once() == 2                          # the two it never claimed
    clock.now += 61                                       # the dead worker's claims lapse
    assert other.run_once() == 4                          # written again: the two known ids are ignored
    assert len(_rows(engine, db.audit_releases)) == 6
    assert len(_rows(engine, db.audit_release_schools)) == 12


def test_the_bound_refuses_records_past_it_and_one_flusher_says_how_many(store, engine, caplog):
    clock = Clock()
    audit = _audit(store, clock, limit=5)
    _push(audit, 12)
    assert store.set_size(BUFFER) == 5
    flushers = [_flusher(store, AuditLog(engine), clock, limit=5) for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger="broker.audit"):
        assert [f.report_dropped() for f in flushers] == [7, 0, 0]   # one line for the deployment
    assert caplog.text.count("audit records dropped count=7 reason=buffer_full max_buffered=5") == 1
    assert all(r.levelname == "WARNING" for r in caplog.records)
    assert "u-8a9f50bb" not in caplog.text and "svc-a" not in caplog.text
    store.delete(DROPPED_LOCK)   # the next period
    assert flushers[1].report_dropped() == 0   # the count was taken: never reported twice


def test_malformed_buffered_records_are_discarded_not_retried(store, engine, caplog):
    clock = Clock()
    audit = _audit(store, clock)
    _push(audit, 1)
    for forged in ("not json", json.dumps({"v": 1, "id": "x"}), json.dumps([1]),
                   json.dumps({"v": 1, "id": "a" * 32, "t": 1.0, "ref": "b" * 32, "p": "oidc", "sch": ["9" * 99],
                               "rel": [], "svc": "s", "ten": "t"})):
        store.set_add(BUFFER, forged, 3600)
    flusher = _flusher(store, AuditLog(engine), clock, batch=10)
    with caplog.at_level(logging.ERROR, logger="broker.audit"):
        assert flusher.run_once() == 5
    assert "malformed and discarded count=4" in caplog.text
    assert len(_rows(engine, db.audit_releases)) == 1
    assert flusher.run_once() == 0


def test_retention_purges_old_records_in_batches_and_keeps_recent_ones(store, engine):
    clock = Clock()
    audit, log = _audit(store, clock), AuditLog(engine)
    _push(audit, 5)
    clock.now -= 40 * 86400   # written 40 days ago
    _push(audit, 7, service="svc-old")
    clock.now += 40 * 86400
    log.admin_change("cli:old@host", "stage", ["tenant:vantaa"], version=3)
    _flusher(store, log, clock, retention_days=36500, batch=20).run_once()   # keeps everything
    assert len(_rows(engine, db.audit_releases)) == 12
    before = dt.datetime.fromtimestamp(clock.now - 30 * 86400, dt.UTC)
    assert log.purge(before, batch=3) == 7                 # three batches of 3, 3 and 1
    assert {r["service"] for r in _rows(engine, db.audit_releases)} == {"svc-a"}
    assert len(_rows(engine, db.audit_release_schools)) == 10
    assert len(_rows(engine, db.audit_admin)) == 1   # made now: kept
    # The flusher's own round purges too, once per period for the whole deployment (a store lock).
    clock.now -= 40 * 86400
    _push(audit, 2, service="svc-old")
    clock.now += 40 * 86400
    store.delete(PURGE_LOCK)   # the next period (the first flusher above took this one's lock)
    periodic = _flusher(store, log, clock, retention_days=30)
    periodic.run_once()
    assert {r["service"] for r in _rows(engine, db.audit_releases)} == {"svc-a"}
    assert _flusher(store, log, clock, retention_days=30).purge_once() == 0   # another worker: not its turn


def test_the_query_answers_by_school_service_and_time(store, engine):
    clock = Clock()
    audit, log = _audit(store, clock), AuditLog(engine)
    _push(audit, 2, service="svc-a")
    clock.now += 3600
    _push(audit, 1, service="svc-b")
    _flusher(store, log, clock, batch=50).run_once()
    report = log.report(ReleaseQuery(school="90921", since=SINCE))
    assert [(r["service"], r["releases"], r["subjects"]) for r in report["summary"]] == [("svc-a", 2, 1),
                                                                                       ("svc-b", 1, 1)]
    assert [r["service"] for r in report["releases"]] == ["svc-a", "svc-a", "svc-b"]
    assert report["releases"][0]["schools"] == ["90921", "90922"] and not report["truncated"]
    one = log.report(ReleaseQuery(school="90922", since=SINCE, service="svc-b"))
    assert [r["service"] for r in one["releases"]] == ["svc-b"]
    first_hour = dt.datetime.fromtimestamp(clock.now - 1800, dt.UTC)
    assert len(log.releases(ReleaseQuery(school="90921", since=SINCE, until=first_hour))) == 2
    assert log.releases(ReleaseQuery(school="90921", since=SINCE, tenant="espoo")) == []
    assert log.releases(ReleaseQuery(school="00000", since=SINCE)) == []
    limited = log.report(ReleaseQuery(school="90921", since=SINCE, limit=1))
    assert len(limited["releases"]) == 1 and limited["truncated"]


def test_set_claims_move_members_atomically_between_the_two_keys(store):
    for member in "abcde":
        store.set_add("s", member, 60)
    assert store.set_size("s") == 5
    moved = store.set_claim("s", "z", count=3, score=10.0, ttl=60)
    assert len(moved) == 3 and store.set_size("s") == 2
    assert sorted(store.zset_claim("z", max_score=10.0, count=10, new_score=20.0)) == sorted(moved)
    assert store.set_claim("s", "z", count=0, score=1.0, ttl=60) == []
    assert len(store.set_claim("s", "z", count=5, score=1.0, ttl=60)) == 2 and store.set_size("s") == 0
    assert store.set_claim("missing", "z", count=3, score=1.0, ttl=60) == []
    assert store.set_size("missing") == 0


def test_a_bounded_set_admits_up_to_its_limit_and_counts_the_rest(store):
    assert [store.set_add_bounded("b", m, limit=3, ttl=60, refused="n") for m in "abcde"] == [True] * 3 + [False] * 2
    assert store.set_add_bounded("b", "a", limit=3, ttl=60, refused="n") is True   # there already: not counted
    assert store.set_members("b") == {"a", "b", "c"} and store.take("n") == 2 and store.take("n") is None


# -- the bound is one for the deployment (review finding: each worker enforced its own guess) ------

def test_the_bound_holds_exactly_however_many_workers_push_and_flush_at_once(make_store, caplog):
    limit, workers, each = 40, 8, 15
    stores = [make_store() for _ in range(workers)]   # on Redis: a client (a worker) each, the same keys
    clock = Clock()
    audits = [_audit(s, clock, limit=limit) for s in stores]
    start = threading.Barrier(workers)

    def login_burst(audit):
        start.wait()
        _push(audit, each)

    threads = [threading.Thread(target=login_burst, args=(a,)) for a in audits]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].set_size(BUFFER) == limit   # not one more, not one less: SCARD and SADD in one step
    # Every worker's flusher runs its round at once with the database away: none discards anything.
    away = AuditLog(sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none"))
    flushers = [_flusher(s, away, clock, limit=limit, batch=10) for s in stores]
    failed: list[BaseException] = []

    def round_(flusher):
        start.wait()
        try:
            flusher.run_once()
        except sa.exc.OperationalError as exc:
            failed.append(exc)

    with caplog.at_level(logging.WARNING, logger="broker.audit"):
        threads = [threading.Thread(target=round_, args=(f,)) for f in flushers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failed   # (a flusher that found nothing left to claim did not reach the database)
    claimed = stores[0].zset_claim(CLAIMED, max_score=2**40, count=1000, new_score=0)
    assert len(claimed) + stores[0].set_size(BUFFER) == limit   # every buffered record is still there
    dropped = workers * each - limit
    assert caplog.text.count("audit records dropped") == 1   # one line for the deployment, with the exact count
    assert f"audit records dropped count={dropped} reason=buffer_full max_buffered={limit}" in caplog.text


# -- a record stands only with the login's batch (review finding: a failed batch kept its record) -----

def _release_batch(store, audit, *, fail: bool):
    """What the SAML release step's batch does: the session, the record, the session's service list."""
    with store.batch():
        store.put("session:s1", {"u": "x"}, 60)
        audit.saml("https://sp.example/sp", IDENTITY, ["urn:mpass.id:role"])
        store.set_add("session:s1:svcs", "https://sp.example/sp", 60)
        if fail:
            raise RuntimeError("the step failed after the record was queued")


def test_a_record_is_kept_with_a_batch_that_succeeds(store):
    _release_batch(store, _audit(store, Clock()), fail=False)
    assert store.set_size(BUFFER) == 1


def test_a_step_failing_inside_the_batch_leaves_no_record(store):
    with pytest.raises(RuntimeError):
        _release_batch(store, _audit(store, Clock()), fail=True)
    assert store.set_size(BUFFER) == 0   # memory writes at once: taken back; Redis: never sent


@pytest.mark.parametrize("beside", [False, True], ids=["in-the-batch", "beside-the-batch"])
def test_a_batch_refused_by_redis_leaves_no_record(redis_store, beside):
    """A pipeline is not a transaction: with the service list's key of the wrong type, Redis runs
    the batch's other commands, the record's among them, and answers WRONGTYPE for one; the caller
    answers 503.  The record is taken back.  ``beside``: as on Redis Cluster, where the record is
    sent at once beside the batch (another slot)."""
    redis_store.one_slot_batches = beside
    redis_store.put("session:s1:svcs", "planted: not a set", 60)
    with pytest.raises(StoreError, match="WRONGTYPE"):
        _release_batch(redis_store, _audit(redis_store, Clock()), fail=False)
    assert redis_store.get("session:s1") == {"u": "x"}   # the rest of the batch did run
    assert redis_store.set_size(BUFFER) == 0
    assert redis_store.take("audit:{audit}:refused") is None   # and nothing was counted as dropped
