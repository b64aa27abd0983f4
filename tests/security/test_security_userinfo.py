"""What the OIDC backend takes from a userinfo endpoint, and when it asks (broker/backends/userinfo.py).

The endpoint is a real HTTP server on loopback that answers as a test scripts it: the
claims, a ``sub`` of another person, an error (OIDC Core §5.3.3), a signed JWT, another
content type, an oversized body.  The whole login with an OP that serves its claims only at
userinfo is in test_security_upstream_trust.py; these are the rules one by one.
"""

from __future__ import annotations

import json
import logging

import pytest
import requests
from flask import Flask, Response, request

from broker.backends import userinfo
from broker.demo.servers import serve_in_thread
from broker.errors import IdpError, InvalidResponse

SUB = "sub-4f2a"
GROUPS = [["oid", "http://schemas.microsoft.com/identity/claims/objectidentifier"], ["given_name"], ["roles"]]
ID_TOKEN = {"iss": "https://op.example", "aud": "digione", "sub": SUB, "nonce": "n", "acr": "urn:op:mfa"}


class Endpoint:
    def __init__(self):
        self.answer: tuple[int, str, bytes] = (200, "application/json", b"{}")
        self.requests: list[dict[str, str]] = []
        app = Flask("userinfo")

        @app.get("/userinfo")
        def endpoint():
            self.requests.append({"authorization": request.headers.get("Authorization", "")})
            status, media, body = self.answer
            return Response(body, status=status, content_type=media)

        self.server = serve_in_thread(app)
        self.url = f"{self.server.url}/userinfo"

    def claims(self, **claims) -> None:
        self.answer = (200, "application/json; charset=utf-8", json.dumps({"sub": SUB, **claims}).encode())


@pytest.fixture(scope="module")
def server():
    endpoint = Endpoint()
    yield endpoint
    endpoint.server.shutdown()


def _complete(server, claims=None, *, mode="auto", tokens=None, provider=None):
    if provider is None:      # an OP on localhost over http, as the demo's (https is required elsewhere)
        provider = {"issuer": "http://localhost", "userinfo_endpoint": server.url}
    return userinfo.complete(dict(claims or ID_TOKEN), mode=mode, groups=GROUPS, provider=provider,
                             tokens={"access_token": "at-1", "token_type": "Bearer"} if tokens is None else tokens,
                             http=requests.Session(), idp="vantaa/entra", timeout=(3, 5))


def test_what_the_id_token_lacks_comes_from_userinfo_and_only_that(server, caplog):
    caplog.set_level(logging.INFO)
    server.claims(oid="object-1", given_name="Ulla", roles=["Teacher"], iss="https://evil.example", acr="weak",
                  nonce="other", email="ulla@example.org")
    merged = _complete(server, {**ID_TOKEN, "given_name": "From the ID token"})
    assert server.requests[-1]["authorization"] == "Bearer at-1"
    assert merged["oid"] == "object-1" and merged["roles"] == ["Teacher"] and merged["email"] == "ulla@example.org"
    assert merged["given_name"] == "From the ID token", "the signed ID token wins"
    assert (merged["iss"], merged["acr"], merged["nonce"]) == ("https://op.example", "urn:op:mfa", "n"), \
        "the protocol claims come from the ID token only"
    (line,) = [r.getMessage() for r in caplog.records if "upstream claims read from userinfo" in r.getMessage()]
    assert line == ("upstream claims read from userinfo idp=vantaa/entra missing_from_id_token=oid,roles "
                    "from_userinfo=email,oid,roles still_missing=-")
    assert "Ulla" not in line and "object-1" not in line


def test_nothing_is_asked_when_the_id_token_has_it_all_or_the_tenant_says_never(server):
    before = len(server.requests)
    complete = {**ID_TOKEN, "http://schemas.microsoft.com/identity/claims/objectidentifier": "o", "given_name": "U",
                "roles": ["Teacher"]}
    assert _complete(server, complete) == complete, "an alternative name counts as present"
    assert _complete(server, mode="never") == ID_TOKEN
    assert len(server.requests) == before


def test_always_asks(server):
    before = len(server.requests)
    server.claims(email="ulla@example.org")
    complete = {**ID_TOKEN, "oid": "o", "given_name": "U", "roles": ["Teacher"]}
    assert _complete(server, complete, mode="always")["email"] == "ulla@example.org"
    assert len(server.requests) == before + 1


def test_another_subject_is_refused(server):
    server.claims(sub="someone-else", oid="object-2")
    with pytest.raises(InvalidResponse, match=r"userinfo sub does not match the ID token's sub \(OIDC Core §5\.3\.2\)"):
        _complete(server)
    server.answer = (200, "application/json", json.dumps({"oid": "object-2"}).encode())
    with pytest.raises(InvalidResponse, match="userinfo sub does not match"):
        _complete(server)


@pytest.mark.parametrize("answer,reason", [
    ((401, "application/json", b'{"error": "invalid_token"}'), "userinfo endpoint answered 401"),
    ((500, "text/html", b"<h1>oops</h1>"), "userinfo endpoint answered 500"),
    ((302, "text/html", b""), "userinfo endpoint answered 302"),
    ((200, "application/jwt", b"eyJhbGciOiJSUzI1NiJ9.e30.sig"), "application/jwt"),
    ((200, "text/html", b"<html></html>"), "userinfo answered text/html, not application/json"),
    ((200, "application/json", b"{not json"), "malformed JSON"),
    ((200, "application/json", b'["sub"]'), "not an object"),
    ((200, "application/json", b'{"sub": "' + b"x" * (300 * 1024) + b'"}'), "larger than 256 KiB"),
])
def test_an_answer_that_cannot_be_used_is_an_idp_error(server, answer, reason):
    server.answer = answer
    with pytest.raises(IdpError, match=reason):
        _complete(server)


def test_an_https_provider_never_sends_the_token_to_a_plain_http_userinfo(server):
    before = len(server.requests)
    with pytest.raises(IdpError, match=r"userinfo_endpoint is not https \(OIDC Discovery §3\)"):
        _complete(server, provider={"issuer": "https://op.example", "userinfo_endpoint": server.url})
    assert len(server.requests) == before


def test_an_unreachable_endpoint_is_an_idp_error(server):
    with pytest.raises(IdpError, match="userinfo endpoint unreachable: ConnectionError"):
        _complete(server, provider={"issuer": "http://localhost", "userinfo_endpoint": "http://127.0.0.1:9/userinfo"})


@pytest.mark.parametrize("provider,tokens,said", [
    ({}, None, "the provider has no userinfo endpoint"),
    (None, {"access_token": "at-1", "token_type": "DPoP"}, "no Bearer access token"),
    (None, {"token_type": "Bearer"}, "no Bearer access token"),
])
def test_without_an_endpoint_or_a_bearer_token_the_gap_is_logged(server, caplog, provider, tokens, said):
    caplog.set_level(logging.INFO)
    before = len(server.requests)
    assert _complete(server, provider=provider, tokens=tokens) == ID_TOKEN
    assert len(server.requests) == before
    assert any(said in r.getMessage() and "missing=oid,given_name,roles" in r.getMessage() for r in caplog.records)
