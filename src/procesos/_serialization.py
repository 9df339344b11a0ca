"""Layer 1: the one pickler for everything that crosses a process boundary.

cloudpickle (functions and classes from ``__main__``, lambdas and closures by
value, importable objects by reference) extended with the reducers that
``multiprocessing`` registers for its own objects (connections, sockets,
shared-memory arenas), so that queues, locks, pipes and manager proxies can be
passed to a child.

Every frame uses pickle protocol 5; buffers of at least the threshold (1 MiB,
``PROCESOS_SHM_THRESHOLD``) travel through shared memory, written once and
mapped by the receiver (:mod:`procesos._shm`). A frame that carries shared
memory is meant to be loaded once; ``dumps(obj, reusable=True)`` makes one that
can be loaded by many receivers, until :func:`discard`.

cloudpickle is imported on the first :func:`dumps` of something that is not
plain data (importing it and what it imports takes 10 to 30 ms): a program
that only imports procesos, and a ``spawn`` child whose result is plain data,
never pay for it. Nor does a receiver of functions sent by value: the stream
names :mod:`procesos._rebuild`'s helpers in place of cloudpickle's (a class
sent by value still needs cloudpickle's).

Functions sent by value share their module's globals once unpickled, as they
did where they were defined: cloudpickle alone gives each pickle its own copy,
so a worker's ``initializer`` that sets a global of ``__main__`` set it for
itself only, and the tasks sent later never saw it. Here every function of a
module shares one namespace per process (in a child of procesos, the real
``__main__`` for ``__main__``'s functions; in the parent, a private one).
A name takes the value that arrives with each new function, as cloudpickle
would give it, unless code in this process has assigned it since: that value
stays (see :func:`_set_function_state`).

Which pickler: the one policy
-----------------------------

Every layer that pickles for another process asks this module; nothing else
chooses a pickler.

* **Small plain data** (:func:`is_small_plain`: ``None``, ``bool``, ``int``,
  ``float``, ``complex``, ``str`` and ``bytes`` under 16 KiB, and tuples,
  lists and dicts of at most 32 such items, nested at most twice) is one
  ``pickle.dumps``: every pickler writes the same bytes for it, and neither
  cloudpickle nor the frame machinery is needed. Its part that cannot change
  after the call (:func:`is_small_immutable`: those scalars and texts, or one
  tuple of them) is what a queue may leave to its feeder thread to pickle later.
* **Towards a child or a worker** (:func:`dumps`, :func:`dumps_for_child`,
  :func:`plain_for_child`): cloudpickle, because the receiver has no
  ``__main__`` of the sender's (a worker never imports it; a ``spawn`` child
  imports it under another name): functions and classes of ``__main__``,
  lambdas and closures go by value. The engine, which sends many small tasks,
  first tries the C pickler in-band (a third of cloudpickle's time for a
  batch of eight small calls, 0.7 against 2.2 µs) and keeps that
  stream unless it names ``__main__``: a reference to ``__main__`` always
  writes the module's name into the stream, so a stream without those bytes
  refers to nothing the worker lacks (a false hit, the text in the user's data,
  only costs the slower pickler).
* **Towards the parent** (:func:`dumps_for_parent`, :func:`dumps_fast`): the C
  pickler with procesos' reducers (:class:`FastPickler`): the parent has the
  modules, ``__main__`` included, so references resolve, and a class of
  ``__main__`` arrives as the caller's own (cloudpickle, under ``fork``, would
  send it by value: a copy that ``except`` in the parent does not match).
  cloudpickle only for what the C pickler refuses (a lambda, a closure).
  The engine's results first try the C pickler in-band, as its tasks do.
* Whatever the pickler, buffers and large ``bytes``/``str`` of at least the
  threshold go through shared memory (:mod:`procesos._shm._transport`).

In the parent, a failure to pickle is the caller's error (``Exception``); in
a child or worker, what a ``__reduce__`` raises, ``SystemExit`` and
``KeyboardInterrupt`` included, fails that one object
(:data:`PICKLING_FAILURES`).
"""

from __future__ import annotations

