"""A redemption whose confirmation falls short on a real replica leaves the code or refresh token as it was.

The token endpoint takes the code or the refresh token (``GETDEL``) and then writes what it
issues in one durable batch, ``WAIT`` at its end.  With the Sentinel set's replica frozen
(SIGSTOP: connected, but acknowledging nothing) the writes run on the primary, the ``WAIT``
falls short, and the endpoint answers 503.  Once the replica is back the service sends the
same request again, as a 503 tells it to, and it succeeds: the retry is not taken for the
replay of a code (the login refused) or of a rotated refresh token (the family revoked), and
the tokens issued before it keep working.
"""

from __future__ import annotations

import contextlib
import signal
from urllib.parse import parse_qs, urlsplit

import requests
from agent import Person
from ha_broker import broker_on, prefix
from ha_logins import REDIRECT
from ha_servers import SentinelSet, wait_for

from broker.store import open_store


@contextlib.contextmanager
def replica_frozen(servers: SentinelSet):
    """The replica stopped (its connection to the primary stays up), then continued and back in step."""
    replica = servers.processes[servers.replica]
    replica.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        replica.send_signal(signal.SIGCONT)
    wait_for("the replica in step again", lambda: servers.client(servers.primary).wait(1, 1000) == 1)


def _broker(ha_stack, sentinel_set):
    # Long enough for an unfrozen replica on a loaded machine, short enough to keep the 503s quick.
    return broker_on(ha_stack, open_store(sentinel_set.url(wait_ms=1000), prefix=prefix()))


def _post(service, data: dict) -> requests.Response:
    return requests.post(service.meta["token_endpoint"], auth=(service.client_id, service.secret), data=data,
                         timeout=10)


def _unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"


def _active(service, access_token: str) -> bool:
    answer = requests.post(service.meta["introspection_endpoint"], auth=(service.client_id, service.secret),
                           data={"token": access_token}, timeout=5)
    return answer.status_code == 200 and answer.json().get("active") is True


def test_a_refresh_that_fell_short_succeeds_when_sent_again(ha_stack, sentinel_set):
    with _broker(ha_stack, sentinel_set) as (_, service):
        token = service.login()
        refresh = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
        with replica_frozen(sentinel_set):
            _unavailable(_post(service, refresh))
        again = _post(service, refresh)
        assert again.status_code == 200, again.text   # not "already used; the session is revoked"
        assert _active(service, token["access_token"]), "the family was revoked"
        assert service.still_valid(again.json()) == []


def test_a_code_redemption_that_fell_short_succeeds_when_sent_again(ha_stack, sentinel_set):
    with _broker(ha_stack, sentinel_set) as (_, service):
        answer, _, verifier = service.sign_in()
        code = parse_qs(urlsplit(Person.callback(answer)).query)["code"][0]
        redeem = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                  "code_verifier": verifier}
        with replica_frozen(sentinel_set):
            _unavailable(_post(service, redeem))
        again = _post(service, redeem)
        assert again.status_code == 200, again.text   # not "already used; its tokens are revoked"
        assert service.still_valid(again.json()) == []
