"""The texts of ``procesos demo``, in English and in Spanish (the lesson's language).

Each language maps the same keys to ``str.format`` templates. The words the
children print (``cuadrado:``, ``cubo:``...) are here too, so that the whole
demo speaks one language.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LANGUAGES", "TEXTS", "texts"]

_EN: dict[str, str] = {
    # the frame
    "title": "procesos demo: the multiprocessing lesson, live",
    "subtitle": "procesos {version} · Python {python} · start method {method} · {cores} cores",
    "step": "Step {number}/{total}: {title}",
    "done": "Done. In the procesos repository: the lesson's programs in examples/seed/, "
    "the tutorial in docs/tutorial.md.",
    "interrupted": "procesos {command}: interrupted (Ctrl-C)",
    # what the children print (the lesson's own words, translated)
    "hello": "Hello",
    "squares": "Computing the squares of the numbers",
    "square": "square:",
    "cubes": "Computing the cubes of the numbers",
    "cube": "cube:",
    "child_result": "Result in the process:",
    "numeric_done": "Numeric work finished",
    "elapsed": "Execution time: {seconds:.2f} s",
    # step 1
    "first_title": "A first process",
    "first_what": "Process(target=tarea, args=(...,)) runs a function in a new process: "
    "start() launches it and join() waits until it ends.",
    "first_after": "The parent waited in join(); the child {name} (pid {pid}) "
    "ended with exit code {exitcode}.",
    # step 2
    "together_title": "Squares and cubes in two processes at once",
    "together_what": "Both processes are started before either is joined, so they run at "
    "the same time and their lines take turns (whole lines, never torn).",
    # step 3
    "apart_title": "join() placed between the two start()s",
    "apart_what": "Joining p1 before starting p2 makes the parent wait for p1, so the two "
    "run one after the other: all the squares, then all the cubes.",
    # step 4
    "timing_title": "Sequential against concurrent",
    "timing_what": "With time.sleep({sleep}) per number, 5 squares and 5 cubes take about "
    "{sequential} s one after the other and about {concurrent} s in two processes "
    "at once.",
    "run_sequential": "one process, one function after the other",
    "run_joined": "two processes, join() before the second start()",
    "run_concurrent": "two processes at once",
    # step 5
    "pids_title": "pid and ppid: who started whom",
    "pids_what": "Every process has its own id (os.getpid()) and knows its parent's "
    "(os.getppid()); here are this demo and the two processes it starts, as a tree.",
    "child_info_title": "function f",
    "child_info_ppid": "parent process",
    "child_info_pid": "process id:",
    "pids_grandparent": "pid {pid}: the process that started this demo (a shell, make)",
    "pids_parent": "pid {pid}: procesos demo, this process",
    "pids_child": "pid {pid}: {name}, its os.getppid() is {ppid}",
    "pids_child_zygote": "pid {pid}: {name}, its os.getppid() is {ppid} (the zygote) "
    "and parent_process().pid is {parent}",
    "pids_zygote_note": "The zygote start method forks each child from a small server "
    "process (pid {zygote}), so os.getppid() names that server; "
    "procesos.parent_process().pid names the process that called start().",
    # step 6
    "copy_title": "A child's memory is a copy",
    "copy_what": "The child appends to the global list nums_res, but to its own copy of "
    "it: the parent's list stays empty.",
    "outside": "Outside the process:",
    # step 7
    "back_title": "Bringing the result back",
    "back_what": "To share data the processes need an explicit mechanism; here are three: "
    "a shared Array, a Queue, and the value returned through Process.result().",
    "back_array": "Array('i', {size}), written by the child:",
    "back_queue": "Queue, the child put() the list, the parent get()s it:",
    "back_result": "Process.result(), the target returned the list:",
    # the summary
    "table_title": "Timings (time.sleep({sleep}) per number, 5 squares and 5 cubes)",
    "timeline_title": "Where the time went: one row per process, the three runs on one "
    "time scale (procesos.trace())",
    "timeline_parent": "this demo (pid {pid})",
    "timeline_html": "The timelines are in {path}: open it in a browser and hover a bar.",
    "col_run": "run",
    "col_seconds": "seconds",
    "col_speedup": "speed-up",
    "speedup_line": "Two processes at once were {speedup:.1f}x as fast as one process "
    "doing both jobs.",
}

_ES: dict[str, str] = {
    "title": "procesos demo: la lección de multiprocessing, en vivo",
    "subtitle": "procesos {version} · Python {python} · método de arranque {method} · "
    "{cores} núcleos",
    "step": "Paso {number}/{total}: {title}",
    "done": "Listo. En el repositorio de procesos: los programas de la lección en "
    "examples/seed/, el tutorial (en inglés) en docs/tutorial.md.",
    "interrupted": "procesos {command}: interrumpido (Ctrl-C)",
    "hello": "Hola",
    "squares": "Calcula el cuadrado de los números",
    "square": "cuadrado:",
    "cubes": "Calcula el cubo de los números",
    "cube": "cubo:",
    "child_result": "Resultado del proceso:",
    "numeric_done": "Termina la ejecución numérica",
    "elapsed": "Tiempo de ejecución: {seconds:.2f} s",
    "first_title": "Un primer proceso",
    "first_what": "Process(target=tarea, args=(...,)) ejecuta una función en un proceso "
    "nuevo: start() lo inicia y join() espera a que termine.",
    "first_after": "El padre esperó en join(); el hijo {name} (pid {pid}) terminó con "
    "código de salida {exitcode}.",
    "together_title": "Cuadrados y cubos en dos procesos a la vez",
    "together_what": "Los dos procesos se inician antes de unir (join) cualquiera de ellos, "
    "así que corren al mismo tiempo y sus líneas se turnan (líneas completas, nunca rotas).",
    "apart_title": "join() colocado entre los dos start()",
    "apart_what": "Unir p1 antes de iniciar p2 hace que el padre espere a p1, así que corren "
    "uno después del otro: todos los cuadrados y luego todos los cubos.",
    "timing_title": "Secuencial contra concurrente",
    "timing_what": "Con time.sleep({sleep}) por número, 5 cuadrados y 5 cubos tardan unos "
    "{sequential} s uno tras otro y unos {concurrent} s en dos procesos a la vez.",
    "run_sequential": "un proceso, una función después de la otra",
    "run_joined": "dos procesos, join() antes del segundo start()",
    "run_concurrent": "dos procesos a la vez",
    "pids_title": "pid y ppid: quién inició a quién",
    "pids_what": "Cada proceso tiene su propio identificador (os.getpid()) y conoce el de "
    "su padre (os.getppid()); aquí están esta demo y los dos procesos que inicia, en árbol.",
    "child_info_title": "function f",
    "child_info_ppid": "parent process",
    "child_info_pid": "process id:",
    "pids_grandparent": "pid {pid}: el proceso que inició esta demo (una terminal, make)",
    "pids_parent": "pid {pid}: procesos demo, este proceso",
    "pids_child": "pid {pid}: {name}, su os.getppid() es {ppid}",
    "pids_child_zygote": "pid {pid}: {name}, su os.getppid() es {ppid} (el zygote) "
    "y parent_process().pid es {parent}",
    "pids_zygote_note": "El método de arranque zygote crea cada hijo con fork() desde un "
    "pequeño proceso servidor (pid {zygote}), por eso os.getppid() lo nombra a él; "
    "procesos.parent_process().pid nombra al proceso que llamó a start().",
    "copy_title": "La memoria del hijo es una copia",
    "copy_what": "El hijo agrega a la lista global nums_res, pero a su propia copia: "
    "la lista del padre sigue vacía.",
    "outside": "Fuera del proceso:",
    "back_title": "Traer el resultado de vuelta",
    "back_what": "Para compartir datos los procesos necesitan un mecanismo explícito; aquí "
    "hay tres: un Array compartido, una Queue y el valor devuelto por Process.result().",
    "back_array": "Array('i', {size}), escrito por el hijo:",
    "back_queue": "Queue, el hijo hace put() de la lista, el padre get():",
    "back_result": "Process.result(), la función devolvió la lista:",
    "table_title": "Tiempos (time.sleep({sleep}) por número, 5 cuadrados y 5 cubos)",
    "timeline_title": "Dónde se fue el tiempo: una fila por proceso, las tres ejecuciones en "
    "la misma escala de tiempo (procesos.trace())",
    "timeline_parent": "este demo (pid {pid})",
    "timeline_html": "Las líneas de tiempo están en {path}: ábralo en un navegador y pase "
    "el ratón sobre una barra.",
    "col_run": "ejecución",
    "col_seconds": "segundos",
    "col_speedup": "aceleración",
    "speedup_line": "Dos procesos a la vez fueron {speedup:.1f} veces más rápidos que un solo "
    "proceso haciendo los dos trabajos.",
}

#: The languages of the demo, the default first.
LANGUAGES = ("en", "es")

TEXTS: Mapping[str, Mapping[str, str]] = {"en": _EN, "es": _ES}


def texts(lang: str) -> Mapping[str, str]:
    """The demo's texts in *lang* (one of :data:`LANGUAGES`)."""
    try:
        return TEXTS[lang]
    except KeyError:
        raise ValueError(
            f"the demo speaks {', '.join(LANGUAGES)}; there is no language {lang!r}"
        ) from None
