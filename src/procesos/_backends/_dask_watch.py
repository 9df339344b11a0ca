"""Dask preload for the cluster procesos starts: the process ends when procesos' process does.

The scheduler and the worker nanny processes run it (``--preload``,
``--preload-nanny``). They inherit the read end of a pipe whose write end only
the procesos process holds; end of file means that process is gone (however
it ended), and the server shuts down as on Ctrl-C. A nanny's worker
processes follow their nanny (Dask's own parent watch).
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["PARENT_FD_VARIABLE", "dask_setup"]

PARENT_FD_VARIABLE = "PROCESOS_DASK_PARENT_FD"


def dask_setup(server: object) -> None:
    """Called by Dask when the server starts."""
    fd_text = os.environ.get(PARENT_FD_VARIABLE)
    if not fd_text:
        return
    fd = int(fd_text)

    def watch() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="procesos-parent-watch", daemon=True).start()
