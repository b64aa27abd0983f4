"""Issues 6 and 11: what the guard refuses before the broker sees it, how bodies are limited and
drained, duplicate cookies, security headers and the last-resort 500; at a real ``broker serve``
(uWSGI, raw sockets, ``requests``) and around small applications on a threaded server."""

from __future__ import annotations

import json
import logging
import re
import socket
import time

import pytest
import requests
from saml2.pack import http_form_post_message
from web_serve import json_lines, parse_response, raw_request

from broker.web import DRAIN_LIMIT, MAX_BODY, csp, guard

CID = re.compile(r"[0-9a-f]{16}")
LEAKS = ("Traceback", 'File "', "site-packages", ".py", "KeyError")


def _request(port: int, path: bytes, *, accept: bytes = b"text/html", extra: bytes = b"") -> tuple[int, dict, bytes]:
    return parse_response(raw_request(port, b"GET " + path + b" HTTP/1.0\r\nHost: x\r\nAccept: " + accept
                                      + b"\r\nAccept-Language: sv\r\n" + extra + b"\r\n"))


# --------------------------------------------------------------------------- paths, at the real broker

BAD_PATHS = {
    b"/%0Aforged": 400, b"/%0D%0Aforged": 400, b"/%00": 400, b"/%7F": 400, b"/%C2%85": 400, b"/%E2%80%A8": 400,
    b"/%FF%FE": 400, b"/%C3": 400,                                  # not UTF-8
    b"/a/%2e%2e/etc/passwd": 404, b"/%2E%2E/x": 404, b"/%2e/healthz": 404,  # (uWSGI resolves literal ones)
    b"/a%5Cb": 404, b"/a\\b": 404,                                   # backslashes
    b"/%252e%252e/x": 404, b"/token%250A": 404,                     # double encoding
}


@pytest.mark.parametrize("path", sorted(BAD_PATHS))
def test_bad_paths_get_the_localized_page_or_json_never_a_500(broker, path):
    status, headers, body = _request(broker.port, path)
    assert status == BAD_PATHS[path], (path, status, body[:200])
    text = body.decode()
    assert 'id="correlation-id"' in text and 'lang="sv"' in text and "Felkod" in text
    assert not any(leak in text for leak in LEAKS)
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    status, headers, body = _request(broker.port, path, accept=b"application/json")
    answer = json.loads(body)
    assert status == BAD_PATHS[path] and CID.fullmatch(answer["correlation_id"])
    assert answer["error"] == ("invalid_request" if status == 400 else "not_found")


def test_get_root_is_an_answer_with_a_correlation_id_never_an_empty_reply(broker):
    status, _, body = _request(broker.port, b"/", accept=b"application/json")
    assert status in (200, 302, 404, 500), status  # what / shows is the app's; an empty reply it is not
    if status >= 400:
        assert CID.fullmatch(json.loads(body)["correlation_id"])
        assert not any(leak.encode() in body for leak in LEAKS)


# --------------------------------------------------------------------------- bodies, at the real broker


