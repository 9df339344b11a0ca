"""CPython's own multiprocessing tests, run against procesos' ``zygote`` start method.

CPython's ``test/_test_multiprocessing.py`` builds its test classes with
``install_tests_in_module_dict(globals(), start_method, only_type=...)``: each
class uses the *default* context (``multiprocessing.Process``,
``multiprocessing.Queue``, ...) after ``setUpModule`` has called
``multiprocessing.set_start_method(start_method, force=True)``. To run the
same classes on procesos, the worker registers procesos' ``zygote`` context as
``multiprocessing.context._concrete_contexts["zygote"]`` (only inside that
worker process) and installs the tests with ``start_method="zygote"``: nothing
else in the test module changes.

The test module must match the interpreter, so this script (run by any Python)
finds a pyenv Python 3.13 (else 3.12, else the running one) whose
``test/_test_multiprocessing.py`` exists, creates ``.venv-cpython/VERSION/`` with
procesos installed editable, and runs each test type twice in fresh worker
processes, once with the standard ``forkserver`` and once with ``zygote``, then
prints, per type, the counts and every test whose result differs. The types
are CPython's: "processes" (``multiprocessing.Process``, ``Queue``, ``Lock``,
``Pool``, ... of the context), "manager" (the same classes on the proxies of a
``multiprocessing.Manager()``, whose server process the context starts) and
"threads" (``multiprocessing.dummy``); by default "processes" then "manager".

    make test-cpython
    python benchmarks/cpython_compat.py [--python PATH] [--type TYPE] [--only PATTERN]
                                        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import unittest
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venv-cpython"  # one venv per Python version inside
METHODS = ("forkserver", "zygote")
TYPES = ("processes", "manager", "threads")  # CPython's test types
DEFAULT_TYPES = ("processes", "manager")
PER_TEST_TIMEOUT = 30.0  # seconds; the slowest test takes about 6 s under forkserver
REARM_INTERVAL = 5.0  # seconds: a test that swallowed the timeout is interrupted again
PER_RUN_TIMEOUT = 1200.0  # seconds, a hard stop for one worker (one start method)
OUTCOMES = ("pass", "fail", "error", "skip", "xfail", "xpass", "timeout", "warning")
#: A test class whose tearDownClass (or the module's tearDownModule) printed one of
#: the harness's warnings (dangling processes or threads, a manager's objects left
#: over, children left running) is recorded as "CLASS.(warnings)", outcome "warning".
WARNINGS = "(warnings)"


# -- the parent: find an interpreter, prepare its venv, run both workers ----------


def _has_test_module(python: str) -> str | None:
    """The version string of *python* if its stdlib ships _test_multiprocessing."""
    code = (
        "import importlib.util, sys; "
        "spec = importlib.util.find_spec('test._test_multiprocessing'); "
        "print('%d.%d' % sys.version_info[:2] if spec else '')"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def find_python() -> tuple[str, str]:
    """A Python 3.13 or 3.12 from pyenv with CPython's tests, else this interpreter."""
    candidates = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        for version in ("3.13", "3.12"):
            out = subprocess.run([pyenv, "prefix", version], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(str(Path(out.stdout.strip().splitlines()[0]) / "bin" / "python3"))
    candidates.append(sys.executable)
    for python in candidates:
        version = _has_test_module(python)
        if version:
            return python, version
    raise SystemExit(
        "no Python with test/_test_multiprocessing.py found (tried pyenv 3.13, 3.12 and "
        f"{sys.executable}); install one with `pyenv install 3.13`"
    )


def prepare_venv(python: str, version: str) -> str:
    """``.venv-cpython/VERSION/`` for *python*, procesos installed editable; its python."""
    venv = VENVS / version
    venv_python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and _has_test_module(str(venv_python)) == version:
        return str(venv_python)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv_python), "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True
    )
    stamp.write_text(version + "\n")
    return str(venv_python)


