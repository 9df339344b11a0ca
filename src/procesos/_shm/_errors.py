"""The shared-memory layer's exceptions, apart: raising or catching them loads nothing else."""

from __future__ import annotations

from .._errors import ProcesosError

__all__ = ["DataAbandoned", "ShmError"]


class ShmError(ProcesosError):
    """Shared memory could not be allocated, or data sent through it was lost."""


class DataAbandoned(ShmError):
    """The sender of a message gave up (an error, Ctrl-C) or died before its large
    parts were written: the message is lost."""
