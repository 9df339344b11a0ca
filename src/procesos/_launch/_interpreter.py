"""A fresh interpreter that can import procesos: a ``spawn`` child, or the zygote.

Apart from :mod:`._spawn` (the start method's popen) so that a program's first
start under the zygote spawns it before the rest of this layer is imported.
"""

from __future__ import annotations

import os
import sys
from multiprocessing import spawn, util

from .._compat import interpreter_flags
from ._interrupts import interrupts_blocked

__all__ = ["spawn_interpreter"]

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spawn_interpreter(statement: str, pass_fds: list[int]) -> int:
    """Start a fresh interpreter that can import procesos and runs *statement*; its pid.

    It keeps only the descriptors 0, 1, 2 and *pass_fds*, at the same numbers.
    Its ``sys.path`` is this process's, set before anything else is imported:
    ``-P`` keeps the current directory out (``-c`` would put it first, so a
    ``typing.py`` there would be imported in place of the standard library's),
    and ``-s`` the user's site directory unless this process has it.
    """
    executable = spawn.get_executable()
    flags = interpreter_flags()
    isolation = [] if sys.flags.isolated else [
        flag for flag in ("-P", "-s" if _no_user_site() else "") if flag and flag not in flags]
    code = f"import sys; sys.path[:] = {_child_path()!r}; {statement}"
    command = [os.fsdecode(executable), *flags, *isolation, "-c", code]
    # The new interpreter starts with SIGINT blocked (the mask survives exec);
    # see procesos._launch._child.
    with interrupts_blocked():
        return int(util.spawnv_passfds(executable, command, pass_fds))  # type: ignore[arg-type]


def _no_user_site() -> bool:
    """Whether this process runs without the user's site directory (then so does the child)."""
    site = sys.modules.get("site")
    return bool(sys.flags.no_user_site or not getattr(site, "ENABLE_USER_SITE", False))


def _child_path() -> list[str]:
    """This process's ``sys.path``, where procesos itself can be found."""
    path = list(sys.path)
    if _PACKAGE_ROOT not in path:
        path.insert(0, _PACKAGE_ROOT)
    return path
