"""CPython's own ``test_concurrent_futures`` process-pool tests, run against procesos.

CPython's ``test/test_concurrent_futures/`` builds one test class per executor
kind from mixins (``ProcessPoolForkserverMixin`` and its siblings) whose
``executor_type`` is ``concurrent.futures.ProcessPoolExecutor`` and whose
``get_context()`` is ``multiprocessing.get_context(self.ctx)``. This script
runs the ``ProcessPoolForkserver*`` classes of the process-pool modules (the
thread-pool classes and the ``fork``/``spawn`` twins are left out; so is
``test_future``, which tests ``Future`` alone) twice, each in a fresh worker
interpreter:

* ``stdlib``: unchanged, the standard library's executor under ``forkserver``;
* ``procesos``: inside that worker only, ``executor_type`` and
  ``concurrent.futures.ProcessPoolExecutor`` become ``procesos.ProcessPoolExecutor``
  and ``ctx`` becomes ``"zygote"``, registered as
  ``multiprocessing.get_context("zygote")`` (procesos' default context). The
  tests that run a snippet in a new interpreter (``assert_python_ok``) get the
  same three lines put in front of their snippet.

It reuses ``cpython_compat.py``'s interpreter search, venv
(``.venv-cpython/VERSION/``) and per-test SIGALRM bound, then prints the counts
and every test whose outcome differs, with the last line of its failure.

    make test-cpython
    python benchmarks/cpython_futures_compat.py [--python PATH] [--only PATTERN] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import unittest
from pathlib import Path

from cpython_compat import (
    OUTCOMES,
    PER_RUN_TIMEOUT,
    RecordingResult,
    _on_alarm,
    counts,
    harness_main,
    harness_python,
    run_worker_script,
    short,
)

RUNS = ("stdlib", "procesos")
PACKAGE = "test.test_concurrent_futures"
MODULES = ("test_process_pool", "test_shutdown", "test_wait", "test_as_completed",
           "test_init", "test_deadlock")
CLASS_PREFIX = "ProcessPoolForkserver"
# FailingInitializerResourcesTest runs ProcessPoolForkserverFailingInitializerTest
# itself and checks that the resource tracker exits cleanly; its spawn twin is left out.
EXTRA_TESTS = (("test_init", "FailingInitializerResourcesTest", "test_forkserver"),)

# What the procesos worker does to the standard library, in itself and in the
# interpreters that the tests start with assert_python_ok().
PATCH = (
    "import concurrent.futures, multiprocessing.context, procesos\n"
    "concurrent.futures.ProcessPoolExecutor = procesos.ProcessPoolExecutor\n"
    "multiprocessing.context._concrete_contexts['zygote'] = procesos.get_context('zygote')\n"
)


# -- the parent ---------------------------------------------------------------------


def run_worker(python: str, run: str, only: list[str] | None) -> dict[str, dict[str, str]]:
    """Run the tests for *run* in a fresh interpreter; test id -> outcome."""
    return run_worker_script(python, __file__, ["--worker", run], only,
                             Path(python).parent.parent / f"futures-results-{run}.json", run)


def without_notes(detail: str) -> str:
    """*detail* without the note procesos adds to a task's exception ("(raised by
    f(x) in worker pid N)"), so that its last line is the exception's own."""
    lines = detail.rstrip().splitlines()
    while len(lines) > 1 and lines[-1].startswith("(raised by "):
        lines.pop()
    return "\n".join(lines)


def report(version: str, runs: dict[str, dict[str, dict[str, str]]]) -> int:
    """Print the counts and the differences; 1 when a test the stdlib passes does not."""
    print(f"\nCPython {version} {PACKAGE}, {CLASS_PREFIX}* classes")
    print(f"{'run':<10}" + "".join(f"{o:>9}" for o in OUTCOMES) + f"{'total':>9}")
    for run, results in runs.items():
        tally = counts(results)
        print(f"{run:<10}" + "".join(f"{tally[o]:>9}" for o in OUTCOMES)
              + f"{len(results):>9}")
    absent = {"outcome": "absent", "detail": ""}
    base, ours = runs["stdlib"], runs["procesos"]
    differ = sorted(name for name in set(base) | set(ours)
                    if base.get(name, absent)["outcome"] != ours.get(name, absent)["outcome"])
    print(f"\n{len(differ)} tests differ (stdlib forkserver -> procesos zygote):")
    for name in differ:
        before, after = base.get(name, absent), ours.get(name, absent)
        print(f"  {name}: {before['outcome']} -> {after['outcome']}")
        for run, result in (("stdlib", before), ("procesos", after)):
            if result["outcome"] not in ("pass", "absent") and result["detail"]:
                print(f"      {run}: {short(without_notes(result['detail']))}")
    print("\nrerun: python benchmarks/cpython_futures_compat.py")
    return 1 if any(base.get(n, absent)["outcome"] == "pass" for n in differ) else 0


