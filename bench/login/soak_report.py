"""What a soak run showed: logins completed and failed, each failure explained by an event or not,
the time to recovery after each event, and the invariants the run must hold.

Pure functions of the login records (:mod:`bench.login.schedule`) and the events the run
caused; no process, no I/O, so the rules below are tested on their own
(``tests/soak/test_soak_report.py``).

**Events.** ``kill`` (an instance SIGKILLed at ``t``, its last process gone at ``gone``),
``redis-restart`` (``SHUTDOWN SAVE`` sent at ``t``, the new server answering at ``up``) and
``instance-restart`` (the killed instance started again at ``t``, ready at ``up``).

**Recovery.** After an event, the logins that start after it and end before the next event are
looked at in order of their start: the run has recovered at the start of the first login from which on
every login succeeded.  ``recovery_s`` is that instant less the event's ``t``; when the first
login after the event succeeds, it is just the wait for that login's turn in the schedule.

**Which failures are explained** (any other failure breaks the run):

* by a ``kill``: the login was in flight when the instance died: it started before the
  instance's last process was gone and ended after the SIGKILL.  Until then the kernel still
  completes connections on the dying instance's listening socket (and resets them when the
  last process is gone), so a request the proxy sent there in those milliseconds is lost
  with the instance.  A login that started later must not fail: the proxy sends the
  connections the dead instance refuses to another one;
* by a ``redis-restart``: the login overlapped the outage as the logins saw it, from the
  ``SHUTDOWN`` until the run recovered.
"""

from __future__ import annotations

import statistics
from collections import Counter

#: Every event must be recovered from within this many seconds (issue 12).
RECOVERY_LIMIT_S = 5.0


def analyse(records: list[dict], events: list[dict], *, t0: float, instances: list[str],
            served_afterwards: set[str] | None = None, recovery_limit: float = RECOVERY_LIMIT_S) -> dict:
    """The report of one run (times relative to ``t0``); ``violations`` lists what broke.

    ``served_afterwards``: the instances that answered requests after the run (the tokens of
    earlier logins used again), where a restarted instance that became ready just before the
    end of the run shows that it serves."""
    records = sorted(records, key=lambda r: r["start"])
    events = sorted(events, key=lambda e: e["t"])
    violations: list[str] = []
    summary = []
    explained: dict[int, str] = {}
    for i, event in enumerate(events):
        end = events[i + 1]["t"] if i + 1 < len(events) else float("inf")
        # Logins still running at the next event belong to that event's window, not to this one.
        after = [r for r in records if event["t"] <= r["start"] and r["end"] < end]
        recovered = _recovered_at(after)
        row = {"kind": event["kind"], "at_s": round(event["t"] - t0, 3),
               "recovery_s": None if recovered is None else round(max(0.0, recovered - event["t"]), 3)}
        if "instance" in event:
            row["instance"] = event["instance"]
        if "up" in event:
            row["up_after_s"] = round(event["up"] - event["t"], 3)
        if event["kind"] == "kill":
            gone = event.get("gone", event["t"])
            row["gone_after_s"] = round(gone - event["t"], 3)
            for r in records:
                if not r["ok"] and r["start"] <= gone and r["end"] >= event["t"]:
                    explained.setdefault(r["index"], "kill")
        elif event["kind"] == "redis-restart":
            until = recovered if recovered is not None else end
            for r in records:
                if not r["ok"] and r["end"] >= event["t"] and r["start"] <= until:
                    explained.setdefault(r["index"], "redis-restart")
        elif event["kind"] == "instance-restart":
            served = [r["start"] for r in after if event["instance"] in r["servers"]]
            row["serving_again_after_s"] = round(min(served) - event["t"], 3) if served else None
            if not served and event["instance"] not in (served_afterwards or set()):
                violations.append(f"the restarted instance {event['instance']} served nothing afterwards")
        row["failed"] = sum(1 for r in records if not r["ok"] and explained.get(r["index"]) == event["kind"])
        if event["kind"] in ("kill", "redis-restart"):
            if recovered is None:
                violations.append(f"{event['kind']} at {row['at_s']} s: never recovered")
            elif row["recovery_s"] > recovery_limit:
                violations.append(f"{event['kind']} at {row['at_s']} s: recovered after {row['recovery_s']} s "
                                  f"(limit {recovery_limit} s)")
        summary.append(row)

    failed = [r for r in records if not r["ok"]]
    unexplained = [r for r in failed if r["index"] not in explained]
    for r in unexplained[:10]:
        violations.append(f"login {r['index']} ({r['upstream']}) at {r['start'] - t0:.2f} s failed and no event "
                          f"explains it: {r['error']}")
    if len(unexplained) > 10:
        violations.append(f"… and {len(unexplained) - 10} more unexplained failures")
    ok = [r for r in records if r["ok"]]
    if not ok:
        violations.append("no login completed")
    served = Counter(s for r in records for s in r["servers"])
    for name in instances:
        if not served.get(name) and name not in (served_afterwards or set()):
            violations.append(f"instance {name} served nothing: the proxy did not spread the logins")
    latencies = sorted(r["end"] - r["start"] for r in ok)
    lags = sorted(r["start"] - r["scheduled"] for r in records)
    return {
        "logins": len(records), "completed": len(ok), "failed": len(failed),
        "failed_explained": dict(Counter(explained.values())), "failed_unexplained": len(unexplained),
        "by_upstream": {u: {"completed": sum(1 for r in ok if r["upstream"] == u),
                            "failed": sum(1 for r in failed if r["upstream"] == u)}
                        for u in sorted({r["upstream"] for r in records})},
        "events": summary,
        "latency_ms": {"p50": _ms(_pct(latencies, 50)), "p95": _ms(_pct(latencies, 95)),
                       "max": _ms(latencies[-1] if latencies else None)},
        "lag_ms": {"p95": _ms(_pct(lags, 95)), "max": _ms(lags[-1] if lags else None)},
        "achieved_rate": round(len(records) / (records[-1]["start"] - records[0]["start"]), 1)
        if len(records) > 1 else None,
        "requests_by_instance": dict(sorted(served.items())),
        "failures": [{"at_s": round(r["start"] - t0, 3), "upstream": r["upstream"], "servers": r["servers"],
                      "explained_by": explained.get(r["index"]), "error": r["error"]} for r in failed[:50]],
        "violations": violations,
    }


