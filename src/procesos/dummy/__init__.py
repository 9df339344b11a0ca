"""``multiprocessing.dummy``: the ``multiprocessing`` API on threads, the standard library's.

Threads start no process, so nothing here is procesos' own; it is here so
that ``import procesos.dummy`` works wherever ``multiprocessing.dummy`` does.
"""

from multiprocessing.dummy import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    JoinableQueue,
    Lock,
    Manager,
    Pipe,
    Pool,
    Process,
    Queue,
    RLock,
    Semaphore,
    active_children,
    current_process,
    freeze_support,
)

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Pipe",
    "Pool",
    "Process",
    "Queue",
    "RLock",
    "Semaphore",
    "active_children",
    "current_process",
    "freeze_support",
]
