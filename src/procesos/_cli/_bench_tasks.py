"""The tasks of ``procesos bench``, in a module of their own.

A worker that is not a fork of the benchmark (procesos' zygote children,
loky's and spawn's workers) imports the module of the function it is given
before its first task. Here that costs little more than these two functions,
not the benchmark's own module and its imports, so that "a fresh pool's
first result" measures the pool.
"""

from __future__ import annotations

import time

__all__ = ["spin", "square"]


def square(x: int) -> int:
    """The tiny task."""
    return x * x


def spin(iterations: int) -> float:
    """CPU-bound work: *iterations* rounds of a small loop; the CPU seconds it took."""
    start = time.thread_time()
    total = 0
    for i in range(iterations):
        total += i & 7
    return time.thread_time() - start
