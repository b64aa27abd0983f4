"""The HTTP session of an IdP with a ``ca_file`` trusts that file and nothing else (broker/backends/trust.py).

Real TLS on loopback: servers whose certificates two private CAs issued, a server whose
certificate names another host, and the process-wide ``REQUESTS_CA_BUNDLE`` pointing at the
other CA.  A city's session reaches its own CA's server only: not one the environment's
bundle trusts, not one with a wrong host name, not even when a caller passes
``verify=False``.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from broker.backends.trust import FormPost, session_for
from broker.registry.tenant_model import CaFile

from .private_ca import PrivateCa, serve_https


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _three_servers(root, app):
    """A server of the city's CA, one of another CA, one of the city's CA under another host name."""
    city, other = PrivateCa.create("City CA"), PrivateCa.create("Other CA")
    handles = {"city": serve_https(app, *city.issue(root / "city")),
               "other": serve_https(app, *other.issue(root / "other")),
               "wrong_host": serve_https(app, *city.issue(root / "wrong", hosts=("idp.elsewhere.example",)))}
    yield {"city_ca": city, "other_ca": other, "other_file": other.write(root / "other-ca.pem"),
           **{name: handle.url for name, handle in handles.items()}}
    for handle in handles.values():
        handle.shutdown()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    yield from _three_servers(tmp_path_factory.mktemp("ca-sessions"), _app)


def _ca_file(ca: PrivateCa, name: str = "vantaa/idp-ca.pem") -> CaFile:
    from pathlib import Path

    return CaFile(path=Path("/ca") / name, relative=name, digest=hashlib.sha256(ca.pem).hexdigest(),
                  pem=ca.pem.decode())


def test_the_citys_session_reaches_its_ca_server_only(servers, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(servers["other_file"]))
    session = session_for(_ca_file(servers["city_ca"]), requests.Session())
    assert session.get(servers["city"], timeout=5).text == "ok"
    with pytest.raises(requests.exceptions.SSLError):
        session.get(servers["other"], timeout=5)
    # The environment's bundle is in force for everyone else (the control)...
    assert requests.Session().get(servers["other"], timeout=5).text == "ok"
    # ...and a caller cannot switch verification off for the city's IdP.
    with pytest.raises(requests.exceptions.SSLError):
        session.get(servers["other"], timeout=5, verify=False)


def test_the_host_name_is_checked(servers):
    session = session_for(_ca_file(servers["city_ca"]), requests.Session())
    with pytest.raises(requests.exceptions.SSLError, match="(?i)hostname|match"):
        session.get(servers["wrong_host"], timeout=5)


def test_one_session_per_ca_file_and_the_shared_one_without(servers):
    shared = requests.Session()
    city = _ca_file(servers["city_ca"])
    assert session_for(None, shared) is shared
    assert session_for(city, shared) is session_for(_ca_file(servers["city_ca"]), shared)
    assert session_for(city, shared) is not session_for(_ca_file(servers["city_ca"], "lahti/idp-ca.pem"), shared)
    with pytest.raises(requests.exceptions.SSLError):
        shared.get(servers["city"], timeout=5)        # the public CAs do not know the city's CA


def _token_app(environ, start_response):
    """A token endpoint stand-in: sets a cookie, and answers with what it received."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", "fpc=person-1; Path=/")])
    seen = {"form": body, "cookie": environ.get("HTTP_COOKIE", ""), "auth": environ.get("HTTP_AUTHORIZATION", "")}
    return [json.dumps(seen).encode()]


@pytest.fixture(scope="module")
def token_servers(tmp_path_factory):
    yield from _three_servers(tmp_path_factory.mktemp("ca-form-post"), _token_app)


def test_the_token_request_keeps_the_citys_trust_and_no_ones_cookies(token_servers, monkeypatch):
    """FormPost (the OIDC code exchange) goes through the session's adapter: same trust, no cookie jar."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(token_servers["other_file"]))
    city = session_for(_ca_file(token_servers["city_ca"]), requests.Session())
    post = FormPost(city, token_servers["city"] + "/token")
    first = post.post({"code": "a&b=c"}, auth=("client", "s3cret"), timeout=5).json()
    assert first["form"] == "code=a%26b%3Dc" and first["auth"].startswith("Basic ")
    assert post.post({"code": "x"}, auth=None, timeout=5).json()["cookie"] == ""   # person 1's cookie stays out
    for url in (token_servers["other"], token_servers["wrong_host"]):    # the environment's CA; another host name
        with pytest.raises(requests.exceptions.SSLError):
            FormPost(city, url + "/token").post({"code": "x"}, auth=None, timeout=5)
    # Without a CA file: the shared session and the environment's bundle, read when the upstream is built.
    shared = FormPost(requests.Session(), token_servers["other"] + "/token")
    assert shared.post({"code": "x"}, auth=None, timeout=5).json()["form"] == "code=x"
    with pytest.raises(requests.exceptions.SSLError):
        FormPost(requests.Session(), token_servers["city"] + "/token").post({"code": "x"}, auth=None, timeout=5)
