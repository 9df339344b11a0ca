"""The lesson's programs run unchanged with procesos, under every start method."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, START_METHODS

EXAMPLES = ROOT / "examples" / "seed"


def run_example(name: str, method: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PROCESOS_START_METHOD=method, PROCESOS_LESSON_SLEEP="0.01")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True, text=True, env=env, timeout=60, cwd=EXAMPLES,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.parametrize("method", START_METHODS)
def test_first_process_greets(method: str) -> None:
    assert run_example("ej1_primer_proceso.py", method).stdout == "Hola Guillermo G\n"


@pytest.mark.parametrize("method", START_METHODS)
def test_squares_without_main_guard_run_once(method: str) -> None:
    lines = run_example("ej2_cuadrados.py", method).stdout.splitlines()
    assert lines[0] == "Calcula el cuadrado de los números"
    assert lines[1:11] == [f"cuadrado: {n * n}" for n in range(10)]
    assert lines[11].startswith("Tiempo de ejecución: ")
    assert lines[12:] == ["Finaliza la ejecución"]  # the script ran once, not again in the child


@pytest.mark.parametrize("method", START_METHODS)
def test_squares_and_cubes_concurrently(method: str) -> None:
    lines = run_example("ej3_concurrente.py", method).stdout.splitlines()
    expected = (
        ["Calcula el cuadrado de los números", "Calcula el cubo de los números"]
        + [f"cuadrado: {n * n}" for n in range(5)]
        + [f"cubo: {n ** 3}" for n in range(5)]
    )
    assert sorted(lines[:-1]) == sorted(expected)
    squares = [x for x in lines if x.startswith("cuadrado")]
    assert squares == [f"cuadrado: {n * n}" for n in range(5)]
    assert lines[-1] == "Termina la ejecución númerica"


@pytest.mark.parametrize("method", START_METHODS)
def test_join_before_start_makes_it_sequential(method: str) -> None:
    lines = run_example("ej3_secuencial.py", method).stdout.splitlines()
    assert lines == (
        ["Calcula el cuadrado de los números"]
        + [f"cuadrado: {n * n}" for n in range(5)]
        + ["Calcula el cubo de los números"]
        + [f"cubo: {n ** 3}" for n in range(5)]
        + ["Termina la ejecución númerica"]
    )


@pytest.mark.parametrize("name", ["ej4_secuencial.py", "ej4_concurrente.py"])
@pytest.mark.parametrize("method", START_METHODS)
def test_timing_programs_print_all_results(name: str, method: str) -> None:
    lines = run_example(name, method).stdout.splitlines()
    assert sorted(x for x in lines if x.startswith("cuadrado")) == sorted(
        f"cuadrado: {n * n}" for n in range(5)
    )
    assert sorted(x for x in lines if x.startswith("cubo")) == sorted(
        f"cubo: {n ** 3}" for n in range(5)
    )
    assert re.match(r"Tiempo de ejecución:  \d+\.\d+", lines[-2])
    assert lines[-1] == "Finaliza la ejecución"


@pytest.mark.parametrize("method", START_METHODS)
def test_pid_and_ppid(method: str) -> None:
    lines = run_example("ej5_pid_ppid.py", method).stdout.splitlines()
    values = {}
    for title in ("Primera linea", "function f"):
        i = lines.index(title)
        values[title] = {
            "name": lines[i + 1],
            "ppid": int(lines[i + 2].split()[-1]),
            "pid": int(lines[i + 3].split()[-1]),
        }
    parent, child = values["Primera linea"], values["function f"]
    assert parent["name"] == child["name"] == "module name __main__"
    assert child["pid"] != parent["pid"]
    started_by = int(next(x for x in lines if x.startswith("started by")).split()[-1])
    assert started_by == parent["pid"]  # parent_process() is the real parent, always
    if method != "zygote":
        assert child["ppid"] == parent["pid"]  # under zygote, os.getppid() is the zygote
    assert lines[-2:] == ["hello oscar", "-----"]


@pytest.mark.parametrize("method", START_METHODS)
def test_child_works_on_a_copy_of_the_parents_memory(method: str) -> None:
    lines = run_example("ej6_visibilidad.py", method).stdout.splitlines()
    assert "Resultado del proceso: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in lines
    assert "Fuera del proceso: []" in lines
    assert lines[-2:] == ["Resultado del proceso: []", "Finaliza ejecución"]