def _post(port: int, length: int, *, send: int | None = None, expect: bool = False, timeout: float = 20.0):
    """POST /token with ``Content-Length: length``, sending ``send`` bytes (all by default); read the answer."""
    send = length if send is None else send
    head = (b"POST /token HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n" % length
            + (b"Expect: 100-continue\r\n" if expect else b"") + b"\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        if expect:
            return parse_response(sock.recv(65536))
        chunk = b"a=" + b"b" * 65534
        sent = 0
        while sent < send:
            part = chunk[: min(len(chunk), send - sent)]
            sock.sendall(part)
            sent += len(part)
        data = b""
        while True:
            piece = sock.recv(65536)  # a reset here is the defect: the answer must arrive
            if not piece:
                break
            data += piece
    return parse_response(data)


def test_a_body_over_the_limit_is_answered_413_and_the_client_reads_it(broker):
    started = time.monotonic()
    status, _, body = _post(broker.port, 2 * MAX_BODY)
    assert status == 413, (status, body[:200])
    answer = json.loads(body)
    assert answer["error"] == "invalid_request" and CID.fullmatch(answer["correlation_id"])
    assert time.monotonic() - started < 10


def test_a_body_at_the_limit_reaches_the_app(broker):
    status, _, body = _post(broker.port, MAX_BODY)
    assert status == 401 and json.loads(body)["error"] == "invalid_client"  # the provider answered


def test_a_body_over_the_drain_bound_is_not_read_at_all(broker):
    # uWSGI refuses it unread (--limit-post): the connection closes at once, the broker stays up
    started = time.monotonic()
    try:
        status, _, _ = _post(broker.port, DRAIN_LIMIT + 1, send=0, timeout=5)
    except OSError:
        status = 0
    assert status == 0 and time.monotonic() - started < 3
    assert requests.get(broker.url + "/healthz", timeout=5).status_code == 200


def test_a_chunked_body_the_server_cannot_pass_on_is_411(broker):
    raw = raw_request(broker.port, b"POST /token HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    status, _, body = parse_response(raw)
    assert status == 411 and json.loads(body)["error"] == "invalid_request"


def test_a_repeated_broker_cookie_is_refused(broker):
    cookie = b"Cookie: digione_sso=first; other=1; digione_sso=second\r\n"
    status, _, body = _request(broker.port, b"/healthz", accept=b"application/json", extra=cookie)
    assert status == 400 and json.loads(body)["error"] == "invalid_request"
    one = b"Cookie: digione_sso=first; other=1; other=2\r\n"  # another site's duplicate is not ours to judge
    assert _request(broker.port, b"/healthz", extra=one)[0] == 200


# --------------------------------------------------------------------------- headers, at the real broker


def test_security_headers_and_caching(broker):
    page = requests.get(broker.url + "/nowhere", timeout=5)  # an HTML error page
    assert page.status_code == 404 and "text/html" in page.headers["Content-Type"]
    policy = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'",
                      "style-src 'self' 'unsafe-inline'"):
        assert directive in policy, policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0] if "script-src" in policy else True
    assert page.headers["X-Frame-Options"] == "DENY"
    for response in (page, requests.get(broker.url + "/healthz", timeout=5)):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store" and response.headers["Pragma"] == "no-cache"
    for public in ("/.well-known/openid-configuration", "/jwks"):
        response = requests.get(broker.url + public, timeout=5)
        assert response.status_code == 200 and "public" in response.headers["Cache-Control"], public
        assert "Pragma" not in response.headers and response.headers["X-Content-Type-Options"] == "nosniff"


# --------------------------------------------------------------------------- around small applications


def _crashing(environ, start_response):
    raise KeyError("pupil.vantaa@koulu.example")


def test_an_exception_becomes_a_500_with_a_correlation_id_and_one_line(serve, json_log):
    url = serve(guard(_crashing))
    page = requests.get(url + "/x", headers={"Accept-Language": "en"}, timeout=5)
    assert page.status_code == 500 and 'id="correlation-id"' in page.text
    assert "unexpected error" in page.text and not any(leak in page.text for leak in LEAKS)
    machine = requests.get(url + "/x", headers={"Accept": "application/json"}, timeout=5)
    assert machine.status_code == 500 and machine.json()["error"] == "server_error"
    lines = [entry for entry in json_lines(json_log.getvalue()) if entry["logger"] == "broker.web"]
    assert len(lines) == 2 and all(entry["exc_type"] == "KeyError" for entry in lines)
    assert lines[1]["correlation_id"] == machine.json()["correlation_id"]
    assert "pupil.vantaa" not in json_log.getvalue(), "the exception's value never reaches the log"


def _echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"length": environ.get("CONTENT_LENGTH"), "got": len(body),
                        "chunked": "HTTP_TRANSFER_ENCODING" in environ}).encode()]


def test_chunked_bodies_are_read_up_to_the_limit(serve):
    url = serve(guard(_echo, max_body=10_000))

    def chunks(total: int):
        sent = 0
        while sent < total:
            part = min(1000, total - sent)
            sent += part
            yield b"x" * part

    small = requests.post(url, data=chunks(5000), timeout=10)
    assert small.status_code == 200 and small.json() == {"length": "5000", "got": 5000, "chunked": False}
    big = requests.post(url, data=chunks(50_000), headers={"Accept": "application/json"}, timeout=10)
    assert big.status_code == 413 and big.json()["error"] == "invalid_request"


