"""Child output: where a child's stdout and stderr go (relayed, prefixed, captured, inherited).

Below the launch layer: the start methods ask :func:`open_child_output` for
the pipes a child writes to, and the parent's single relay thread
(:mod:`._relay`) turns what arrives into whole lines on the parent's streams.
"""

from __future__ import annotations

from ._child_side import above_std_fds, adopt_std_streams, install_std_fds
from ._modes import MODES, check_output_mode, get_output, resolve_output_mode, set_output
from ._pipes import ChildOutput, open_child_output
from ._relay import output_quiet

__all__ = [
    "MODES",
    "ChildOutput",
    "above_std_fds",
    "adopt_std_streams",
    "check_output_mode",
    "get_output",
    "install_std_fds",
    "open_child_output",
    "output_quiet",
    "resolve_output_mode",
    "set_output",
]
