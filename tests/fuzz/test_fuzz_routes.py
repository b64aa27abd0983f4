"""Every route, hostile input: never a 5xx, never a traceback, a correlation id on every refusal.

Hypothesis drives the whole WSGI application (the one ``broker serve`` runs, guard included,
built by ``create_app`` on the demo's registry with its real keys) with malformed methods,
paths, query strings, headers, bodies and cookies, and with payloads shaped like the ones
each route parses: JOSE compact tokens (some nested 5,000 deep), SAML messages (base64, deflated,
with DTDs, comments and garbage), sealed flow cookies flipped and forged. Bounded in examples
and time; it stops by itself.
"""

from __future__ import annotations

import base64
import json
import logging
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from broker.app import create_app
from broker.demo.stack import DemoStack
from broker.store import MemoryStore

TRACE_MARKERS = ("Traceback", 'File "', "site-packages")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", environ={})
    demo.prepare()
    return create_app(demo.settings(), store=MemoryStore())


@pytest.fixture(scope="module")
def routes(app):
    proxy = app.proxy
    paths = sorted(proxy.router._exact)
    return ["/" + p for p in paths] + ["/healthz", "/readyz"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


_JOSE = st.one_of(
    st.just(_b64url(b'{"alg":"none"}') + "." + _b64url(b'{"sub":"x"}') + "."),
    st.just(_b64url(_deep(5000).encode()) + "." + _b64url(b"{}") + ".sig"),
    st.just(_b64url(b'{"alg":"ES256","kid":"x"}') + "." + _b64url(_deep(5000).encode()) + ".sig"),
    st.just(_b64url(b'{"alg":"RS256","crit":["x"]}') + ".e30." + "A" * 342),
    st.text(alphabet="ABCabc-_.=", max_size=200),
    st.binary(max_size=300).map(_b64url),
)

_XML = st.sampled_from([
    b"<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'/>",
    b"<!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]><x>&b;</x>",
    b"<samlp:AuthnRequest xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol' ID='x' Version='2.0'>"
    b"<saml:Issuer xmlns:saml='urn:oasis:names:tc:SAML:2.0:assertion'>https://sp<!---->.example</saml:Issuer>"
    b"</samlp:AuthnRequest>",
    b"<a>" * 3000 + b"</a>" * 3000,
    b"\xff\xfe<x/>",
    b"",
])
_SAML = st.one_of(
    _XML.map(_b64),
    _XML.map(lambda x: _b64(zlib.compress(x)[2:-4])),
    st.binary(max_size=200).map(_b64),
    st.text(max_size=100),
)

_PARAM_NAMES = ["client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
                "code_challenge_method", "prompt", "max_age", "idp_hint", "acr_values", "login_hint", "ui_locales",
                "id_token_hint", "post_logout_redirect_uri", "grant_type", "code", "code_verifier", "refresh_token",
                "token", "client_assertion", "client_assertion_type", "client_secret", "SAMLRequest", "SAMLResponse",
                "RelayState", "SigAlg", "Signature", "idp", "csrf", "lang", "tenant", "iss", "error", "request"]

_VALUE = st.one_of(st.text(max_size=60), _JOSE, _SAML, st.sampled_from(["", "%00", "\r\nX: y", "openid", "code",
                                                                        "S256", "none", "-1", "9" * 40]))
_PARAMS = st.lists(st.tuples(st.sampled_from(_PARAM_NAMES) | st.text(max_size=10), _VALUE), max_size=8)

_COOKIE = st.one_of(
    st.just(""),
    st.sampled_from(["digione_flow", "digione_sso", "digione_idp", "__Host-digione_flow", "other"]).flatmap(
        lambda name: st.tuples(st.just(name), st.text(alphabet="ABCxyz0129-_.=v", max_size=120))).map(
        lambda nv: f"{nv[0]}={nv[1]}"),
    st.just("digione_flow=v1.AAAA; digione_flow=v1.BBBB"),
    st.text(max_size=80),
)

_HEADERS = st.fixed_dictionaries({}, optional={
    "Accept": st.sampled_from(["application/json", "text/html", "*/*", "", "application/json;q=0,text/html"]),
    "Content-Type": st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/xml",
                                     "multipart/form-data; boundary=x", "", "application/x-www-form-urlencoded; "
                                     "charset=latin1"]),
    "Authorization": st.one_of(st.just("Basic !!!"), st.just("Basic " + _b64(b"a:b")), _JOSE.map("Bearer ".__add__),
                               st.text(max_size=40)),
    "Accept-Language": st.sampled_from(["fi", "sv-SE,sv;q=0.9", "xx", "en;q=abc", ""]),
    "Cookie": _COOKIE,
})


