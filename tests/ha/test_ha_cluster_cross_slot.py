"""A batch whose keys span Redis Cluster slots, met during a request on a real cluster.

Such a batch is a programming error (a key built without its login's hash tag), refused
before anything is sent (``CrossSlot``).  It is made here the way such a bug would make it:
a key builder that forgets the tag.  The person gets the broker's "temporarily unavailable"
page, a service the 503 ``temporarily_unavailable``, each with the correlation id that the
ERROR line naming the batch's caller carries: never a 500, never a stack trace in an answer.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from ha_broker import broker_on, cluster_store
from ha_logins import REDIRECT
from redis.crc import key_slot

import broker.sessions.store as sessions_store
import broker.tokens.grants as grants
from broker.logs import JsonFormatter
from broker.store import StoreError
from broker.store.cluster import ClusterStore
from broker.store.slots import CrossSlot


class _Lines(logging.Handler):
    """The broker's log lines as the JSON objects it writes, formatted as they are emitted
    (in the request's thread: its correlation id is the one set then)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines():
    handler = _Lines()
    logger = logging.getLogger("broker")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def _forgot_the_tag(store: ClusterStore, key: str) -> str:
    """``key`` under a hash tag of its own, in another slot than ``key``'s own."""
    slot = key_slot(store._k(key).encode())   # noqa: SLF001 - the key as stored
    for n in range(100):
        moved = f"{{forgotten-{n}}}{key}"
        if key_slot(store._k(moved).encode()) != slot:   # noqa: SLF001
            return moved
    raise AssertionError("no other slot")


def _errors(lines: list[dict], correlation_id: str) -> list[dict]:
    return [line for line in lines if line["level"] == "ERROR" and line["correlation_id"] == correlation_id]


def test_a_cross_slot_batch_at_login_is_the_temporarily_unavailable_page(ha_stack, cluster_set, monkeypatch,
                                                                          lines):
    assert issubclass(CrossSlot, StoreError) and not issubclass(CrossSlot, ValueError)
    store = cluster_store(cluster_set)
    keyed = sessions_store.session_key

    def session_key(session_id: str, suffix: str = "") -> str:   # the release batch's service record, misplaced
        key = keyed(session_id, suffix)
        return _forgot_the_tag(store, key) if suffix.startswith(":svc:") else key

    with broker_on(ha_stack, store) as (_, service):
        monkeypatch.setattr(sessions_store, "session_key", session_key)
        page, _, _ = service.sign_in()
        assert page.status_code == 503 and "text/html" in page.headers["Content-Type"]
        assert "Traceback" not in page.text and "CrossSlot" not in page.text
        cid = re.search(r'id="correlation-id">([0-9a-f]{16})<', page.text).group(1)
        monkeypatch.undo()
        assert service.login()["access_token"]   # the next login, its keys tagged again, goes through

    (error,) = _errors(lines, cid)   # one ERROR line (no "unhandled error"), naming the batch's caller
    assert error["logger"] == "broker.store.cluster" and "cross-slot batch refused: SET SADD EXPIRE" in error["message"]
    assert "in release" in error["stack"] and "broker/login/steps.py" in error["stack"]
    assert any(line["message"].startswith(f"refused correlation_id={cid} status=503 code=temporarily_unavailable")
               for line in lines)
    assert not any("forgotten-" in json.dumps(line) for line in lines), "no key in a log line"


def test_a_cross_slot_batch_at_the_token_endpoint_is_a_503(ha_stack, cluster_set, monkeypatch, lines):
    store = cluster_store(cluster_set)
    keyed = grants.grant_key
    with broker_on(ha_stack, store) as (_, service):
        page, _, verifier = service.sign_in()
        code = parse_qs(urlsplit(page.headers["Location"]).query)["code"][0]
        monkeypatch.setattr(grants, "grant_key", lambda gid: _forgot_the_tag(store, keyed(gid)))
        answer = requests.post(service.meta["token_endpoint"], auth=(service.client_id, service.secret), timeout=10,
                               data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                     "code_verifier": verifier})
    assert answer.status_code == 503 and answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["error"] == "temporarily_unavailable" and "CrossSlot" not in answer.text
    # The grant's batch, then its clean-up (the same forgotten tag), each refused; then the 503.
    refused = [line for line in lines if line["level"] == "ERROR"]
    assert [line["logger"] for line in refused] == ["broker.store.cluster"] * 2 + ["broker.tokens"]
    assert refused[-1]["message"] == "token service unavailable: CrossSlot"
    assert len({line["correlation_id"] for line in refused}) == 1 and refused[0]["correlation_id"]
    assert "in authorization_code" in refused[0]["stack"]
    assert not any("forgotten-" in json.dumps(line) for line in lines), "no key in a log line"
