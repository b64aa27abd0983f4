"""The city search benchmark still runs: a small generated registry, a few people typing.

Keeps ``bench/bench_discovery.py`` from rotting as the broker changes.  No timing is asserted
(targets are measured by the benchmark, never by timed tests: the budget is set out of reach);
the run must complete, every request answered, and what people typed in full found.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_discovery_benchmark_runs(tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_discovery.py"), "--tenants", "20", "--schools", "150",
         "--people", "12", "--page-requests", "5", "--budget-ms", "10000", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert (result["tenants"], result["schools"]) == (20, 150)
    assert result["times"]["search (JSON), every keystroke"]["n"] > 12
    assert result["sizes"]["city page gzip bytes"] < result["sizes"]["city page raw bytes"]
    assert "server time, ms" in run.stdout
    for kind in ("name", "name+city"):
        row = result["recall"][kind]
        assert row["people"] == 0 or row["top5"] == 1.0, (kind, row)
