"""The soak report's rules (bench/login/soak_report.py), on hand-made timelines: which failures an
event explains, when a run has recovered, and what breaks the run.

The records are timelines (start, end, outcome, instances), not protocol messages: the real
logins are in tests/soak/test_soak.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "bench" / "login" / "soak_report.py"
_SPEC = importlib.util.spec_from_file_location("soak_report_under_test", _PATH)
assert _SPEC and _SPEC.loader
report_rules = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(report_rules)

INSTANCES = ["b1", "b2", "b3"]


def login(index: int, start: float, end: float, ok: bool = True, servers=("b1", "b2", "b3")) -> dict:
    return {"index": index, "upstream": "saml", "scheduled": start, "start": start, "end": end, "ok": ok,
            "servers": list(servers), "error": "" if ok else "LoginFailed: 502"}


def steady(first: int, start: float, stop: float, step: float = 0.1) -> list[dict]:
    out, t, i = [], start, first
    while t < stop:
        out.append(login(i, t, t + 0.05))
        t, i = t + step, i + 1
    return out


KILL = {"kind": "kill", "t": 10.0, "gone": 10.05, "instance": "b2"}
REDIS = {"kind": "redis-restart", "t": 20.0, "up": 21.0}
RESTART = {"kind": "instance-restart", "t": 30.0, "up": 33.0, "instance": "b2"}


def test_a_clean_run_recovers_at_once_and_passes():
    records = steady(0, 0.0, 40.0)
    result = report_rules.analyse(records, [KILL, REDIS, RESTART], t0=0.0, instances=INSTANCES)
    assert result["violations"] == []
    assert result["failed"] == 0 and result["completed"] == len(records)
    kinds = {e["kind"]: e for e in result["events"]}
    assert kinds["kill"]["recovery_s"] < 0.11 and kinds["redis-restart"]["recovery_s"] < 0.11
    assert kinds["instance-restart"]["serving_again_after_s"] < 0.11


def test_failures_in_flight_at_the_kill_and_in_the_redis_outage_are_explained():
    records = steady(0, 0.0, 40.0)
    records.append(login(1000, 9.95, 10.02, ok=False, servers=("b2", "-")))       # in flight on the killed one
    records.append(login(1001, 10.04, 10.06, ok=False, servers=("-",)))           # sent while it was dying
    for k, t in enumerate((20.01, 20.5, 21.2, 21.4)):                             # the outage as logins saw it
        records.append(login(2000 + k, t, t + 0.01, ok=False))
    result = report_rules.analyse(records, [KILL, REDIS, RESTART], t0=0.0, instances=INSTANCES)
    assert result["violations"] == []
    assert result["failed_explained"] == {"kill": 2, "redis-restart": 4}
    redis_row = next(e for e in result["events"] if e["kind"] == "redis-restart")
    assert 1.4 <= redis_row["recovery_s"] <= 1.5 and redis_row["failed"] == 4


def test_a_login_started_after_the_kill_must_not_fail():
    records = steady(0, 0.0, 40.0) + [login(1000, 10.3, 10.4, ok=False)]
    result = report_rules.analyse(records, [KILL, REDIS, RESTART], t0=0.0, instances=INSTANCES)
    assert result["failed_unexplained"] == 1
    assert any("no event explains it" in v for v in result["violations"])


def test_a_failure_far_from_any_event_breaks_the_run():
    records = steady(0, 0.0, 40.0) + [login(1000, 5.0, 5.1, ok=False)]
    result = report_rules.analyse(records, [KILL, REDIS, RESTART], t0=0.0, instances=INSTANCES)
    assert result["failed_unexplained"] == 1 and result["violations"]


def test_recovery_slower_than_five_seconds_breaks_the_run():
    records = [r for r in steady(0, 0.0, 40.0) if not 20.0 <= r["start"] < 26.0]
    records += [login(3000 + k, 20.0 + 0.5 * k, 20.1 + 0.5 * k, ok=False) for k in range(12)]
    result = report_rules.analyse(records, [KILL, REDIS, RESTART], t0=0.0, instances=INSTANCES)
    assert any("redis-restart" in v and "limit 5.0 s" in v for v in result["violations"])


def test_a_restarted_instance_that_serves_nothing_breaks_the_run():
    records = steady(0, 0.0, 40.0)
    for r in records:
        if r["start"] >= 10.0:
            r["servers"] = ["b1", "b3"]
    result = report_rules.analyse(records, [KILL, REDIS, RESTART], t0=0.0, instances=INSTANCES)
    assert any("served nothing afterwards" in v for v in result["violations"])
    # Serving requests after the run (the earlier logins' tokens used again) counts.
    later = report_rules.analyse(records, [KILL, REDIS, RESTART], t0=0.0, instances=INSTANCES,
                                 served_afterwards={"b1", "b2", "b3"})
    assert later["violations"] == []


def test_never_recovering_breaks_the_run():
    records = [r for r in steady(0, 0.0, 40.0) if r["start"] < 20.0]
    records += [login(4000 + k, 20.0 + k, 20.1 + k, ok=False) for k in range(9)]
    result = report_rules.analyse(records, [KILL, REDIS], t0=0.0, instances=INSTANCES)
    assert any("never recovered" in v for v in result["violations"])
