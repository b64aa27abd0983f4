"""The registry watcher: a moved head is built and served; a version that does not build leaves the
last good one serving (retried later, never in a busy loop); an unreadable head changes nothing;
an announced activation wakes it at once."""

from __future__ import annotations

import logging
import os
import time

import pytest
import redis

from broker.registry import watch
from broker.registry.watch import RegistryWatcher, announcer

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class Registry:
    def __init__(self):
        self.seq = 1
        self.broken: set[int] = set()
        self.built: list[int] = []

    def head(self) -> int:
        if self.seq < 0:
            raise ConnectionError("database away")
        return self.seq

    def reload(self) -> int:
        if self.seq in self.broken:
            raise ValueError(f"version {self.seq} does not build here")
        self.built.append(self.seq)
        return self.seq


def test_a_moved_head_is_built_once(caplog):
    registry = Registry()
    watcher = RegistryWatcher(registry.head, registry.reload, built=1)
    assert watcher.check() is False and registry.built == []
    registry.seq = 2
    assert watcher.check() is True and registry.built == [2] and watcher.built == 2
    assert watcher.check() is False and registry.built == [2]


def test_a_version_that_does_not_build_leaves_the_last_good_one_and_is_retried_later(caplog, monkeypatch):
    registry = Registry()
    watcher = RegistryWatcher(registry.head, registry.reload, built=1)
    registry.seq, registry.broken = 2, {2}
    with caplog.at_level(logging.ERROR, logger="broker.registry.watch"):
        assert watcher.check() is False
    assert watcher.built == 1, "the last good version is still served"
    assert "seq=2 not served" in caplog.text and "still serving seq=1" in caplog.text
    registry.broken = set()
    assert watcher.check() is False, "not retried at every poll"
    monkeypatch.setattr(watch, "RETRY_AFTER", 0.0)
    registry.seq = 3   # a newer version is tried at once
    assert watcher.check() is True and watcher.built == 3


def test_an_unreadable_head_changes_nothing(caplog):
    registry = Registry()
    watcher = RegistryWatcher(registry.head, registry.reload, built=1)
    registry.seq = -1
    with caplog.at_level(logging.WARNING, logger="broker.registry.watch"):
        assert watcher.check() is False
    assert watcher.built == 1 and "head unreadable" in caplog.text


@pytest.mark.redis
def test_an_announced_activation_wakes_the_watcher_before_its_poll():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({exc.__class__.__name__})")
    registry = Registry()
    prefix = f"test-watch:{time.time_ns()}:"
    watcher = RegistryWatcher(registry.head, registry.reload, built=1, redis=client, prefix=prefix, interval=30)
    watcher.start()
    try:
        time.sleep(0.3)   # subscribed
        registry.seq = 2
        announcer(client, prefix)(2)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and registry.built != [2]:
            time.sleep(0.02)
        assert registry.built == [2], "the notice woke it long before its 30 s poll"
    finally:
        watcher.stop()