import copyreg
import io
import itertools
import operator
import os
import pickle
import sys
import threading
import types
import weakref
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ._compat import (
    cloudpickle_class_reduce_known,
    cloudpickle_code_reduce,
    cloudpickle_function_reduce_known,
    cloudpickle_module_reduce,
    forking_reducers,
)
from ._rebuild import (
    class_at,
    function_setstate,
    make_cell,
    make_class,
    make_code,
    make_ctypes_record,
    make_empty_cell,
    make_function,
    set_class_state,
)
from ._shm import _transport
from ._shm._errors import DataAbandoned
from ._shm._transport import (
    Frame,
    discard,
    get_threshold,
    is_shared,
    reap,
    set_threshold,
)

__all__ = [
    "PICKLING_FAILURES",
    "PROTOCOL",
    "DataAbandoned",
    "FastPickler",
    "Frame",
    "binding_generation",
    "discard",
    "dumps",
    "dumps_fast",
    "dumps_for_child",
    "dumps_for_parent",
    "dumps_frame",
    "dumps_in_band",
    "first_unpicklable",
    "get_threshold",
    "globals_sent",
    "is_shared",
    "is_small_immutable",
    "is_small_plain",
    "loads",
    "plain_for_child",
    "reap",
    "register_descriptor_reducer",
    "set_threshold",
    "share_main_namespace",
    "unpicklable_inside",
]

PROTOCOL = _transport.PROTOCOL

_MISSING = object()
_OWNED = object()  # a name code in this process has assigned: arriving values leave it
# module name -> (the namespace its functions share here, name -> what we last
# put there, or _OWNED, name -> the sender's generation of it)
_namespaces: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
#: In a function's pickled state: for each global it carries, the sender's generation of it.
_GENERATIONS = "__procesos_generations__"
_INHERITED = object()  # a binding a fork inherited: the sender's own object, if at its address


def share_main_namespace(forked: bool = False) -> None:
    """In a child of procesos: functions of ``__main__`` live in the real ``__main__``.

    Called by every start method before the child unpickles anything (*forked*:
    by ``fork``, whose ``__main__`` holds the parent's own objects). (In the
    parent, the real ``__main__`` is the user's script: never written to.)
    """
    main = sys.modules.get("__main__")
    if main is not None:
        # Replaces the parent's private one, inherited by a fork. What is
        # there now (a fork's copy of the parent's script, the interpreter's
        # own names) is replaced by what arrives, unless assigned again here
        # or, after a fork, unless it arrives as the same binding.
        generations = dict.fromkeys(main.__dict__, _INHERITED) if forked else {}
        _namespaces["__main__"] = (main.__dict__, dict(main.__dict__), generations)


def _shared_globals(base: dict[str, Any]) -> dict[str, Any]:
    """The namespace that functions sent by value from module ``base["__name__"]`` share."""
    name = base["__name__"]
    entry = _namespaces.get(name)
    if entry is None:
        namespace = dict(base)
        entry = _namespaces[name] = (namespace, dict(namespace), {})
    # Nothing of *base* goes into a namespace that exists already: a child's
    # real __main__ must not get the parent's __file__ (the standard library's
    # spawn would then run the parent's script again in a grandchild).
    return entry[0]


