"""What runs in a child process, for every start method.

The child applies its :class:`~._wire.ChildSetup`, unpickles its process
object, runs it through ``BaseProcess._bootstrap`` (so ``current_process()``,
``parent_process()`` and finalizers behave as in ``multiprocessing``), sends
the outcome back on its channel and exits with the process's exit code.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import NoReturn

from .._outcome import encode_error, encode_value
from .._serialization import loads
from ._fds import install_inherited_fds
from ._lifetime import die_with_parent
from ._wire import ChildSetup

__all__ = ["fork_child_main", "run_process", "spawn_main", "zygote_child_main"]


def run_process(process_obj: BaseProcess, channel: Connection) -> int:
    """Run *process_obj* here, send its outcome on *channel*, return the exit code."""
    outcome: bytes | None = None
    interrupted = False
    user_run = process_obj.run

    def run_and_record() -> None:
        nonlocal outcome, interrupted
        try:
            value = user_run()
        except KeyboardInterrupt:
            # Ctrl-C: end quietly; the parent reports it once.
            interrupted = True
            raise SystemExit(1) from None
        except SystemExit:
            raise
        except BaseException as exc:
            outcome = encode_error(exc, traceback.format_exc())
            raise
        else:
            outcome = encode_value(value, f"the result of process {process_obj.name!r}")

    process_obj.run = run_and_record  # type: ignore[method-assign]
    exitcode = process_obj._bootstrap(parent_sentinel=channel.fileno())  # type: ignore[attr-defined]
    if outcome is not None:
        try:
            channel.send_bytes(outcome)
        except OSError:
            pass  # the parent has gone
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return int(exitcode)


def fork_child_main(
    process_obj: BaseProcess, channel: Connection, parent_thread_is_main: bool
) -> int:
    """The child side of the ``fork`` start method."""
    die_with_parent(os.getppid(), channel.fileno(), parent_thread_is_main)
    return run_process(process_obj, channel)


def _apply_setup(setup: ChildSetup, received_fds: list[int]) -> None:
    sys.path[:] = setup.sys_path
    sys.argv[:] = setup.sys_argv
    if setup.environ is not None:
        os.environ.clear()
        os.environ.update(setup.environ)
    if setup.cwd is not None:
        try:
            os.chdir(setup.cwd)
        except OSError:
            pass
    install_inherited_fds(received_fds)
    if setup.resource_tracker_fd is not None:
        resource_tracker._resource_tracker._fd = received_fds[setup.resource_tracker_fd]  # type: ignore[attr-defined]


def _serve(channel: Connection, received_fds: list[int] | None) -> int:
    setup: ChildSetup = pickle.loads(channel.recv_bytes())
    _apply_setup(setup, setup.fds if received_fds is None else received_fds)
    try:
        process_obj = loads(channel.recv_bytes())
    except BaseException as exc:
        sys.stderr.write("procesos: the process object could not be unpickled in the child:\n")
        traceback.print_exc()
        from .._errors import SerializationError

        error = SerializationError(f"the process could not be unpickled in the child: {exc!r}")
        try:
            channel.send_bytes(encode_error(error, traceback.format_exc()))
        except OSError:
            pass
        return 1
    return run_process(process_obj, channel)


def spawn_main(channel_fd: int, parent_thread_is_main: int) -> NoReturn:
    """Entry point of a ``spawn`` child (a fresh interpreter)."""
    code = 1
    try:
        channel = Connection(channel_fd)
        die_with_parent(os.getppid(), channel_fd, bool(parent_thread_is_main))
        code = _serve(channel, None)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


STD_TARGETS = (1, 2)


def zygote_child_main(channel_fd: int, std_mask: int, fds: list[int], zygote_pid: int) -> NoReturn:
    """Entry point of a child forked by the zygote.

    *fds* are the descriptors sent with the request, after the status pipe:
    first the parent's standard streams named in *std_mask*, then those that
    the process object's pickle refers to.
    """
    code = 1
    try:
        position = 0
        for bit, target in enumerate(STD_TARGETS):
            if std_mask & (1 << bit):
                os.dup2(fds[position], target)
                os.close(fds[position])
                position += 1
        channel = Connection(channel_fd)
        die_with_parent(zygote_pid, channel_fd, True)
        code = _serve(channel, fds[position:])
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
