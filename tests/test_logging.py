"""Logging in children: configured as the parent configured it, under every start method."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import START_METHODS, run_script

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("method", START_METHODS)
def test_a_child_logs_with_the_parents_level_format_and_handler(method: str,
                                                                tmp_path: Path) -> None:
    # Configured under the guard: the standard library's spawn and forkserver
    # children lose this configuration (they only re-run the main module's top).
    script = """
import logging
import procesos as mp

log = logging.getLogger("app")

def work(i):
    log.debug("hidden %d", i)
    log.info("working on %d", i)
    return i

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(processName)s|%(levelname)s|%(message)s")
    p = mp.Process(target=work, args=(1,), name="child")
    p.start()
    p.join()
    with mp.Executor(1) as ex:
        ex.submit(work, 2).result()
    with mp.Pool(1) as pool:
        pool.apply(work, (3,))
"""
    result = run_script(script, tmp_path, method=method)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines.count("child|INFO|working on 1") == 1, result.stderr
    assert sum(bool(re.fullmatch(r".+\|INFO\|working on 2", line)) for line in lines) == 1
    assert sum(bool(re.fullmatch(r".+\|INFO\|working on 3", line)) for line in lines) == 1
    assert "hidden" not in result.stderr


@pytest.mark.parametrize("method", START_METHODS)
def test_a_log_file_keeps_every_line_of_the_parent_and_its_children(method: str,
                                                                     tmp_path: Path) -> None:
    # Opened with mode "w" by the parent: a child that reopened the file would
    # write at a position of its own, and the parent's next line overwrite its lines.
    log_file = tmp_path / "run.log"
    script = f"""
import logging
import procesos as mp

def work(i):
    logging.getLogger("app").warning("child %d", i)

if __name__ == "__main__":
    logging.basicConfig(filename={str(log_file)!r}, filemode="w", level=logging.INFO,
                        format="%(levelname)s %(message)s")
    logging.info("parent before")
    children = [mp.Process(target=work, args=(i,)) for i in range(3)]
    for p in children:
        p.start()
    for p in children:
        p.join()
    logging.info("parent after")
"""
    result = run_script(script, tmp_path, method=method)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = log_file.read_text().splitlines()
    assert lines[0] == "INFO parent before"
    assert lines[-1] == "INFO parent after"
    assert sorted(lines[1:-1]) == ["WARNING child 0", "WARNING child 1", "WARNING child 2"]


def test_named_loggers_keep_their_levels_handlers_and_propagation(tmp_path: Path) -> None:
    script = """
import logging, sys
import procesos as mp

def work():
    logging.getLogger("app").debug("app debug")
    logging.getLogger("app.db").debug("db debug")
    logging.getLogger("quiet").error("quiet error")
    logging.warning("root warning")

if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, format="root:%(message)s")
    app = logging.getLogger("app")
    app.setLevel(logging.DEBUG)
    app.propagate = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("{name}:{message}", style="{"))
    app.addHandler(handler)
    logging.getLogger("quiet").disabled = True
    p = mp.Process(target=work)
    p.start()
    p.join()
"""
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["app:app debug", "app.db:db debug"]
    # "app" does not propagate, "quiet" is disabled, the root logger wants errors.
    assert result.stderr == ""


def test_what_cannot_travel_is_left_out_and_a_main_formatter_keeps_its_format(
        tmp_path: Path) -> None:
    script = """
import logging, sys, threading
import procesos as mp

class Shouting(logging.Formatter):  # defined in __main__: not importable in the child
    def format(self, record):
        return super().format(record).upper()

class Locking(logging.Formatter):  # cannot even be pickled in the parent
    def __init__(self, fmt):
        super().__init__(fmt)
        self.lock = threading.Lock()

class Collecting(logging.Handler):  # a handler that cannot be rebuilt elsewhere
    def __init__(self):
        super().__init__()
        self.records = []
    def emit(self, record):
        self.records.append(record)

