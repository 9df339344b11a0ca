"""Generated: any exception a child raises arrives as its own class, with what
could travel of it, whatever its ``__init__`` takes and whatever it holds.

Drives the outcome codec itself (``_outcome.encode_error`` in the raising
process, ``_outcome.decode`` in the receiving one), in this process: the
processes around it are tested in test_error_types.py."""

from __future__ import annotations

import os
import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import procesos
from procesos._outcome import decode, encode_error

EXAMPLES = 400 if os.environ.get("PROCESOS_HYPOTHESIS_PROFILE") == "deep" else 40


class PlainError(Exception):
    pass


class FormatsItsArguments(Exception):
    """pickle's ``cls(*args)`` passes one argument where two are needed."""

    def __init__(self, first: object, second: object) -> None:
        super().__init__(f"{first}/{second}")
        self.first, self.second = first, second


class KeywordOnly(Exception):
    def __init__(self, *, code: object) -> None:
        super().__init__(f"code {code!r}")
        self.code = code


class WithDefaults(Exception):
    def __init__(self, message: str = "default", level: int = 0) -> None:
        super().__init__(message)
        self.level = level


UNPICKLABLE = object()  # marks an attribute that holds a lock

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=6,
)
attribute_values = st.one_of(values, st.just(UNPICKLABLE))


@st.composite
def exceptions(draw: st.DrawFn) -> BaseException:
    kind = draw(st.sampled_from([PlainError, FormatsItsArguments, KeywordOnly, WithDefaults,
                                 ValueError]))
    exc: BaseException
    if kind is FormatsItsArguments:
        exc = FormatsItsArguments(draw(values), draw(values))
    elif kind is KeywordOnly:
        exc = KeywordOnly(code=draw(values))
    elif kind is WithDefaults:
        exc = WithDefaults(draw(st.text(max_size=8)), draw(st.integers()))
    else:
        exc = kind(*draw(st.lists(values, max_size=3)))
    extra = draw(st.dictionaries(st.sampled_from(["x", "y", "detail", "handle"]),
                                 attribute_values, max_size=3))
    for name, value in extra.items():
        setattr(exc, name, threading.Lock() if value is UNPICKLABLE else value)
    return exc


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


@settings(max_examples=EXAMPLES, deadline=None)
@given(exceptions())
def test_an_exception_arrives_as_its_class_with_what_could_travel(exc: BaseException) -> None:
    try:
        raise exc
    except BaseException as raised:
        frame = encode_error(raised)
    ok, received = decode(frame, "the test's exception")
    assert not ok
    assert type(received) is type(exc), received
    assert received.args == exc.args
    assert str(received) == str(exc)
    left_out = []
    for name, value in vars(exc).items():
        if isinstance(value, type(threading.Lock())):
            assert not hasattr(received, name)
            left_out.append(name)
        else:
            assert _same(getattr(received, name), value), name
    notes = getattr(received, "__notes__", [])
    for name in left_out:
        assert any(f"{name} (a _thread.lock object)" in note for note in notes), notes
    assert isinstance(received.__cause__, procesos.RemoteTraceback)
    assert type(exc).__name__ in received.__cause__.text
