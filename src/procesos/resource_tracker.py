"""``multiprocessing.resource_tracker``: the standard library's.

procesos' own shared memory (``SharedArray``, large arguments and results)
has a tracker of its own and never registers here; the standard library's
``SharedMemory`` and named semaphores do.
"""

from multiprocessing.resource_tracker import ensure_running, register, unregister

__all__ = ["ensure_running", "register", "unregister"]
