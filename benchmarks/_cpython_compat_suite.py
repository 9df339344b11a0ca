"""CPython's multiprocessing test classes of one type for one start method.

``benchmarks/cpython_compat.py`` imports this module in a worker whose
``PROCESOS_COMPAT_METHOD`` is ``forkserver`` or ``zygote`` and whose
``PROCESOS_COMPAT_TYPE`` is ``processes`` (the default), ``manager`` or
``threads``. It must be a real,
importable module: the tests send their classes' methods to the children by
reference, and the children (which inherit the variable) import it again.
For ``zygote`` it registers procesos' context as
``multiprocessing.get_context("zygote")``, inside this test run only.
"""

from __future__ import annotations

import os

from test._test_multiprocessing import install_tests_in_module_dict

METHOD = os.environ["PROCESOS_COMPAT_METHOD"]
TYPE = os.environ.get("PROCESOS_COMPAT_TYPE", "processes")


def register_zygote_context() -> None:
    """Make ``multiprocessing.get_context("zygote")`` return procesos' zygote context."""
    import multiprocessing.context

    import procesos

    multiprocessing.context._concrete_contexts["zygote"] = procesos.get_context("zygote")
    # The "manager" classes (and a few others) call multiprocessing.Manager(): the
    # standard library's SyncManager, its server started by the context's Process.
    # `import procesos as mp` users call procesos.Manager(), procesos' SyncManager
    # (whose connections send __main__'s objects by value): test that one.
    multiprocessing.Manager = procesos.Manager
    # A plain multiprocessing.Process started through that context asks procesos for
    # its default start method: make it the zygote whatever the environment says.
    procesos.set_start_method("zygote", force=True)


if METHOD == "zygote":
    register_zygote_context()

install_tests_in_module_dict(globals(), METHOD, only_type=TYPE)
