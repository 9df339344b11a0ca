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
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["class_at", "function_setstate", "import_module", "make_cell", "make_class",
           "make_code", "make_ctypes_record", "make_empty_cell", "make_function",
           "set_class_state"]


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


# Classes this process has, whole: one that arrives again is not set up again.
_complete: weakref.WeakSet[type] = weakref.WeakSet()


def make_class(make: Callable[..., type], args: tuple[Any, ...],
               origin: tuple[str, str, int]) -> type:
    """A class sent by value (cloudpickle's *make* and *args*): the one this
    process has for it, else a new one.

    Ours is the class tracked under the same id (sent from here, or received
    before) or, arriving from a process forked from this one (which has no id
    of ours for it), the class at *origin* — module, qualified name and the
    address it had there, which a fork keeps —: the same object. Its
    attributes are not set again (:func:`set_class_state`): cloudpickle's
    rebuild replaced the methods of the caller's own class with copies whose
    globals were a snapshot of the sender's.
    """
    from cloudpickle import cloudpickle as tracker  # type: ignore[import-untyped]

    tracker_id = args[-2]
    with tracker._DYNAMIC_CLASS_TRACKER_LOCK:
        ours: type | None = tracker._DYNAMIC_CLASS_TRACKER_BY_ID.get(tracker_id)
    if ours is None:
        own = class_at(*origin)  # outside the lock: a module's __getattr__ may pickle
        if own is not None:
            with tracker._DYNAMIC_CLASS_TRACKER_LOCK:
                ours = tracker._DYNAMIC_CLASS_TRACKER_BY_ID.setdefault(tracker_id, own)
    if ours is None:
        return make(*args)
    _complete.add(ours)
    return ours


def set_class_state(cls: type, state: Any) -> None:
    """cloudpickle's ``_class_setstate``, for a class made from the pickle only."""
    if cls in _complete:
        return
    from cloudpickle import cloudpickle as tracker

    tracker._class_setstate(cls, state)
    _complete.add(cls)


def class_at(module: str, qualname: str, address: int) -> type | None:
    """The class *module*.*qualname* here, if it is the object at *address*."""
    found: Any = sys.modules.get(module)
    if found is None or "<" in qualname:
        return None
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) and id(found) == address else None


# ctypes structures and unions of the sender's script rebuilt here, by their origin.
_records: weakref.WeakValueDictionary[tuple[str, str, int], type] = weakref.WeakValueDictionary()


def make_ctypes_record(bases: tuple[type, ...], name: str, qualname: str, module: str,
                       attributes: dict[str, Any], origin: tuple[str, str, int]) -> type:
    """A ``ctypes.Structure`` or ``Union`` class sent by value (cloudpickle cannot:
    its fields are descriptors it does not pickle): this process's own (see
    :func:`make_class`), the one rebuilt here before, else a new one from its
    ``_fields_``, ``_pack_``, ``_anonymous_`` and other attributes."""
    ours = class_at(*origin) or _records.get(origin)
    if ours is None:
        ours = type(bases[0])(name, bases, {"__module__": module, "__qualname__": qualname,
                                            **attributes})
        _records[origin] = ours
    return ours
