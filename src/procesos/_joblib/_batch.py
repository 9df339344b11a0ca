"""What a worker runs for the joblib backend (:mod:`procesos.joblib`): kept apart, so
that a worker loads this small module by reference and not the backend, whose
imports (the engine's parent side, asyncio) cost each new worker about 40 ms."""

from __future__ import annotations

from typing import Any

__all__ = ["run_batch"]


def run_batch(batch: Any) -> Any:
    """Run one joblib ``BatchedCalls``; the engine pickles this function once per
    executor, the batch travels as its argument."""
    return batch()
