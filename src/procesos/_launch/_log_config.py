"""The parent's ``logging`` configuration, carried to a child that does not inherit it.

A ``fork`` child inherits the parent's loggers and handlers. A ``zygote`` or
``spawn`` child starts from a fresh ``logging`` module; the standard library's
``spawn`` and ``forkserver`` children recover the configuration only when the
main module configures logging at import, since they import it again, which
procesos' children do not. So the parent sends a :class:`LoggingSnapshot` with
the child's set-up, and the child applies it before it runs the target, as if
it had inherited the configuration:

- the level, ``propagate`` and ``disabled`` of the root logger and of every
  logger that has a level, a handler or one of those flags of its own, and
  the level given to ``logging.disable()``;
- the handlers that can be rebuilt in another process, each with its level
  and formatter: a ``StreamHandler`` that writes to ``sys.stdout`` or
  ``sys.stderr`` (the child's own, which reach the parent's line by line)
  and a ``FileHandler``. The child writes to the parent's open file itself
  (its descriptor is sent along), so that, as after a fork, both write at one
  shared position and neither overwrites the other's lines (``filemode="w"``
  included); a handler that has not opened its file yet is reopened by name,
  for appending.

Other handlers (rotating files, sockets, queues, custom classes) and filters
are not carried: a child configures those itself (a pool's ``initializer``).
Nor are ``NullHandler``s, which libraries add to their loggers at import: the
child's import of the library adds its own. A formatter travels pickled; one
that cannot be pickled, or unpickled in the child (a class defined in
``__main__``), is replaced by a plain ``logging.Formatter`` with the same
format, date format and style.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .._compat import formatter_format

if TYPE_CHECKING:
    import logging

# ``logging`` (4 ms) is imported where it is used: a child whose parent configured
# no logging never loads it.

__all__ = [
    "FormatterSpec",
    "HandlerSpec",
    "LoggerSpec",
    "LoggingSnapshot",
    "apply_snapshot",
    "take_snapshot",
]

_STDOUT, _STDERR, _FILE = "stdout", "stderr", "file"


class FormatterSpec(NamedTuple):
    """A formatter: pickled (None if it cannot be), and what a plain one needs instead."""

    pickled: bytes | None
    fmt: str | None
    datefmt: str | None
    style: str


class HandlerSpec(NamedTuple):
    """A handler to rebuild: its kind, its target (a path for a file), level, formatter."""

    kind: str
    target: str | None  # a file handler's path
    encoding: str | None
    errors: str | None
    shared_fd: int | None  # a file handler's open file, as the child receives it
    level: int
    formatter: FormatterSpec | None


class LoggerSpec(NamedTuple):
    """A logger to configure (name None: the root logger); *handlers* index the snapshot's."""

    name: str | None
    level: int
    propagate: bool
    disabled: bool
    handlers: tuple[int, ...]


class LoggingSnapshot(NamedTuple):
    """The parent's logging configuration, as far as another process can rebuild it."""

    disable: int
    handlers: tuple[HandlerSpec, ...]
    loggers: tuple[LoggerSpec, ...]


def _stream_name(stream: object) -> str | None:
    if stream is sys.stdout or stream is sys.__stdout__:
        return _STDOUT
    if stream is sys.stderr or stream is sys.__stderr__:
        return _STDERR
    return None


def _formatter_spec(formatter: logging.Formatter | None) -> FormatterSpec | None:
    if formatter is None:
        return None
    try:
        pickled: bytes | None = pickle.dumps(formatter, pickle.HIGHEST_PROTOCOL)
    except Exception:
        pickled = None
    import logging

    fmt, style_object = formatter_format(formatter)
    styles: dict[type, str] = {logging.StrFormatStyle: "{", logging.StringTemplateStyle: "$"}
    style = styles.get(type(style_object), "%")
    return FormatterSpec(pickled, fmt, formatter.datefmt, style)


def _kind(handler: logging.Handler) -> str | None:
    """How a snapshot carries *handler* (_STDOUT, _STDERR, _FILE), or None if it does not."""
    import logging

    cls = type(handler)
    if cls is logging.FileHandler:
        return _FILE
    if cls is logging.StreamHandler:
        return _stream_name(handler.stream)  # type: ignore[attr-defined]
    return None


