"""The login benchmark still runs: a handful of validated logins against our broker.

Keeps ``bench/bench_login.py`` from rotting as the broker changes.  No timing is asserted
(issue 5: targets are measured by the benchmark, never by timed tests); the run must only
complete, with every login validated by the benchmark's relying party (ID token signature
and claims, userinfo), through both upstreams, with a small prefill, and the token traffic
after the logins (refresh, introspection, userinfo) answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

pytestmark = pytest.mark.redis


def _redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def test_login_benchmark_runs_against_ours(tmp_path):
    if not _redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    parts = urlsplit(REDIS_URL)
    db = (parts.path or "/0").lstrip("/") or "0"
    out = tmp_path / "result.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_login.py"), "--only", "ours", "--logins", "4",
         "--warmup", "2", "--workers", "1", "--concurrency", "2", "--prefill", "50", "--grants", "6",
         "--redis", f"{parts.scheme}://{parts.netloc}", "--ours-db", db, "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    result = json.loads(out.read_text())
    rows = {row["upstream"]: row for row in result["rows"]}
    assert set(rows) == {"saml", "oidc"}
    for row in rows.values():
        assert row["impl"] == "ours"
        assert row["logins"] == 4 and row["failed"] == 0
        assert row["server_cpu_ms"] >= 0 and row["peak_rss_mb"] > 0
    info = result["infos"][0]
    assert info["prefill"]["users"] == 50
    assert {g["kind"]: (g["requests"], g["failed"]) for g in info["grants"]} == {
        "refresh": (6, 0), "introspect": (6, 0), "userinfo": (6, 0)}
    assert "SERVER CPU ms/login" in run.stdout


def test_login_benchmark_scale_pass_reports_each_worker_count():
    """``--scale`` (the national-peak extrapolation's run) measures ours at each worker count listed."""
    if not _redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    parts = urlsplit(REDIS_URL)
    db = (parts.path or "/0").lstrip("/") or "0"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_login.py"), "--only", "ours", "--upstream", "saml",
         "--logins", "3", "--warmup", "1", "--concurrency", "1", "--grants", "0", "--scale", "1,2",
         "--redis", f"{parts.scheme}://{parts.netloc}", "--ours-db", db],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    table = run.stdout.split("== ours by worker count", 1)[1].splitlines()
    counts = [line.split()[1] for line in table if line.startswith("saml")]
    assert counts == ["1", "2"]
