"""Child output: where a child's stdout and stderr go (relayed, prefixed, captured, inherited).

Below the launch layer: the start methods ask :func:`._pipes.open_child_output`
for the pipes a child writes to, and the parent's single relay thread
(:mod:`._relay`) turns what arrives into whole lines on the parent's streams.
Only the modes and the child's side are imported with the package; the pipes
and the relay (and ``multiprocessing.util``, with ``subprocess``: 3 ms) at a
program's first start.
"""

from __future__ import annotations

from ._child_side import above_std_fds, adopt_std_streams, install_std_fds
from ._modes import MODES, check_output_mode, get_output, resolve_output_mode, set_output

__all__ = [
    "MODES",
    "above_std_fds",
    "adopt_std_streams",
    "check_output_mode",
    "get_output",
    "install_std_fds",
    "resolve_output_mode",
    "set_output",
]
