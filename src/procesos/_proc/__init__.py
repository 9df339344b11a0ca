"""Layer 3: processes — ``Process`` (``_process.py``), the contexts (``_context.py``)
and the Ctrl-C exit handler (``_exit.py``)."""

