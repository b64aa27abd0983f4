"""The generated master secret is readable by its owner only from its first byte (issue 13)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from broker.settings import Settings


@pytest.fixture
def open_umask():
    """The most permissive umask: whatever mode a file gets is the mode the code asked for."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def _settings(keys: Path) -> Settings:
    return Settings.from_env({"BROKER_KEYS_DIR": str(keys), "BROKER_SECRETS_DIR": str(keys.parent / "secrets")})


def test_created_0600_and_no_temporary_file_is_left(tmp_path, open_umask):
    keys = tmp_path / "keys"
    settings = _settings(keys)
    path = keys / "master.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert [p.name for p in keys.iterdir()] == ["master.secret"]
    assert len(settings.master_secret) >= 32 and settings.master_secret == path.read_bytes().strip()
    assert _settings(keys).master_secret == settings.master_secret   # read, not regenerated


#: Another process that stats every file in ``<base>/*/keys`` until ``<base>/STOP`` appears, and
#: prints how many it saw and how many had a group or other permission bit.
WATCHER = """
import os, stat, sys
base = sys.argv[1]
stop, seen, exposed = os.path.join(base, "STOP"), 0, []
while not os.path.exists(stop):
    for instance in os.listdir(base):
        try:
            entries = list(os.scandir(os.path.join(base, instance, "keys")))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
            except FileNotFoundError:
                continue
            seen += 1
            if mode & 0o077:
                exposed.append((entry.name, oct(mode)))
print(seen, len(exposed), exposed[:5])
"""


def test_never_readable_by_others_at_any_moment(tmp_path, open_umask):
    """A watcher process stats every file in the keys folders while 400 secrets are created; no
    file it sees, temporary or final, ever has a group or other permission bit.  (With the old
    write-then-chmod it saw world-readable temporary files on every run.)"""
    base = tmp_path / "instances"
    base.mkdir()
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(base)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        for index in range(400):
            _settings(base / f"instance-{index}" / "keys")
    finally:
        (base / "STOP").write_text("")
        out, _ = watcher.communicate(timeout=60)
    seen, exposed, examples = out.split(" ", 2)
    assert int(seen) > 0, "the watcher saw the files"
    assert int(exposed) == 0, examples
    for index in range(400):
        assert [p.name for p in (base / f"instance-{index}" / "keys").iterdir()] == ["master.secret"]


def test_instances_starting_together_agree_on_one_secret(tmp_path):
    keys = tmp_path / "keys"
    barrier = threading.Barrier(8)
    secrets: list[bytes] = []

    def start():
        barrier.wait()
        secrets.append(_settings(keys).master_secret)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(secrets)) == 1 and len(secrets) == 8
    assert [p.name for p in keys.iterdir()] == ["master.secret"]


def test_an_older_world_readable_secret_is_made_private(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    path = keys / "master.secret"
    path.write_text("x" * 48)
    path.chmod(0o644)
    assert _settings(keys).master_secret == b"x" * 48
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_attacker_planted_symlink_at_the_temporary_name_is_not_followed(tmp_path):
    """The temporary name is random and created with O_EXCL | O_NOFOLLOW, so a symlink planted
    next to the secret is never written through."""
    keys = tmp_path / "keys"
    keys.mkdir()
    target = tmp_path / "exposed"
    (keys / ".master.secret.tmp").symlink_to(target)
    (keys / "master.secret.tmp").symlink_to(target)
    _settings(keys)
    assert not target.exists()
    assert sorted(p.name for p in keys.iterdir()) == [".master.secret.tmp", "master.secret", "master.secret.tmp"]
