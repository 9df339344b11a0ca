"""The start methods' names and the default one: what the launch layer, the
process objects and the contexts all read, kept here so that none of them
imports another for it.

The default follows :func:`set_default` (``procesos.set_start_method()``), else
the ``PROCESOS_START_METHOD`` environment variable, else ``zygote``; a child
starts with its parent's choice (``ChildSetup.start_method``).
"""

from __future__ import annotations

import os

from . import START_METHODS

__all__ = ["ENV_START_METHOD", "check_method", "chosen_method", "default_method", "set_default"]

ENV_START_METHOD = "PROCESOS_START_METHOD"

# The standard library's name for a fork server (its default on Linux from
# Python 3.14): a program that asks for one gets procesos' own.
_ALIASES = {"forkserver": "zygote"}

_chosen: str | None = None  # set_default()'s, or the environment's once read


def check_method(method: str) -> str:
    """*method*, or the method it names; ValueError when procesos has no such method."""
    method = _ALIASES.get(method, method)
    if method not in START_METHODS:
        raise ValueError(
            f"unknown start method {method!r}; procesos offers {', '.join(START_METHODS)} "
            f"('forkserver' names zygote)"
        )
    return method


def default_method() -> str:
    """The start method a process uses when none is named."""
    global _chosen
    if _chosen is None:
        env = os.environ.get(ENV_START_METHOD, "").strip()
        if env:
            try:
                _chosen = check_method(env)
            except ValueError as exc:
                raise ValueError(f"{ENV_START_METHOD}={env!r}: {exc}") from None
        else:
            _chosen = START_METHODS[0]
    return _chosen


def chosen_method() -> str | None:
    """The default start method if it was chosen or read already, else None
    (``get_start_method(allow_none=True)``)."""
    return _chosen


def set_default(method: str | None) -> None:
    """Make *method* the default (None: back to the environment's or ``zygote``)."""
    global _chosen
    _chosen = None if method is None else check_method(method)
