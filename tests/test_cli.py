"""The ``procesos`` command: ``demo`` runs the lesson live, ``info`` reports, ``bench`` hands on."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import string
import subprocess
import sys
import types
from pathlib import Path

import psutil
import pytest

from conftest import START_METHODS
from procesos._cli import _main as _cli
from procesos._cli._demo_text import LANGUAGES, TEXTS

ANSI = re.compile(r"\x1b\[")
SQUARES = [n * n for n in range(5)]
CUBES = [n**3 for n in range(5)]
SQUARES_10 = str([n * n for n in range(10)])


def procesos_command(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m procesos ARGS`` with its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "procesos", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Wait for *proc*; return its stdout and stderr after checking it succeeded."""
    out, err = proc.communicate(timeout=50)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out, err


def section(out: str, number: int) -> list[str]:
    """The lines of step *number* (after its heading and sentence, before the next step)."""
    blocks = re.split(r"^== .* ==$", out, flags=re.MULTILINE)
    return [line for line in blocks[number].splitlines()[2:] if line]


# -- procesos demo ----------------------------------------------------------------


@pytest.mark.parametrize("method", START_METHODS)
def test_demo_fast_runs_every_step_of_the_lesson_in_english(method: str) -> None:
    proc = procesos_command("demo", "--fast", "--start-method", method)
    out, err = finish(proc)
    t = TEXTS["en"]

    assert f"start method {method}" in out
    for number in range(1, 8):
        assert f"== Step {number}/7: " in out
    # 1. a first process
    assert section(out, 1)[0] == "Hello Guillermo G"
    assert "ended with exit code 0" in section(out, 1)[1]
    # 2. squares and cubes at once: every line whole, each process's in order
    lines = section(out, 2)
    assert lines[-1] == "Numeric work finished"
    assert [x for x in lines if x.startswith("square:")] == [f"square: {n}" for n in SQUARES]
    assert [x for x in lines if x.startswith("cube:")] == [f"cube: {n}" for n in CUBES]
    assert len(lines) == 2 + 5 + 5 + 1
    # 3. join() between the start()s: all squares, then all cubes
    assert section(out, 3) == (
        [t["squares"]] + [f"square: {n}" for n in SQUARES]
        + [t["cubes"]] + [f"cube: {n}" for n in CUBES]
        + ["Numeric work finished"]
    )
    # 4. the three timed runs
    timing = section(out, 4)
    for key in ("run_sequential", "run_joined", "run_concurrent"):
        assert f"-- {t[key]}" in timing
    assert len([x for x in timing if re.fullmatch(r"Execution time: \d+\.\d\d s", x)]) == 3
    # 5. pids as a tree: this test started the demo, the demo started the children
    tree = section(out, 5)
    assert f"pid {os.getpid()}: the process that started this demo (a shell, make)" in tree
    assert f"└── pid {proc.pid}: procesos demo, this process" in tree
    children = [x for x in tree if x.lstrip().startswith(("├── pid", "└── pid"))][1:]
    assert len(children) == 2
    for child in children:
        if method == "zygote":
            assert f"(the zygote) and parent_process().pid is {proc.pid}" in child
        else:
            assert child.endswith(f"its os.getppid() is {proc.pid}")
    # 6. the child's list is a copy
    copy = section(out, 6)
    assert copy[-2] == f"Result in the process: {SQUARES_10}"
    assert copy[-1] == "Outside the process: []"
    # 7. the result brought back three ways
    back = section(out, 7)
    assert back[:4] == [
        f"Array('i', 10), written by the child: {SQUARES_10}",
        f"Queue, the child put() the list, the parent get()s it: {SQUARES_10}",
        f"Process.result(), the target returned the list: {SQUARES_10}",
        "Timings (time.sleep(0.01) per number, 5 squares and 5 cubes)",
    ]
    # the table of timings, and the speed-up
    assert re.search(r"^run +seconds +speed-up$", out, flags=re.MULTILINE)
    for key in ("run_sequential", "run_joined", "run_concurrent"):
        assert re.search(rf"^{re.escape(t[key])} +\d+\.\d\d +\d+\.\dx$", out, re.MULTILINE)
    assert re.search(r"^Two processes at once were \d+\.\dx as fast", out, re.MULTILINE)
    assert out.rstrip().endswith(t["done"])
    assert err == ""


def test_demo_speaks_spanish_with_lang_es() -> None:
    out, _ = finish(procesos_command("demo", "--fast", "--lang", "es"))
    for number in range(1, 8):
        assert f"== Paso {number}/7: " in out
    assert "Hola Guillermo G" in out
    assert "Calcula el cuadrado de los números" in out
    assert "cuadrado: 16" in out
    assert "cubo: 64" in out
    assert "Termina la ejecución numérica" in out
    assert re.search(r"^Tiempo de ejecución: \d+\.\d\d s$", out, re.MULTILINE)
    assert "Fuera del proceso: []" in out
    assert f"Process.result(), la función devolvió la lista: {SQUARES_10}" in out
    assert re.search(r"^ejecución +segundos +aceleración$", out, re.MULTILINE)
    assert re.search(r"^Dos procesos a la vez fueron \d+\.\d veces más rápidos", out, re.MULTILINE)
    assert "Step" not in out


def test_demo_piped_is_plain_text() -> None:
    out, err = finish(procesos_command("demo", "--fast"))
    assert not ANSI.search(out)
    assert not ANSI.search(err)
    assert "┏" not in out  # no rich table either