def run_worker(python: str, method: str, only: list[str] | None,
               test_type: str = "processes") -> dict[str, dict[str, str]]:
    """Run the *test_type* tests for *method* in a fresh interpreter; test id -> outcome."""
    return run_worker_script(
        python, __file__, ["--worker", method, "--type", test_type], only,
        Path(python).parent.parent / f"results-{test_type}-{method}.json",
        f"{test_type}, {method}")


def run_worker_script(python: str, script: str, worker_args: list[str],
                      only: list[str] | None, out: Path,
                      label: str) -> dict[str, dict[str, str]]:
    """Run ``script WORKER_ARGS --json OUT`` in a fresh interpreter (also used by
    cpython_futures_compat.py); the outcomes it wrote to *out*."""
    out.unlink(missing_ok=True)
    command = [python, "-X", "faulthandler", script, *worker_args, "--json", str(out)]
    for pattern in only or ():
        command += ["--only", pattern]
    started = time.monotonic()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PROCESOS_START_METHOD", None)
    proc = subprocess.run(command, cwd=ROOT, env=env, timeout=PER_RUN_TIMEOUT + 60)
    print(f"[{label}] worker exit code {proc.returncode} after "
          f"{time.monotonic() - started:.0f} s", flush=True)
    if not out.exists():
        raise SystemExit(f"the {label} worker wrote no results (exit code {proc.returncode})")
    results: dict[str, dict[str, str]] = json.loads(out.read_text())
    return results


def counts(results: dict[str, dict[str, str]]) -> dict[str, int]:
    tally = dict.fromkeys(OUTCOMES, 0)
    for result in results.values():
        tally[result["outcome"]] += 1
    return tally


def short(detail: str, width: int = 110) -> str:
    lines = [line for line in detail.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    return last if len(last) <= width else last[: width - 1] + "…"


def compare(python: str, version: str, runs: dict[str, dict[str, dict[str, str]]],
            test_type: str = "processes") -> int:
    """Print the counts per method and each test whose outcome differs; 1 if one regressed."""
    print()
    print(f"CPython {version} test._test_multiprocessing, {test_type!r} tests ({python})")
    header = f"{'method':<11}" + "".join(f"{o:>9}" for o in OUTCOMES) + f"{'total':>9}"
    print(header)
    for method, results in runs.items():
        tally = counts(results)
        tests = len(results) - tally["warning"]  # a class's warnings are not a test
        print(f"{method:<11}" + "".join(f"{tally[o]:>9}" for o in OUTCOMES) + f"{tests:>9}")
    base, ours = runs["forkserver"], runs["zygote"]
    names = sorted(set(base) | set(ours))
    differ = [n for n in names
              if base.get(n, {}).get("outcome") != ours.get(n, {}).get("outcome")]
    print(f"\n{len(differ)} tests differ (forkserver -> zygote):")
    for name in differ:
        b = base.get(name, {"outcome": "absent", "detail": ""})
        z = ours.get(name, {"outcome": "absent", "detail": ""})
        print(f"  {name}: {b['outcome']} -> {z['outcome']}")
        for label, r in (("forkserver", b), ("zygote", z)):
            if r["outcome"] == "warning":
                first = r["detail"].strip().splitlines()[0] if r["detail"].strip() else ""
                print(f"      {label}: {first if len(first) <= 110 else first[:109] + '…'}")
            elif r["outcome"] not in ("pass", "absent") and r["detail"]:
                print(f"      {label}: {short(r['detail'])}")
    regressions = [n for n in differ if base.get(n, {}).get("outcome") == "pass"]
    return 1 if regressions else 0


def harness_python(args: argparse.Namespace) -> tuple[str, str, str]:
    """The Python whose CPython tests a harness runs (``--python``, else the one
    found), its version, and the python of its venv, procesos installed there."""
    if args.python:
        python, version = args.python, _has_test_module(args.python) or "?"
    else:
        python, version = find_python()
    return python, version, prepare_venv(python, version)


def main_parent(args: argparse.Namespace) -> int:
    python, version, venv_python = harness_python(args)
    types = args.type or DEFAULT_TYPES
    print(f"running CPython {version}'s multiprocessing {', '.join(types)} tests "
          f"with {venv_python}", flush=True)
    by_type = {test_type: {method: run_worker(venv_python, method, args.only, test_type)
                           for method in METHODS}
               for test_type in types}
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"python": version, "types": by_type,
             "runs": by_type.get("processes", {})},  # the format before --type
            indent=1))
    status = 0
    for test_type, runs in by_type.items():
        status |= compare(python, version, runs, test_type)
    return status


