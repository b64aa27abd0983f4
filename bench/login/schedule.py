"""Logins at a fixed rate from client processes, each login recorded with when and where it ran.

The soak test's load (``bench/soak.py``).  Each client process plays the benchmark's relying
party (:class:`bench.login.client.RelyingParty`: every login validated, nothing retried) and
owns every ``slots``-th login of one global schedule: login *i* is due at ``t0 + i / rate``
(open loop: the rate does not drop when the broker slows down; a process that falls behind
starts its next login at once and the lag is recorded).  Every fourth login goes through
the OIDC upstream (the demo Entra ID), the others through SAML, each for a pupil no earlier
login used.

A record holds the login's times (``time.monotonic()``, which is the same clock in every
process on Linux), its outcome, and the instances that answered its requests (from the
``X-Soak-Server`` header the proxy sets; ``-`` where none answered).  The tokens of a
completed login are returned to the parent, which keeps them in memory only, to use them
again after the failures; they are never printed or written.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import requests

from . import client, idp

_RP: dict = {}


class TracingRelyingParty(client.RelyingParty):
    """The benchmark's relying party, noting which instance answered each request."""

    trace: list[str]

    def _call(self, method: str, url: str, jar: client.Jar | None = None, **kwargs) -> requests.Response:
        try:
            reply = super()._call(method, url, jar, **kwargs)
        except requests.RequestException:
            self.trace.append("-")
            raise
        self.trace.append(reply.headers.get("X-Soak-Server", "-"))
        return reply


def warm(seconds: float) -> int:
    """Nothing but time: submitted once per process as the pool starts, so that every process is
    spawned (and has imported pysaml2 and the broker's demo code) while the broker starts."""
    time.sleep(seconds)
    return os.getpid()


def _relying_party(setup: dict) -> TracingRelyingParty:
    """This process's relying party for ``setup`` (built at its first task: the setup needs the
    broker's SP metadata, which exists only once the broker runs)."""
    if _RP.get("setup") != setup:
        import logging
        import warnings

        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        _RP.update(setup=setup, seed=setup["seed"],
                   rp=TracingRelyingParty(setup["client"], idp.SamlIdp(Path(setup["idp_keys"]), setup["sp_metadata"]),
                                          setup["entra"]))
    return _RP["rp"]


def upstream_of(index: int) -> str:
    return "oidc" if index % 4 == 3 else "saml"


def one_login(setup: dict, index: int, scheduled: float) -> dict:
    rp = _relying_party(setup)
    upstream = upstream_of(index)
    user = idp.synthetic_pupil(index, _RP["seed"]) if upstream == "saml" else None
    rp.trace = []
    record: dict = {"index": index, "upstream": upstream, "scheduled": scheduled, "start": time.monotonic()}
    try:
        outcome = rp.login(upstream, user)
        record.update(ok=True, sub=outcome["claims"]["sub"],
                      tokens=(outcome["refresh_token"], outcome["access_token"]))
    except Exception as exc:  # noqa: BLE001 - every failure is recorded with what it was, never retried
        record.update(ok=False, error=_one_line(f"{type(exc).__name__}: {exc}"))
    record["end"] = time.monotonic()
    record["servers"] = list(rp.trace)
    return record


def run_schedule(setup: dict, t0: float, rate: float, slot: int, slots: int, until: float) -> list[dict]:
    """Logins ``slot``, ``slot + slots``, … of the schedule, each at its due time, until ``until``."""
    records = []
    index = slot
    while True:
        due = t0 + index / rate
        if due >= until:
            return records
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        records.append(one_login(setup, index, due))
        index += slots


def run_closed(setup: dict, first: int, slots: int, until: float) -> list[dict]:
    """Logins back to back until ``until`` (the capacity measurement): indices ``first``, ``first + slots``, …"""
    records = []
    index = first
    while time.monotonic() < until:
        now = time.monotonic()
        records.append(one_login(setup, index, now))
        index += slots
    return records


def use_tokens(setup: dict, pairs: list[tuple[str, str, str, bool]]) -> tuple[list[str], list[str]]:
    """For each ``(sub, refresh_token, access_token, access_still_valid)``: userinfo with the access
    token (if it has not expired yet), a refresh grant, userinfo with the new access token.

    Returns one problem string per pair that failed (none: every earlier login still works), and
    the instances that answered."""
    rp = _relying_party(setup)
    cfg = rp.cfg
    problems, servers = [], []
    for sub, refresh_token, access_token, access_valid in pairs:
        rp.trace = []
        try:
            if access_valid:
                _userinfo(rp, access_token, sub, "userinfo with the first access token")
            reply = rp._call("POST", cfg["token"], auth=(cfg["client_id"], cfg["client_secret"]),
                             data={"grant_type": "refresh_token", "refresh_token": refresh_token})
            body = reply.json() if reply.status_code == 200 else {}
            if not body.get("access_token"):
                raise client.LoginFailed(f"refresh grant: {reply.status_code} {reply.text[:200]}")
            _userinfo(rp, body["access_token"], sub, "userinfo after the refresh")
        except Exception as exc:  # noqa: BLE001 - reported: a completed login was lost
            problems.append(_one_line(f"{type(exc).__name__}: {exc}"))
        servers += rp.trace
    return problems, servers


def _userinfo(rp: TracingRelyingParty, access_token: str, sub: str, what: str) -> None:
    reply = rp._call("GET", rp.cfg["userinfo"], headers={"Authorization": f"Bearer {access_token}"})
    if reply.status_code != 200 or reply.json().get("sub") != sub:
        raise client.LoginFailed(f"{what}: {reply.status_code} {reply.text[:200]}")


def _one_line(text: str) -> str:
    """An error as one short line: markup and runs of white space removed (502 pages are HTML)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", text)).strip()[:240]
