"""Real logins against a broker served in this process: a person through the demo city IdP, the
service redeeming the code; and what a service does with the tokens afterwards."""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path

import requests
from authlib.integrations.requests_client import OAuth2Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
from agent import Person  # noqa: E402 - tests/e2e's browser agent

REDIRECT = "https://ha.example.org/cb"
SCOPES = "openid roles"


class Service:
    """One OIDC client of the broker at ``url`` (registered with a refresh-token grant)."""

    def __init__(self, url: str, client_id: str, secret: str):
        self.url, self.client_id, self.secret = url, client_id, secret
        self.meta = requests.get(f"{url}/.well-known/openid-configuration", timeout=5).json()

    def login(self, hint: str = "espoo/koulu", username: str = "teacher.espoo") -> dict:
        """One whole login; raises on any failure (a 503 while the store fails over, say)."""
        answer, session, verifier = self.sign_in(hint, username)
        return dict(session.fetch_token(self.meta["token_endpoint"], authorization_response=Person.callback(answer),
                                        code_verifier=verifier))

    def sign_in(self, hint: str = "espoo/koulu",
                username: str = "teacher.espoo") -> tuple[requests.Response, OAuth2Session, str]:
        """A person signs in at the city IdP: the broker's last answer (the redirect to the service's
        callback, or an error page), the service's OAuth session and its PKCE verifier."""
        session = OAuth2Session(self.client_id, self.secret, scope=SCOPES, redirect_uri=REDIRECT,
                                code_challenge_method="S256")
        verifier = secrets.token_urlsafe(48)
        url, _ = session.create_authorization_url(self.meta["authorization_endpoint"], code_verifier=verifier,
                                                  nonce="n", idp_hint=hint)
        person = Person()
        return person.sign_in(person.get(url), username), session, verifier

    def still_valid(self, token: dict) -> list[str]:
        """What no longer works with ``token`` (empty: userinfo, introspection and a refresh all do)."""
        wrong = []
        userinfo = requests.get(self.meta["userinfo_endpoint"], timeout=5,
                                headers={"Authorization": f"Bearer {token['access_token']}"})
        if userinfo.status_code != 200:
            wrong.append(f"userinfo {userinfo.status_code}")
        introspected = requests.post(self.meta["introspection_endpoint"], auth=(self.client_id, self.secret),
                                     data={"token": token["access_token"]}, timeout=5)
        if introspected.status_code != 200 or introspected.json().get("active") is not True:
            wrong.append(f"introspection {introspected.status_code} {introspected.text[:80]}")
        refreshed = requests.post(self.meta["token_endpoint"], auth=(self.client_id, self.secret), timeout=5,
                                  data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
        if refreshed.status_code != 200 or "access_token" not in refreshed.json():
            wrong.append(f"refresh {refreshed.status_code} {refreshed.text[:80]}")
        return wrong


def run_through_failover(service: Service, kill, switched, *, before: int = 4, after: int = 4,
                         deadline: float = 30.0) -> dict:
    """Log in ``before`` times, ``kill()`` the primary, keep logging in until ``after`` logins
    have completed since ``switched()`` first said the failover is done.

    Returns the completed tokens, the failed attempts, and the seconds from the switch to the
    first login completed after it.  Bounded: ``deadline`` seconds after the kill at most.
    """
    tokens, failures = [], []
    for _ in range(before):
        tokens.append(service.login())
    kill()
    killed = time.monotonic()
    switched_at = resumed = None
    completed_after = 0
    while completed_after < after and time.monotonic() - killed < deadline:
        if switched_at is None and switched():
            switched_at = time.monotonic()
        try:
            token = service.login()
        except Exception as exc:  # noqa: BLE001 - a login refused during the failover (503): counted, retried
            failures.append(f"{exc.__class__.__name__}: {str(exc)[:120]}")
            time.sleep(0.05)
            continue
        tokens.append(token)
        if switched_at is not None:
            completed_after += 1
            if resumed is None:
                resumed = time.monotonic() - switched_at
    return {"tokens": tokens, "failures": failures, "switch_after_kill": None if switched_at is None
            else switched_at - killed, "resumed_after_switch": resumed}
