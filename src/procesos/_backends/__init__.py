"""Layer 6: ``procesos.Executor`` on other machines, through an existing cluster engine.

``Executor(backend="dask")`` and ``Executor(backend="ray")`` are instances of
:class:`._dask.DaskExecutor` and :class:`._ray.RayExecutor`, subclasses of
``procesos.Executor`` built on :class:`._base.ClusterExecutor`. Their modules
import ``distributed`` and ``ray``, so they are imported only when chosen;
:mod:`._task` is what runs on the workers.
"""

from __future__ import annotations

import importlib

__all__ = ["BACKENDS", "executor_class"]

BACKENDS: dict[str, tuple[str, str, str, str]] = {
    # name: (module, class, the package it needs, the extra that installs it)
    "dask": ("procesos._backends._dask", "DaskExecutor", "distributed", "dask"),
    "ray": ("procesos._backends._ray", "RayExecutor", "ray", "ray"),
}


def executor_class(backend: str) -> type:
    """The executor class of *backend*; ValueError or ImportError saying what to do."""
    if backend not in BACKENDS:
        allowed = ", ".join(repr(name) for name in ("local", *BACKENDS))
        raise ValueError(f"unknown backend {backend!r}; the backends are {allowed}")
    module_name, class_name, package, extra = BACKENDS[backend]
    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(
            f"backend={backend!r} needs the {package!r} package, which is not installed: "
            f"pip install 'procesos[{extra}]'") from exc
    cls: type = getattr(importlib.import_module(module_name), class_name)
    return cls