def _ascii_header(value: str) -> str:
    # WSGI headers are latin-1; a real client cannot send more, so the fuzz keeps to what can arrive.
    return value.encode("latin-1", "replace").decode("latin-1").replace("\r", "").replace("\n", "")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]),
       route=st.integers(min_value=0, max_value=10_000), suffix=st.sampled_from(["", "/", "/..", "x", "%00", "/%0A"]),
       query=_PARAMS, form=_PARAMS, raw_body=st.one_of(st.none(), st.binary(max_size=400)), headers=_HEADERS)
def test_no_route_answers_5xx_or_a_traceback(app, routes, caplog, method, route, suffix, query, form, raw_body,
                                             headers):
    caplog.set_level(logging.INFO)
    caplog.clear()
    path = routes[route % len(routes)] + suffix
    from urllib.parse import urlencode

    body = raw_body if raw_body is not None else urlencode(form).encode()
    clean = {k: _ascii_header(v) for k, v in headers.items()}
    response = Client(app).open(path, method=method, query_string=urlencode(query), data=body, headers=clean)
    text = response.get_data(as_text=True)
    assert response.status_code < 500 or response.status_code == 503 and "temporarily_unavailable" in text, \
        (method, path, response.status_code, text[:300])
    for marker in TRACE_MARKERS:
        assert marker not in text, (method, path, marker)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    if response.status_code >= 400 and response.mimetype == "application/json":
        payload = json.loads(text)
        assert "error" in payload, payload


_DEEP_JOSE = _b64url(_deep(5000).encode()) + "." + _b64url(b"{}") + ".sig"
_DEEP_CLAIMS = _b64url(b'{"alg":"ES256"}') + "." + _b64url(_deep(5000).encode()) + ".sig"
#: Every parameter and header a route reads, each carrying the payloads that broke parsers before.
_HOSTILE = {
    "deep-jose-header": _DEEP_JOSE,
    "deep-jose-claims": _DEEP_CLAIMS,
    "saml-dtd": _b64(b"<!DOCTYPE x [<!ENTITY a 'a'>]><x>&a;</x>"),
    "saml-deflated-bomb": _b64(zlib.compress(b"<a>" + b" " * 2_000_000 + b"</a>")[2:-4]),
    "saml-deep": _b64(b"<a>" * 5000 + b"</a>" * 5000),
    "huge": "x" * 70_000,
    "nul": "a\x00b",
}


@pytest.mark.parametrize("payload", sorted(_HOSTILE))
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_route_refuses_known_hostile_payloads(app, routes, caplog, payload, method):
    """The payloads of the issue's defect list, in every parameter and the Authorization header, at every route."""
    from urllib.parse import urlencode

    caplog.set_level(logging.INFO)
    value = _HOSTILE[payload]
    params = {name: value for name in _PARAM_NAMES}
    client = Client(app)
    for path in routes:
        caplog.clear()
        kwargs = {"query_string": urlencode(params)} if method == "GET" else {
            "data": urlencode(params), "content_type": "application/x-www-form-urlencoded"}
        headers = {"Authorization": "Bearer " + (value if payload.startswith("deep-jose") else _DEEP_JOSE),
                   "Accept": "application/json"}
        response = client.open(path, method=method, headers=headers, **kwargs)
        text = response.get_data(as_text=True)
        assert response.status_code < 500, (method, path, payload, response.status_code, text[:200])
        assert not any(m in text for m in TRACE_MARKERS), (method, path, payload)
        assert not any(r.levelno >= logging.ERROR for r in caplog.records), \
            (method, path, payload, [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR])