def work():
    logging.warning("from the child")
    return len(logging.getLogger().handlers)

if __name__ == "__main__":
    root = logging.getLogger()
    collecting = Collecting()
    root.addHandler(collecting)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Shouting("[%(levelname)s] %(message)s"))
    root.addHandler(handler)
    to_stdout = logging.StreamHandler(sys.stdout)
    to_stdout.setFormatter(Locking("<%(message)s>"))
    root.addHandler(to_stdout)
    p = mp.Process(target=work)
    p.start()
    print("handlers in the child:", p.result())
    p.join()
    print("collected in the parent:", len(collecting.records))
"""
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["<from the child>", "handlers in the child: 2",
                                          "collected in the parent: 0"]
    # The format survives; the subclass's upper-casing does not travel.
    assert result.stderr.splitlines() == ["[WARNING] from the child"]


def test_a_log_file_the_child_cannot_open_does_not_stop_its_target(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    script = f"""
import logging, shutil
import procesos as mp

def work():
    logging.warning("lost")
    return "done"

if __name__ == "__main__":
    # Not opened yet (delay=True): the child opens it by name, and its directory is gone.
    logging.basicConfig(handlers=[logging.FileHandler({str(log_dir / "run.log")!r}, delay=True)])
    shutil.rmtree({str(log_dir)!r})
    p = mp.Process(target=work)
    p.start()
    print(p.result())
    p.join()
    print(p.exitcode)
"""
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["done", "0"]
    assert result.stderr.startswith("procesos: the parent's log file is not written by this "
                                    "process: [Errno 2] No such file or directory"), result.stderr
    assert "lost" in result.stderr  # logging's last resort prints the warning instead


def test_a_handler_a_preloaded_module_added_is_not_doubled(tmp_path: Path) -> None:
    (tmp_path / "configures_at_import.py").write_text(
        "import logging, sys\n"
        "logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))\n"
    )
    script = """
import logging
import configures_at_import
import procesos as mp

def work():
    logging.warning("once")

if __name__ == "__main__":
    p = mp.Process(target=work)
    p.start()
    p.join()
"""
    result = run_script(script, tmp_path, method="zygote",
                        env={"PROCESOS_ZYGOTE_PRELOAD": "configures_at_import"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["once"]


def test_a_preloaded_handler_that_is_not_carried_stays_in_the_child(tmp_path: Path) -> None:
    # A stream handler to a file object of its own is not carried: the child's
    # copy, made by the zygote's import of the module, must not be removed.
    (tmp_path / "logs_to_its_own_stream.py").write_text(
        "import logging\n"
        f"stream = open({str(tmp_path / 'own.log')!r}, 'a', buffering=1)\n"
        "logging.getLogger('lib').addHandler(logging.StreamHandler(stream))\n"
        "logging.getLogger('lib').setLevel(logging.INFO)  # so the snapshot has 'lib'\n"
    )
    script = """
import logging
import logs_to_its_own_stream
import procesos as mp

def work():
    logging.getLogger("lib").info("from the child")

if __name__ == "__main__":
    logging.basicConfig(format="root:%(message)s")
    p = mp.Process(target=work)
    p.start()
    p.join()
"""
    result = run_script(script, tmp_path, method="zygote",
                        env={"PROCESOS_ZYGOTE_PRELOAD": "logs_to_its_own_stream"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "own.log").read_text() == "from the child\n"
    assert result.stderr == "root:from the child\n"  # it propagates to the carried root


def test_nothing_is_carried_while_logging_is_the_default() -> None:
    code = (
        "import logging, procesos as mp\n"
        "from procesos._launch._log_config import take_snapshot\n"
        "print(take_snapshot(lambda fd: 0))\n"
        "def handlers():\n"
        "    return len(logging.getLogger().handlers), logging.getLogger().level\n"
        "p = mp.Process(target=handlers)\n"
        "p.start()\n"
        "print(p.result())\n"
        "p.join()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["None", "(0, 30)"]
