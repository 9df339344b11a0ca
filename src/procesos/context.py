"""``multiprocessing.context`` for procesos: the contexts bound to procesos' start methods.

``BaseContext`` and the errors are the standard library's; ``DefaultContext``
and ``ProcesosContext`` are procesos' (``get_context("fork" | "spawn" |
"zygote")`` returns a ``ProcesosContext``).
"""

from multiprocessing.context import (
    AuthenticationError,
    BaseContext,
    BufferTooShort,
    ProcessError,
    TimeoutError,
)

from ._proc._context import DefaultContext, ProcesosContext, default_context
from ._proc._process import Process

__all__ = [
    "AuthenticationError",
    "BaseContext",
    "BufferTooShort",
    "DefaultContext",
    "ProcesosContext",
    "Process",
    "ProcessError",
    "TimeoutError",
    "default_context",
]
