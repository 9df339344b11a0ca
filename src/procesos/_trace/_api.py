"""``procesos.trace()``: record where a program's time goes, then save or draw it."""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

from . import _state
from ._chrome import Timeline, load, to_events, write
from ._draw import render_html, show
from ._recorder import Recorder

__all__ = ["ENVIRONMENT_VARIABLE", "Trace", "trace", "trace_from_environment"]

ENVIRONMENT_VARIABLE = "PROCESOS_TRACE"


class Trace:
    """A recording of this process's children and tasks: see :func:`trace`."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self._recorder: Recorder | None = None

    def __enter__(self) -> Trace:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start recording (what ``with`` does)."""
        if _state.recorder is not None:
            raise RuntimeError("a trace is already being recorded in this process")
        if self._recorder is not None:
            raise RuntimeError("this trace has been recorded already; make a new one")
        self._recorder = Recorder()
        _state.recorder = self._recorder

    def stop(self) -> None:
        """Stop recording, and write the file if the trace was given a path."""
        recorder = self._recorder
        if recorder is None or recorder.stopped is not None:
            return
        if _state.recorder is recorder:
            _state.recorder = None
        recorder.stop()
        if self.path is not None:
            self.save(self.path)

    @contextmanager
    def span(self, name: str, **details: Any) -> Iterator[None]:
        """Mark the block as a slice named *name* on the calling thread's row."""
        recorder = self._recording()
        start = time.monotonic_ns()
        try:
            yield
        finally:
            recorder.add_slice(recorder.this_thread(), name, start, time.monotonic_ns(),
                               "span", **details)

    def _recording(self) -> Recorder:
        if self._recorder is None:
            raise RuntimeError("this trace has not started: use it in a 'with' block")
        return self._recorder

    @property
    def events(self) -> dict[str, Any]:
        """The recording in the Trace Event Format (what :meth:`save` writes)."""
        return to_events(self._recording())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the recording as JSON for Perfetto (ui.perfetto.dev) or chrome://tracing."""
        write(self.events, path)

    def timeline(self) -> Timeline:
        """The recording as the rows the drawings show."""
        return load(self.events)

    def show(self, stream: TextIO | None = None, plain: bool | None = None) -> None:
        """Draw the timeline in the terminal (plain text when *stream* is not one)."""
        show(self.timeline(), stream or sys.stdout, plain)

    def save_html(self, path: str | os.PathLike[str], title: str = "procesos trace") -> None:
        """Write the timeline as one self-contained HTML page (hover a bar for details)."""
        page = render_html([(title, self.timeline())], title=title)
        with open(path, "w", encoding="utf-8") as file:
            file.write(page)


def trace(path: str | os.PathLike[str] | None = None) -> Trace:
    """Record where the time goes, as a context manager.

    Inside the ``with`` block, every :class:`~procesos.Process` started (its
    ``start()``, its life until it exits, the ``join()`` that waits for it) and
    every task of an :class:`~procesos.Executor` or :class:`~procesos.Pool`
    (waiting in the parent, running in its worker, pickling, bytes moved,
    crashes, timeouts and retries) is recorded. With *path*, the recording is
    written there as JSON in the Trace Event Format when the block ends (open
    it in ui.perfetto.dev or chrome://tracing, or draw it with
    ``procesos trace show PATH``); :meth:`Trace.show` draws it in the
    terminal and :meth:`Trace.save_html` writes a page to open in a browser.

    ``PROCESOS_TRACE=file.json`` in the environment records a whole program
    that cannot be edited, from ``import procesos`` to its exit.
    """
    return Trace(path)


def trace_from_environment() -> None:
    """``PROCESOS_TRACE=path``: record from now to the exit, then write *path*.

    The variable is removed from the environment, so that the processes this
    one starts do not record traces of their own over the same file.
    """
    path = os.environ.pop(ENVIRONMENT_VARIABLE, "").strip()
    if not path or _state.recorder is not None:
        return
    recording = Trace(os.path.abspath(path))
    recording.start()
    atexit.register(recording.stop)
