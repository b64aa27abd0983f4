"""Live state for N users, written straight to Redis, so a login is measured against a full store.

The values are copies of what a real login just stored (read back after a sample login), so
their shapes and sizes are the real ones; only identifiers differ per user.  Writes are raw
RESP commands on one socket, sent in large pipelined batches (the replies are counted, not
parsed), so 1,000,000 users take seconds, not minutes.  Every key gets a TTL (an hour), so an
interrupted run cannot leave gigabytes behind; the benchmark also deletes them at the end.

**Ours** (``broker/sessions/sso.py``, ``broker/tokens/grants.py``), per user:
``sso:{<t>}<sid>`` (the broker session with the canonical identity), ``sso:idx:up:{<h8>}<h>``
(the city IdP's session index), ``tok:grant:{<t>}<gid>`` (the refresh-token family with released
claims), ``tok:rt:{<t>}<sha256>`` (its current refresh token): 4 keys, 4 commands; and for one
user in 50 ``tok:code:{<t>}<sha256>`` and ``tok:codegrant:{<t>}<sha256>`` (an unredeemed
authorization code).  Every user's keys carry its own login tag ``<t>``, as a real login's do
(:mod:`broker.store.slots`); the keys are built by the broker's own key functions.

**Vanilla SATOSA** (pyop's ``RedisWrapper``: key ``<collection>:<key>``, value
``{"value": ...}``), per user: ``subject_identifiers:<user_id>`` (which pyop scans with
``KEYS`` and one ``GET`` per key), ``authz_codes:<user_id>`` (SATOSA's user database shares
that collection), ``authz_codes:<code>``, ``access_tokens:<token>``, ``refresh_tokens:<token>``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from urllib.parse import urlsplit

from broker.sessions.store import _index_key as index_key
from broker.sessions.store import session_key
from broker.store import slots
from broker.tokens.grants import grant_key

TTL = 3600


def _cmd(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class RespPipe:
    """Raw RESP commands on one connection; replies are counted, errors reported."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=120)
        self.pending = 0
        self.buffer: list[bytes] = []
        self.errors = 0
        db = (parts.path or "/0").lstrip("/") or "0"
        self.add(_cmd(b"SELECT", db.encode()))
        self.flush()

    def add(self, command: bytes) -> None:
        self.buffer.append(command)
        self.pending += 1

    def flush(self) -> None:
        if self.buffer:
            self.sock.sendall(b"".join(self.buffer))
            self.buffer.clear()
        seen, last, replies = 0, b"", bytearray()
        while seen < self.pending:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            # Every reply to SET/SADD/EXPIRE/SELECT is one line ("+OK", ":1", "-ERR ...").
            seen += (last + chunk).count(b"\r\n")
            last = chunk[-1:] if chunk.endswith(b"\r") else b""
            replies += chunk
        self.errors += replies.count(b"\n-") + replies.startswith(b"-")
        self.pending = 0

    def close(self) -> None:
        self.sock.close()


class _Template:
    """A JSON value with some strings replaced by ``%(name)s`` slots (rendered with ``%``)."""

    def __init__(self, value, slots: dict[str, str]):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("%", "%%")
        for original, name in slots.items():
            if original:
                text = text.replace(json.dumps(original)[1:-1], f"%({name})s")
        self.text = text

    def render(self, values: dict[str, str]) -> bytes:
        return (self.text % values).encode()


def _ids(seed: str, index: int) -> dict[str, str]:
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=32).hexdigest()
    rev = digest[::-1]
    tag = digest[:slots.TAG_LENGTH]   # the user's login tag, as a real login's values carry it
    return {"h": digest, "h2": rev, "tag": tag, "sid": slots.with_tag(tag, digest),
            "gid": slots.with_tag(tag, rev[:22]), "uid": "u" + digest[8:48], "sub": rev[4:44],
            "jti": slots.with_tag(tag, digest[10:32]),
            "up": tag + rev[:56]}   # the city IdP's session index: its hash's first digits are the tag


def _jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def ours_templates(redis_client, prefix: str, sample: dict, client_id: str) -> dict:
    """Learn the shapes of our store's values from a sample login's keys."""
    gid = _jwt_claims(sample["access_token"])["gid"]
    grant = json.loads(redis_client.get(prefix + grant_key(gid)))
    sid = grant["ses"]  # the broker session (the client's own sid differs per client)
    sso = json.loads(redis_client.get(prefix + session_key(sid)))
    user_id = sso["identity"]["user_id"]
    sub = grant["sub"]
    code = {"c": client_id, "r": "https://rp.bench.example/cb", "s": grant["s"], "n": "n" * 22,
            "cc": "c" * 43, "sub": sub, "cl": grant["cl"], "ro": grant["ro"], "at": grant["at"],
            "acr": grant["acr"], "amr": grant["amr"], "sid": sid, "gid": gid, "jti": "j" * 22}
    slots = {user_id: "uid", sid: "sid", sub: "sub", gid: "gid", "j" * 22: "jti"}
    return {
        "sso": _Template(sso, slots), "grant": _Template(grant, slots), "code": _Template(code, slots),
        "rt": _Template({"gid": gid, "c": client_id}, slots), "codegrant": _Template({"gid": gid, "jti": "j" * 22},
                                                                                     slots),
        "value_bytes": {"sso": len(json.dumps(sso)), "grant": len(json.dumps(grant)), "code": len(json.dumps(code))},
    }


