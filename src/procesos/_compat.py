"""Every reach into CPython's private internals, each behind a named function.

procesos is faster and more careful than the standard library in places only
by using what the standard library keeps private. Each such reach lives here,
with the one-line assumption it makes (``ASSUMES``), checked by a probe or by
the function itself, and a fallback (``FALLBACK``), the standard library's own
public behaviour, used on a Python where the assumption fails. The
assumptions hold on CPython 3.11 to 3.13, where ``tests/test_compat.py``
asserts each one and runs each feature with its fallback forced.

This is the bottom layer: it imports nothing of procesos, and of the standard
library only what a function needs when it is called (the zygote imports it
for :data:`compare_digest` and must stay small). A probe runs once, on first
use, and is cached. The shared-memory tracker, a script of its own, keeps a
copy of :data:`compare_digest` with the same fallback.

Where a fallback is slower, its docstring says by how much and how it was
measured (``benchmarks/bench_compat.py``).

cloudpickle's private names are reached the same way, at the end of this
module (imported only when a probe runs). Their fallbacks are cloudpickle's
own ways, which change what a user sees: each says so in a ``RuntimeWarning``,
once per process.
"""

from __future__ import annotations

import atexit
import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "add_child",
    "adopt_resource_tracker_fd",
    "call_before_threads_join",
    "cloudpickle_class_reduce_known",
    "cloudpickle_code_reduce",
    "cloudpickle_function_reduce_known",
    "cloudpickle_module_reduce",
    "compare_digest",
    "drop_inherited_exit_handlers",
    "drop_inherited_finalizers",
    "environ_data",
    "flush_std_streams",
    "forget_children_after_fork",
    "forking_reducers",
    "forking_reducers_known",
    "formatter_format",
    "future_internals_known",
    "interpreter_flags",
    "keep_the_current_directory_out_of_helpers",
    "lock_after_fork",
    "mp_log_level",
    "mp_logs_to_stderr",
    "process_start_known",
    "queue_internals_known",
    "queue_sentinel",
    "raw_signal",
    "reap_ended_children",
    "resource_tracker_fd",
    "run_exit_handlers",
    "run_mp_after_forkers",
    "run_mp_exit_function",
    "shm_open",
    "shm_unlink",
]


def _has(obj: object, *names: str) -> bool:
    return all(hasattr(obj, name) for name in names)


# --- concurrent.futures.Future ------------------------------------------------

