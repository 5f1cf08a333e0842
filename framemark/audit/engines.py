"""The local engine: N worker processes of this machine, crash-isolated, yielding outcomes as they finish.

An engine is any ``(tasks, config) -> iterator of Outcome``; :func:`local_outcomes` is this machine's,
``ray_engine.ray_outcomes`` a Ray cluster's. The driver hands a process its next file only when it reports the
last one done, so it always knows which file a process is on: if the process dies (a decoder crash, the OOM
killer), that file gets a row saying so and a fresh process takes over.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing.connection import wait as wait_for

from framemark.errors import FramemarkError

from .config import AuditConfig
from .errors import AuditError
from .plan import Task
from .work import Auditor, Outcome, crash_outcome

Engine = Callable[[list[Task], AuditConfig], Iterator[Outcome]]


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))


def local_outcomes(tasks: list[Task], config: AuditConfig, workers: int = 1) -> Iterator[Outcome]:
    """Run ``tasks`` on ``workers`` processes of this machine; yield each outcome as it finishes.

    Each process loads the runtime once. ``workers=0`` runs in this process (no isolation; for library use and
    profiling).
    """
    if not tasks:
        return
    if workers == 0:
        auditor = Auditor(config)
        try:
            for task in tasks:
                yield auditor.audit(task)
        finally:
            auditor.close()
        return
    if config.threads is None:
        config = replace(config, threads=threads_per_worker(workers))
    ctx = multiprocessing.get_context("spawn")
    pending = list(reversed(tasks))
    pool: list[_Worker] = []
    startup_failures = 0
    try:
        pool = [_Worker(ctx, config) for _ in range(min(workers, len(tasks)))]
        while pending or any(w.task is not None for w in pool):
            ready = set(wait_for([w.conn for w in pool] + [w.proc.sentinel for w in pool], timeout=5.0))
            for i, w in enumerate(pool):
                message = None
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        message = w.conn.recv() if w.conn.poll() else None
                    except (EOFError, OSError):
                        message = None
                if message is None and w.proc.is_alive():
                    continue
                if message is None:  # the process is gone
                    if w.task is not None and w.started:
                        yield crash_outcome(w.task, f"the worker process died while checking this file (exit code "
                                                    f"{w.proc.exitcode}); the file may crash the decoder")
                    else:  # died starting up or idle: whatever it was handed goes to another worker
                        if w.task is not None:
                            pending.append(w.task)
                        startup_failures += 1
                        if startup_failures > 2 * workers:
                            raise AuditError(f"worker processes keep dying at start (exit code {w.proc.exitcode})")
                    w.close()
                    pool[i] = w = _Worker(ctx, config)
                    continue
                kind, payload = message
                if kind == "init-failed":
                    raise AuditError(f"a worker could not start: {payload}")
                if kind == "started":
                    w.started = True
                    continue
                if kind == "done":
                    w.task, w.started = None, False
                    yield payload
                if pending and w.task is None:
                    w.task, w.started = pending.pop(), False
                    try:
                        w.conn.send(w.task)
                    except OSError:  # it just died: the next round finds out and hands the task on
                        pass
    finally:
        for w in pool:
            w.close()


class _Worker:
    """The driver's handle on one worker process: its pipe, and the task it was last handed."""

    def __init__(self, ctx, config: AuditConfig):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(config, child), daemon=True)
        self.proc.start()
        child.close()
        self.task: Task | None = None
        self.started = False  # the worker acknowledged self.task: if it dies now, the file is to blame

    def close(self) -> None:
        try:
            if self.proc.is_alive():
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        self.conn.close()


def _worker_main(config: AuditConfig, conn) -> None:
    try:
        auditor = Auditor(config)
    except BaseException as exc:  # noqa: BLE001 - reported to the driver in words
        conn.send(("init-failed", str(exc) if isinstance(exc, FramemarkError) else f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    try:
        while True:
            try:
                task = conn.recv()
            except (EOFError, KeyboardInterrupt):
                break
            if task is None:
                break
            conn.send(("started", None))
            conn.send(("done", auditor.audit(task)))
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        auditor.close()
