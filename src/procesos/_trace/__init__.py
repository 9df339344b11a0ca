"""Layer 2 (beside the launch layer): recording where the time goes, and drawing it.

``procesos.trace()`` (:mod:`._api`) records the processes and engine tasks of
a program (:mod:`._recorder`), writes them in the Trace Event Format that
Perfetto and ``chrome://tracing`` open (:mod:`._chrome`), and draws them in a
terminal or as one self-contained HTML file (:mod:`._draw`). This package's
``__init__`` imports nothing: the hooks elsewhere import :mod:`._state` alone.
"""
