"""Layer 1: the one pickler for everything that crosses a process boundary.

cloudpickle (functions and classes from ``__main__``, lambdas and closures by
value, importable objects by reference) extended with the reducers that
``multiprocessing`` registers for its own objects (connections, sockets,
shared-memory arenas), so that queues, locks, pipes and manager proxies can be
passed to a child.
"""

from __future__ import annotations

import io

# Importing these modules registers their reducers with ForkingPickler.
import pickle
from collections import ChainMap
from multiprocessing.reduction import ForkingPickler
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

__all__ = ["PROTOCOL", "Pickler", "dumps", "loads"]

PROTOCOL = pickle.HIGHEST_PROTOCOL


class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle with multiprocessing's reducers for its own types."""

    dispatch_table = ChainMap(
        ForkingPickler._extra_reducers,  # type: ignore[attr-defined]
        cloudpickle.Pickler.dispatch_table,
    )


def dumps(obj: Any) -> bytes:
    """Pickle *obj* for another process."""
    buffer = io.BytesIO()
    Pickler(buffer, protocol=PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Unpickle what :func:`dumps` produced."""
    return pickle.loads(data)