# -- the worker: one start method, in its own interpreter --------------------------


class TestTimeoutError(Exception):
    """A test ran past PER_TEST_TIMEOUT."""


def _on_alarm(signum: int, frame: object) -> None:
    raise TestTimeoutError(f"test still running after {PER_TEST_TIMEOUT:.0f} s")


class RecordingResult(unittest.TextTestResult):
    """Records one outcome per test and bounds each test with SIGALRM."""

    #: Where the outcomes are written after every test, so a hung run keeps them.
    path: Path | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.outcomes: dict[str, dict[str, str]] = {}
        self._started = 0.0
        self._last_class = "setUpModule"
        #: Where warnings go instead of the last class (set around tearDownModule).
        self.warnings_from = ""

    def _record(self, test: unittest.TestCase, outcome: str, detail: str = "") -> None:
        name = test.id().split(".", 1)[-1]
        if outcome == "error" and "TestTimeoutError" in detail:
            outcome = "timeout"
        previous = self.outcomes.get(name)
        # A failing subtest or tearDown outranks the pass recorded for the test itself.
        if previous is None or previous["outcome"] in ("pass", "skip"):
            self.outcomes[name] = {"outcome": outcome, "detail": detail,
                                   "seconds": f"{time.monotonic() - self._started:.2f}"}

    def record_warning(self, message: str) -> None:
        """A harness warning, charged to the class whose tests ran last (its
        tearDownClass prints it before the next class's first test starts)."""
        where = self.warnings_from or (self._last_class + "." + WARNINGS)
        entry = self.outcomes.setdefault(where, {"outcome": "warning", "detail": "",
                                                 "seconds": "0"})
        entry["detail"] += message.rstrip("\n") + "\n"
        if self.path is not None:
            self.path.write_text(json.dumps(self.outcomes, indent=1, sort_keys=True))

    def startTest(self, test: unittest.TestCase) -> None:
        self._last_class = test.id().split(".", 1)[-1].rsplit(".", 1)[0]
        self._started = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, PER_TEST_TIMEOUT, REARM_INTERVAL)
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        super().stopTest(test)
        if self.path is not None:
            self.path.write_text(json.dumps(self.outcomes, indent=1, sort_keys=True))

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test: unittest.TestCase, err: object) -> None:
        super().addFailure(test, err)  # type: ignore[arg-type]
        self._record(test, "fail", self.failures[-1][1])

    def addError(self, test: unittest.TestCase, err: object) -> None:
        super().addError(test, err)  # type: ignore[arg-type]
        self._record(test, "error", self.errors[-1][1])

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skip", reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: object) -> None:
        super().addExpectedFailure(test, err)  # type: ignore[arg-type]
        self._record(test, "xfail")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "xpass")

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase,
                   err: object) -> None:
        super().addSubTest(test, subtest, err)  # type: ignore[arg-type]
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"  # type: ignore[index]
            detail = "".join(traceback.format_exception(*err))  # type: ignore[misc]
            self._record(test, kind, f"{subtest.id()}: {detail}")


