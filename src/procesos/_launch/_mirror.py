"""Which of the parent's modules its zygote imports, so that children fork with them loaded.

A zygote imports, when it starts, the modules that its parent has imported so
far, and, with each later request, those the parent has imported since: the
standard library's, the installed packages' and the user's own (a module of
the program's directory). A child forked afterwards has them all: none of
them is imported again per child, and a user module's top-level code runs
once in the parent and at most once more, in the zygote.

Never imported there: ``__main__`` (the target travels by value), the tools
the parent itself runs under (test runners, notebook kernels, debuggers,
packaging), modules that a non-standard loader brought in (pytest's rewritten
test modules), modules registered under a name they cannot be imported by,
and whatever :func:`set_zygote_exclude` or ``PROCESOS_ZYGOTE_EXCLUDE`` names
(with its submodules). An explicit preload list (``set_zygote_preload``,
``PROCESOS_ZYGOTE_PRELOAD``) replaces all of this: the zygote then imports
exactly that list, once.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import sysconfig
from collections.abc import Iterable
from types import ModuleType

__all__ = ["ModuleMirror", "excluded_modules", "preload_override", "set_zygote_exclude",
           "set_zygote_preload"]

# Modules that misbehave when imported in a process that is not interactive.
_NEVER_PRELOAD = frozenset({
    "this", "antigravity", "readline", "rlcompleter", "tkinter", "turtle", "idlelib",
    "__hello__", "__phello__", "__main__", "__mp_main__", "pydoc", "pdb",
})
# The tools the parent runs under (test runners, notebook kernels, debuggers,
# packaging): large, and never what a child's target needs. Preloading them
# made a zygote under pytest 10 MiB bigger.
_PARENT_TOOLING = frozenset({
    "pytest", "_pytest", "pluggy", "iniconfig", "py", "xdist", "coverage", "pygments",
    "IPython", "ipykernel", "jupyter_client", "jupyter_core", "zmq", "tornado", "traitlets",
    "prompt_toolkit", "jedi", "parso", "debugpy", "comm", "ipywidgets", "nest_asyncio",
    "bdb", "pydevd", "_pydevd_bundle", "_pydev_bundle",
    "setuptools", "pkg_resources", "_distutils_hack", "distutils", "pip", "wheel",
})
# procesos' own modules that a child imports to unpickle what its parent passes
# it (a queue, a pipe end, a shared array: 1.5 ms of a start otherwise). The
# zygote imports them when the parent has, whatever it preloads besides.
SHARING_MODULES = ("procesos._sharing._queues", "procesos._sharing._shared_array")
# procesos' own modules that the parent's children run once it has loaded
# another: the engine's worker for a parent that uses the engine. Given out
# like the user's modules, so that a new zygote imports it before it serves
# the first workers (each imported it itself, 7 ms, when it came later).
_NEEDED_WITH = {"procesos._engine._api": "procesos._engine._worker"}
# The loaders of modules that an ``import`` by name finds again as they are.
_STANDARD_LOADERS = (
    importlib.machinery.SourceFileLoader,
    importlib.machinery.SourcelessFileLoader,
    importlib.machinery.ExtensionFileLoader,
)

_preload_override: list[str] | None = None
_exclude_override: list[str] | None = None


def set_zygote_preload(modules: Iterable[str] | None) -> None:
    """Choose the modules a new zygote imports before forking children.

    None (the default) lets the zygote import what the parent has imported,
    when it starts and as the parent imports more: the standard library's,
    the installed packages' and the user's own modules, except the tools the
    parent runs under (pytest, IPython kernels, debuggers, setuptools) and
    what :func:`set_zygote_exclude` names. A list: exactly those modules,
    once, when the zygote starts. The environment variable
    ``PROCESOS_ZYGOTE_PRELOAD`` (comma-separated names, or ``none``) does the
    same for programs that cannot be edited. Takes effect for the next zygote.
    """
    global _preload_override
    _preload_override = None if modules is None else list(modules)


def set_zygote_exclude(modules: Iterable[str] | None) -> None:
    """Name modules the zygote must never import (each with its submodules).

    For a module of yours whose import fails outside your program, or whose
    top-level code must not run a second time (it starts a server, writes a
    file, starts a thread): children then import it themselves, when they
    need it. None: the environment variable ``PROCESOS_ZYGOTE_EXCLUDE``
    (comma-separated names) decides, else nothing is excluded. Takes effect
    for the next start of a process.
    """
    global _exclude_override
    _exclude_override = None if modules is None else [str(name) for name in modules]


def preload_override() -> list[str] | None:
    """The explicit preload list (from the API, else the environment), or None."""
    if _preload_override is not None:
        return list(_preload_override)
    env = os.environ.get("PROCESOS_ZYGOTE_PRELOAD")
    if env is None:
        return None
    return [] if env.strip().lower() in ("", "none") else [m.strip() for m in env.split(",")]


def excluded_modules() -> frozenset[str]:
    """The modules (with their submodules) that the zygote must not import."""
    if _exclude_override is not None:
        return frozenset(_exclude_override)
    env = os.environ.get("PROCESOS_ZYGOTE_EXCLUDE", "")
    return frozenset(name.strip() for name in env.split(",") if name.strip())


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(
        os.path.join(os.path.realpath(paths[key]), "")
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if key in paths
    )


def _is_excluded(name: str, excluded: frozenset[str]) -> bool:
    if not excluded:
        return False
    parts = name.split(".")
    return any(".".join(parts[:i]) in excluded for i in range(1, len(parts) + 1))


def _wanted(name: str, module: ModuleType | None, roots: tuple[str, ...],
            excluded: frozenset[str]) -> str | None:
    """The real path of *name*, a module the parent has, if the zygote should import
    it ("" for one without a file); None if not."""
    if name in SHARING_MODULES:
        return ""
    top = name.partition(".")[0]
    if top in _NEVER_PRELOAD or top in _PARENT_TOOLING or top == "procesos":
        return None
    if _is_excluded(name, excluded):
        return None
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file:
        return None  # built in (already there), or a namespace package
    real = os.path.realpath(file)
    if real.startswith(roots):
        return real
    # The user's own: only what an import by this name finds again.
    spec = getattr(module, "__spec__", None)
    if (spec is not None and spec.name == name
            and isinstance(getattr(module, "__loader__", None), _STANDARD_LOADERS)):
        return real
    return None


class ModuleMirror:
    """The parent's record of what it has asked its zygote to import.

    One per zygote: :meth:`initial` gives the list for the zygote's start,
    :meth:`new_modules` those the parent has imported since it was last asked
    (nothing when ``sys.modules`` has not grown, which costs nanoseconds).
    """

    def __init__(self) -> None:
        self.explicit = preload_override()
        self.considered: set[str] = set()
        self.needed_given: set[str] = set()  # of _NEEDED_WITH's
        self.seen = 0
        # The real path of the parent's module for each name given out, where it
        # has one: the zygote drops a module of that name found elsewhere.
        self.files: dict[str, str] = {}
        # The names given out that are the standard library's or installed packages'.
        self.libraries: set[str] = set()

    def initial(self) -> list[str]:
        """What the zygote imports when it starts."""
        if self.explicit is not None:
            names = self.explicit + [n for n in SHARING_MODULES if n in sys.modules]
            names += [needed for loaded, needed in _NEEDED_WITH.items() if loaded in sys.modules]
            self.seen = -1  # never anything more
            return names
        return self.new_modules()

    def new_modules(self) -> list[str]:
        """The wanted modules the parent has imported since the last call, in its order."""
        modules = sys.modules
        if self.seen < 0 or len(modules) == self.seen:
            return []
        self.seen = len(modules)
        roots, excluded = _library_roots(), excluded_modules()
        names = []
        # A copy made in one step: list(modules.items()) makes a tuple per entry,
        # a garbage collection may run in between and let another thread import
        # (a starter thread starts workers while the program runs on).
        for name, module in modules.copy().items():
            if name in self.considered:
                continue
            self.considered.add(name)
            needed = _NEEDED_WITH.get(name)
            if needed is not None and needed not in self.needed_given:
                self.needed_given.add(needed)
                names.append(needed)
            real = _wanted(name, module, roots, excluded)
            if real is not None:
                names.append(name)
                if real:
                    self.files[name] = real
                    if real.startswith(roots):
                        self.libraries.add(name)
        return names

    def split_for_boot(self, names: list[str]) -> tuple[list[str], list[str]]:
        """*names* (from :meth:`initial`) in two: what a new zygote imports before it
        serves a request (the user's own modules, whose top-level code must never
        run in a child; procesos' sharing modules), and what it imports once the
        requests waiting at its start are served (the libraries: a child that
        needs one before then imports it itself, as under ``spawn``)."""
        if self.explicit is not None:
            return names, []  # a list the user chose: all of it, before anything
        return ([name for name in names if name not in self.libraries],
                [name for name in names if name in self.libraries])
