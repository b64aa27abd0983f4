"""Every shell command shown in README.md and docs/*.md runs, in order, on a fresh copy of the repository.

A newcomer follows the README, then the documents; so does this test.  It takes each command
of each fenced ``sh`` block (a logical line: ``\\`` continues it, ``#`` starts a comment) and
each ``$ `` line of a ``console`` block, in document order (README.md first, then docs/*.md by
name), and runs it with ``/bin/sh`` in a copy of the repository's files (what ``git ls-files``
lists, as a clone would hold them), with ``.venv/bin`` first on the ``PATH`` as the README says
to activate it.  Each must exit 0.  State carries from one command to the next, as it does for
a person: ``make demo`` writes the demo cities' files that ``broker check`` then validates.

Not run, each for the reason given in :data:`EXCLUDED` (the test fails if an entry matches no
command any more, so the list cannot rot): commands that need a real external service (a
Docker engine, a Kubernetes cluster, a broker at a placeholder host, production hosts named
``redis`` and ``db``), the test suite itself, and the benchmarks, which load the machine for
minutes by design (``tests/bench`` runs them small).  A block preceded by
``<!-- not run: WHY -->`` (commands for another machine: a service's own web server) or by
``<!-- tested: NAME -->`` (a file's content, which the interop tests install) is not run.

``make demo`` runs until stopped: it passes when it says it is running (``Open http://…``)
and stops cleanly on Ctrl-C (SIGINT).

The copy uses the repository's ``.venv`` (a symlink) and imports the copy's own ``broker``
package (``PYTHONPATH``), so the files under test are the copy's, and the shared virtualenv is
never reinstalled.  Redis on 127.0.0.1:6379 holds the run's state under a prefix of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_fences import fences

from broker.deployment import ROOT

DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]

#: Command (its start) → why it is not run.  Each must still match a command in the documents.
EXCLUDED: dict[str, str] = {
    "make test": "the test suite this test is part of",
    "BROKER_REDIS_URL=redis://redis:6379/0 BROKER_SECRET_FILE=/run/secrets/broker": (
        "production: needs the hosts `redis` and `db` and a secret file in /run/secrets, and serves until stopped"),
    "BROKER_BASE_URL=https://login.example.fi BROKER_REDIS_URL=redis://redis:6379/0": (
        "production: needs the host `redis` and a secret file in /run/secrets, and serves until stopped"),
    "docker ": "needs a Docker engine (none runs here; tests/test_dockerfile.py checks the image offline)",
    "kubectl ": "needs a Kubernetes cluster (tests/deploy validates the manifests offline)",
    "curl -s https://<broker>/": "needs a running broker at a real https address (<broker> is a placeholder)",
    "grep -o 'X509Certificate>": "reads idp.xml, fetched from <broker> by the curl before it",
    "openssl x509 -in idp.crt": "reads idp.crt, made from <broker>'s metadata by the commands before it",
    "xmlsec1 --verify --pubkey-cert-pem idp.crt": "reads idp.xml and idp.crt, fetched from <broker>",
    "broker clients add --client-id app --redirect-uri https://app.example.fi/cb --client-secret - < app.secret": (
        "reads the secret a service moving from another broker brings (tests/registry covers the option)"),
    ".venv/bin/python -m pytest tests/deploy": "part of this test suite (tests/deploy)",
    "BROKER_SOAK_SECONDS=300 .venv/bin/python -m pytest": "the soak test of this suite (tests/soak), for five minutes",
    ".venv/bin/python bench/soak.py": "three instances under load for minutes (tests/soak runs it for 30 s)",
    ".venv/bin/python bench/bench_login.py": "minutes of load by design (tests/bench runs it with four logins)",
    ".venv/bin/python bench/bench_metrics.py": "a benchmark (minutes of CPU)",
    ".venv/bin/python bench/bench_audit.py": "a benchmark (minutes of CPU)",
    "pip install './verify[flask]'": ("installs into the current environment (the suite's own virtualenv, where "
                                      "the kit is installed editable); tests/verify uses the kit"),
}

#: Commands that run until stopped → what they print once they are up.
SERVES = {"make demo": "Open http://localhost:"}

TIMEOUT = 300   # seconds for one command


@dataclass(frozen=True)
class Command:
    file: str
    line: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


_NOT_RUN = re.compile(r"^\s*<!--\s*(?:not run:\s*(?P<why>.+?)|tested:\s*[\w-]+)\s*-->\s*$")


def commands() -> list[Command]:
    """Every command of the documents, in order."""
    found: list[Command] = []
    for name in DOCUMENTS:
        for fence in fences(ROOT / name, name):
            if fence.lang in ("sh", "bash", "shell", "console") and not _NOT_RUN.match(fence.before):
                found += _block_commands(name, fence.line + 1, list(fence.lines), console=fence.lang == "console")
    return found


def _block_commands(name: str, first: int, body: list[str], *, console: bool) -> list[Command]:
    out: list[Command] = []
    index = 0
    while index < len(body):
        raw, line = body[index], first + index
        index += 1
        text = raw.strip()
        if console:
            if not text.startswith("$ "):
                continue
            text = text[2:]
        elif not text or text.startswith("#"):
            continue
        # A line goes on after a ``\\``, and while a quote is open (a JSON body over several lines).
        while (text.endswith("\\") or _open_quote(text)) and index < len(body):
            text = (text[:-1].rstrip() if text.endswith("\\") else text) + " " + body[index].strip()
            index += 1
        out.append(Command(name, line, _without_comment(text)))
    return out


def _open_quote(text: str) -> bool:
    quote = None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and quote is None:
            break
    return quote is not None


def _without_comment(text: str) -> str:
    """The command without a trailing ``# comment`` (a ``#`` after a blank, outside quotes)."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and i and text[i - 1].isspace():
            return text[:i].rstrip()
    return text


