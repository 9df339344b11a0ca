"""Layer 2: start methods behind multiprocessing's popen protocol.

Each start method is a ``Popen`` class with ``pid``, ``sentinel``, ``poll``,
``wait``, ``terminate``, ``kill``, ``close`` and ``duplicate_for_child``, so the
standard library's synchronisation and sharing objects work with our processes.
"""

from __future__ import annotations

START_METHODS = ("zygote", "fork", "spawn")
