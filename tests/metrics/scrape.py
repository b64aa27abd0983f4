"""Reading a scrape: the Prometheus text format parsed with prometheus_client's own parser."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``/metrics`` on ``port``: sample name -> ``[(labels, value)]``."""
    reply = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert reply.status_code == 200, reply.text[:500]
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(reply.text)


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def value(samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    return sum(v for got, v in samples.get(name, []) if labels.items() <= got.items())


def label_values(samples, label: str) -> set[str]:
    """Every value ``label`` has in any digione_ sample."""
    return {got[label] for name, rows in samples.items() if name.startswith("digione_")
            for got, _ in rows if label in got}
