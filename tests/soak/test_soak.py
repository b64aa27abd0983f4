"""The multi-instance soak test, CI-sized: three ``broker serve`` instances behind haproxy on one
Redis and one PostgreSQL registry, real logins through both upstreams at half the capacity measured first (8 s), one
instance SIGKILLed and Redis restarted (``SHUTDOWN SAVE``) mid-run (``bench/soak.py``).

Asserted: every failed login is explained by an event (in flight on the killed instance, or in
the Redis outage), the run recovers within 5 s of each event, the restarted instance serves
again, and the tokens of logins completed before the events still work (userinfo, refresh
grant).  No time is asserted beyond the 5 s recovery bound of issue 12.

``BROKER_SOAK_SECONDS`` makes it longer (default 30 s of load, about a minute in all).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("BROKER_SOAK_SECONDS", "30"))
CLIENTS = 6

pytestmark = pytest.mark.skipif(not (shutil.which("haproxy") and shutil.which("redis-server")),
                                reason="needs Debian's haproxy and redis-server (.ci/run installs them)")


def test_soak_three_instances_survive_a_kill_and_a_redis_restart(tmp_path, postgres_database):
    out = tmp_path / "soak.json"
    argv = [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", str(SECONDS), "--clients", str(CLIENTS),
            "--capacity", "8", "--database-url", postgres_database, "--json", str(out)]
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            stdout, stderr = run.communicate(timeout=SECONDS + 300)
        except subprocess.TimeoutExpired:
            run.terminate()  # SIGTERM: the script stops every process it started, then exits
            stdout, stderr = run.communicate(timeout=60)
            pytest.fail(f"the soak run did not finish in time\n{stdout[-3000:]}\n{stderr[-3000:]}")
    detail = f"stdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-3000:]}"
    assert out.exists(), detail
    report = json.loads(out.read_text())
    assert report["violations"] == [], detail
    assert run.returncode == 0, detail

    assert report["config"]["instances"] == 3 and report["config"]["database"] == "PostgreSQL"
    assert report["completed"] > 0 and report["failed_unexplained"] == 0
    assert all(row["completed"] > 0 for row in report["by_upstream"].values())
    assert set(report["by_upstream"]) == {"saml", "oidc"}
    # Only the logins in flight on the killed instance fail: at most one per client process.
    assert report["failed_explained"].get("kill", 0) <= CLIENTS
    events = {e["kind"]: e for e in report["events"]}
    assert set(events) == {"kill", "redis-restart", "instance-restart"}
    for kind in ("kill", "redis-restart"):
        assert events[kind]["recovery_s"] is not None and events[kind]["recovery_s"] <= 5.0, events[kind]
    restarted = events["instance-restart"]
    assert restarted["serving_again_after_s"] is not None or "b2" in report["tokens"]["served_by"]
    assert {"b1", "b2", "b3"} <= set(report["requests_by_instance"])

    tokens = report["tokens"]
    assert tokens["before_kill"] > 0 and tokens["before_redis"] > 0
    assert tokens["ok"] == tokens["checked"], tokens["problems"]
    # Nothing secret in the report: no token, no pupil's identifier.
    text = out.read_text()
    assert "eyJ" not in text and "MPASSOID" not in text and "refresh_token\":" not in text
