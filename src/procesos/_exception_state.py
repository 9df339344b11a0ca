"""An exception sent as its state: for a parent that cannot rebuild it from its pickle.

Pickle rebuilds an exception by calling ``cls(*exc.args)``. That fails for a
class whose ``__init__`` takes other arguments than those it gave to
``Exception.__init__`` (``MyError(a, b)`` that passes ``f"{a}-{b}"``), and no
pickle at all is made of one that holds something unpicklable (a lock, a
socket). :func:`pack_if_needed` sends such an exception as its class, its
``args`` and those of its attributes that can be pickled; :func:`unpack` makes the class
without calling its ``__init__`` and sets them, as pickle makes any other
object, and adds a note naming the attributes left out. Only pickle and
(lazily) cloudpickle: a cluster's worker imports this module too.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["pack_if_needed", "unpack"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_FAILURES = (Exception, SystemExit, KeyboardInterrupt)  # what a __reduce__ may raise
# The state is a tuple: (_MARK, class, args, attributes, left_out), left_out
# naming the attributes that could not be pickled ("name (a module.Type object)").
_MARK = "procesos exception state"


def pack_if_needed(exc: BaseException, pickled: bool) -> bytes | None:
    """*exc*'s state for the other process, or None: not needed when *exc* was
    *pickled* and pickle's way of rebuilding it, ``cls(*args)``, runs no
    ``__init__`` written in Python (which may take other arguments than its
    ``args``); None too when not even the state can be pickled."""
    cls = type(exc)
    if pickled and not _init_in_python(cls):
        return None
    try:
        # At once, most often: every attribute pickles.
        return _in_band((_MARK, cls, exc.args, vars(exc), ()))
    except _FAILURES:
        pass
    attributes: dict[str, Any] = {}
    left_out: list[str] = []
    for name, value in vars(exc).items():
        try:
            _in_band(value)
        except _FAILURES:
            kind = type(value)
            left_out.append(f"{name} (a {kind.__module__}.{kind.__qualname__} object)")
        else:
            attributes[name] = value
    args = exc.args
    try:
        _in_band(args)
    except _FAILURES:
        args = (str(exc),)
    try:
        return _in_band((_MARK, cls, args, attributes, tuple(left_out)))
    except _FAILURES:
        return None


def _init_in_python(cls: type[BaseException]) -> bool:
    """Whether pickle rebuilds an exception of *cls* (``cls(*args)``) through an
    ``__init__`` written in Python."""
    return (cls.__reduce__ is BaseException.__reduce__
            and not isinstance(cls.__init__, type(BaseException.__init__)))


def unpack(data: bytes) -> BaseException:
    """The exception that :func:`pack_if_needed` packed; raises when it cannot be made here
    (its class cannot be loaded, or its ``__new__`` refuses)."""
    state = pickle.loads(data)
    if not (isinstance(state, tuple) and len(state) == 5 and state[0] == _MARK
            and isinstance(state[1], type) and issubclass(state[1], BaseException)):
        raise TypeError("not an exception's state")
    _, cls, args, attributes, left_out = state
    exc: BaseException = cls.__new__(cls, *args)
    if type(exc) is not cls:
        raise TypeError(f"{cls.__qualname__}.__new__ made another type")
    exc.args = args
    vars(exc).update(attributes)
    if left_out:
        exc.add_note("(procesos: not sent from the other process, for they could not be "
                     f"pickled: {', '.join(left_out)})")
    return exc


def _in_band(obj: object) -> bytes:
    """*obj* in one pickle: by the C pickler, else (a class of that process's own,
    a lambda) by cloudpickle."""
    try:
        return pickle.dumps(obj, _PROTOCOL)
    except _FAILURES:
        import cloudpickle  # type: ignore[import-untyped]

        return bytes(cloudpickle.dumps(obj, _PROTOCOL))
