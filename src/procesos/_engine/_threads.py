"""Thread limits for numeric libraries in a worker, so N workers do not start N x cores threads.

The environment variables cover libraries loaded later; libraries already
loaded (a zygote preloads the parent's numpy) are told through their own C
functions, found in the process's memory map.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["THREAD_VARIABLES", "limit_threads", "snapshot_libraries"]

THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS",
)

# Shared-library name fragment -> the function that sets its thread count.
_SETTERS = (
    ("openblas", "openblas_set_num_threads"),
    ("openblas", "scipy_openblas_set_num_threads64_"),  # numpy's and scipy's wheels
    ("openblas", "scipy_openblas_set_num_threads"),
    ("libgomp", "omp_set_num_threads"),
    ("libiomp", "omp_set_num_threads"),
    ("libomp", "omp_set_num_threads"),
    ("mkl_rt", "MKL_Set_Num_Threads"),
    ("blis", "bli_thread_set_num_threads"),
)


def _loaded_libraries() -> list[str]:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if ".so" in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


# The libraries loaded when the zygote took its snapshot, and how many modules
# it had then: a worker forked from it finds the same ones until it imports
# more, without reading its memory map (400 µs of every worker's start).
_snapshot: tuple[int, list[str]] | None = None


def snapshot_libraries() -> None:
    """Read the loaded libraries now, for the processes forked from this one (the zygote)."""
    global _snapshot
    _snapshot = (len(sys.modules), _loaded_libraries())


def _libraries() -> list[str]:
    if _snapshot is not None and _snapshot[0] == len(sys.modules):
        return _snapshot[1]
    return _loaded_libraries()


def limit_threads(threads: int) -> None:
    """Limit numeric libraries in this process to *threads* threads each."""
    value = str(threads)
    for name in THREAD_VARIABLES:
        os.environ[name] = value
    numexpr = sys.modules.get("numexpr")
    if numexpr is not None:
        numexpr.set_num_threads(threads)
    for path in _libraries():
        base = os.path.basename(path).lower()
        for fragment, function in _SETTERS:
            if fragment in base:
                try:
                    setter = getattr(ctypes.CDLL(path), function)
                except (OSError, AttributeError):
                    continue
                setter.argtypes = [ctypes.c_int]
                setter(threads)
