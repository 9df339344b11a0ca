"""``progress=True``: a progress bar on a terminal, a periodic plain line elsewhere.

Everything goes to stderr, nothing to stdout. The bar (rich) shows done/total
when the total is known, the rate, the time left and the failures; without a
terminal, a line with the same figures is written every ``PLAIN_INTERVAL_S``
seconds and once at the end. The dispatcher thread reports; rich refreshes
the bar from its own thread, which :meth:`Progress.close` stops.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["PLAIN_INTERVAL_S", "Progress"]

PLAIN_INTERVAL_S = 2.0


class Progress:
    """Counts tasks and shows them; thread-safe."""

    def __init__(self, stream: TextIO | None = None, fancy: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.fancy = bool(self.stream.isatty()) if fancy is None else fancy
        self.lock = threading.Lock()
        self.known = 0
        self.unknown = 0  # maps whose length is not known yet
        self.done = 0
        self.failed = 0
        self.started: float | None = None
        self.next_line = 0.0
        self._bar: Any = None
        self._task: Any = None
        self.closed = False

    # -- counting (dispatcher thread) ---------------------------------------
    def add(self, count: int | None) -> None:
        """More tasks: *count* of them, or None when the count is not known yet."""
        with self.lock:
            if count is None:
                self.unknown += 1
            else:
                self.known += count
            self._start()
        self._refresh()

    def resolve(self, count: int) -> None:
        """A map whose length was unknown turned out to have *count* tasks."""
        with self.lock:
            self.unknown = max(0, self.unknown - 1)
            self.known += count
        self._refresh()

    def advance(self, succeeded: int, failed: int) -> None:
        """Tasks finished: *succeeded* with a result, *failed* with an exception."""
        with self.lock:
            self.done += succeeded + failed
            self.failed += failed
        self._refresh()

    @property
    def total(self) -> int | None:
        return None if self.unknown else self.known

    def _start(self) -> None:
        if self.started is not None or self.closed:
            return
        self.started = time.monotonic()
        self.next_line = self.started + PLAIN_INTERVAL_S
        if self.fancy:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._bar = RichProgress(
                TextColumn("[bold]procesos"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[failures]}"),
                console=Console(file=self.stream), transient=False, refresh_per_second=5,
            )
            self._task = self._bar.add_task("tasks", total=None, rate="", failures="")
            self._bar.start()

    def _refresh(self) -> None:
        bar = self._bar
        if bar is None:
            return
        with self.lock:
            done, failed, total = self.done, self.failed, self.total
            rate = self._rate()
        bar.update(self._task, completed=done, total=total,
                   rate=f"{rate:,.0f} tasks/s" if rate else "",
                   failures=f"[red]{failed} failed" if failed else "")

    def _rate(self) -> float:
        elapsed = time.monotonic() - (self.started or time.monotonic())
        return self.done / elapsed if elapsed > 0 else 0.0

    # -- plain lines ----------------------------------------------------------
    def line(self) -> str:
        """The figures, as the plain line shows them."""
        with self.lock:
            done, failed, total, rate = self.done, self.failed, self.total, self._rate()
        text = f"procesos: {done}/{total} tasks done" if total is not None else \
            f"procesos: {done} tasks done"
        if total:
            text += f" ({100 * done / total:.0f}%)"
        text += f", {rate:,.1f} tasks/s"
        if total is not None and rate > 0 and done < total:
            text += f", about {(total - done) / rate:.0f} s left"
        return text + f", {failed} failed"

    def tick(self) -> float | None:
        """Write the plain line when it is due; seconds until the next one (None: never)."""
        if self.fancy or self.started is None or self.closed:
            return None
        now = time.monotonic()
        if now >= self.next_line:
            self._write(self.line())
            self.next_line = now + PLAIN_INTERVAL_S
        return max(0.0, self.next_line - now)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """Show the final figures and stop the bar's thread."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._refresh()
            self._bar.stop()
            self._bar = None
        elif self.started is not None:
            self._write(self.line())