def test_a_body_that_does_not_arrive_in_time_is_408(serve):
    url = serve(guard(_echo, body_timeout=1.0))
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nContent-Length: 100000\r\n\r\n")
        started = time.monotonic()
        try:
            for _ in range(8):  # 8 KB a little at a time, far from the 100 KB announced
                sock.sendall(b"y" * 1000)
                time.sleep(0.3)
        except OSError:
            pass
        status, _, body = parse_response(sock.recv(65536))
    assert status == 408 and json.loads(body)["error"] == "invalid_request"
    assert time.monotonic() - started < 5


def test_malformed_content_length_is_400(serve):
    url = serve(guard(_echo))
    port = int(url.rsplit(":", 1)[1])
    for value in (b"-1", b"1e3", b"0x10", b"99999999999999999999999"):
        raw = raw_request(port, b"POST / HTTP/1.0\r\nHost: x\r\nAccept: application/json\r\nContent-Length: "
                          + value + b"\r\n\r\n", timeout=5)
        status = parse_response(raw)[0]
        assert status == 400 or status == 413, (value, status)


def test_an_apps_own_policy_and_caching_are_kept(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Security-Policy", "default-src 'self'"),
                                  ("Cache-Control", "public, max-age=60"), ("X-Frame-Options", "SAMEORIGIN")])
        return [b"<p>ok</p>"]

    response = requests.get(serve(guard(app)), timeout=5)
    assert response.headers["Content-Security-Policy"] == "default-src 'self'"
    assert response.headers["Cache-Control"] == "public, max-age=60" and "Pragma" not in response.headers
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_pysaml2_auto_post_page_gets_its_target_as_form_action_and_is_never_cached(serve):
    def app(environ, start_response):
        page = http_form_post_message("PHNhbWw+PC9zYW1sPg==", "https://sp.example.fi:8443/acs?x=1",
                                      relay_state="r\"<x>", typ="SAMLResponse")
        start_response("200 OK", page["headers"])
        return [page["data"].encode()]

    response = requests.get(serve(guard(app, autopost_compat=True)), timeout=5)
    policy = response.headers["Content-Security-Policy"]
    assert "form-action https://sp.example.fi:8443 https:;" in policy
    assert "'unsafe-hashes' " + csp.script_hash(csp.PYSAML2_ONLOAD_HANDLER) in policy
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Pragma"] == "no-cache"
    # without the compatibility, the default policy (form-action 'self') applies
    plain = requests.get(serve(guard(app)), timeout=5)
    assert "form-action 'self'" in plain.headers["Content-Security-Policy"]


def test_dot_segments_are_refused_whatever_the_server_passes_on():
    from broker.web.guard import _Refusal, check_path

    for path in ("/a/../b", "/./x", "/disco/..", "/..", "/a/.", "/a\\b", "/a%2e", "/\x00", "/\u2028"):
        with pytest.raises(_Refusal):
            check_path(path.encode("utf-8").decode("latin-1"))
    for path in ("/", "/.well-known/openid-configuration", "/saml2/acs/post", "/oidc/vantaa/entra/callback",
                 "/a..b", "/a/.b/c", "/k\u00e4ytt\u00e4j\u00e4"):
        check_path(path.encode("utf-8").decode("latin-1"))


def test_the_guard_is_applied_once(serve):
    from broker.web import protect

    inner = guard(_echo)
    assert protect(inner) is inner
    assert protect(_echo) is not _echo


def test_refusals_are_logged_once_with_the_id_the_client_sees(serve, json_log):
    url = serve(guard(_echo))
    port = int(url.rsplit(":", 1)[1])
    status, _, body = parse_response(raw_request(port, b"GET /%0a HTTP/1.0\r\nAccept: application/json\r\n\r\n"))
    cid = json.loads(body)["correlation_id"]
    lines = [entry for entry in json_lines(json_log.getvalue()) if entry["correlation_id"] == cid]
    assert status == 400 and len(lines) == 1 and lines[0]["logger"] == "broker.errors"
    assert lines[0]["level"] == logging.getLevelName(logging.WARNING)