def prefill_ours(url: str, prefix: str, templates: dict, users: int, *, seed: str, codes_every: int = 50,
                 batch: int = 5000, progress=None) -> dict:
    """Write ``users`` users' worth of our live state; returns counts and seconds.

    Every user gets an SSO session, its user set, a grant and a refresh token; one user in
    ``codes_every`` also has an unredeemed code (a code lives 60 s: at 300 logins/s that is
    ~18,000 live codes, against hundreds of thousands of sessions over a school day).
    """
    pipe = RespPipe(url)
    p = prefix.encode()
    ttl = str(TTL).encode()
    start = time.perf_counter()
    t = templates
    for index in range(users):
        ids = _ids(seed, index)
        tag = ids["tag"]
        pipe.add(_cmd(b"SET", p + session_key(ids["sid"]).encode(), t["sso"].render(ids), b"EX", ttl))
        pipe.add(_cmd(b"SET", p + index_key(ids["up"]).encode(), json.dumps(ids["sid"]).encode(), b"EX", ttl))
        pipe.add(_cmd(b"SET", p + grant_key(ids["gid"]).encode(), t["grant"].render(ids), b"EX", ttl))
        pipe.add(_cmd(b"SET", p + slots.key("tok:rt:", tag, ids["h"]).encode(), t["rt"].render(ids), b"EX", ttl))
        if index % codes_every == 0:
            pipe.add(_cmd(b"SET", p + slots.key("tok:code:", tag, ids["h2"]).encode(), t["code"].render(ids),
                          b"EX", ttl))
            pipe.add(_cmd(b"SET", p + slots.key("tok:codegrant:", tag, ids["h2"]).encode(),
                          t["codegrant"].render(ids), b"EX", ttl))
        if (index + 1) % batch == 0:
            pipe.flush()
            if progress:
                progress(index + 1)
    pipe.flush()
    pipe.close()
    codes = (users + codes_every - 1) // codes_every
    return {"users": users, "keys": users * 4 + codes * 2, "codes": codes, "seconds": time.perf_counter() - start,
            "errors": pipe.errors, "value_bytes": templates["value_bytes"]}


PYOP_COLLECTIONS = ("subject_identifiers", "authz_codes", "access_tokens", "refresh_tokens")


def satosa_templates(redis_client) -> dict:
    """Learn pyop's value shapes from the keys of one sample login (a scan, outside any measurement).

    The store holds exactly one login's keys at that point: the benchmark empties it first.
    """
    found: dict[str, tuple[str, dict]] = {}
    subjects = [k.decode() for k in redis_client.scan_iter(match="subject_identifiers:*", count=1000)]
    if len(subjects) != 1:
        raise RuntimeError(f"expected the keys of one sample login, found {len(subjects)} subjects")
    sample_uid = subjects[0].split(":", 1)[1]
    for collection in PYOP_COLLECTIONS:
        for key in redis_client.scan_iter(match=f"{collection}:*", count=1000):
            key = key.decode()
            value = json.loads(redis_client.get(key) or "null")
            if value is None:
                continue
            name = collection
            if collection == "authz_codes":
                name = "user" if key == f"authz_codes:{sample_uid}" else "code"
            if name not in found:
                found[name] = (key.split(":", 1)[1], value)
    missing = {"subject_identifiers", "user", "code", "access_tokens"} - set(found)
    if missing:
        raise RuntimeError(f"pyop keys not found after a sample login: {sorted(missing)}")
    subject = found["subject_identifiers"][1]["value"]
    sub = (subject.get("pairwise") or [subject.get("public")])[0]
    slots = {sample_uid: "uid", sub: "sub"}
    templates = {"subject": _Template(found["subject_identifiers"][1], slots),
                 "user": _Template(found["user"][1], slots),
                 "code": _Template(found["code"][1], {**slots, found["code"][0]: "code"}),
                 "access": _Template(found["access_tokens"][1], {**slots, found["access_tokens"][0]: "at"})}
    if "refresh_tokens" in found:
        templates["refresh"] = _Template(found["refresh_tokens"][1], slots)
    return templates


def prefill_satosa(url: str, templates: dict, users: int, *, seed: str, batch: int = 5000) -> dict:
    pipe = RespPipe(url)
    ttl = str(TTL).encode()
    start = time.perf_counter()
    for index in range(users):
        ids = _ids(seed, index)
        ids.update(uid="MPASSOID." + ids["h"][:40], sub=ids["h2"], code=ids["h"][:32], at=ids["h2"][:32])
        pipe.add(_cmd(b"SET", b"subject_identifiers:" + ids["uid"].encode(), templates["subject"].render(ids),
                      b"EX", ttl))
        pipe.add(_cmd(b"SET", b"authz_codes:" + ids["uid"].encode(), templates["user"].render(ids), b"EX", ttl))
        pipe.add(_cmd(b"SET", b"authz_codes:" + ids["code"].encode(), templates["code"].render(ids), b"EX", ttl))
        pipe.add(_cmd(b"SET", b"access_tokens:" + ids["at"].encode(), templates["access"].render(ids), b"EX", ttl))
        if "refresh" in templates:
            pipe.add(_cmd(b"SET", b"refresh_tokens:" + ids["h"][32:].encode(), templates["refresh"].render(ids),
                          b"EX", ttl))
        if (index + 1) % batch == 0:
            pipe.flush()
    pipe.flush()
    pipe.close()
    return {"users": users, "keys": users * (5 if "refresh" in templates else 4),
            "seconds": time.perf_counter() - start, "errors": pipe.errors}


def delete_matching(redis_client, patterns: list[str]) -> int:
    """UNLINK every key matching ``patterns`` (SCAN, pipelined); returns how many."""
    deleted = 0
    for pattern in patterns:
        batch = []
        for key in redis_client.scan_iter(match=pattern, count=10000):
            batch.append(key)
            if len(batch) >= 10000:
                deleted += redis_client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += redis_client.unlink(*batch)
    return deleted