def main_parent(args: argparse.Namespace) -> int:
    _, version, venv_python = harness_python(args)
    print(f"running CPython {version}'s {PACKAGE} process-pool tests with {venv_python}",
          flush=True)
    runs = {run: run_worker(venv_python, run, args.only) for run in RUNS}
    if args.json:
        Path(args.json).write_text(json.dumps({"python": version, "runs": runs}, indent=1))
    return report(version, runs)


# -- the worker: one run, in its own interpreter --------------------------------------


def patch_for_procesos(modules: dict[str, object]) -> None:
    """Point the test classes, and the snippets they run, at procesos' executor."""
    import concurrent.futures  # noqa: F401 (PATCH rebinds its attribute)

    import procesos

    exec(PATCH, {})
    procesos.set_start_method("zygote", force=True)
    for module in modules.values():
        for value in vars(module).values():
            if isinstance(value, type) and value.__name__.startswith(CLASS_PREFIX):
                value.executor_type = procesos.ProcessPoolExecutor  # type: ignore[attr-defined]
                value.ctx = "zygote"  # type: ignore[attr-defined]
    shutdown = modules["test_shutdown"]
    original = shutdown.assert_python_ok  # type: ignore[attr-defined]

    def assert_python_ok(*args: str, **env: str) -> object:
        if len(args) == 2 and args[0] == "-c":
            args = ("-c", PATCH + args[1])
        return original(*args, **env)

    shutdown.assert_python_ok = assert_python_ok  # type: ignore[attr-defined]

    # The tests' module cleanup stops the standard library's forkserver, then
    # waits for the resource tracker, which ends once every holder of its pipe
    # has: the zygote holds it as the forkserver does, so it is stopped first.
    import multiprocessing.util

    from procesos._launch._zygote_client import _zygote

    cleanup = multiprocessing.util._cleanup_tests  # type: ignore[attr-defined]

    def cleanup_tests() -> None:
        _zygote.stop()
        cleanup()

    multiprocessing.util._cleanup_tests = cleanup_tests  # type: ignore[attr-defined]


def main_worker(args: argparse.Namespace) -> int:
    import faulthandler

    faulthandler.dump_traceback_later(PER_RUN_TIMEOUT, exit=True)
    signal.signal(signal.SIGALRM, _on_alarm)
    modules = {name: importlib.import_module(f"{PACKAGE}.{name}") for name in MODULES}
    if args.worker == "procesos":
        patch_for_procesos(modules)
    loader = unittest.TestLoader()
    if args.only:
        loader.testNamePatterns = [f"*{p}*" if "*" not in p else p for p in args.only]
    suite = unittest.TestSuite()
    for module in modules.values():
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, unittest.TestCase)
                    and value.__name__.startswith(CLASS_PREFIX)):
                suite.addTests(loader.loadTestsFromTestCase(value))
    for module_name, class_name, method in EXTRA_TESTS:
        test_class = getattr(modules[module_name], class_name)
        if not args.only or any(p.strip("*") in f"{class_name}.{method}" for p in args.only):
            suite.addTest(test_class(method))
    runner = unittest.TextTestRunner(verbosity=2 if args.verbose else 1,
                                     resultclass=RecordingResult, stream=sys.stderr)
    RecordingResult.path = Path(args.json)
    runner.run(suite)
    return 0


def main() -> int:
    return harness_main(__doc__.split("\n\n")[0], RUNS, main_parent, main_worker)


if __name__ == "__main__":
    sys.exit(main())
