"""Broker sessions in the store: lifetimes, per-service identifiers, atomic ending (memory and Redis)."""

from __future__ import annotations

import threading

from broker.sessions import Limits, SessionStore, UpstreamSession

IDENTITY = {"user_id": "u" * 64, "tenant": "espoo", "idp": "koulu", "given_name": "Aino"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


def _sessions(store, clock=None, **kw) -> SessionStore:
    return SessionStore(store, limits=Limits(max_lifetime=8 * 3600, idle_timeout=3600), clock=clock or Clock(),
                        **kw)


def test_idle_timeout_and_maximum_lifetime(store):
    """A session unused for its idle timeout is gone; use extends it, never beyond the maximum lifetime."""
    clock = Clock()
    sessions = _sessions(store, clock)
    token, session = sessions.create(identity=IDENTITY, idp="espoo/koulu", auth_info={})
    assert sessions.get(token) == session
    clock.now += 3599
    used = sessions.get(token)
    assert used is not None
    sessions.record_service(used, requester="rp", protocol="oidc", subject="s")   # a sign-in from it
    clock.now += 3599
    assert sessions.get(token) is not None, "each use extends the idle timeout"
    clock.now += 3601
    assert sessions.get(token) is None, "unused for an hour: gone (a pupil who walked away)"

    token, session = sessions.create(identity=IDENTITY, idp="espoo/koulu", auth_info={})
    for _ in range(8):
        clock.now += 3500
        alive = sessions.get(token)
        if alive is None:
            break
        sessions.record_service(alive, requester="rp", protocol="oidc", subject="s")
    assert clock.now - session.created >= 8 * 3600 - 3500
    clock.now = session.created + 8 * 3600
    assert sessions.get(token) is None, "the maximum lifetime ends it whatever the use"


def test_a_city_sets_its_own_limits(store):
    clock = Clock()
    sessions = _sessions(store, clock, per_tenant={"espoo": Limits(max_lifetime=1800, idle_timeout=600)})
    espoo, _ = sessions.create(identity=IDENTITY, idp="espoo/koulu", auth_info={})
    vantaa, _ = sessions.create(identity=IDENTITY, idp="vantaa/entra", auth_info={})
    clock.now += 601
    assert sessions.get(espoo) is None and sessions.get(vantaa) is not None


def test_every_service_gets_its_own_sid_and_none_is_the_session_id(store):
    sessions = _sessions(store)
    _, session = sessions.create(identity=IDENTITY, idp="espoo/koulu", auth_info={})
    sids = {r: session.sid_for(r, "oidc") for r in ("rp-a", "rp-b", "rp-c")}
    assert len(set(sids.values())) == 3 and session.id not in sids.values()
    assert session.sid_for("rp-a", "oidc") == sids["rp-a"], "stable for one service"
    assert session.sid_for("sp", "saml") != session.sid_for("sp", "oidc")
    _, other = sessions.create(identity=IDENTITY, idp="espoo/koulu", auth_info={})
    assert other.sid_for("rp-a", "oidc") != sids["rp-a"], "and different in every session"


def test_logout_finds_what_a_service_got_and_the_session_by_the_city_session(store):
    sessions = _sessions(store)
    upstream = UpstreamSession(kind="saml", idp="espoo/koulu", name_id="nid", session_index="idx-1")
    _, session = sessions.create(identity=IDENTITY, idp="espoo/koulu", auth_info={}, upstream=upstream)
    entry = sessions.record_service(session, requester="rp-a", protocol="oidc", subject="sub-a")
    assert sessions.service(session.id, "rp-a") == entry
    assert sessions.service(session.id, "rp-b") is None, "nothing for a service that got nothing"
    assert sessions.find_by_upstream("espoo/koulu", "idx-1") == session.id
    assert sessions.find_by_upstream("vantaa/entra", "idx-1") is None


def test_ending_is_atomic_and_takes_everything_with_it(store):
    sessions = _sessions(store)
    token, session = sessions.create(identity=IDENTITY, idp="espoo/koulu", auth_info={},
                                     upstream=UpstreamSession(kind="oidc", idp="espoo/koulu", sid="up-sid"))
    entry = sessions.record_service(session, requester="rp-a", protocol="oidc", subject="sub-a")
    assert sessions.add_grant(session.id, "rp-a", "gid-1")
    results = []
    barrier = threading.Barrier(4)

    def end() -> None:
        barrier.wait()
        results.append(sessions.end(session.id))

    threads = [threading.Thread(target=end) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    ended = [r for r in results if r is not None]
    assert len(ended) == 1, "exactly one logout fans out"
    assert [s.requester for s in ended[0].services] == ["rp-a"] and ended[0].grants == ("gid-1",)
    assert sessions.get(token) is None
    assert sessions.service(session.id, entry.requester) is None
    assert sessions.find_by_upstream("espoo/koulu", "up-sid") is None
    assert not sessions.add_grant(session.id, "rp-a", "gid-2"), "no grant after the end"
