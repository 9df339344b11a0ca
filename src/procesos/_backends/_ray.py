"""``procesos.Executor(backend="ray")``: the executor on a Ray cluster.

Each call is one Ray task (a remote function that runs the
:class:`~._task.RemoteCall`). Ray itself runs a task again when its worker
dies, ``max_retries`` times, which is exactly what ``retries=`` means
locally; after that, Ray's worker-died errors become
:class:`~procesos.WorkerCrashedError`. Each task's ``ObjectRef.future()``
settles the caller's future.
"""

from __future__ import annotations

import os
import socket
import sys
from concurrent import futures
from typing import Any

import ray

from .._engine import default_workers
from .._errors import ClusterConnectionError
from ._base import ClusterExecutor, Task
from ._task import RemoteCall

__all__ = ["RayExecutor"]

_CRASHES = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.OutOfMemoryError, ray.exceptions.LocalRayletDiedError)


def _run(call: RemoteCall, *args: Any) -> Any:
    return call(*args)


class RayExecutor(ClusterExecutor):
    """``procesos.Executor`` on Ray; see :class:`procesos.Executor` and docs/scaling.md.

    *address*: a Ray cluster (``"ray://host:10001"`` or ``"host:6379"``) to
    connect to, which shutdown never stops; None starts a local Ray instance
    of *max_workers* CPUs (unless this process is connected to Ray already,
    then it is used and left running). *connect_timeout*: seconds to reach
    the cluster before :class:`~procesos.ClusterConnectionError`.
    *scatter_threshold*: numpy arguments of at least this many bytes are put
    in Ray's object store once.
    """

    backend = "ray"
    retries_note = "Executor(retries=N) has Ray run such a task again N times (max_retries)."
    native_retries = True

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        backend: str = "ray",
        address: str | None = None,
        connect_timeout: float = 10.0,
        timeout: float | None = None,
        retries: int = 0,
        progress: bool = False,
        scatter_threshold: int | None = None,
        threads_per_worker: int | None = 1,
        **options: Any,
    ) -> None:
        self._setup(timeout=timeout, retries=retries, progress=progress,
                    scatter_threshold=scatter_threshold, threads_per_worker=threads_per_worker,
                    connect_timeout=connect_timeout, options=options)
        self._owns_ray = False
        if ray.is_initialized():
            if address is not None or max_workers is not None:
                raise ValueError("this process is connected to Ray already; "
                                 "Executor(backend='ray') uses that connection as it is")
        elif address is None:
            workers = default_workers() if max_workers is None else max_workers
            if workers < 1:
                raise ValueError(f"the number of workers must be at least 1, got {workers}")
            # Workers import what the driver can: its sys.path, as locally.
            path = os.pathsep.join(p for p in sys.path if p)
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
            self._owns_ray = True
        else:
            if max_workers is not None:
                raise ValueError("max_workers= is for the local Ray instance; a cluster at an "
                                 "address has the workers it has")
            self._connect(address, connect_timeout)
            self._owns_ray = True  # our connection: ray.shutdown() ends it, not the cluster
        self._remote = ray.remote(_run)

    def _connect(self, address: str, connect_timeout: float) -> None:
        # ray.init() keeps retrying an unreachable address for a long time and
        # cannot be interrupted: try a plain TCP connection first.
        if address != "auto":
            host, _, port = address.removeprefix("ray://").rpartition(":")
            try:
                socket.create_connection((host or "127.0.0.1", int(port)),
                                         timeout=connect_timeout).close()
            except (OSError, ValueError) as exc:
                raise ClusterConnectionError(
                    f"could not reach the Ray cluster at {address} within "
                    f"{connect_timeout:g} s ({exc}); check that it is running and that the "
                    "address is right, or give it longer with connect_timeout=") from exc
        ray.init(address=address, log_to_driver=False)

    @property
    def max_workers(self) -> int:
        """CPUs in the cluster now."""
        return int(ray.cluster_resources().get("CPU", 0))

    def _launch(self, tasks: list[Task]) -> None:
        remote = self._remote.options(max_retries=self._retries, retry_exceptions=False)
        for task in tasks:
            ref = remote.remote(task.call, *task.args)
            task.handle = ref
            ref.future().add_done_callback(self._done_callback(task, ref))

    def _done_callback(self, task: Task, ref: Any) -> Any:
        def done(future: futures.Future[Any]) -> None:
            if task.handle is not ref:
                return
            task.handle = None
            try:
                result = future.result()
            except _CRASHES as exc:
                self._settle(task, "crashed", f"({type(exc).__name__}: {str(exc).strip()})")
            except (ray.exceptions.TaskCancelledError, futures.CancelledError):
                task.future.cancel()
            except Exception as exc:
                self._settle(task, "error", exc)
            else:
                self._settle(task, "done", result)
        return done

    def _cancel(self, tasks: list[Task]) -> None:
        for task in tasks:
            if task.handle is not None:
                try:
                    ray.cancel(task.handle)
                except Exception:  # finished meanwhile, or Ray already gone
                    pass

    def _share(self, value: Any) -> Any:
        return ray.put(value)

    def _close(self, terminate: bool) -> None:
        if self._owns_ray:
            ray.shutdown()
