"""deploy/grafana/digione-broker.json: a Grafana dashboard whose queries name only metrics the broker exposes,
and docs/operations.md lists every one of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.metrics.exposition import MetricsEndpoint

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "digione-broker.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed() -> dict[str, set[str]]:
    """Every digione_ series name /metrics can carry -> its labels (from the families the endpoint writes,
    samples or not)."""
    endpoint = MetricsEndpoint(SimpleNamespace(seq=1, registry=None, store=None, settings=None))
    text = b"".join(endpoint({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET"}, lambda *a: None)).decode()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("digione_"):
            for suffix in _SUFFIXES[family.type]:
                names[family.name + suffix] = set()
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _queries(dashboard: dict) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"])
    return exprs


def test_it_has_the_shape_of_a_grafana_dashboard(dashboard):
    assert isinstance(dashboard["title"], str) and dashboard["title"]
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 30
    assert "id" not in dashboard or dashboard["id"] is None, "an exported dashboard carries no database id"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in {"timeseries", "stat", "table", "gauge", "bargauge"}
        assert panel["title"] and panel["targets"]
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys() and 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        for target in panel["targets"]:
            assert target["refId"] and target["expr"].strip()
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
    names = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert "datasource" in names


def test_every_metric_its_queries_use_is_one_the_broker_exposes(dashboard):
    names = exposed()
    used = {name for expr in _queries(dashboard) for name in re.findall(r"\bdigione_[a-z0-9_]+", expr)}
    assert used, "the dashboard queries the broker's metrics"
    assert used <= names.keys(), f"not exposed: {sorted(used - names.keys())}"


def test_it_shows_what_the_issue_asks_for(dashboard):
    used = " ".join(_queries(dashboard))
    for family in ("digione_logins_started_total", "digione_logins_completed_total", "digione_logins_failed_total",
                   "digione_login_step_duration_seconds_bucket", "digione_upstream_errors_total",
                   "digione_token_grants_total", "digione_logout_deliveries_total",
                   "digione_certificate_expiry_days", "digione_metadata_expiry_days", "digione_registry_version",
                   "digione_store_errors_total", "digione_rate_limited_total"):
        assert family in used, family
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, step)" in used


def test_operations_lists_every_metric():
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("\n## Metrics"):]
    section = section[:section.find("\n## ", 1)]
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exposed()}
    missing = [name for name in sorted(families) if f"`{name}" not in section]
    assert not missing, f"docs/operations.md, Metrics: not listed: {missing}"
