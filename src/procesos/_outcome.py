"""What a child hands back: its target's return value or its exception.

An outcome is one frame, pickled by :mod:`procesos._serialization`:

* ``("value", payload)``: *payload* is the pickled return value, a frame of
  :mod:`procesos._serialization` (its large buffers are in shared memory);
* ``("error", payload, type_name, message, traceback_text)``: *payload* is the
  pickled exception, or None when it could not be pickled.

Value and exception are pickled on their own so that a failure to pickle or
unpickle either is reported for what it is, never lost.
"""

from __future__ import annotations

import pickle
from typing import Any

from ._errors import PicklingError, RemoteError, RemoteTraceback, UnpicklingError
from ._serialization import PROTOCOL, dumps, dumps_fast, loads

__all__ = ["PICKLING_FAILURES", "decode", "encode_error", "encode_value"]


#: What a ``__reduce__`` or ``__setstate__`` may raise that fails the one object,
#: not the process: ``sys.exit()`` or ``KeyboardInterrupt`` raised there included.
PICKLING_FAILURES = (Exception, SystemExit, KeyboardInterrupt)


def _describe(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def encode_error(exc: BaseException, traceback_text: str | None = None) -> bytes:
    """The outcome frame for an exception raised in this process."""
    if traceback_text is None:
        import traceback  # here: only an error needs it (4 ms of import)

        traceback_text = "".join(traceback.format_exception(exc))
    payload: bytes | None
    try:
        # By reference first: the parent has the modules, __main__ included, so
        # that a class of the caller's own arrives as that class (under fork,
        # cloudpickle would send a class of __main__ by value: a copy that
        # ``except`` in the parent does not match).
        payload = dumps_fast(exc)
    except PICKLING_FAILURES:
        try:
            payload = dumps(exc)
        except PICKLING_FAILURES:
            payload = None
    return pickle.dumps(("error", payload, _describe(exc), str(exc), traceback_text), PROTOCOL)


def encode_value(value: object, where: str) -> bytes:
    """The outcome frame for a return value; *where* names it for error messages."""
    try:
        try:
            # The C pickler is much faster and enough for most results (the
            # parent has the __main__ that functions are pickled against);
            # large buffers still go through shared memory.
            payload = dumps_fast(value)
        except PICKLING_FAILURES:
            payload = dumps(value)
        return pickle.dumps(("value", payload), PROTOCOL)
    except PICKLING_FAILURES as exc:
        import traceback

        error = PicklingError(
            f"{where} could not be pickled: a {_describe(value)} object ({exc!r}). "
            "Return something picklable, or share it through procesos' sharing objects."
        )
        return encode_error(error, "".join(traceback.format_exception(exc)))


def rebuild_exception(
    payload: bytes | None, type_name: str, message: str, traceback_text: str
) -> BaseException:
    """The child's exception, as an instance of its own type when that is possible."""
    exc: BaseException
    try:
        if payload is None:
            raise TypeError("not pickled")
        exc = loads(payload)
        if not isinstance(exc, BaseException):
            raise TypeError("not an exception")
        # A traceback pickled with it (tblib, which Dask installs, does that) is
        # the child's: its frames are in the RemoteTraceback, once.
        exc.__traceback__ = None
    except PICKLING_FAILURES:
        exc = RemoteError(type_name, message, traceback_text)
    exc.__cause__ = RemoteTraceback(traceback_text)
    return exc


def decode(frame: bytes, where: str) -> tuple[bool, Any]:
    """Read an outcome frame: ``(True, value)`` or ``(False, exception)``."""
    kind, payload, *rest = pickle.loads(frame)
    if kind == "value":
        try:
            return True, loads(payload)
        except PICKLING_FAILURES as exc:
            error = UnpicklingError(f"{where} could not be unpickled in the parent: {exc!r}")
            error.__cause__ = exc
            return False, error
    type_name, message, traceback_text = rest
    return False, rebuild_exception(payload, type_name, message, traceback_text)
