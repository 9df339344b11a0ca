# ruff: noqa: E501  (the table of trace points quotes whole source lines)
"""Where the time of one zygote start goes: create + start + join of a no-op process, traced.

Copies procesos' sources to a temporary directory, adds trace points there (a
``time.monotonic_ns()`` written to a shared log by the parent, the zygote,
the spare and the child: the clock is the same in every process), runs
create + start + join of a no-op ``Process`` back to back (``--gap``: each after
a pause, as a program's starts are), and prints the
median time of each point from the ``Process()`` call on. The package itself
carries no trace point. In the same run, without tracing, each library in
interpreters of its own (what its users have; the libraries take turns):
the same loop untraced, the standard library's ``fork`` and the physical
floor (``os.fork()`` + ``os._exit()`` + ``waitpid()`` from procesos'
interpreter, whose size is about the zygote's), two processes started, then
joined (the lesson's program), and a loop of starts (blocks of 50, with the
machine's CPU time a start). Each trace point costs about 6 µs (an ``os.write``); with
the time it records the process's page faults and its thread's CPU time, so
the table says what each step costs the process that made it.

    python benchmarks/bench_start_breakdown.py [--runs N] [--gap MS]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRACE_MODULE = '''
import os, resource, time
_FD = None
def T(label):
    global _FD
    if _FD is None:
        _FD = os.open(os.environ["PROCESOS_TRACE_LOG"], os.O_WRONLY | os.O_APPEND)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    os.write(_FD, f"{time.monotonic_ns()} {os.getpid()} {faults} {time.thread_time_ns()} {label}\\n".encode())
'''

# (file, anchor, trace line, before the anchor?): the label says who and what.
POINTS = [
    ("_zygote_popen.py", "        _zygote.ensure_running()\n", "        T('parent: launch')\n", True),
    ("_zygote_client.py", "                    sock.connect(address)\n",
     "                    T('parent: connect')\n", True),
    ("_zygote_client.py", "                    sent = True\n", "                    T('parent: request sent')\n", False),
    ("_zygote_client.py", "                pid = _read_pid(status_r)\n", "                T('parent: pid read')\n", False),
    ("_zygote_server.py", "        if self.listener.fileno() in ready:\n",
     "            T('zygote: woken by a request')\n", False),
    ("_zygote_server.py", "        status_w, rest = fds[0], fds[1:]\n", "        T('zygote: request read')\n", False),
    ("_zygote_server.py",
     "            socket.send_fds(spare.handoff, [_REQUEST.pack(std_mask)], [conn.fileno(), *fds])\n",
     "            T('zygote: handed to the spare')\n", False),
    ("_zygote_server.py", "        if pid == 0:\n            ours.close()\n", "            T('spare: forked')\n", False),
    ("_zygote_server.py", "            idle = not readable(waiting, _REHEARSE_AFTER)\n",
     "            T('spare: has left the zygote')\n", True),
    ("_zygote_server.py", "                    message, fds, _, _ = socket.recv_fds(handoff, _REQUEST.size, _MAX_FDS)\n",
     "                    T('spare: woken, has the request from the zygote')\n", False),
    ("_zygote_server.py", "                    taken = _take_from_the_parent(direct, handoff, self.config.secret)\n",
     "                    T('spare: woken, has the request from the parent')\n", False),
    ("_zygote_server.py", "            self.spare_timing.started(spare.pid, now, self.waited(spare.born, now))\n",
     "            T('zygote: told the spare was taken')\n", False),
    ("_zygote_client.py", "            if offer.channel.sendmsg([request], ancillary) != len(request):\n",
     "            T('parent: request sent to the spare')\n", True),
    ("_zygote_server.py", "            os.write(status_w, _STATUS_WORD.pack(pid))\n", "            T('zygote: pid written')\n", False),
    ("_zygote_server.py", "        self.spares.append(_Spare(pid, ours, time.monotonic(), parent_end))\n", "        T('zygote: next spare forked')\n", False),
    ("_zygote_server.py", "        if self.wake_r in ready:\n", "            T('zygote: woken by SIGCHLD')\n", False),
    ("_zygote_server.py",
     "                    os.write(status_w, _STATUS_WORD.pack(os.waitstatus_to_exitcode(status)))\n",
     "                    T('zygote: exit code written')\n", False),
    ("_child.py", "    setup: ChildSetup = pickle.loads(channel.recv_bytes())\n",
     "    T('child: setup read')\n", False),
    ("_child.py", "    die_with_parent(parent_pid, channel.fileno(), use_pdeathsig)\n",
     "    T('child: process object read')\n", False),
    ("_child.py", "    return run_process(process_obj, channel, setup.output_mode, setup.output_line_buffered)\n\n\ndef spawn_main",
     "    T('child: process object unpickled')\n", True),
    ("_child.py", "                value = user_run()\n", "                T('child: target runs')\n", True),
    ("_child.py", "    try:\n        _run_exit_handlers_like_the_standard_library()",
     "    T('child: bootstrap done')\n", True),
    ("_child.py", "                    _report_exit(channel_fd, code & 0xFF)",
     "                    T('child: exit report')\n", True),
    ("_zygote_popen.py", "            setup = self._child_setup([], follow_parent=False)\n", "            T('parent: pickled')\n", True),
    ("_zygote_popen.py", "            child_std = self.std_fds_for_child()", "            T('parent: setup built')\n", True),
    ("_child.py", "    try:\n        payload = channel.recv_bytes()", "    T('child: setup applied')\n", True),
    ("_child.py", "    if output_mode != \"inherit\":\n        # descriptors", "    T('child: exit handlers dropped')\n", True),
    ("_child.py", "    process_obj.run = run_and_record", "    T('child: streams adopted')\n", True),
    ("_child.py", "        channel = ChildChannel(channel_fd)\n        code = _serve(channel, received, zygote_pid, True)",
     "        T('child: descriptors in place')\n", True),
    ("_child.py", "    setup: ChildSetup = pickle.loads(channel.recv_bytes())", "    T('child: __main__ shared')\n", True),
]

LOOP = '''
import sys, time
import procesos
from procesos._launch._trace import T
def noop():
    pass
ctx = procesos.get_context("zygote")
for _ in range(30):
    p = ctx.Process(target=noop); p.start(); p.join()
open(sys.argv[1], "w").close()
gap = float(sys.argv[3])
for _ in range(int(sys.argv[2])):
    time.sleep(gap)
    T("parent: Process() called")
    p = ctx.Process(target=noop)
    p.start()
    T("parent: start() returned")
    p.join()
    T("parent: join() returned")
'''

# Each library in an interpreter of its own, as its users have it: the standard
# library's fork from a parent that had imported procesos (its after-fork hooks,
# its larger memory) was 0.4-0.5 ms slower. Raw samples out, merged by main().
UNTRACED = '''
import os, sys, time
which, runs, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if which == "procesos":
    import procesos
else:
    import multiprocessing
def noop():
    pass
def start_join(ctx):
    t = time.perf_counter(); p = ctx.Process(target=noop); p.start(); p.join()
    return time.perf_counter() - t
def two_at_once(ctx):  # the lesson's program: start two, then join both
    t = time.perf_counter(); ps = [ctx.Process(target=noop) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return time.perf_counter() - t
def floor():
    t = time.perf_counter(); pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return time.perf_counter() - t
class _Inherit:
    def Process(self, **kw):
        return procesos.get_context("zygote").Process(output="inherit", **kw)
if which == "procesos":
    runs_of = {"procesos zygote": lambda: start_join(procesos.get_context("zygote")),
               "procesos zygote, output inherited": lambda: start_join(_Inherit()),
               "floor: fork() + _exit() + waitpid()": floor,
               "procesos zygote, two started, then joined":
                   lambda: two_at_once(procesos.get_context("zygote"))}
else:
    runs_of = {"stdlib fork": lambda: start_join(multiprocessing.get_context("fork")),
               "stdlib fork, two started, then joined":
                   lambda: two_at_once(multiprocessing.get_context("fork"))}
samples = {k: [] for k in runs_of}
for i in range(20 + runs):
    for k, f in runs_of.items():
        time.sleep(gap)
        t = f()
        if i >= 20:
            samples[k].append(t)
for k, v in samples.items():
    print(k + "\\t" + ",".join(f"{x:.7f}" for x in v))
'''

# A program that starts processes in a loop: one block of 50 starts after a
# warm-up block, in an interpreter of one library; main() alternates them.
# CPU: the whole machine's busy time (/proc/stat) over the block, per start.
LOOP_BLOCK = '''
import os, sys, time
if sys.argv[1] == "procesos":
    import procesos
    ctx = procesos.get_context("zygote")
else:
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
def noop():
    pass
def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]
tick = 1 / os.sysconf("SC_CLK_TCK")
size = 50
for block in range(2):
    time.sleep(0.05)  # the warm-up's leftovers (a spare's fork, its rehearsal) done
    b0 = busy()
    walls = []
    for _ in range(size):
        t = time.perf_counter(); p = ctx.Process(target=noop); p.start(); p.join()
        walls.append(time.perf_counter() - t)
used = (busy() - b0) * tick
print(",".join(f"{x:.7f}" for x in walls) + "\\t" + f"{used:.4f}")
'''

LABELS = {"procesos": "procesos zygote", "stdlib": "stdlib fork"}


def untraced_samples(runs: int, gap: str, env: dict[str, str], cwd: str,
                     rounds: int = 3) -> dict[str, list[float]]:
    """Create + start + join, each library in its own interpreter, taking turns."""
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for which in LABELS:
            out = subprocess.run([sys.executable, "-c", UNTRACED, which,
                                  str(max(1, runs // rounds)), gap],
                                 capture_output=True, text=True, check=True, cwd=cwd, env=env)
            for line in out.stdout.strip().splitlines():
                label, values = line.split("\t")
                samples.setdefault(label, []).extend(float(x) for x in values.split(","))
    return samples


def loop_samples(blocks: int, env: dict[str, str],
                 cwd: str) -> dict[str, tuple[list[float], float, int]]:
    """A loop of starts: blocks of 50 of one library, alternated; walls, CPU, starts."""
    found: dict[str, tuple[list[float], float, int]] = {}
    for _ in range(blocks):
        for which, label in LABELS.items():
            out = subprocess.run([sys.executable, "-c", LOOP_BLOCK, which],
                                 capture_output=True, text=True, check=True, cwd=cwd, env=env)
            walls, used = out.stdout.strip().split("\t")
            values = [float(x) for x in walls.split(",")]
            before = found.get(label, ([], 0.0, 0))
            found[label] = (before[0] + values, before[1] + float(used), before[2] + len(values))
    return found


def instrumented_copy(directory: str) -> str:
    src = os.path.join(directory, "src")
    shutil.copytree(os.path.join(ROOT, "src", "procesos"), os.path.join(src, "procesos"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    launch = os.path.join(src, "procesos", "_launch")
    with open(os.path.join(launch, "_trace.py"), "w") as f:
        f.write(TRACE_MODULE)
    for name in sorted({file for file, _, _, _ in POINTS}):
        path = os.path.join(launch, name)
        with open(path) as f:
            text = f.read()
        text = text.replace("from __future__ import annotations\n",
                            "from __future__ import annotations\nfrom ._trace import T\n", 1)
        for file, anchor, line, before in POINTS:
            if file != name:
                continue
            if anchor not in text:
                raise SystemExit(f"trace point {line.strip()} not found in {name}: update POINTS")
            text = text.replace(anchor, line + anchor if before else anchor + line, 1)
        with open(path, "w") as f:
            f.write(text)
    return src


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.0,
                        help="milliseconds of sleep before each start: isolated starts, "
                             "as a program makes them, not back to back")
    args = parser.parse_args()
    from procesos._cli._bench import compile_bytecode

    compile_bytecode()  # as an installed procesos has it
    gap = str(args.gap / 1000)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as directory:
        src = instrumented_copy(directory)
        log = os.path.join(directory, "trace.log")
        open(log, "w").close()
        env = dict(os.environ, PYTHONPATH=src, PROCESOS_TRACE_LOG=log)
        env.pop("PROCESOS_START_METHOD", None)
        plain_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        untraced = untraced_samples(args.runs, gap, plain_env, directory)
        loop = loop_samples(max(1, args.runs // 50), plain_env, directory)
        subprocess.run([sys.executable, "-c", LOOP, log, str(args.runs), gap], check=True,
                       cwd=directory, env=env)
        with open(log) as f:
            lines = [line.split(None, 4) for line in f]
    # Each point: (time ns, pid, the process's page faults so far, its thread's CPU ns, label)
    rounds: list[list[tuple[int, int, int, int, str]]] = []
    for stamp, pid, faults, cpu, label in lines:
        if label.strip() == "parent: Process() called":
            rounds.append([])
        if rounds:
            rounds[-1].append((int(stamp), int(pid), int(faults), int(cpu), label.strip()))
    offsets: dict[str, list[float]] = collections.defaultdict(list)
    # Page faults and CPU of the process that reached a point, since its previous point.
    own_faults: dict[str, list[int]] = collections.defaultdict(list)
    own_cpu: dict[str, list[float]] = collections.defaultdict(list)
    # A process seen first after the warm-up rounds was forked then: its first
    # point counts from its fork (page faults and thread CPU start at zero).
    last: dict[int, tuple[int, int]] = {}
    for index, points in enumerate(rounds):
        start = points[0][0]
        for stamp, pid, faults, cpu, label in sorted(points):
            if index >= 5:
                offsets[label].append((stamp - start) / 1000)
                before = last.get(pid, (0, 0))
                own_faults[label].append(faults - before[0])
                own_cpu[label].append((cpu - before[1]) / 1000)
            last[pid] = faults, cpu
    gap_option = f" --gap {args.gap:g}" if args.gap else ""
    print(f"# python benchmarks/bench_start_breakdown.py --runs {args.runs}{gap_option}   "
          f"(load average {load:.2f} -> {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)")
    pause = f"each after {args.gap:g} ms" if args.gap else "back to back"
    print("\nUntraced, same run, median µs of create + start + join (each library in "
          f"interpreters of its own, three turns each; its methods take turns, {pause}):")
    for label, values in untraced.items():
        print(f"  {label:<42} {statistics.median(values) * 1e6:>6.0f}")
    print("\nA loop of starts of one method (blocks of 50, each in a fresh interpreter of its "
          "library after a warm-up block, alternated), µs a start:")
    print(f"  {'':<24} {'median':>7} {'mean':>7} {'CPU':>7}")
    for label, (walls, used, starts) in loop.items():
        print(f"  {label:<24} {statistics.median(walls) * 1e6:>7.0f} "
              f"{statistics.fmean(walls) * 1e6:>7.0f} {used / starts * 1e6:>7.0f}")
    print("\nTraced (each point ~6 µs), median µs from Process() on; step: from the point above;"
          "\nfaults, CPU: the page faults and CPU µs of that process since its previous point")
    print(f"| {'point':<36} | {'at µs':>7} | {'step µs':>7} | {'faults':>6} | {'CPU µs':>6} "
          f"| {'seen in':>7} |")
    print(f"|{'-' * 38}|{'-' * 8}:|{'-' * 8}:|{'-' * 7}:|{'-' * 7}:|{'-' * 8}:|")
    previous = 0.0
    wanted = len(rounds[5:])
    for label, values in sorted(offsets.items(), key=lambda kv: statistics.median(kv[1])):
        at = statistics.median(values)
        faults = f"{statistics.median(own_faults[label]):.0f}" if own_faults[label] else ""
        cpu = f"{statistics.median(own_cpu[label]):.0f}" if own_cpu[label] else ""
        print(f"| {label:<36} | {at:>7.0f} | {at - previous:>7.0f} | {faults:>6} | {cpu:>6} "
              f"| {100 * len(values) / max(wanted, 1):>6.0f}% |")
        previous = at
    return 0


if __name__ == "__main__":
    sys.exit(main())
