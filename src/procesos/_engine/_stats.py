"""Worker insights: what each worker slot did, for ``Executor.stats()``."""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["SlotRecord", "WorkerStats"]


@dataclass(frozen=True)
class WorkerStats:
    """What one worker slot has done since the pool started.

    A slot keeps its number when its worker is replaced (after a crash, a
    timeout, or a task or memory limit); the figures add up over its workers.
    """

    slot: int
    pid: int | None  #: the current worker's pid (None when none is running)
    tasks: int  #: tasks finished (results and exceptions alike)
    busy_s: float  #: seconds spent running tasks
    idle_s: float  #: seconds alive and not running tasks
    crashes: int  #: workers that died while holding tasks (timeouts included)
    replacements: int  #: workers started to take a previous one's place


class SlotRecord:
    """The dispatcher's running totals for one slot."""

    __slots__ = ("alive_s", "busy_s", "crashes", "pid", "replacements", "slot", "started",
                 "tasks")

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.pid: int | None = None
        self.tasks = 0
        self.busy_s = 0.0
        self.alive_s = 0.0  # of the workers that have ended
        self.started: float | None = None
        self.crashes = 0
        self.replacements = 0

    def worker_started(self, pid: int | None, replacement: bool) -> None:
        self.worker_ended()
        if replacement:
            self.replacements += 1
        self.pid = pid
        self.started = time.monotonic()

    def worker_ended(self) -> None:
        if self.started is not None:
            self.alive_s += time.monotonic() - self.started
        self.started = None
        self.pid = None

    def snapshot(self) -> WorkerStats:
        alive = self.alive_s + (time.monotonic() - self.started if self.started else 0.0)
        return WorkerStats(self.slot, self.pid, self.tasks, self.busy_s,
                           max(0.0, alive - self.busy_s), self.crashes, self.replacements)