class _SharedGlobals:
    """Stands for a function's globals in a pickle: the receiver's shared namespace."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base

    def __reduce__(self) -> tuple[Any, ...]:
        return _shared_globals, (self.base,)


def _set_function_state(func: types.FunctionType, state: tuple[Any, Any]) -> None:
    """cloudpickle's ``_function_setstate``, with the globals merged into the shared
    namespace: a name assigned by code in this process since a pickle last set it
    (a worker's initializer, say) keeps its value, and so does one the sender has
    not assigned since it was put here (a dict the initializer filled)."""
    attributes, slots = state
    generations = slots.get(_GENERATIONS, {})
    slots = {key: value for key, value in slots.items() if key != _GENERATIONS}
    namespace = func.__globals__
    entry = _namespaces.get(namespace.get("__name__", _MISSING))
    if entry is not None and entry[0] is namespace:
        installed, installed_generations = entry[1], entry[2]
        for name, value in slots["__globals__"].items():
            previous = installed.get(name, _MISSING)
            current = namespace.get(name, _MISSING)
            if previous is _OWNED or (current is not _MISSING and current is not previous):
                installed[name] = _OWNED
                continue
            sent = generations.get(name)  # (the sender's generation, its object's id)
            if sent is not None and current is not _MISSING:
                mine = installed_generations.get(name)
                if mine == sent[0] or (mine is _INHERITED and id(current) == sent[1]):
                    # The sender's binding that is here already: what is here
                    # stays, changed by code here or not.
                    installed_generations[name] = sent[0]
                    continue
            namespace[name] = installed[name] = value
            installed_generations[name] = None if sent is None else sent[0]
        slots = {**slots, "__globals__": {}}
    function_setstate(func, (attributes, slots))


def _identity_token(value: Any) -> Any:
    """What :func:`_still_bound` compares *value* with later, keeping no large
    object alive: a weak reference, else the object itself if small, else its id."""
    try:
        return weakref.ref(value)
    except TypeError:
        return (value,) if sys.getsizeof(value) <= _HELD_SIZE else id(value)


def _still_bound(token: Any, value: Any) -> bool:
    """Whether *value* is the object *token* was made of (:func:`_identity_token`)."""
    kind = type(token)
    if kind is tuple:
        return token[0] is value
    if kind is int:
        return bool(id(value) == token)
    return token() is value


_HELD_SIZE = 1 << 16
# (id of a module's namespace, name) -> (identity token of the value last sent, its generation)
_bindings_sent: dict[tuple[int, str], tuple[Any, tuple[int, int]]] = {}
_sent_count = itertools.count(1)


def binding_generation(namespace: dict[str, Any], name: str, value: Any) -> tuple[int, int]:
    """This process's generation of *namespace*'s binding of *name* to *value*: a
    new one each time it is found bound to another object than the last time."""
    key = (id(namespace), name)
    known = _bindings_sent.get(key)
    if known is not None and _still_bound(known[0], value):
        return known[1]
    generation = (os.getpid(), next(_sent_count))
    _bindings_sent[key] = (_identity_token(value), generation)
    return generation


#: What the functions pickled by value in this thread's :func:`globals_sent` block sent.
_sent = threading.local()


@contextmanager
def globals_sent() -> Iterator[list[tuple[dict[str, Any], dict[str, tuple[int, int]]]]]:
    """Record, for each function pickled by value in the block, its globals and
    the generation sent of each binding it uses: ``(func.__globals__, {name:
    generation})``.

    A pickle kept to be sent again (the engine's functions) is stale once
    :func:`binding_generation` gives one of those names another generation.
    """
    outer = getattr(_sent, "record", None)
    record: list[tuple[dict[str, Any], dict[str, tuple[int, int]]]] = []
    _sent.record = record
    try:
        yield record
    finally:
        _sent.record = outer


def _reduce_text_file(file: Any) -> tuple[Any, ...]:
    # cloudpickle sends a text file open for reading as a StringIO of what it
    # holds now: a snapshot that silently stops following the file. An open
    # file is refused as the standard pickler refuses a binary one; the
    # standard streams still travel by name.
    if file is sys.stdout or file is sys.stderr:
        return getattr, (sys, "stdout" if file is sys.stdout else "stderr")
    raise TypeError(
        f"cannot pickle '{type(file).__module__}.{type(file).__qualname__}' object: an open "
        "file; pass its path and open it where it is used"
    )


def _rebuild_code(rebuild: Callable[..., types.CodeType], args: tuple[Any, ...],
                  filename: str) -> types.CodeType:
    return rebuild(*args).replace(co_filename=filename)


def _reduce_cell(cell: types.CellType) -> tuple[Any, ...]:
    try:
        contents = cell.cell_contents
    except ValueError:  # empty: a closure's name not bound yet
        return make_empty_cell, ()
    return make_cell, (contents,)


def _reduce_code_keeping_its_file(code: types.CodeType) -> tuple[Any, ...]:
    # cloudpickle names every function sent by value "<dynamic-code>"; keep
    # the real file so that a child's traceback shows where the code is (and
    # its source lines, when the file is there). Registered only where
    # cloudpickle_code_reduce() found cloudpickle's reducer.
    reduce = cloudpickle_code_reduce()
    assert reduce is not None
    rebuild, args = reduce(code)
    if rebuild is types.CodeType:
        return make_code, (args, code.co_filename)
    return _rebuild_code, (rebuild, args, code.co_filename)


_pickler: type | None = None


def _reduce_ctypes_type(cls: type) -> tuple[Any, ...] | None:
    """A ctypes type of the sender's script: an array or pointer type as made from
    its item type, a structure or union by its fields (cloudpickle cannot send
    their field descriptors); None for others, and for those importable here."""
    import ctypes

    if not issubclass(cls, ctypes.Array | ctypes._Pointer | ctypes.Structure | ctypes.Union):
        return None
    if _importable(cls):
        return None
    if issubclass(cls, ctypes.Array):
        return operator.mul, (cls._type_, cls._length_)
    if issubclass(cls, ctypes._Pointer):
        return ctypes.POINTER, (cls._type_,)
    attributes = {name: value for name, value in vars(cls).items()
                  if not name.startswith("__") and type(value).__name__ != "CField"}
    return make_ctypes_record, (cls.__bases__, cls.__name__, cls.__qualname__, cls.__module__,
                                attributes, (cls.__module__, cls.__qualname__, id(cls)))


def _importable(cls: type) -> bool:
    return cls.__module__ != "__main__" and class_at(cls.__module__, cls.__qualname__,
                                                      id(cls)) is cls


def _cloud_pickler() -> type:
    """cloudpickle's pickler with multiprocessing's reducers, made (and
    cloudpickle imported) on first use."""
    global _pickler
    if _pickler is None:
        _pickler = _make_cloud_pickler()
    return _pickler


def _make_cloud_pickler() -> type:
    import cloudpickle  # type: ignore[import-untyped]

    # What cloudpickle keeps private is used only where _compat finds it as
    # procesos knows it; elsewhere cloudpickle's own ways, with a warning.
    # Cells, code and modules by procesos._rebuild's helpers, not cloudpickle's:
    # the receiver of a function sent by value then never imports cloudpickle.
    ours: dict[type, Any] = {io.TextIOWrapper: _reduce_text_file, types.CellType: _reduce_cell}
    if cloudpickle_code_reduce() is not None:
        ours[types.CodeType] = _reduce_code_keeping_its_file
    reduce_module = cloudpickle_module_reduce()
    if reduce_module is not None:
        ours[types.ModuleType] = reduce_module

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        """cloudpickle with multiprocessing's reducers for its own types, and
        functions sent by value sharing their module's globals once unpickled."""

        dispatch_table = ChainMap(
            ours,
            _transport.reducers,
            _FORKING_REDUCERS,
            cloudpickle.Pickler.dispatch_table,
        )

    if cloudpickle_class_reduce_known():
        class_setstate = cloudpickle.cloudpickle._class_setstate
        reducer_override = cloudpickle.Pickler.reducer_override

        def _reducer_override(self: Any, obj: Any) -> Any:
            if isinstance(obj, type) and "_ctypes" in sys.modules:
                ctypes_reduced = _reduce_ctypes_type(obj)
                if ctypes_reduced is not None:
                    return ctypes_reduced
            reduced = reducer_override(self, obj)
            if (isinstance(obj, type) and type(reduced) is tuple and len(reduced) == 6
                    and reduced[5] is class_setstate):
                make, args, state = reduced[:3]
                origin = (obj.__module__, obj.__qualname__, id(obj))
                return (make_class, (make, args, origin), state, None, None, set_class_state)
            return reduced

        Pickler.reducer_override = _reducer_override

    if cloudpickle_function_reduce_known():
        def _dynamic_function_reduce(self: Any, func: types.FunctionType) -> tuple[Any, ...]:
            reduced = cloudpickle.Pickler._dynamic_function_reduce(self, func)
            _, (code, _, *rest), (attributes, slots), items, mapping, _ = reduced
            generations = {name: binding_generation(func.__globals__, name, value)
                           for name, value in slots["__globals__"].items()}
            record = getattr(_sent, "record", None)
            if record is not None:
                record.append((func.__globals__, generations))
            base = reduced[1][1]
            if not isinstance(base.get("__name__"), str):
                return reduced  # type: ignore[no-any-return]  # no module to share
            slots = {**slots, _GENERATIONS: {
                name: (generation, id(slots["__globals__"][name]))
                for name, generation in generations.items()}}
            return (make_function, (code, _SharedGlobals(base), *rest), (attributes, slots),
                    items, mapping, _set_function_state)

        Pickler._dynamic_function_reduce = _dynamic_function_reduce

    Pickler.__module__, Pickler.__qualname__ = __name__, "Pickler"
    return Pickler


#: multiprocessing's reducers (``multiprocessing.reduction.register``), which
#: both picklers use: live where _compat knows where they are kept.
_FORKING_REDUCERS = forking_reducers()


class FastPickler(pickle.Pickler):
    """The C pickler with the same reducers, minus cloudpickle: functions by reference."""

    dispatch_table = ChainMap(
        _transport.reducers,
        _FORKING_REDUCERS,
        copyreg.dispatch_table,  # type: ignore[arg-type]
    )


def _fast_pickler() -> type:
    return FastPickler


def register_descriptor_reducer(cls: type, reducer: Callable[[Any], Any]) -> None:
    """Pickle *cls*, an object that carries a descriptor (a ``Connection``), with
    *reducer* in every pickler: procesos' and ``multiprocessing``'s (as
    ``multiprocessing.reduction.register``), and plain ``pickle``, which the
    in-band tries below use. Without it, plain ``pickle`` saves such an object
    as its bare descriptor number, meaningless in the receiver: a worker given a
    ``Pipe`` end wrote to whatever descriptor had that number there."""
    ForkingPickler.register(cls, reducer)
    copyreg.pickle(cls, reducer)


_connections_registered = False


def _register_connections() -> None:
    """Register ``Connection``'s reducer for plain ``pickle`` (the in-band tries
    below) once ``multiprocessing.connection`` is loaded. Not imported for it:
    a spawn child that never meets a connection saves its 5 ms. No connection
    exists before that module is loaded, so each try calls this first while
    it has not registered (``multiprocessing`` registers it for its own
    ``ForkingPickler``, which procesos' picklers chain to, by itself)."""
    global _connections_registered
    connection = sys.modules.get("multiprocessing.connection")
    if connection is None:
        return
    # Public in CPython (3.11 to 3.14), absent from typeshed.
    reducer = getattr(connection, "reduce_connection", None)
    if reducer is not None:
        register_descriptor_reducer(connection.Connection, reducer)
    _connections_registered = True


_register_connections()


# -- the policy (see the module's docstring) -------------------------------------

#: What a ``__reduce__`` or ``__setstate__`` may raise that fails the one object,
#: not the process: ``sys.exit()`` or ``KeyboardInterrupt`` raised there included.
PICKLING_FAILURES = (Exception, SystemExit, KeyboardInterrupt)

_SCALARS = frozenset({int, float, bool, complex, type(None)})
#: Text and bytes shorter than this are small plain data; longer ones go through
#: the frame machinery, which sends parts of 1 MiB or more through shared memory.
SMALL_TEXT = 1 << 14
#: A container of more items than this is not small plain data.
SMALL_ITEMS = 32


def is_small_plain(obj: Any, depth: int = 0) -> bool:
    """Whether *obj* is small plain data (scalars, short text, small containers of
    them, nested at most twice), which ``pickle.dumps`` pickles exactly as every
    procesos pickler would."""
    kind = type(obj)
    if kind in _SCALARS:
        return True
    if kind is str or kind is bytes:
        return len(obj) < SMALL_TEXT
    if kind not in (tuple, list, dict) or depth >= 2 or len(obj) > SMALL_ITEMS:
        return False
    if kind is dict:
        return all(is_small_plain(k, depth + 1) and is_small_plain(v, depth + 1)
                   for k, v in obj.items())
    return all(is_small_plain(item, depth + 1) for item in obj)


def is_small_immutable(obj: Any) -> bool:
    """Whether *obj* is small plain data that cannot change: a scalar, a short text,
    or one tuple of at most 32 of these (pickled later, it pickles the same)."""
    kind = type(obj)
    if kind in _SCALARS:
        return True
    if kind is str or kind is bytes:
        return len(obj) < SMALL_TEXT
    if kind is not tuple or len(obj) > SMALL_ITEMS:
        return False
    if _SCALARS.issuperset(map(type, obj)):  # numbers only: checked in C
        return True
    for item in obj:
        kind = type(item)
        if kind not in _SCALARS and not (
            (kind is str or kind is bytes) and len(item) < SMALL_TEXT
        ):
            return False
    return True


def dumps(obj: Any, reusable: bool = False, channel: str | None = None) -> bytes:
    """Pickle *obj* for another process with cloudpickle (*reusable*, *channel*: see
    ``_transport.pack``); small plain data is one ``pickle.dumps``."""
    if is_small_plain(obj):
        return pickle.dumps(obj, PROTOCOL)
    return _transport.pack(obj, _cloud_pickler, reusable, channel)


def dumps_fast(obj: Any, channel: str | None = None) -> bytes:
    """Like :func:`dumps` with the C pickler: faster, but functions and classes
    travel by reference only (fine towards the parent, which has ``__main__``)."""
    if is_small_plain(obj):
        return pickle.dumps(obj, PROTOCOL)
    return _transport.pack(obj, _fast_pickler, False, channel)


def dumps_frame(obj: Any, fast: bool = False) -> Frame:
    """:func:`dumps` (or, with *fast*, :func:`dumps_fast`) as a :class:`Frame`:
    its copy into shared memory is made after it is written (``Frame.send``),
    and it is given back if it never is (see ``_transport.Frame``)."""
    if is_small_plain(obj):
        return Frame(pickle.dumps(obj, PROTOCOL), None, [], None, [])
    return _transport.pack_frame(obj, _fast_pickler if fast else _cloud_pickler)


def first_unpicklable(parts: Iterable[tuple[str, Any]]) -> tuple[str, Any, Exception] | None:
    """The first of *parts* (``(label, object)``, e.g. a process's target and
    arguments) that cannot be pickled: its label, the object and the error; None
    when each can. Used to name the culprit once a whole failed to pickle; the
    frames it makes to find out are given back."""
    for label, value in parts:
        try:
            dumps_frame(value).discard()
        except Exception as exc:
            return label, value, exc
    return None


def unpicklable_inside(obj: Any) -> str:
    """Where, inside *obj* (which cannot be pickled), the part that cannot lies:
    ``"; inside it, .items[0][1] is a _thread.lock object"``, or ``""`` when no
    part of it fails alone (*obj* itself is the culprit). Looks into lists,
    tuples, dicts and objects' attributes, a few levels down (errors only)."""
    path, current = "", obj
    for _ in range(_INSIDE_DEPTH):
        found = first_unpicklable(_parts_of(current))
        if found is None:
            break
        step, current, _ = found
        path += step
    if not path:
        return ""
    cls = type(current)
    return f"; inside it, {path} is a {cls.__module__}.{cls.__qualname__} object"


_INSIDE_DEPTH = 8
_INSIDE_WIDTH = 1000  # parts looked at in one container


def _parts_of(obj: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(obj, types.FunctionType):
        return _function_parts(obj)
    if isinstance(obj, list | tuple):
        return ((f"[{i}]", item) for i, item in enumerate(obj[:_INSIDE_WIDTH]))
    if isinstance(obj, dict):
        return ((f"[{key!r}]", value) for key, value in list(obj.items())[:_INSIDE_WIDTH])
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict) and not isinstance(obj, type | types.ModuleType) \
            and not _pickles_itself(type(obj)):
        return ((f".{name}", value) for name, value in list(attributes.items())[:_INSIDE_WIDTH])
    return ()


def _pickles_itself(cls: type) -> bool:
    """Whether *cls* says itself how it is pickled (its attributes are then not
    what is pickled: a ``Value``'s refuses whatever they hold)."""
    base = vars(object)
    return any(getattr(cls, name, None) is not base[name]
               for name in ("__reduce_ex__", "__reduce__", "__getstate__"))


def _function_parts(fn: types.FunctionType) -> list[tuple[str, Any]]:
    """What a function pickled by value carries: its closure's variables and the
    globals its code (nested code included) names."""
    parts: list[tuple[str, Any]] = []
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
        try:
            parts.append((f"its closure's variable {name}", cell.cell_contents))
        except ValueError:
            pass  # a cell not yet filled
    names: dict[str, None] = {}
    codes = [fn.__code__]
    while codes and len(names) < _INSIDE_WIDTH:
        code = codes.pop()
        names.update(dict.fromkeys(code.co_names))
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    namespace = fn.__globals__
    parts += [(f"its global {name}", namespace[name]) for name in names if name in namespace]
    return parts


class _Large(Exception):
    """A buffer at least as large as the shared-memory threshold was met."""


def _in_band(buffer: pickle.PickleBuffer) -> bool:
    # The buffer callback of the in-band tries: small buffers stay in the stream.
    if memoryview(buffer).nbytes >= get_threshold():
        raise _Large
    return True


#: In a plain pickle, the name of ``numpy.memmap``: procesos' reducers send one
#: by its file (``_transport._reduce_memmap``), the plain pickler as a copy.
_MEMMAP = b"memmap"


def plain_for_child(obj: Any) -> bytes | None:
    """*obj* as one plain pickle of the C pickler, for a worker; None when it needs
    :func:`dumps_for_child` (a large buffer, a reference to ``__main__``,
    something the C pickler refuses)."""
    if not _connections_registered:
        _register_connections()
    try:
        data = pickle.dumps(obj, PROTOCOL, buffer_callback=_in_band)
    except Exception:
        return None
    if len(data) >= get_threshold() or b"__main__" in data or _MEMMAP in data:
        return None
    return data


def dumps_for_child(obj: Any) -> bytes | Frame:
    """Pickle *obj* for a worker: the C pickler, else cloudpickle.

    Workers never import the parent's ``__main__``, so anything that the C
    pickler would save as a reference into ``__main__`` goes by value instead.
    Small data is one plain pickle (``bytes``); anything else a :class:`Frame`
    (large buffers go through shared memory, copied once it is sent).
    Raises what the pickler raised when *obj* cannot be pickled.
    """
    if not _connections_registered:
        _register_connections()
    try:  # plain_for_child(obj), inline: a call's few microseconds are mostly overhead like this
        data = pickle.dumps(obj, PROTOCOL, buffer_callback=_in_band)
    except _Large:
        data = None
    except Exception:
        return dumps_frame(obj)
    if (data is not None and len(data) < get_threshold() and b"__main__" not in data
            and _MEMMAP not in data):
        return data
    if data is None or len(data) >= get_threshold():
        try:
            frame = dumps_frame(obj, fast=True)
        except Exception:
            return dumps_frame(obj)
        if b"__main__" not in frame.data:
            return frame
        frame.discard()
    return dumps_frame(obj)


def dumps_for_parent(obj: Any, channel: str, in_band_first: bool = False) -> bytes:
    """Pickle *obj* for the parent, a frame for *channel* (see ``_transport.pack``):
    the C pickler, else cloudpickle for what it refuses.

    With *in_band_first* (the engine's results, many and small), the C pickler
    is tried in-band first, without procesos' reducers; data too large for that
    goes on as without it. Raises what cloudpickle raised (one of
    :data:`PICKLING_FAILURES`).
    """
    try:
        if in_band_first:
            if not _connections_registered:
                _register_connections()
            try:
                data = pickle.dumps(obj, PROTOCOL, buffer_callback=_in_band)
            except _Large:
                pass
            else:
                if len(data) < get_threshold() and _MEMMAP not in data:
                    return data
        return dumps_fast(obj, channel)
    except PICKLING_FAILURES:
        return dumps(obj, channel=channel)


_in_band_pickler: type | None = None


def _in_band_cloud_pickler() -> type:
    """procesos' cloudpickle pickler without the reducers that send buffers
    through shared memory: its stream is one plain pickle."""
    global _in_band_pickler
    if _in_band_pickler is None:
        base = _cloud_pickler()
        table: ChainMap[type, Any] = base.dispatch_table  # type: ignore[attr-defined]
        maps = [m for m in table.maps if m is not _transport.reducers]
        _in_band_pickler = type("InBandPickler", (base,), {
            "dispatch_table": ChainMap(*maps), "__module__": __name__})
    return _in_band_pickler


def dumps_in_band(obj: Any) -> bytes:
    """Pickle *obj* as one plain pickle, for a receiver that reads it with
    ``pickle.loads`` (a manager's server and its clients, which send through the
    standard library's connections).

    The C pickler with multiprocessing's reducers, as ``Connection.send`` pickles,
    unless its stream names ``__main__`` (a manager's server started by procesos
    never imports the user's script) or it refuses *obj* (a lambda, an instance
    of a class that a server received by value): then cloudpickle, which sends
    those by value. Raises what cloudpickle raised when neither can pickle *obj*.
    """
    if not _connections_registered:
        _register_connections()
    buffer = io.BytesIO()
    try:
        ForkingPickler(buffer, PROTOCOL).dump(obj)
    except Exception:
        pass
    else:
        data = buffer.getvalue()
        if b"__main__" not in data:
            return data
        buffer = io.BytesIO()
    _in_band_cloud_pickler()(buffer, PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Unpickle what :func:`dumps` produced."""
    return _transport.unpack(data)
