"""The Dask cluster that ``Executor(backend="dask")`` starts when given no address.

A ``dask scheduler`` and a ``dask worker --nworkers N`` process on 127.0.0.1,
speaking mutual TLS with a certificate made for this cluster alone: any local
user can reach a port of 127.0.0.1, and a Dask scheduler runs whatever pickle
a client sends it, so without a certificate no one else may connect (the
key lies in a directory only this user can enter). They are started as fresh
interpreters (``python -P -m distributed.cli...``: the current directory is
not put on their ``sys.path``), not through
``LocalCluster``: its worker processes are started with ``multiprocessing``'s
spawn, which runs the user's ``__main__`` again, and procesos promises that no
``if __name__ == "__main__":`` guard is needed. They follow this process's
``sys.path`` and directory, keep their scratch space in this cluster's
private directory, serve no web page, and end with it
(:mod:`._dask_watch`). The scheduler runs a task again only when procesos
asks (``allowed-failures`` 0), so ``retries=`` means the same as locally.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import distributed

from ._dask_watch import PARENT_FD_VARIABLE

__all__ = ["LocalDaskCluster"]

_WATCH = "procesos._backends._dask_watch"


def _credentials(directory: str) -> tuple[Any, list[str]]:
    """A certificate authority and key for one cluster, written to *directory*:
    the client's ``Security`` and the command-line options of the others."""
    try:
        from distributed.security import Security

        security = Security.temporary()
    except ImportError as exc:
        raise ImportError(
            "the local Dask cluster secures its connections with TLS, which needs the "
            "'cryptography' package: pip install 'procesos[dask]'") from exc
    paths = {}
    for name, pem in (("ca", security.tls_ca_file), ("cert", security.tls_client_cert),
                      ("key", security.tls_client_key)):
        path = paths[name] = os.path.join(directory, f"{name}.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(pem)
    return security, ["--tls-ca-file", paths["ca"], "--tls-cert", paths["cert"],
                      "--tls-key", paths["key"]]


class LocalDaskCluster:
    """A scheduler and *workers* worker processes (one thread each) on loopback."""

    def __init__(self, workers: int, start_timeout: float) -> None:
        self.directory = tempfile.mkdtemp(prefix="procesos-dask-")  # mode 0700
        self.scheduler_file = os.path.join(self.directory, "scheduler.json")
        try:
            self.security, tls = _credentials(self.directory)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.processes: list[subprocess.Popen[bytes]] = []
        read_end, self._alive = os.pipe()
        env = dict(os.environ)
        env[PARENT_FD_VARIABLE] = str(read_end)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "0"
        # A worker holds only the task it runs: no other task dies with it.
        env["DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION"] = "1.0"
        # Dask's scratch space: in our directory. By default it is a fixed name
        # in /tmp that Dask takes over when writable, whoever made it, and puts
        # first on the nanny's and the workers' sys.path: another user's code
        # planted there would run as this user.
        env["DASK_TEMPORARY_DIRECTORY"] = self.directory
        # No web pages: --no-dashboard leaves Dask's HTTP server on (0.0.0.0:8787
        # and a port per worker), and its pages show the cluster's workers, tasks,
        # call stacks and logs to anyone, without a certificate.
        env["DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"] = "[]"
        env["DASK_DISTRIBUTED__WORKER__HTTP__ROUTES"] = "[]"
        no_web = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
        python = [sys.executable, "-P", "-m"]
        try:
            self._start([
                *python, "distributed.cli.dask_scheduler", "--protocol", "tls", *tls,
                "--host", "127.0.0.1", "--port", "0",
                *no_web, "--scheduler-file", self.scheduler_file, "--preload", _WATCH,
            ], "scheduler", env, read_end)
            self._start([
                *python, "distributed.cli.dask_worker", "--scheduler-file", self.scheduler_file,
                *tls, "--host", "127.0.0.1", "--nworkers", str(workers), "--nthreads", "1",
                *no_web, "--local-directory", os.path.join(self.directory, "workers"),
                "--preload-nanny", _WATCH,
            ], "workers", env, read_end)
        finally:
            os.close(read_end)
        self.client: Any = None
        try:
            self.client = distributed.Client(scheduler_file=self.scheduler_file,
                                             security=self.security,
                                             timeout=start_timeout, set_as_default=False)
            self.client.wait_for_workers(workers, timeout=start_timeout)
        except BaseException as exc:
            logs = self.logs()
            self.close()
            raise RuntimeError(f"the local Dask cluster did not start within {start_timeout:g} "
                               f"s ({exc!r}); its log:\n{logs}") from exc

    def _start(self, command: list[str], name: str, env: dict[str, str], fd: int) -> None:
        with open(os.path.join(self.directory, f"{name}.log"), "wb") as log:
            self.processes.append(subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=os.getcwd(), pass_fds=(fd,)))

    def logs(self) -> str:
        parts = []
        for name in ("scheduler", "workers"):
            try:
                with open(os.path.join(self.directory, f"{name}.log"), errors="replace") as f:
                    parts.append(f"--- {name}\n" + "".join(f.readlines()[-20:]))
            except OSError:
                pass
        return "\n".join(parts)

    def close(self, grace: float = 10.0) -> None:
        """Stop the workers and the scheduler (SIGTERM, then SIGKILL after *grace* s)."""
        if self.client is not None:
            self.client.close()
            self.client = None
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if self._alive >= 0:
            os.close(self._alive)
            self._alive = -1
        shutil.rmtree(self.directory, ignore_errors=True)
