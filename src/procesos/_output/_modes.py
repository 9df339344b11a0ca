"""The output modes, and the default one: ``set_output()``, else ``PROCESOS_OUTPUT``, else relay."""

from __future__ import annotations

import os

__all__ = ["ENV_OUTPUT", "MODES", "check_output_mode", "get_output", "resolve_output_mode",
           "set_output"]

#: Every mode, the default first.
MODES = ("relay", "prefix", "capture", "inherit")
ENV_OUTPUT = "PROCESOS_OUTPUT"

_chosen: str | None = None


def check_output_mode(mode: object, source: str = "") -> str:
    """*mode* if it is one of :data:`MODES`; else ``ValueError`` naming it and the valid ones."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"unknown output mode {mode!r}{source}; choose one of "
            + ", ".join(repr(m) for m in MODES)
        )
    return mode


def set_output(mode: str) -> None:
    """Choose the output mode of every process started from now on without ``output=``.

    *mode* is ``"relay"`` (the default: the child's lines are written to this
    process's ``sys.stdout`` / ``sys.stderr``, never torn), ``"prefix"`` (the
    same, each line prefixed with ``[process name]``), ``"capture"`` (kept in
    ``p.stdout`` / ``p.stderr``, not printed) or ``"inherit"`` (the child
    writes to this process's file descriptors 1 and 2, like ``multiprocessing``).
    Raises ``ValueError`` for any other value.
    """
    global _chosen
    _chosen = check_output_mode(mode)


def get_output() -> str:
    """The default output mode: what ``set_output()`` chose, else ``PROCESOS_OUTPUT``, else relay.

    Raises ``ValueError`` when ``PROCESOS_OUTPUT`` names no mode.
    """
    if _chosen is not None:
        return _chosen
    env = os.environ.get(ENV_OUTPUT, "").strip()
    if env:
        return check_output_mode(env.lower(), f" (environment variable {ENV_OUTPUT})")
    return MODES[0]


def resolve_output_mode(mode: str | None) -> str:
    """The mode a process with ``output=mode`` uses now (None: the default)."""
    return get_output() if mode is None else check_output_mode(mode)
