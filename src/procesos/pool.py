"""``multiprocessing.pool`` for procesos: ``Pool`` is procesos' (crash-isolated, retries,
timeouts); ``ThreadPool`` is the standard library's (threads, no processes)."""

from multiprocessing.pool import ThreadPool

from ._engine._pool import Pool

__all__ = ["Pool", "ThreadPool"]
