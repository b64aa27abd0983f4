"""Issue 7: one JSON object per log line, escaped, with the request's correlation id on every
line, and one line per finished login; tried at a real ``broker serve`` and in process."""

from __future__ import annotations

import json
import logging
import re

import requests
from web_serve import json_lines, parse_response, raw_request

from broker import logs
from broker.web import guard

CID = re.compile(r"^[0-9a-f]{16}$")
FORGERIES = ["/%0Aforged", "/x%0D%0A%7B%22level%22:%22CRITICAL%22%7D", "/%00forged", "/a%E2%80%A8forged",
             "/%0d%0aforged", "/%C2%85forged"]


def test_a_newline_in_the_path_cannot_forge_a_log_line(broker):
    offset = broker.log_size()
    cids = []
    for path in FORGERIES:
        response = requests.get(broker.url + path, headers={"Accept": "application/json"}, timeout=5)
        assert response.status_code == 400, (path, response.status_code)
        assert response.json()["error"] == "invalid_request"
        cids.append(response.json()["correlation_id"])
    # a raw request line too (no client normalises it)
    status, _, body = parse_response(raw_request(broker.port, b"GET /%0Aforged HTTP/1.0\r\nHost: x\r\n\r\n"))
    assert status == 400 and b"correlation-id" in body
    text = broker.wait_for_log(cids[-1], offset)
    text = broker.wait_for_log('"path": "/\\nforged"', offset)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "the requests were logged"
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object: nothing was split off
        assert set(entry) >= {"time", "level", "logger", "message", "correlation_id"}, entry
        assert not line.startswith(("forged", '{"level":"CRITICAL"')), line
    for cid in cids:
        mine = [entry for entry in json_lines(text) if entry["correlation_id"] == cid]
        # the refusal and the access line, both with the id the client was given
        assert {entry["logger"] for entry in mine} == {"broker.errors", "broker.access"}, mine
        assert any(cid in entry["message"] for entry in mine if entry["logger"] == "broker.errors")
    forged = [entry for entry in json_lines(text) if "forged" in entry.get("path", "")]
    assert any(entry["path"] == "/\nforged" for entry in forged), "the decoded path is in the line, escaped"


def _authorize_lines(broker) -> tuple[str, list[dict], str]:
    offset = broker.log_size()
    # an unknown client: the provider refuses (one line) and the access log writes one
    response = requests.get(broker.url + "/authorize", params={"client_id": "nobody", "redirect_uri": "x"},
                            headers={"Accept": "application/json"}, timeout=5)
    assert response.status_code == 400
    answered = response.json()["correlation_id"]
    assert CID.match(answered)
    text = broker.wait_for_log('"path": "/authorize"', offset)
    refusal = [entry for entry in json_lines(text) if answered in entry["message"]]
    assert len(refusal) == 1, refusal
    cid = refusal[0]["correlation_id"]
    return answered, [entry for entry in json_lines(text) if entry["correlation_id"] == cid], text


def test_every_line_of_a_request_carries_its_correlation_id(broker):
    _, lines, text = _authorize_lines(broker)
    assert CID.match(lines[0]["correlation_id"])
    assert {entry["logger"] for entry in lines} == {"broker.errors", "broker.access"}, lines
    assert "redirect_uri=x" not in text, "the access log never holds the query string"


def test_the_id_the_client_sees_is_the_id_on_the_lines(broker):
    answered, lines, _ = _authorize_lines(broker)
    assert lines[0]["correlation_id"] == answered


