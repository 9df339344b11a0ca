"""``multiprocessing.process`` for procesos.

``BaseProcess`` and the functions are the standard library's (procesos'
``Process`` is a ``BaseProcess``, so ``current_process()``,
``active_children()`` and ``parent_process()`` see procesos' processes too).
"""

from multiprocessing.process import BaseProcess, active_children, current_process, parent_process

from ._proc._process import Process

__all__ = ["BaseProcess", "Process", "active_children", "current_process", "parent_process"]