def test_demo_on_a_terminal_has_colour_and_a_table() -> None:
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "procesos", "demo", "--fast"],
        stdin=child_fd, stdout=child_fd, stderr=child_fd,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(child_fd)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has gone
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main_fd)
        assert proc.wait(timeout=50) == 0
    out = b"".join(chunks).decode()
    assert ANSI.search(out)
    assert "┏" in out and "speed-up" in out
    assert "Step 7/7" in out


@pytest.mark.parametrize("whom", ["group", "parent"])
def test_demo_ctrl_c_ends_it_with_one_line_and_exit_code_130(whom: str) -> None:
    # A new session, so that SIGINT can reach the whole group as Ctrl-C does on a terminal
    # ("group"), or the demo alone, which must then stop its children itself ("parent").
    proc = subprocess.Popen(
        [sys.executable, "-m", "procesos", "demo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        concurrent = TEXTS["en"]["run_concurrent"]
        in_step = False
        for line in proc.stdout:  # wait until the two timed children are running
            in_step = in_step or line.rstrip() == f"-- {concurrent}"
            if in_step and line.startswith(("square: 0", "cube: 0")):
                break
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert descendants
        if whom == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err == "procesos demo: interrupted (Ctrl-C)\n"
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive


def test_python_dash_m_procesos_and_the_console_script_agree() -> None:
    script = Path(sys.executable).with_name("procesos")
    via_script = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30
    )
    via_module = subprocess.run(
        [sys.executable, "-m", "procesos", "--version"], capture_output=True, text=True, timeout=30
    )
    assert via_script.returncode == via_module.returncode == 0
    assert via_script.stdout == via_module.stdout
    assert via_module.stdout.startswith("procesos ")


# -- procesos info ----------------------------------------------------------------


def test_info_prints_the_start_methods_and_the_default() -> None:
    out, _ = finish(procesos_command("info"))
    assert "start methods:" in out
    assert "zygote (default), fork, spawn" in out
    assert re.search(r"^default start method: +zygote$", out, re.MULTILINE)
    assert re.search(r"^Python: +3\.\d+", out, re.MULTILINE)
    assert re.search(r"^cores: +\d+", out, re.MULTILINE)
    assert "shared memory (/dev/shm):" in out
    assert re.search(r"^zygote: +not running", out, re.MULTILINE)
    assert not ANSI.search(out)


def test_info_follows_procesos_start_method() -> None:
    out, _ = finish(procesos_command("info", env={"PROCESOS_START_METHOD": "spawn"}))
    assert "spawn (default), zygote, fork" in out
    assert "spawn (from PROCESOS_START_METHOD)" in out


def test_info_json_is_machine_readable() -> None:
    out, _ = finish(procesos_command("info", "--json"))
    facts = json.loads(out)
    assert facts["start_methods"] == ["zygote", "fork", "spawn"]
    assert facts["default_start_method"] == "zygote"
    assert facts["cores"] >= 1
    assert facts["zygote_pid"] is None


def test_info_reports_a_running_zygote() -> None:
    import procesos
    from procesos._cli import _info

    p = procesos.get_context("zygote").Process(target=int)
    p.start()
    p.join()
    facts = _info.collect()
    assert facts["zygote_pid"] == procesos.zygote_pid() is not None


# -- the command line itself ---------------------------------------------------------


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli.main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli.main(["demo", "--lang", "fr"]) == 2
    assert "invalid choice: 'fr'" in capsys.readouterr().err
    assert _cli.main(["nonsense"]) == 2


def test_bench_hands_every_argument_to_the_benchmark_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[list[str]] = []

    def bench_main(argv: list[str]) -> int:
        received.append(argv)
        return 3

    fake = types.ModuleType("procesos._cli._bench")
    fake.main = bench_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "procesos._cli._bench", fake)
    assert _cli.main(["bench", "--help", "--quick"]) == 3
    assert received == [["--help", "--quick"]]


def test_bench_without_its_module_says_so_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "procesos._cli._bench", None)  # import fails, as if missing
    assert _cli.main(["bench"]) == 2
    assert "procesos._cli._bench is missing" in capsys.readouterr().err


# -- the texts -----------------------------------------------------------------------


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("lang", LANGUAGES[1:])
def test_every_language_has_every_text_with_the_same_placeholders(lang: str) -> None:
    english = TEXTS["en"]
    other = TEXTS[lang]
    assert set(other) == set(english)
    for key, template in english.items():
        assert _fields(other[key]) == _fields(template), key


@pytest.mark.parametrize("command", [[], ["demo"], ["info"], ["bench"]])
def test_help_texts_are_plain_text(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "procesos", *command, "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: procesos" in done.stdout
    assert "``" not in done.stdout and ":func:" not in done.stdout, done.stdout


def test_compile_bytecode_leaves_every_module_of_the_package_compiled() -> None:
    # The benchmarks that time a fresh interpreter's imports call it first; it
    # once compiled only its own directory (``_cli``), and the rest of procesos
    # was timed compiling from source under PYTHONDONTWRITEBYTECODE.
    import importlib.util

    import procesos
    from procesos._cli._bench import compile_bytecode

    compile_bytecode()
    stale = []
    for source in Path(procesos.__file__).parent.rglob("*.py"):
        cached = Path(importlib.util.cache_from_source(str(source)))
        header = cached.read_bytes()[:16] if cached.exists() else b""
        recorded = int.from_bytes(header[8:12], "little") if len(header) == 16 else -1
        if recorded != int(source.stat().st_mtime) & 0xFFFFFFFF:
            stale.append(str(source))
    assert not stale, stale