def _recovered_at(after: list[dict]) -> float | None:
    """Start of the first login from which on every login succeeded (``after`` sorted by start)."""
    recovered = None
    for r in after:
        if not r["ok"]:
            recovered = None
        elif recovered is None:
            recovered = r["start"]
    return recovered


def _pct(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def render(report: dict) -> str:
    """The report as text."""
    c = report["config"]
    lines = [f"soak: {c['instances']} instances x {c['workers']} worker(s) behind haproxy, one Redis "
             f"(restarted: {c['redis_restart']}), registry on {c['database']}",
             f"  {c['seconds']:.0f} s at {c['rate']:.1f} logins/s ({c['rate_source']}), "
             f"{c['clients']} client processes"]
    if c.get("capacity"):
        lines.append(f"  measured capacity: {c['capacity']['logins_per_s']:.1f} logins/s "
                     f"({c['capacity']['logins']} logins in {c['capacity']['seconds']:.0f} s, closed loop)")
    lines += [f"logins: {report['logins']}  completed: {report['completed']}  failed: {report['failed']} "
              f"(explained: {report['failed_explained'] or 0}; unexplained: {report['failed_unexplained']})",
              f"  latency ms p50 {report['latency_ms']['p50']}  p95 {report['latency_ms']['p95']}  "
              f"max {report['latency_ms']['max']}",
              f"  started {report['achieved_rate']} logins/s; behind schedule ms p95 {report['lag_ms']['p95']} "
              f"max {report['lag_ms']['max']}",
              f"  requests by instance: {report['requests_by_instance']}",
              "events:"]
    for e in report["events"]:
        extra = "".join(f"  {k} {e[k]}" for k in ("instance", "gone_after_s", "up_after_s", "serving_again_after_s")
                        if k in e)
        lines.append(f"  {e['at_s']:7.2f} s  {e['kind']:<17} failed {e['failed']:3d}  recovery {e['recovery_s']} s"
                     + extra)
    t = report["tokens"]
    lines.append(f"earlier logins still work: {t['ok']}/{t['checked']} (userinfo, refresh grant, userinfo) "
                 f"from before the kill {t['before_kill']}, before the Redis restart {t['before_redis']}; "
                 f"answered by {', '.join(t['served_by'])}")
    for f in report["failures"][:8]:
        lines.append(f"  failed at {f['at_s']} s via {','.join(f['servers'])} ({f['explained_by']}): "
                     f"{f['error'][:160]}")
    lines.append("PASS: every invariant holds" if not report["violations"] else
                 "FAIL:\n  " + "\n  ".join(report["violations"]))
    return "\n".join(lines)