_FUTURE_FIELDS = frozenset(
    {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"})


@functools.cache
def future_internals_known() -> bool:
    """ASSUMES: a ``Future`` is exactly the fields ``_condition``, ``_state``,
    ``_result``, ``_exception``, ``_waiters``, ``_done_callbacks`` with ``_base``'s
    state constants, and ``wait()``/``as_completed()`` lock ``_condition`` and
    append to ``_waiters`` (what ``LightFuture`` and the engine's direct path rely on).

    FALLBACK: the engine makes plain ``concurrent.futures.Future`` objects and
    sends every result through its dispatcher (no direct path). COST, measured
    by ``benchmarks/bench_compat.py --rounds 9`` (3.11, 2 cores, load 3.1):
    round trip 2.2x slower with ``PROCESOS_SPIN_US=0`` (50 -> 110 µs; with the
    default spin on that loaded machine the fallback was 0.75x, 176 -> 132 µs),
    bulk map of 100k 1.05-1.10x.
    """
    from concurrent.futures import Future, _base

    states = ("PENDING", "RUNNING", "CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED")
    return (_has(_base, *states, "LOGGER", "_AcquireFutures", "_create_and_install_waiters")
            and set(vars(Future())) == _FUTURE_FIELDS)


# --- multiprocessing.queues.Queue ---------------------------------------------

_QUEUE_FIELDS = ("_buffer", "_notempty", "_writer", "_reader", "_wlock", "_rlock",
                 "_sem", "_ignore_epipe", "_joincancelled", "_closed")


@functools.cache
def queue_internals_known() -> bool:
    """ASSUMES: ``multiprocessing.queues.Queue`` keeps its feeder's state in the fields
    named in ``_QUEUE_FIELDS``, starts it in ``_start_thread``, ends it with
    ``_sentinel``, and its connections frame messages as ``send_bytes`` documents
    (what procesos' batching feeder and its ``get()`` fast path rely on).

    FALLBACK: the standard library's own feeder thread and ``get()``. COST, same
    script and run: 20,000 small ints put and got in one process 2.4x slower
    (0.053 -> 0.13 s).
    """
    from multiprocessing import connection
    from multiprocessing import queues as mp_queues

    queue = mp_queues.Queue
    if not (_has(queue, "_start_thread", "_finalize_join", "_finalize_close",
                 "_on_queue_feeder_error", "_reset", "_after_fork")
            and _has(mp_queues, "_sentinel") and _has(connection.Connection, "_send")):
        return False
    names: set[str] = set()
    for method in (queue.__init__, queue._reset, queue._after_fork):  # type: ignore[attr-defined]
        names.update(getattr(getattr(method, "__code__", None), "co_names", ()))
    return names.issuperset(_QUEUE_FIELDS)


def queue_sentinel() -> object:
    """The object that tells a queue's feeder thread to close (``Queue._sentinel``);
    a new object where there is none (then :func:`queue_internals_known` is False)."""
    from multiprocessing import queues as mp_queues

    return getattr(mp_queues, "_sentinel", object())


# --- multiprocessing.reduction ------------------------------------------------

class _ProbeType:
    """Registered by :func:`forking_reducers_known` to find where it lands."""


def _reduce_probe(obj: object) -> tuple[type, tuple[()]]:
    return _ProbeType, ()


@functools.cache
def forking_reducers_known() -> bool:
    """ASSUMES: ``ForkingPickler._extra_reducers`` is the dict that
    ``multiprocessing.reduction.register()`` fills (procesos' picklers chain it in
    their ``dispatch_table``, so a reducer registered later is used too)."""
    from multiprocessing.reduction import ForkingPickler

    registry = getattr(ForkingPickler, "_extra_reducers", None)
    if not isinstance(registry, dict):
        return False
    try:
        ForkingPickler.register(_ProbeType, _reduce_probe)
    except Exception:
        return False
    return registry.pop(_ProbeType, None) is _reduce_probe


def forking_reducers() -> dict[type, Any]:
    """The reducers registered with ``multiprocessing.reduction.register()``, for a
    pickler's ``dispatch_table`` to chain (``sharedctypes`` registers one for
    each new array type, so the view must be live).

    ASSUMES: as :func:`forking_reducers_known`; then the registry itself.
    FALLBACK: a view that looks a type up in the public ``dispatch_table`` of a
    ``ForkingPickler`` made then, less ``copyreg``'s, and remembers what it
    found: about 1 µs more to pickle each object of a type that is in neither
    (its instances go through ``__reduce_ex__`` as before), and a reducer
    registered again for a type already found is not seen.
    """
    from multiprocessing.reduction import ForkingPickler

    if forking_reducers_known():
        registry: dict[type, Any] = ForkingPickler._extra_reducers  # type: ignore[attr-defined]
        return registry
    return _ReducersOfANewForkingPickler()


class _ReducersOfANewForkingPickler(dict):  # type: ignore[type-arg]
    """:func:`forking_reducers`' fallback: what a ``ForkingPickler`` made at the
    lookup holds beyond ``copyreg``'s, each type remembered once found."""

    def __init__(self) -> None:
        super().__init__()
        import copyreg
        import io
        from multiprocessing.reduction import ForkingPickler

        self._copyreg = copyreg.dispatch_table
        self._pickler = ForkingPickler
        self._file = io.BytesIO

    def __missing__(self, cls: type) -> Any:
        reduce = self._pickler(self._file()).dispatch_table.get(cls)
        if reduce is None or self._copyreg.get(cls) is reduce:
            raise KeyError(cls)
        self[cls] = reduce
        return reduce

    def __contains__(self, cls: object) -> bool:
        try:
            self[cls]
        except (KeyError, TypeError):
            return False
        return True


# --- multiprocessing.process --------------------------------------------------

@functools.cache
def process_start_known() -> bool:
    """ASSUMES: ``multiprocessing.process`` keeps the live children in the set
    ``_children`` and reaps ended ones with ``_cleanup()``, as ``BaseProcess.start``
    does (procesos' ``Process.start`` is that method without its daemon check).

    FALLBACK: ``Process.start`` calls ``BaseProcess.start`` itself; the one
    difference is that a daemonic process may then not start children. No cost.
    """
    from multiprocessing import process as mp_process

    return (isinstance(getattr(mp_process, "_children", None), set)
            and callable(getattr(mp_process, "_cleanup", None)))


def reap_ended_children() -> None:
    """Forget children that have ended (``multiprocessing.process._cleanup``)."""
    from multiprocessing import process as mp_process

    mp_process._cleanup()  # type: ignore[attr-defined]


def add_child(process: object) -> None:
    """List *process* among ``multiprocessing.active_children()``."""
    from multiprocessing import process as mp_process

    mp_process._children.add(process)  # type: ignore[attr-defined]


def lock_after_fork(lock: threading.Lock) -> threading.Lock:
    """In a freshly forked process: *lock*, or a new one where it was held at the fork
    (by a thread that did not come along: it would never be released). Kept when
    free, so that a fork touches nothing (every spare of the zygote runs this)."""
    return threading.Lock() if lock.locked() else lock


def forget_children_after_fork() -> None:
    """In a freshly forked process: the parent's children are not ours.

    ASSUMES: as for :func:`process_start_known`. FALLBACK: nothing to clear.
    """
    # Run in every forked child, the zygote's spares included: a lookup, not
    # an import statement, whose machinery would copy pages of the parent's.
    mp_process = sys.modules.get("multiprocessing.process")
    children = getattr(mp_process, "_children", None)
    if isinstance(children, set) and children:
        children.clear()


# --- interpreter exit ---------------------------------------------------------

def call_before_threads_join(fn: Callable[[], object]) -> None:
    """Call *fn* at exit before non-daemon threads are joined.

    ASSUMES: ``threading._register_atexit`` exists (``concurrent.futures`` uses it).
    FALLBACK: ``atexit.register``, which runs after those threads are joined:
    a non-daemon thread of the user's that waits on an engine's future keeps
    the interpreter from exiting until that future is done.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(fn)
    else:
        atexit.register(fn)


def drop_inherited_exit_handlers() -> None:
    """In a new child: the exit handlers of the process it was forked from are
    not its own; keep only multiprocessing's, as the standard library's fork does.

    ASSUMES: ``atexit._clear`` exists and ``multiprocessing.util._exit_function`` is
    multiprocessing's exit handler. FALLBACK: the inherited handlers stay (as in
    a plain ``os.fork()`` child) and run when the child exits.
    """
    from multiprocessing import util

    clear = getattr(atexit, "_clear", None)
    exit_function = getattr(util, "_exit_function", None)
    if clear is None or exit_function is None:
        return
    clear()
    atexit.register(exit_function)


def run_exit_handlers() -> None:
    """Run the exit handlers now, as the standard library's start methods do
    before ``os._exit`` (3.13).

    ASSUMES: ``atexit._run_exitfuncs`` exists. FALLBACK: run multiprocessing's
    own exit function (what 3.11 and 3.12 run at the end of ``_bootstrap``).
    """
    run = getattr(atexit, "_run_exitfuncs", None)
    if run is not None:
        run()
    else:
        run_mp_exit_function()


def run_mp_exit_function() -> None:
    """Run multiprocessing's exit function (join children, run finalizers).

    ASSUMES: ``multiprocessing.util._exit_function`` exists. FALLBACK: nothing;
    the interpreter's own exit runs it, where the process exits normally.
    """
    from multiprocessing import util

    exit_function = getattr(util, "_exit_function", None)
    if exit_function is not None:
        exit_function()


def drop_inherited_finalizers() -> None:
    """Drop the finalizers a forked process inherited (``_bootstrap`` does it too).

    ASSUMES: ``multiprocessing.util._finalizer_registry`` is a dict. FALLBACK:
    nothing; ``BaseProcess._bootstrap`` clears it again in the child.
    """
    from multiprocessing import util

    registry = getattr(util, "_finalizer_registry", None)
    if isinstance(registry, dict):
        registry.clear()


def forget_thread_pools_after_fork() -> None:
    """In a child forked from a thread: forget ``concurrent.futures``' pool threads.

    They did not survive the fork, but the module still lists them, and
    ``_bootstrap``'s ``threading._shutdown()`` joins each at the child's end:
    forked from a ``ThreadPoolExecutor``'s worker, the child then joins its
    own thread, raises ``RuntimeError: cannot join current thread`` and exits
    with code 1, its result lost (the standard library's ``fork`` does so on
    3.11 to 3.13: cpython gh-88110). The module is not imported for this.

    ASSUMES: ``concurrent.futures.thread._threads_queues`` maps those threads to
    their queues (3.8 to 3.14). FALLBACK: nothing (the standard library's
    behaviour).
    """
    module = sys.modules.get("concurrent.futures.thread")
    queues = getattr(module, "_threads_queues", None)
    if queues is not None and hasattr(queues, "clear"):
        queues.clear()


def run_mp_after_forkers() -> None:
    """Run what ``multiprocessing.util.register_after_fork`` registered, as a
    forked ``multiprocessing`` child does (``BaseProcess._bootstrap``).

    ASSUMES: ``multiprocessing.util._run_after_forkers`` exists. FALLBACK: nothing;
    the objects concerned (locks, queues, managers' proxies) then keep the
    state they had in the process that forked, which had not used them.
    """
    from multiprocessing import util

    after_forkers = getattr(util, "_run_after_forkers", None)
    if after_forkers is not None:
        after_forkers()


def flush_std_streams() -> None:
    """Flush ``sys.stdout`` and ``sys.stderr``, ignoring a closed or missing one.

    ASSUMES: ``multiprocessing.util._flush_std_streams`` exists. FALLBACK: the same,
    done here.
    """
    from multiprocessing import util

    flush = getattr(util, "_flush_std_streams", None)
    if flush is not None:
        flush()
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass


# --- multiprocessing's logger and interpreter flags, for a spawned child --------

def mp_log_level() -> int | None:
    """The level of multiprocessing's logger, None if nobody made it.

    ASSUMES: ``multiprocessing.util._logger`` holds it. FALLBACK: None (the child's
    logger keeps its defaults), since ``util.get_logger()`` would make one.
    """
    from multiprocessing import util

    logger = getattr(util, "_logger", None)
    return None if logger is None else int(logger.getEffectiveLevel())


def mp_logs_to_stderr() -> bool:
    """Whether ``multiprocessing.log_to_stderr()`` was called.

    ASSUMES: ``multiprocessing.util._log_to_stderr`` records it. FALLBACK: False.
    """
    from multiprocessing import util

    return bool(getattr(util, "_log_to_stderr", False))


def interpreter_flags() -> list[str]:
    """The command-line options that reproduce this interpreter's settings (``-O``, ``-X``...).

    ASSUMES: ``multiprocessing.util._args_from_interpreter_flags`` exists.
    FALLBACK: ``subprocess``'s function of the same name, else none (a spawned
    child then runs with default settings).
    """
    from multiprocessing import util

    flags: Callable[[], list[str]] | None = getattr(util, "_args_from_interpreter_flags", None)
    if flags is None:
        import subprocess

        flags = getattr(subprocess, "_args_from_interpreter_flags", list)
    return list(flags())


# --- the standard library's helper interpreters ---------------------------------

def keep_the_current_directory_out_of_helpers() -> None:
    """Start the standard library's helper interpreters with ``-P``.

    Its resource tracker (started by a named semaphore — a procesos ``Lock``
    or ``Queue`` under any method but ``fork`` — or a ``SharedMemory``), and
    its own ``spawn`` and ``forkserver`` processes, run ``python -c ...``,
    which puts the current directory first on ``sys.path``: a
    ``multiprocessing`` package planted in a directory others may write to
    (``/tmp``) would run in them as this user. procesos starts its own
    interpreters with ``-P``; this gives the standard library's the same.
    Nothing else changes: a spawned child takes its ``sys.path`` from its
    parent before it imports the user's modules.

    ASSUMES: they build their command from
    ``multiprocessing.util._args_from_interpreter_flags()``, looked up when
    they start (3.8 to 3.14). FALLBACK: where it is missing, nothing changes.
    """
    from multiprocessing import util

    plain = getattr(util, "_args_from_interpreter_flags", None)
    if plain is None or getattr(plain, "_procesos_safe_path", False):
        return

    def with_safe_path() -> list[str]:
        flags = list(plain())
        return flags if "-P" in flags else [*flags, "-P"]

    with_safe_path._procesos_safe_path = True  # type: ignore[attr-defined]
    util._args_from_interpreter_flags = with_safe_path  # type: ignore[attr-defined]


# --- the resource tracker -----------------------------------------------------

def resource_tracker_fd() -> int | None:
    """The pipe to the running resource tracker, None if none runs.

    ASSUMES: the tracker singleton keeps it in ``_fd`` (as ``spawn_main`` sets it).
    FALLBACK: None: a child starts its own tracker when it first needs one.
    """
    from multiprocessing import resource_tracker

    return getattr(resource_tracker._resource_tracker, "_fd", None)


def adopt_resource_tracker_fd(fd: int) -> None:
    """In a child: use the parent's resource tracker through *fd*.

    ASSUMES: as for :func:`resource_tracker_fd`. FALLBACK: nothing (the child
    starts its own tracker when it first needs one).
    """
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    if hasattr(tracker, "_fd"):
        tracker._fd = fd


# --- signals without their enums -------------------------------------------------

_RAW_SIGNAL_NAMES = ("signal", "set_wakeup_fd", "pthread_sigmask", "SIG_DFL",
                     "SIG_BLOCK", "SIG_UNBLOCK", "default_int_handler")


def _pick_raw_signal() -> Any:
    import signal

    try:
        import _signal  # type: ignore[import-not-found]
    except ImportError:
        return signal
    return _signal if all(hasattr(_signal, name) for name in _RAW_SIGNAL_NAMES) else signal


raw_signal = _pick_raw_signal()
"""The functions of ``signal`` without its conversions to enums, for the steps every
new process takes. ASSUMES: ``_signal``, the C module that ``signal.py`` wraps, has
them with the same arguments (``signal.py`` only turns the numbers it returns into
enums: in a process just forked, a first ``signal.signal()`` copies 43 pages more,
0.13 ms, a first ``pthread_sigmask()`` 11 more). FALLBACK: ``signal`` itself.
"""


# --- hmac without hashlib -----------------------------------------------------

def _pick_compare_digest() -> Callable[[Any, Any], bool]:
    try:
        from _operator import _compare_digest
    except ImportError:
        from hmac import compare_digest

        return compare_digest
    return _compare_digest


compare_digest = _pick_compare_digest()
"""``hmac.compare_digest``. ASSUMES: ``_operator._compare_digest`` is it (importing
``hmac`` imports ``hashlib``, a few ms in the zygote and tracker). FALLBACK:
``hmac.compare_digest``, those ms once per process.
"""


# --- POSIX shared memory by name ----------------------------------------------

def shm_open(name: str, flags: int, mode: int = 0o600) -> int:
    """``shm_open(3)``: a descriptor for the POSIX shared memory object *name* ("/x").

    ASSUMES: the C module ``_posixshmem`` (behind ``multiprocessing.shared_memory``)
    exists. FALLBACK: open ``/dev/shm`` + *name*, which is what glibc's
    ``shm_open`` does (an ``OSError`` where there is no ``/dev/shm``).
    """
    try:
        import _posixshmem  # type: ignore[import-not-found]
    except ImportError:
        import os

        return os.open("/dev/shm" + name, flags | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    return int(_posixshmem.shm_open(name, flags, mode))


def shm_unlink(name: str) -> None:
    """``shm_unlink(3)`` of the POSIX shared memory object *name*.

    ASSUMES and FALLBACK: as for :func:`shm_open`.
    """
    try:
        import _posixshmem
    except ImportError:
        import os

        os.unlink("/dev/shm" + name)
        return
    _posixshmem.shm_unlink(name)


# --- os.environ, as the operating system holds it ------------------------------

def environ_data() -> Any:
    """The environment's encoded variables, a mapping cheap to compare (microseconds).

    ASSUMES: ``os.environ._data`` holds them (bytes to bytes). FALLBACK: a copy of
    ``os.environ`` (about 10x slower to make; the same comparisons hold).
    """
    import os

    return getattr(os.environ, "_data", None) or dict(os.environ)


# --- logging ------------------------------------------------------------------

def formatter_format(formatter: Any) -> tuple[str | None, object]:
    """A ``logging.Formatter``'s format string and style object, as given to it.

    ASSUMES: it keeps them in ``_fmt`` and ``_style`` (``logging`` since 3.2).
    FALLBACK: ``(None, None)``: a child's copy of the formatter, where the
    formatter cannot be pickled, then formats as ``logging``'s default does.
    """
    return getattr(formatter, "_fmt", None), getattr(formatter, "_style", None)


# --- cloudpickle (a dependency, not CPython: its private names, by the same rule) -

_PROBE_VALUE = "procesos probe"


def _probe_function() -> str:
    return _PROBE_VALUE


def _probe_closure() -> Callable[[], str]:
    suffix = "!"

    def probe() -> str:
        return _PROBE_VALUE + suffix

    return probe


def _warn_cloudpickle(what: str) -> None:
    import warnings
    from importlib import metadata

    try:
        version = metadata.version("cloudpickle")
    except Exception:  # not installed as a distribution: name it unknown
        version = "of unknown version"
    warnings.warn(f"procesos does not know this cloudpickle ({version}): {what}. Please report "
                  "it to procesos with this message.", RuntimeWarning, stacklevel=4)


@functools.cache
def cloudpickle_function_reduce_known() -> bool:
    """ASSUMES: ``cloudpickle.Pickler._dynamic_function_reduce(func)`` returns
    ``(make, (code, base_globals, name, argdefs, closure), (attributes, slots),
    None, None, setstate)``, *base_globals* a dict, *slots* holding the globals
    the function uses under ``"__globals__"`` and its cells under
    ``"__closure__"``, *setstate* ``cloudpickle.cloudpickle._function_setstate``.
    procesos' pickler then shares a module's globals among the functions sent
    by value, and names :mod:`procesos._rebuild`'s helpers in the stream in
    place of *make* and *setstate*: checked here by rebuilding a closure with
    them.

    FALLBACK: cloudpickle's own reduction: each function sent by value gets its
    own copy of its globals (a worker's ``initializer`` that sets a global of
    ``__main__`` sets it for itself only), its receiver imports cloudpickle,
    and a ``RuntimeWarning`` says so, once per process.
    """
    import io

    from . import _rebuild

    try:
        import cloudpickle  # type: ignore[import-untyped]

        probe = _probe_closure()
        setstate = cloudpickle.cloudpickle._function_setstate
        reduced = cloudpickle.Pickler(io.BytesIO())._dynamic_function_reduce(probe)
        _, args, (attributes, slots), _, _, given = reduced
        known = (given is setstate and len(args) == 5 and isinstance(args[1], dict)
                 and isinstance(slots.get("__globals__"), dict))
        if known:
            function = _rebuild.make_function(*args)
            _rebuild.function_setstate(function, (dict(attributes), dict(slots)))
            known = (function() == probe() and function.__globals__ is args[1]
                     and function.__qualname__ == probe.__qualname__)
    except Exception:
        known = False
    if not known:
        _warn_cloudpickle("functions sent by value no longer share their module's globals "
                          "once unpickled (each has its own copy)")
    return known


@functools.cache
def cloudpickle_module_reduce() -> Callable[[Any], tuple[Any, ...]] | None:
    """A reducer of modules that sends what cloudpickle sends by reference (an
    importable module) as :func:`procesos._rebuild.import_module`, and the rest
    (a module made at run time) as cloudpickle does; None where cloudpickle is
    not as known.

    ASSUMES: ``cloudpickle.cloudpickle._module_reduce(module)`` returns
    ``(cloudpickle.cloudpickle.subimport, (name,))`` for a module it sends by
    reference.

    FALLBACK: None: modules go as cloudpickle sends them, and the receiver of a
    function that uses one imports cloudpickle to load it; a ``RuntimeWarning``
    says so, once per process.
    """
    try:
        import cloudpickle

        reduce = cloudpickle.cloudpickle._module_reduce
        subimport = cloudpickle.cloudpickle.subimport
        known = reduce(functools) == (subimport, ("functools",))
    except Exception:
        known = False
    if not known:
        _warn_cloudpickle("a function that uses a module makes its receiver import cloudpickle")
        return None

    from ._rebuild import import_module

    def reduce_module(module: Any) -> tuple[Any, ...]:
        reduced: tuple[Any, ...] = reduce(module)
        if reduced[0] is subimport:
            return (import_module, *reduced[1:])
        return reduced

    return reduce_module


@functools.cache
def cloudpickle_code_reduce() -> Callable[[Any], tuple[Any, tuple[Any, ...]]] | None:
    """cloudpickle's reducer of code objects, or None.

    ASSUMES: ``cloudpickle.cloudpickle._code_reduce(code)`` returns
    ``(rebuild, args)``, ``rebuild(*args)`` the same code object but for its file
    name (what procesos' pickler wraps to keep the real file name, so that a
    child's traceback shows where the code is, and its source lines).

    FALLBACK: None: code objects go as cloudpickle sends them (a traceback then
    names their file ``<dynamic-code>``), and a ``RuntimeWarning`` says so, once
    per process.
    """
    try:
        import cloudpickle

        reduce: Callable[[Any], tuple[Any, tuple[Any, ...]]] = (
            cloudpickle.cloudpickle._code_reduce)
        code = _probe_function.__code__
        rebuild, args = reduce(code)
        rebuilt = rebuild(*args)
        if rebuilt.replace(co_filename=code.co_filename) == code:
            return reduce
    except Exception:
        pass
    _warn_cloudpickle("a function sent by value shows '<dynamic-code>' as its file in "
                      "tracebacks")
    return None


@functools.cache
def cloudpickle_class_reduce_known() -> bool:
    """Whether procesos may give classes sent by value its own rebuild
    (:func:`procesos._rebuild.make_class`): a class this process already has
    for one that arrives — tracked under the same id, or, from a process
    forked from this one, the same class object — is used as it is, without
    setting its attributes again from the pickle.

    ASSUMES: ``cloudpickle.Pickler.reducer_override(cls)`` returns, for a class
    sent by value, ``(make, args, state, None, None,
    cloudpickle.cloudpickle._class_setstate)`` with ``args[-2]`` the class's
    tracker id, which ``cloudpickle.cloudpickle._DYNAMIC_CLASS_TRACKER_BY_ID``
    maps to the class (under ``_DYNAMIC_CLASS_TRACKER_LOCK``): checked here on a
    class made for it.

    FALLBACK: cloudpickle's own rebuild, which sets every attribute of a class
    this process has already (its methods become copies of the sender's, their
    globals a snapshot), and makes a copy of a class of the script that a
    forked process sends back; a ``RuntimeWarning`` says so, once per process.
    """
    import io

    try:
        import cloudpickle

        module = cloudpickle.cloudpickle
        probe = type("_Probe", (), {"__module__": "__main__", "__qualname__": "_Probe<locals>"})
        reduced = cloudpickle.Pickler(io.BytesIO()).reducer_override(probe)
        known = (isinstance(reduced, tuple) and len(reduced) == 6
                 and reduced[5] is module._class_setstate
                 and module._DYNAMIC_CLASS_TRACKER_BY_ID.get(reduced[1][-2]) is probe
                 and hasattr(module._DYNAMIC_CLASS_TRACKER_LOCK, "__enter__"))
    except Exception:
        known = False
    if not known:
        _warn_cloudpickle("a class of the script that arrives in a process that has it "
                          "already gets its methods replaced by copies")
    return known
