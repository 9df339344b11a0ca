"""What runs in a child process, for every start method.

The child applies its :class:`~._wire.ChildSetup`, unpickles its process
object, runs it through ``BaseProcess._bootstrap`` (so ``current_process()``,
``parent_process()`` and finalizers behave as in ``multiprocessing``), sends
the outcome back on its channel and exits with the process's exit code.

Ctrl-C: every start method starts the child with ``SIGINT`` blocked (see
:func:`block_interrupts`). The child unblocks it only around the user's
``run()``, so an interrupt that arrives while the child is still being set up
is held back and then ends the target quietly, exactly like one that arrives
later; none is lost and none prints a traceback from procesos' own code.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from multiprocessing import util
from multiprocessing.process import BaseProcess, current_process
from typing import TYPE_CHECKING, NoReturn

from .._compat import (
    adopt_resource_tracker_fd,
    drop_inherited_exit_handlers,
    flush_std_streams,
    forget_thread_pools_after_fork,
    raw_signal,
    run_exit_handlers,
)
from .._errors import ProcessCrashedError
from .._outcome import encode_error, encode_value
from .._output import above_std_fds, adopt_std_streams, install_std_fds
from .._serialization import DataAbandoned, loads, share_main_namespace
from ._fds import install_inherited_fds
from ._interrupts import INTERRUPT, block_interrupts
from ._lifetime import die_with_parent
from ._log_config import apply_snapshot
from ._methods import set_default
from ._wire import ChildChannel, ChildSetup, exit_report, frame_header

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = [
    "close_all_but",
    "fork_child_main",
    "run_process",
    "spawn_main",
    "zygote_child_main",
]

STD_TARGETS = (1, 2)


def _run_exit_handlers_like_the_standard_library() -> None:
    # Python 3.13 moved multiprocessing's exit work out of _bootstrap into
    # atexit handlers that its own start methods run; do the same on every
    # version (on 3.11/3.12 _bootstrap has already run util._exit_function,
    # which does nothing the second time).
    run_exit_handlers()


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _user_traceback(exc: BaseException) -> str:
    """*exc*'s traceback from the first frame of the user's code (procesos' own
    frames that called it, ``run_and_record`` and ``Process.run``, left out)."""
    import traceback  # here: only an error needs it (4 ms of import)

    tb = exc.__traceback__
    while (tb is not None and tb.tb_next is not None
           and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE)):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def run_process(process_obj: BaseProcess, channel: ChildChannel | Connection, output_mode: str,
                line_buffered: bool) -> int:
    """Run *process_obj* here, send its outcome on *channel*, return the exit code
    (*output_mode*, *line_buffered*: where the parent sends its streams, as
    ``ChildSetup`` says)."""
    outcome: bytes | None = None
    interrupted = False
    user_run = process_obj.run
    me = os.getpid()

    def run_and_record() -> None:
        nonlocal outcome, interrupted
        try:
            raw_signal.pthread_sigmask(raw_signal.SIG_UNBLOCK, INTERRUPT)
            try:
                value = user_run()
            finally:
                block_interrupts()
        except KeyboardInterrupt:
            # Ctrl-C: end quietly; the parent reports it once.
            interrupted = True
            raise SystemExit(1) from None
        except SystemExit as exc:
            # Exit code as _bootstrap computes it; zero hands back nothing, like None.
            code = (0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1)
            if code:  # say why it ended: the parent cannot tell it from os._exit()
                outcome = encode_error(ProcessCrashedError(
                    process_obj.name, os.getpid(), code, f"it called sys.exit({exc.code!r})"))
            raise
        except BaseException as exc:
            text = _user_traceback(exc)
            outcome = encode_error(exc, text)
            # What _bootstrap would print, without procesos' own frames; then
            # the same exit code (1), without _bootstrap's print.
            try:
                sys.stderr.write(f"Process {process_obj.name}:\n{text}")
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass  # no stderr, or a closed one: nothing to print to
            raise SystemExit(1) from None
        else:
            # None needs no frame: exit code 0 without one reads as None
            # (Process._settle), and the parent is spared a wake-up.
            if value is not None:
                outcome = encode_value(value, f"the result of process {process_obj.name!r}")

    # As the standard library's start methods do: the exit handlers of the
    # process we were forked from are not ours.
    drop_inherited_exit_handlers()
    if output_mode != "inherit":
        # descriptors 1 and 2 lead to the parent's relay
        adopt_std_streams(line_buffered)
    process_obj.run = run_and_record  # type: ignore[method-assign]
    exitcode = process_obj._bootstrap(parent_sentinel=channel.fileno())  # type: ignore[attr-defined]
    try:
        _run_exit_handlers_like_the_standard_library()
    except BaseException:
        import traceback

        traceback.print_exc()
    if outcome is not None and os.getpid() == me:  # not a fork that the target made
        # The parent's result() returns on the outcome, before this process has
        # ended: what it printed must be in the pipes first.
        flush_std_streams()
        try:
            channel.send_bytes(outcome)
        except OSError:
            pass  # the parent has gone
    if interrupted:
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPT)
        os.kill(os.getpid(), signal.SIGINT)
    return int(exitcode)


def fork_child_main(
    process_obj: BaseProcess, channel: Connection, parent_thread_is_main: bool,
    output_mode: str, line_buffered: bool,
) -> int:
    """The child side of the ``fork`` start method."""
    forget_thread_pools_after_fork()  # none of their threads came with the fork
    share_main_namespace(forked=True)
    die_with_parent(os.getppid(), channel.fileno(), parent_thread_is_main)
    return run_process(process_obj, channel, output_mode, line_buffered)


def _apply_setup(setup: ChildSetup, received_fds: list[int]) -> None:
    if setup.process_state is not None:
        from ._process_state import apply

        apply(setup.process_state)
    if setup.log_to_stderr:
        util.log_to_stderr()
    if setup.log_level is not None:
        util.get_logger().setLevel(setup.log_level)
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
        adopt_resource_tracker_fd(received_fds[setup.resource_tracker_fd])
    if setup.start_method is not None:
        set_default(setup.start_method)
    if setup.logging_config is not None:
        apply_snapshot(setup.logging_config, received_fds)
    if setup.sigint_ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _load_process(payload: bytes) -> BaseProcess:
    """The process object, unpickled as the standard library's spawn and
    forkserver children unpickle theirs: flagged ``_inheriting``.

    A manager's proxy unpickled with that flag takes no reference on its
    referent; ``_bootstrap`` then takes one (``BaseProxy._after_fork``) that the
    child gives back at its exit. Without it, the reference taken here would
    never be given back: ``_bootstrap`` drops the finalizers registered so far.
    """
    me = current_process()
    me._inheriting = True  # type: ignore[attr-defined]
    try:
        process_obj: BaseProcess = loads(payload)
    finally:
        del me._inheriting  # type: ignore[attr-defined]
    return process_obj


def _serve(channel: ChildChannel, received_fds: list[int] | None, parent_pid: int,
           use_pdeathsig: bool) -> int:
    share_main_namespace()
    setup: ChildSetup = pickle.loads(channel.recv_bytes())
    _apply_setup(setup, setup.fds if received_fds is None else received_fds)
    try:
        payload = channel.recv_bytes()
    except (EOFError, OSError):
        return 1  # the parent has gone
    # Only now: before both frames were read, a readable channel was not the
    # parent's end of file but data still to read.
    die_with_parent(parent_pid, channel.fileno(), use_pdeathsig)
    try:
        process_obj = _load_process(payload)
    except DataAbandoned:
        return 1  # start() failed in the parent (an error, Ctrl-C), which says so
    except BaseException as exc:
        sys.stderr.write("procesos: the process object could not be unpickled in the child:\n")
        import traceback

        traceback.print_exc()
        from .._errors import UnpicklingError

        error = UnpicklingError(f"the process could not be unpickled in the child: {exc!r}")
        try:
            channel.send_bytes(encode_error(error, traceback.format_exc()))
        except OSError:
            pass
        return 1
    return run_process(process_obj, channel, setup.output_mode, setup.output_line_buffered)


def spawn_main(channel_fd: int, parent_thread_is_main: int,
               std_fds: list[int] | None = None) -> NoReturn:
    """Entry point of a ``spawn`` child (a fresh interpreter).

    *std_fds*, when given, become descriptors 1 and 2 (the pipes to the parent's relay).
    """
    code = 1
    try:
        if std_fds:
            channel_fd = above_std_fds(channel_fd)
            install_std_fds(std_fds)
        channel = ChildChannel(channel_fd)
        code = _serve(channel, None, os.getppid(), bool(parent_thread_is_main))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def zygote_child_main(channel_fd: int, std_mask: int, fds: list[int], zygote_pid: int) -> NoReturn:
    """Entry point of a child forked by the zygote.

    *fds* are the descriptors sent with the request, after the status pipe:
    first the parent's standard streams named in *std_mask*, then those that
    the process object's pickle refers to.
    """
    code = 1
    me = os.getpid()
    try:
        position = 0
        std_fds: list[int | None] = []
        for bit in range(len(STD_TARGETS)):
            if std_mask & (1 << bit):
                std_fds.append(fds[position])
                position += 1
            else:
                std_fds.append(None)
        channel_fd = above_std_fds(channel_fd)
        received = [above_std_fds(fd) for fd in fds[position:]]
        install_std_fds(std_fds)
        channel = ChildChannel(channel_fd)
        code = _serve(channel, received, zygote_pid, True)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            try:
                if os.getpid() == me:  # not a fork that the target made
                    _report_exit(channel_fd, code & 0xFF)  # as the kernel keeps it
            finally:
                os._exit(code)


def close_all_but(*keep: int) -> None:
    """Close every descriptor of this process but those in *keep*.

    Those open are read from ``/proc/self/fd`` (6 µs here). ``os.closerange``
    up to the limit on open files, the fallback where there is no ``/proc``,
    makes one ``close_range()`` call where Python was built with it, but a
    ``close()`` per number where it was not (against a C library older than
    glibc 2.34, as portable builds are): 70 ms for each process on this
    2-core VM under the limit of a million that containers often set.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):
        low = 0
        for fd in sorted(keep):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        return
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, closed already