def test_the_formatter_escapes_everything_into_one_line():
    formatter = logs.JsonFormatter()
    nasty = 'a\nb\r\nc\x00d\u2028e\u2029f\x85g"h\\i'
    record = logging.LogRecord("broker.test", logging.WARNING, __file__, 1, "value=%s", (nasty,), None)
    record.field = nasty
    line = formatter.format(record)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\x85" not in line
    assert len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["message"] == f"value={nasty}" and entry["field"] == nasty
    assert entry["level"] == "WARNING" and entry["logger"] == "broker.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_an_exception_is_one_line_with_its_type():
    formatter = logs.JsonFormatter()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        record = logging.LogRecord("broker.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = formatter.format(record)
    assert len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["exc_type"] == "ValueError" and "Traceback" in entry["traceback"]


def test_library_loggers_stay_at_warning_even_if_lowered(json_log):
    for name in logs.LIBRARY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    logging.getLogger("saml2.response").setLevel(logging.DEBUG)  # someone lowers it again
    try:
        logging.getLogger("saml2.response").info("NameID pupil.vantaa@koulu.fi")
        logging.getLogger("urllib3.connectionpool").debug("GET /token?code=SECRET")
        logging.getLogger("saml2").warning("signature check failed")
        logging.getLogger("broker.proxy").info("ours")
    finally:
        logging.getLogger("saml2.response").setLevel(logging.NOTSET)
    text = json_log.getvalue()
    assert "pupil.vantaa" not in text and "SECRET" not in text
    assert [entry["message"] for entry in json_lines(text)] == ["signature check failed", "ours"]


def test_the_guards_correlation_id_is_on_the_apps_lines(serve, json_log):
    seen = {}

    def app(environ, start_response):
        seen["cid"] = environ["digione.correlation_id"]
        logging.getLogger("broker.inner").info("working")
        logging.getLogger("broker.inner").warning("and warning", extra={"tenant": "vantaa"})
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    url = serve(guard(app, access_log=True, client_key=b"k" * 32))
    assert requests.get(url + "/x?code=SECRET-CODE", timeout=5).status_code == 200
    entries = json_lines(json_log.getvalue())
    assert [entry["logger"] for entry in entries] == ["broker.inner", "broker.inner", "broker.access"]
    assert {entry["correlation_id"] for entry in entries} == {seen["cid"]}
    assert entries[1]["tenant"] == "vantaa"
    access = entries[2]
    assert access["path"] == "/x" and access["status"] == 200 and access["method"] == "GET"
    assert "SECRET-CODE" not in json_log.getvalue()
    # The client by a keyed reference, never by its address (personal data of pupils' homes and schools).
    assert "127.0.0.1" not in json_log.getvalue()
    assert re.fullmatch(r"[0-9a-f]{16}", access["client_ref"]) and "client" not in access
    # between requests, lines carry no id
    logging.getLogger("broker.inner").info("idle")
    assert json_lines(json_log.getvalue())[-1]["correlation_id"] is None


def test_one_line_per_finished_login_and_never_personal_data(json_log):
    logs.correlation_id.set("0123456789abcdef")
    try:
        ref = logs.user_reference("1.2.246.562.24.10000000001", b"k" * 32)
        logs.login_event("success", "vantaa", "koulu", "demo-service-a", ref, sso=False, upstream="saml",
                         duration_ms=812, email="pupil@koulu.fi", sub="abc", code="SECRET", roles=["x"])
        logs.login_event("invalid_response", "espoo", "entra", "https://sp.example/sp", None)
    finally:
        logs.correlation_id.set(None)
    success, failure = json_lines(json_log.getvalue())
    assert success["event"] == "login" and success["outcome"] == "success" and success["level"] == "INFO"
    assert (success["tenant"], success["idp"], success["service"]) == ("vantaa", "koulu", "demo-service-a")
    assert re.fullmatch(r"[0-9a-f]{16}", success["user_ref"]) and success["user_ref"] == ref
    assert success["sso"] is False and success["upstream"] == "saml" and success["duration_ms"] == 812
    assert success["dropped"] == ["code", "email", "roles", "sub"]
    assert "pupil@koulu.fi" not in json_log.getvalue() and "SECRET" not in json_log.getvalue()
    assert "10000000001" not in json_log.getvalue()
    assert success["correlation_id"] == "0123456789abcdef"
    assert failure["outcome"] == "invalid_response" and failure["level"] == "WARNING" and failure["user_ref"] is None
    # the same person gets the same reference; another key gives another
    assert logs.user_reference("1.2.246.562.24.10000000001", b"k" * 32) == ref
    assert logs.user_reference("1.2.246.562.24.10000000001", b"j" * 32) != ref
