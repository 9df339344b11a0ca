"""Layer 5: the task engine behind ``procesos.Executor`` and ``procesos.Pool``.

How a task and its result travel (``Engine`` and its thread are in :mod:`._dispatcher`)::

  |================================ parent ================================|= workers =|

  caller threads        the books (Books.lock)         dispatcher thread
  +-----------+ submit  +---------------------+        +----------------+  RUN   +--------+
  | Executor, |=======> | pending: Calls      | fill   | one poll() on  | =====> | worker |
  | Pool      | map_job | jobs: MapJobs       | =====> | result pipes,  | outbox | #1..n  |
  |           |=======> | retry: Batches      |batches | sentinels and  | + pipe |        |
  |           |         | per WorkerHandle:   |        | a wake pipe    |        |  runs  |
  |           |         |  outstanding Batches| <===== |                | <===== | items  |
  |           |         +---------------------+ books  +----------------+ DONE,  |        |
  |           |                                          | deliver        READY, |        |
  |           | <======= futures (Call), MapJob pieces <=+ (no lock)      RETIRE,|        |
  |           |          (ResultIterator, AsyncResult)                    ...    |        |
  |           |                                                                  |        |
  |           | == direct path: submit() writes RUN to an idle worker; ==>       |        |
  |           | <= result() reads that worker's DONE itself (._direct)  ==       |        |
  +-----------+                                                                  +--------+
                      progress slots and result logs (shared memory) <===========  written
                      read by ._faults when a worker dies or stays on one item      by each

* ``submit()`` (:mod:`._sending`) finds an idle worker: writes the call to
  it at once under the lock and lends it the worker's pipe (:mod:`._direct`);
  else queues a :class:`~._jobs.Call` in ``pending`` and wakes the
  dispatcher. ``map_job()`` adds a :class:`~._jobs.MapJob`, whose input the
  dispatcher reads in chunks.
* The dispatcher, each round: reads what arrived (no lock), reaps dead
  workers (no lock), updates the books (:mod:`._receiving`) and sends batches
  (under the lock: ``Sender.fill`` gives each worker one batch, one more
  ahead when batches are quick), then hands results to futures and jobs (no
  lock, so that callbacks may submit). Workers are started by
  :mod:`._starting`, and the engine ends through :mod:`._ending`.
* A worker (:mod:`._worker`) runs a batch's items in order, writes the item
  it runs in its progress slot and, in a tracked batch, each outcome in its
  result log (:mod:`._results_log`), and sends DONE frames (:mod:`._messages`).
* Faults (:mod:`._faults`): a worker's death is settled from its slot and its
  log (the culprit fails or is retried, finished items are delivered, the
  others are sent again); timeouts and interrupted maps kill the worker.

Locks, in the only order they may be taken::

  Books.lock  ->  MapJob.cond     (fill reads a job's back-pressure; a job's input ends)
  Books.lock  ->  a future's lock (a queued call starts; shutdown cancels the queued ones)
  Books.lock  ->  a worker process's popen lock (kill, poll)

``Books.lock`` is the engine's one lock (``Engine.lock`` names it too): the
collaborators over the books (:mod:`._sending`, :mod:`._receiving`,
:mod:`._starting`, :mod:`._ending`, :mod:`._faults`) take no lock of their own.

``MapJob.cond`` and a future's lock are never held together, and neither is
held when the engine's lock is taken; ``Engine.wake()`` takes no lock. A
future's callbacks and a map's results are handed over after the lock is
released (the round's deliveries, ``Books.deferred``); a map's input
iterator is read under it (``Sender.fill``), so an iterator that waits on the
same executor waits for ever. No wait for a worker's exit happens under the
lock; one bounded wait does: a dead worker's replacement is started there
(``Faults.on_death``), and under the zygote a start waits for its answer (at
most 60 s).

Modules: :mod:`._api` (options, engines started and ended), :mod:`._states`
(every state and message kind, for both sides), :mod:`._messages` (the wire
format), :mod:`._worker` (the worker loop), :mod:`._workers` (the parent's
handle on a worker and its transitions), :mod:`._books` (the engine's
state, work and workers), :mod:`._dispatcher` (the engine and its
dispatcher thread), :mod:`._sending` (submit, the function cache, batches
sent), :mod:`._receiving` (messages settled in the books),
:mod:`._starting` (worker starts), :mod:`._ending` (shutdown, terminate, a
break), :mod:`._direct` (a caller reading its own result), :mod:`._faults`
(deaths, timeouts, retries), :mod:`._jobs` (calls, maps, batches),
:mod:`._batching` (chunk sizes), :mod:`._progress`, :mod:`._stats`,
:mod:`._crash` (why a worker died), :mod:`._threads` (thread limits),
:mod:`._results_log`, :mod:`._future` (``LightFuture``).

The names below load :mod:`._api` on first use: a worker imports
:mod:`._worker` and what it needs, never the parent's machinery, so that it
starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import (
        Engine,
        MapJob,
        WorkerStats,
        create_engine,
        default_workers,
    )

__all__ = ["Engine", "MapJob", "WorkerStats", "create_engine", "default_workers"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _api

        return getattr(_api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