def _report_exit(channel_fd: int, code: int) -> None:
    """Tell the parent our exit code now, before the kernel tears this process down.

    Every other descriptor but 1 and 2 is closed first, so that the parent,
    which takes the report as the end of the process, finds nothing of ours
    still open (a file lock, a listening socket). Descriptors 1 and 2 stay
    open until the exit: all that was written to them is in the pipes already
    (the streams were flushed), and the parent's ``join()`` finds them empty
    and closes its ends itself; closed here, their end of file would wake the
    parent's relay thread for nothing, beside the parent's own wake-up (a
    loop of starts, 2 cores: its rounds went from 2 a start to 0-0.2, the
    machine's CPU from 3.4 to 3.3 ms a start; the time did not move).

    The tearing down (about a millisecond for a process forked from the
    zygote) and the zygote's reaping then happen off the parent's path.
    """
    try:
        close_all_but(channel_fd, *STD_TARGETS)
        data = exit_report(code)
        os.write(channel_fd, frame_header(len(data)) + data)
    except (OSError, ValueError):
        pass  # the parent has gone, or the descriptor was never opened
    else:
        # The parent, waiting for this report, may share our CPU: let it run
        # before the kernel tears this process down (a millisecond, which the
        # parent's join() otherwise waited through: traced, isolated starts).
        if hasattr(os, "sched_yield"):
            os.sched_yield()
