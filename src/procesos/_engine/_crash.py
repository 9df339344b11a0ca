"""Why a worker died, in words: the hint that goes into ``WorkerCrashedError``.

A worker killed by SIGKILL was "likely killed for using too much memory" when
the kernel's out-of-memory killer (system-wide or in our cgroup) has killed
something since the last check, or when the worker's last sampled resident
memory was above ``max_memory_per_worker`` or above half of the memory
available to this process.
"""

from __future__ import annotations

import os
import signal

from .._errors import signal_hint

__all__ = ["OOM_HINT", "crash_hint", "format_bytes", "memory_available", "oom_kills"]

OOM_HINT = "likely killed for using too much memory"

def _cgroup_dir() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return "/sys/fs/cgroup" + line[3:].strip()
    except OSError:
        pass
    return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def oom_kills() -> int:
    """How many processes the out-of-memory killer has killed (system and our cgroup)."""
    total = 0
    for path, key in (("/proc/vmstat", "oom_kill"), (f"{_cgroup_dir()}/memory.events", "oom_kill")):
        text = _read(path)
        if not text:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                total += int(value)
    return total


def memory_available() -> int | None:
    """The memory this process may use: its cgroup's limit, else the machine's RAM."""
    directory = _cgroup_dir()
    limit = _read(f"{directory}/memory.max") if directory else None
    if limit and limit.strip().isdigit():
        return int(limit)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def crash_hint(exitcode: int | None, rss: int, max_memory: int | None, oom_increased: bool,
               ) -> str:
    """The likely cause of a worker's death, or ``""``."""
    if exitcode == -signal.SIGKILL:
        available = memory_available()
        high = (max_memory is not None and rss > max_memory) or (
            available is not None and rss > available // 2)
        if oom_increased or high:
            detail = f" (its resident memory was {format_bytes(rss)})" if rss else ""
            return OOM_HINT + detail
    return signal_hint(exitcode, kill_may_be_memory=False)
