"""The relying party the tests play, and what every refusal must look like.

:class:`RelyingParty` starts authorization-code flows at the broker (PKCE, a hint
naming the IdP) and redeems codes.  :func:`assert_refused` is the one definition
of a proper refusal (issue 2, "Errors"): the status, a page in the person's
language or JSON for a machine, a correlation id that is also in the refusal's
log line, no stack trace; :func:`assert_not_signed_in` checks that no code reached
the relying party and that the browser has no broker session either.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from broker.errors import heading_key
from broker.i18n import MESSAGES

from .agent import Person

REDIRECT = "https://rp.security.example/cb"
TRACE_MARKERS = ("Traceback", 'File "', "site-packages", ".py\", line")
_CID = re.compile(r'id="correlation-id">([0-9a-f]{8,})<')


@dataclasses.dataclass
class Authorization:
    url: str
    state: str
    nonce: str
    verifier: str


@dataclasses.dataclass
class RelyingParty:
    broker_url: str
    client_id: str
    secret: str
    redirect_uri: str = REDIRECT

    def authorize(self, idp_hint: str | None = None, **extra: str) -> Authorization:
        state, nonce, verifier = secrets.token_urlsafe(12), secrets.token_urlsafe(12), secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                  "scope": "openid profile roles", "state": state, "nonce": nonce, "code_challenge": challenge,
                  "code_challenge_method": "S256", **extra}
        if idp_hint:
            params["idp_hint"] = idp_hint
        return Authorization(f"{self.broker_url}/authorize?{urlencode(params)}", state, nonce, verifier)

    def code_from(self, response: requests.Response, authz: Authorization) -> str:
        """The code the broker sent the person back with (asserts that it did)."""
        assert response.is_redirect, f"expected a redirect to the RP, got {response.status_code}: {response.text[:300]}"
        location = response.headers["Location"]
        assert location.startswith(self.redirect_uri), location
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert query.get("state") == authz.state
        assert "code" in query, f"no code in {location}"
        return query["code"]

    def redeem(self, code: str, authz: Authorization) -> dict:
        """Exchange ``code``; the ID token's claims (its signature is the broker's business here)."""
        reply = requests.post(f"{self.broker_url}/token", auth=(self.client_id, self.secret), timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
            "code_verifier": authz.verifier})
        assert reply.status_code == 200, reply.text
        payload = reply.json()["id_token"].split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _visited(response: requests.Response):
    return [*getattr(response, "history", []), response]


def correlation_id(response: requests.Response) -> str:
    match = _CID.search(response.text)
    assert match, f"no element with id correlation-id in: {response.text[:400]}"
    return match.group(1)


def assert_refused(response: requests.Response, person: Person, caplog, *, status: int | tuple[int, ...],
                   code: str, message_key: str, detail: str | None = None, rp: RelyingParty | None = None,
                   private: tuple[str, ...] = ()) -> str:
    """``response`` is a proper refusal; returns its correlation id.

    ``detail`` is a regex the logged reason must match (so a test cannot pass
    because the response was refused for some other reason); ``private`` are
    values (names, subject ids) that must not be in any log line.
    """
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, \
        f"expected {statuses}, got {response.status_code} {response.headers.get('Location', '')} {response.text[:300]}"
    assert not response.is_redirect and "Location" not in response.headers
    for marker in TRACE_MARKERS:
        assert marker not in response.text, f"stack-trace text {marker!r} in the body"
    assert response.headers.get("Cache-Control") == "no-store"
    if person.machine:
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["error"] == code, body
        cid = body["correlation_id"]
        assert re.fullmatch(r"[0-9a-f]{8,}", cid)
    else:
        assert response.headers["Content-Type"].startswith("text/html")
        lang = person.language
        assert f'<html lang="{lang}"' in response.text
        page = response.text.replace("&#x27;", "'").replace("&quot;", '"')
        assert MESSAGES[heading_key(message_key)][lang] in page
        assert MESSAGES[message_key][lang] in page, f"{message_key} [{lang}] not on the page: {page[-600:]}"
        cid = correlation_id(response)
    lines = [r.getMessage() for r in caplog.records if cid in r.getMessage()]
    refusals = [line for line in lines if line.startswith("refused ")]
    assert refusals, f"no refusal log line with correlation id {cid}; saw {lines}"
    assert f"code={code}" in refusals[0], refusals[0]
    if detail:
        assert re.search(detail, refusals[0]), f"refused for another reason: {refusals[0]}"
    # The broker's own log lines (library loggers are held at WARNING by broker.cli.configure_logging).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("broker"))
    for value in private:
        assert value not in logged, f"personal data {value!r} in the log"
    if rp is not None:
        for hop in _visited(response):
            assert not hop.headers.get("Location", "").startswith(rp.redirect_uri)
    return cid


def assert_not_signed_in(person: Person, rp: RelyingParty, idp_hint: str) -> None:
    """The browser has no broker session: a silent (prompt=none) request comes back login_required."""
    authz = rp.authorize(idp_hint, prompt="none")
    response = person.get(authz.url)
    assert response.is_redirect, f"{response.status_code} {response.text[:300]}"
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert response.headers["Location"].startswith(rp.redirect_uri)
    assert "code" not in query, "the refused login left a session behind: a silent login got a code"
    assert query.get("error") == ["login_required"], query


def log_capture(caplog) -> None:
    caplog.set_level(logging.INFO)
