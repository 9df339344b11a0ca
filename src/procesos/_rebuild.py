"""What a receiver calls to rebuild a function sent by value, without cloudpickle.

procesos' pickler (cloudpickle's, see :mod:`procesos._serialization`) names
these in the stream in place of cloudpickle's own helpers, so that loading a
lambda, a closure or a function of ``__main__`` imports this module and not
cloudpickle (10 to 25 ms: ``inspect``, ``dataclasses``, ``logging``,
``platform``, ``uuid``), which a ``spawn`` child would otherwise import before
running its target (a class sent by value still needs cloudpickle's own
helpers). Each does what cloudpickle's helper of the same role does
(cloudpickle 3.x); :func:`procesos._compat.cloudpickle_function_reduce_known`
checks, with a function rebuilt by them, that cloudpickle still reduces
functions as they expect, and procesos otherwise leaves functions to
cloudpickle's own helpers. Imports nothing of procesos.
"""

from __future__ import annotations

import builtins
import sys
import types
from typing import Any

__all__ = ["function_setstate", "import_module", "make_cell", "make_code", "make_empty_cell",
           "make_function"]


def make_function(code: types.CodeType, globals: dict[str, Any], name: str | None,
                  argdefs: tuple[Any, ...] | None, closure: tuple[Any, ...] | None
                  ) -> types.FunctionType:
    """A function of *code* over *globals* (cloudpickle's ``_make_function``)."""
    globals["__builtins__"] = builtins.__dict__
    return types.FunctionType(code, globals, name, argdefs, closure)


def function_setstate(func: types.FunctionType, state: tuple[dict[str, Any], dict[str, Any]]
                      ) -> None:
    """Give *func* its attributes, globals and closure's contents (cloudpickle's
    ``_function_setstate``): ``__globals__`` and ``__closure__`` are read-only,
    so they are filled in place; the modules listed only to be imported are dropped."""
    attributes, slots = state
    func.__dict__.update(attributes)
    slots = dict(slots)
    func_globals = slots.pop("__globals__")
    closure = slots.pop("__closure__", None)
    slots.pop("_cloudpickle_submodules", None)
    func.__globals__.update(func_globals)
    func.__globals__["__builtins__"] = builtins.__dict__
    if closure is not None and func.__closure__ is not None:
        for index, cell in enumerate(closure):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell: a name not bound yet
                continue
            func.__closure__[index].cell_contents = value
    for name, value in slots.items():
        setattr(func, name, value)


def make_empty_cell() -> types.CellType:
    """A closure cell that holds nothing yet."""
    return types.CellType()


def make_cell(value: Any) -> types.CellType:
    """A closure cell that holds *value*."""
    return types.CellType(value)


def make_code(args: tuple[Any, ...], filename: str) -> types.CodeType:
    """``types.CodeType(*args)`` with *filename* as its file (so that a traceback
    shows where the code is, and its lines)."""
    return types.CodeType(*args).replace(co_filename=filename)


def import_module(name: str) -> types.ModuleType:
    """The module *name*, imported if it is not yet (cloudpickle's ``subimport``:
    ``__import__`` alone would return a submodule's top package)."""
    __import__(name)
    return sys.modules[name]
