"""Instructions per login: ours under ``valgrind --tool=callgrind``, for ``bench_login.py --callgrind N``.

CPU time on a shared two-core machine moves by 10-30 % between runs; the number of
instructions a worker executes for the same logins moves by well under 1 %.  This pass
serves the broker with ``broker serve``'s uWSGI options (the real server: its HTTP parsing
counts) in one process without a master, under callgrind with instrumentation off; after the
warm-up it switches it on (``callgrind_control -i on``), runs N logins, dumps and reads the
instruction count (``Ir``).  The master's per-login work (it only supervises) is not counted.

Callgrind runs code 50-100x slower, so N is small (20-50 logins measure to 0.1 %).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

# Instrumentation off until the warm-up is done: nothing is counted while it is off, and the
# server starts several times faster.
VALGRIND = ("valgrind", "--tool=callgrind", "--instr-atstart=no",
            "--dump-instr=no", "--dump-line=no", "--error-limit=no")


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


#: ``broker serve``'s uWSGI, less ``--master``: one process that serves requests itself.  Valgrind's
#: control channel (``callgrind_control``) reaches the process it started, not a forked worker.
LAUNCH = ("import sys, pyuwsgi; from broker.server import uwsgi_args; from broker.settings import Settings; "
          "args = uwsgi_args(Settings.from_env(), workers=1, bind=sys.argv[1]); args.remove('--master'); "
          "pyuwsgi.run(args)")


def argv(python: str, bind: str, out_dir: Path) -> list[str]:
    """The command line of one uWSGI process serving the broker under callgrind."""
    return [*VALGRIND, f"--callgrind-out-file={out_dir}/callgrind.out.%p", python, "-c", LAUNCH, bind]


def control(*args: str) -> str:
    return subprocess.run(["callgrind_control", *args], check=True, capture_output=True, text=True,
                          timeout=120).stdout


def collect(pid: int, out_dir: Path, run, nudge) -> int:
    """Instructions the process ``pid`` executes while ``run()`` runs."""
    pids = [pid]
    for pid in pids:
        control("-i", "on", str(pid))
    try:
        run()
    finally:
        for pid in pids:
            control("-d", str(pid))   # switching instrumentation off first would zero the counts
    total = 0
    for pid in pids:
        deadline = time.monotonic() + 60
        while not (dumps := sorted(out_dir.glob(f"callgrind.out.{pid}.*"))):
            # An idle worker (waiting in epoll) reads callgrind_control's request on its next request.
            if time.monotonic() > deadline:
                raise RuntimeError(f"no callgrind dump of worker {pid} in {out_dir}")
            nudge()
            time.sleep(0.5)
        total += _instructions(dumps[-1])
    return total


def _instructions(path: Path) -> int:
    text = path.read_text(errors="replace")
    match = re.search(r"^totals:\s*(\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no instruction total in {path}")
    return int(match.group(1))