def manager_server_start() -> str:
    """How ``multiprocessing.Manager()`` starts its server now, checked against the method.

    The "manager" classes call ``multiprocessing.Manager()`` on the default
    context after ``set_start_method(METHOD)``; under ``zygote`` its server
    must be a procesos process forked by the zygote, else the run is no test of
    procesos' managers.
    """
    import multiprocessing

    manager = multiprocessing.Manager()
    try:
        process = manager._process  # type: ignore[attr-defined]
        popen = type(process._popen)
        method = getattr(process, "start_method", None)
        pid, alive = process.pid, process.is_alive()
    finally:
        manager.shutdown()
    wanted = os.environ["PROCESOS_COMPAT_METHOD"]
    described = (f"{type(manager).__module__}.{type(manager).__qualname__}, "
                 f"serializer {manager._serializer!r}, "  # type: ignore[attr-defined]
                 f"{type(process).__module__}.{type(process).__qualname__} "
                 f"(pid {pid}, alive {alive}), popen {popen.__module__}.{popen.__qualname__}")
    if wanted == "zygote" and (method != "zygote" or popen.__name__ != "ZygotePopen"):
        raise SystemExit(f"the manager's server is not started by procesos' zygote: {described}")
    return described


def main_worker(args: argparse.Namespace) -> int:
    import faulthandler

    # The last resort: a hung worker dumps every thread's stack and exits.
    faulthandler.dump_traceback_later(PER_RUN_TIMEOUT, exit=True)
    signal.signal(signal.SIGALRM, _on_alarm)
    os.environ["PROCESOS_COMPAT_METHOD"] = args.worker
    os.environ["PROCESOS_COMPAT_TYPE"] = args.type[0] if args.type else "processes"
    import _cpython_compat_suite as module
    loader = unittest.TestLoader()
    if args.only:
        loader.testNamePatterns = [f"*{p}*" if "*" not in p else p for p in args.only]
    suite = unittest.TestSuite()
    for value in module.__dict__.values():
        if isinstance(value, type) and issubclass(value, unittest.TestCase):
            suite.addTests(loader.loadTestsFromTestCase(value))
    results: list[RecordingResult] = []

    def make_result(*args: object, **kwargs: object) -> RecordingResult:
        results.append(RecordingResult(*args, **kwargs))
        return results[-1]

    runner = unittest.TextTestRunner(verbosity=2 if args.verbose else 1,
                                     resultclass=make_result,  # type: ignore[arg-type]
                                     stream=sys.stderr)
    RecordingResult.path = Path(args.json)
    from test import support

    print_warning = support.print_warning

    def recording_print_warning(message: str) -> None:
        if results:
            results[-1].record_warning(message)
        print_warning(message)

    # The original looks itself up by name for its stream: give ours that stream.
    recording_print_warning.orig_stderr = getattr(  # type: ignore[attr-defined]
        print_warning, "orig_stderr", sys.stderr)
    support.print_warning = recording_print_warning
    module.setUpModule()
    if module.TYPE == "manager":
        print(f"[manager, {args.worker}] the manager's server: {manager_server_start()}",
              file=sys.stderr, flush=True)
    try:
        runner.run(suite)
    finally:
        if results:
            results[-1].warnings_from = "tearDownModule." + WARNINGS
        module.tearDownModule()
    return 0


def harness_main(description: str, runs: Sequence[str],
                 main_parent: Callable[[argparse.Namespace], int],
                 main_worker: Callable[[argparse.Namespace], int],
                 add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """A harness's command line: the parent's options, and ``--worker RUN`` for the
    fresh interpreter that runs one of *runs* (this script's and
    cpython_futures_compat.py's)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--python", help="interpreter whose CPython tests to run")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--only", action="append",
                        help="run only tests matching this unittest -k pattern (repeatable)")
    parser.add_argument("--json", help="write the outcomes to this file")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--worker", choices=runs, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return main_worker(args)
    return main_parent(args)


def _type_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", action="append", choices=TYPES,
                        help="CPython's test type to run (repeatable; default: "
                             + " then ".join(DEFAULT_TYPES) + ")")


def main() -> int:
    return harness_main(__doc__.split("\n\n")[0], METHODS, main_parent, main_worker,
                        _type_argument)


if __name__ == "__main__":
    sys.exit(main())
