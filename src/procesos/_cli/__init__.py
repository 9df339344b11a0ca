"""Layer 7: the command line — ``python -m procesos`` (``_main.py``), the demo, ``info``
and ``bench``."""

