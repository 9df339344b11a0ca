"""``multiprocessing.sharedctypes`` for procesos: ctypes objects in shared memory whose
locks belong to procesos' default context unless *ctx* says otherwise.

(The standard library's functions default to the standard library's context,
whose locks a zygote or spawn child of procesos may not be able to receive.)
"""

from __future__ import annotations

from multiprocessing import sharedctypes as _sharedctypes
from multiprocessing.context import BaseContext
from multiprocessing.sharedctypes import RawArray, RawValue, copy
from typing import Any

from ._proc._context import default_context

__all__ = ["Array", "RawArray", "RawValue", "Value", "copy", "synchronized"]


def Value(typecode_or_type: Any, *args: Any, lock: Any = True,
          ctx: BaseContext | None = None) -> Any:
    """A ctypes object in shared memory, synchronized by *lock* (a new one by default)."""
    return _sharedctypes.Value(typecode_or_type, *args, lock=lock,
                               ctx=ctx or default_context.get_context())


def Array(typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True,
          ctx: BaseContext | None = None) -> Any:
    """A ctypes array in shared memory, synchronized by *lock* (a new one by default)."""
    return _sharedctypes.Array(typecode_or_type, size_or_initializer, lock=lock,
                               ctx=ctx or default_context.get_context())


def synchronized(obj: Any, lock: Any = None, ctx: BaseContext | None = None) -> Any:
    """*obj* (a shared ctypes object) wrapped with *lock* (a new one by default)."""
    return _sharedctypes.synchronized(obj, lock, ctx or default_context.get_context())