def _handler_spec(handler: logging.Handler, share_fd: Callable[[int], int]) -> HandlerSpec | None:
    kind = _kind(handler)
    if kind is None:
        return None
    target = encoding = errors = None
    shared_fd = None
    if kind == _FILE:
        target = handler.baseFilename  # type: ignore[attr-defined]
        encoding, errors = handler.encoding, handler.errors  # type: ignore[attr-defined]
        stream = handler.stream  # type: ignore[attr-defined]
        if stream is not None:
            try:
                shared_fd = share_fd(stream.fileno())
            except (OSError, ValueError):  # closed meanwhile: reopened by name
                pass
    return HandlerSpec(kind, target, encoding, errors, shared_fd, handler.level,
                       _formatter_spec(handler.formatter))


def take_snapshot(share_fd: Callable[[int], int]) -> LoggingSnapshot | None:
    """This process's logging configuration; None while it is the default one.

    *share_fd* sends a descriptor to the child and returns its position in the
    list the child receives (``duplicate_for_child``).
    """
    if "logging" not in sys.modules:
        return None
    import logging

    root = logging.root
    manager = root.manager
    handlers: list[HandlerSpec] = []
    index: dict[int, int] = {}
    loggers = []
    for logger in [root, *list(manager.loggerDict.values())]:
        if not isinstance(logger, logging.Logger):
            continue  # a placeholder for a logger not made yet
        mine = []
        for handler in logger.handlers:
            key = id(handler)
            if key not in index:
                spec = _handler_spec(handler, share_fd)
                if spec is None:
                    continue
                index[key] = len(handlers)
                handlers.append(spec)
            mine.append(index[key])
        if logger is root or mine or logger.level or not logger.propagate or logger.disabled:
            loggers.append(LoggerSpec(None if logger is root else logger.name, logger.level,
                                      logger.propagate, logger.disabled, tuple(mine)))
    if (len(loggers) == 1 and not handlers and root.level == logging.WARNING
            and not manager.disable):
        return None
    return LoggingSnapshot(manager.disable, tuple(handlers), tuple(loggers))


def _formatter(spec: FormatterSpec | None) -> logging.Formatter | None:
    import logging

    if spec is None:
        return None
    if spec.pickled is not None:
        try:
            formatter: logging.Formatter = pickle.loads(spec.pickled)
            return formatter
        except Exception:  # a class the child cannot import (one from __main__)
            pass
    return logging.Formatter(spec.fmt, spec.datefmt, spec.style)  # type: ignore[arg-type]


def _build(spec: HandlerSpec, fds: list[int]) -> logging.Handler | None:
    import logging

    handler: logging.Handler
    if spec.kind == _FILE:
        assert spec.target is not None
        try:
            if spec.shared_fd is not None:
                handler = logging.FileHandler(spec.target, "a", spec.encoding, delay=True,
                                              errors=spec.errors)
                handler.stream = open(  # noqa: SIM115 (the handler's stream from now on)
                    fds[spec.shared_fd], "a", encoding=handler.encoding, errors=spec.errors)
            else:
                handler = logging.FileHandler(spec.target, "a", spec.encoding, errors=spec.errors)
        except OSError as exc:  # opened now: a failure here, not in every logging call
            sys.stderr.write(f"procesos: the parent's log file is not written by this "
                             f"process: {exc}\n")
            return None
    else:
        handler = logging.StreamHandler(sys.stdout if spec.kind == _STDOUT else sys.stderr)
    handler.setLevel(spec.level)
    handler.setFormatter(_formatter(spec.formatter))
    return handler


def apply_snapshot(snapshot: LoggingSnapshot, fds: list[int]) -> None:
    """Configure this process's logging as the parent's was (in a fresh child);
    *fds*: the descriptors the child received."""
    import logging

    built: list[Any] = [_build(spec, fds) for spec in snapshot.handlers]
    for spec in snapshot.loggers:
        logger = logging.getLogger(spec.name)  # None: the root logger
        for handler in list(logger.handlers):
            if _kind(handler) is not None:  # a preloaded module's: the parent's copy wins
                logger.removeHandler(handler)
        logger.setLevel(spec.level)
        logger.propagate = spec.propagate
        logger.disabled = spec.disabled
        for i in spec.handlers:
            if built[i] is not None:
                logger.addHandler(built[i])
    if snapshot.disable:
        logging.disable(snapshot.disable)
