"""``multiprocessing.synchronize``: the standard library's locks and events.

As there, each takes its context by keyword (``Lock(ctx=procesos.get_context())``);
``procesos.Lock()`` and the others need none and use procesos' default context.
"""

from multiprocessing.synchronize import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
)

__all__ = ["Barrier", "BoundedSemaphore", "Condition", "Event", "Lock", "RLock", "Semaphore"]