def excluded(command: Command) -> str | None:
    return next((why for start, why in EXCLUDED.items() if command.text.startswith(start)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The repository's files as a clone holds them (tracked and new, not ignored), with the shared .venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    target = tmp_path_factory.mktemp("fresh") / "digione-login"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(ROOT / ".venv")
    # The virtualenv is installed: make must not reinstall it from the copy (it is the suite's own).
    for name in ("pyproject.toml", "verify/pyproject.toml"):
        os.utime(target / name, (0, 0))
    return target


def test_every_exclusion_still_names_a_documented_command():
    texts = [c.text for c in commands()]
    stale = [start for start in EXCLUDED if not any(t.startswith(start) for t in texts)]
    assert not stale, f"EXCLUDED names commands no document shows any more: {stale}"


def test_the_documents_show_commands():
    found = commands()
    assert any(c.text == "broker check" for c in found) and any(c.text.startswith("make demo") for c in found)


def test_every_documented_command_runs_on_a_fresh_copy(checkout):
    redis_url = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    prefix = f"doccmd-{uuid.uuid4().hex[:8]}:"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BROKER_")},
           "PATH": f"{checkout / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(checkout), "VIRTUAL_ENV": str(checkout / ".venv"),
           # Running it for real: shared state in Redis, one master secret for every command.
           "BROKER_REDIS_URL": redis_url, "BROKER_REDIS_PREFIX": prefix, "BROKER_SECRET": uuid.uuid4().hex * 2,
           "BROKER_PORT": str(_free_port()), "BROKER_METRICS_PORT": str(_free_port())}
    failures = []
    ran = 0
    try:
        for command in commands():
            if excluded(command):
                continue
            ran += 1
            problem = _run(command, checkout, env)
            if problem:
                failures.append(f"{command.id}: {command.text}\n{problem}")
    finally:
        _clean_redis(redis_url, prefix)
    assert ran >= 20
    assert not failures, "\n\n".join(failures)


def _run(command: Command, cwd: Path, env: dict[str, str]) -> str | None:
    ready = next((mark for start, mark in SERVES.items() if command.text.startswith(start)), None)
    if ready:
        return _run_server(command.text, ready, cwd, env)
    result = subprocess.run(["/bin/sh", "-c", command.text], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        return f"exit {result.returncode}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-3000:]}"
    return None


def _run_server(text: str, ready: str, cwd: Path, env: dict[str, str]) -> str | None:
    process = subprocess.Popen(["/bin/sh", "-c", "exec " + text], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            if ready in line or time.monotonic() > deadline:
                break
        if not any(ready in line for line in seen):
            return f"never said {ready!r}:\n{''.join(seen)[-3000:]}"
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
        if code not in (0, -signal.SIGINT, 128 + signal.SIGINT):   # make re-raises the Ctrl-C it passed on
            return f"exit {code} after Ctrl-C"
        return None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _clean_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
