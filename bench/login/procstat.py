"""What the servers cost: CPU of a process tree from ``/proc``, peak RSS, Redis CPU.

CPU is the time on CPU of every live process in the tree (the gunicorn master and its
workers: ``/proc/<pid>/schedstat``, in nanoseconds; ``utime + stime`` of ``/proc/<pid>/stat``,
in clock ticks, where schedstat is missing) plus ``cutime + cstime`` (the CPU of children they
have waited for, such as the ``xmlsec1`` processes pysaml2 spawns, or a worker that was
replaced).  Wall time is never used for cost.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))  # fields[1] = ppid
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _on_cpu_ns(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root``'s tree, waited-for children included."""
    total = 0.0
    for pid in descendants(root):
        fields = _stat(pid)
        if fields is None:
            continue
        # After the ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        on_cpu = _on_cpu_ns(pid)
        own = on_cpu / 1e9 if on_cpu is not None else (int(fields[11]) + int(fields[12])) / CLK_TCK
        total += own + (int(fields[13]) + int(fields[14])) / CLK_TCK
    return total


def tree_kernel_seconds(root: int) -> float:
    """System (kernel) CPU of ``root``'s tree, waited-for children included (clock ticks: 10 ms)."""
    total = 0
    for pid in descendants(root):
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[12]) + int(fields[14])   # stime, cstime
    return total / CLK_TCK


def status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def worker_peak_rss_mb(master: int) -> list[float]:
    """VmHWM (peak resident set) of each worker below the gunicorn master, in MB."""
    peaks = []
    for pid in descendants(master):
        if pid == master:
            continue
        hwm = status_kb(pid, "VmHWM")
        if hwm is not None:
            peaks.append(hwm / 1024)
    return peaks


def forks_since_boot() -> int:
    """Processes created on the whole machine since boot (``processes`` in ``/proc/stat``)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    return 0


def redis_cpu_seconds(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = status = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    del status
    return {"cpu": model, "cores": str(os.cpu_count()), "memory": mem}
