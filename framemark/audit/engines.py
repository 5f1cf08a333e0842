"""The local engine: N worker processes of this machine, crash-isolated, yielding outcomes as they finish.

An engine is any ``(tasks, config) -> iterator of Outcome``; :func:`local_outcomes` is this machine's,
``ray_engine.ray_outcomes`` a Ray cluster's. The driver hands a process its next file (or, for a worker on a GPU,
its next batch of files) only when it reports the last one done, so it always knows which files a process is on:
if the process dies (a decoder crash, the OOM killer) on one file, that file gets a row saying so and a fresh
process takes over; if it dies on a batch, the batch's files are tried again one at a time, so that only the
file to blame gets that row. Each worker has its own device (:func:`worker_devices`: one worker per GPU).
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
from .work import Auditor, Outcome, crash_outcome, on_device

Engine = Callable[[list[Task], AuditConfig], Iterator[Outcome]]


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))


def worker_devices(device: str, devices: list[str] | None = None, workers: int | None = None,
                   visible_gpus: int = 0) -> list[str]:
    """The device of each local worker: ``devices`` (``--devices cuda:0,cuda:1``) in turn; ``cuda`` alone means
    every visible GPU (``visible_gpus`` of them: ``cuda:0`` ... ``cuda:N-1``); any other device is every
    worker's. ``workers`` defaults to one per device listed (one on the CPU, as ever); more workers than devices
    share them in turn. AuditError when ``cuda`` is asked for and no GPU is visible."""
    if devices:
        listed = list(devices)
    elif device == "cuda":
        if visible_gpus < 1:
            raise AuditError("--device cuda: torch sees no CUDA GPU on this machine")
        listed = [f"cuda:{i}" for i in range(visible_gpus)]
    else:
        listed = [device]
    return [listed[i % len(listed)] for i in range(workers or len(listed))]


def batches(tasks: list[Task], size: int) -> list[list[Task]]:
    """``tasks`` in order, ``size`` at a time (the last batch may be shorter)."""
    size = max(1, size)
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def local_outcomes(tasks: list[Task], config: AuditConfig, workers: int = 1, *, devices: list[str] | None = None,
                   batch_size: int = 1) -> Iterator[Outcome]:
    """Run ``tasks`` on ``workers`` processes of this machine; yield each outcome as it finishes.

    Each process loads the runtime once, on its device: ``devices[i]`` for worker ``i`` (default: the runtime's
    own device for all; :func:`worker_devices` makes the list, whose length then gives ``workers``).
    ``batch_size``: files a worker checks at once, their inversions batched (for GPUs; 1: one at a time, as on
    the CPU). ``workers=0`` runs in this process (no isolation; for library use and profiling).
    """
    if not tasks:
        return
    if workers == 0:
        auditor = Auditor(config)
        try:
            for batch in batches(tasks, batch_size):
                yield from auditor.audit_batch(batch)
        finally:
            auditor.close()
        return
    if devices:
        workers = len(devices)
    if config.threads is None:
        config = replace(config, threads=threads_per_worker(workers))
    pending = list(reversed(batches(tasks, batch_size)))
    slots = [on_device(config, devices[i]) if devices else config for i in range(min(workers, len(pending)))]
    ctx = multiprocessing.get_context("spawn")
    pool: list[_Worker] = []
    startup_failures = 0
    try:
        pool = [_Worker(ctx, slot) for slot in slots]
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
                    if w.task is not None and w.started and len(w.task) == 1:
                        yield crash_outcome(w.task[0], f"the worker process died while checking this file (exit "
                                                       f"code {w.proc.exitcode}); the file may crash the decoder")
                    elif w.task is not None and w.started:  # one of the batch is to blame: find it, one by one
                        pending.extend([task] for task in reversed(w.task))
                    else:  # died starting up or idle: whatever it was handed goes to another worker
                        if w.task is not None:
                            pending.append(w.task)
                        startup_failures += 1
                        if startup_failures > 2 * workers:
                            raise AuditError(f"worker processes keep dying at start (exit code {w.proc.exitcode})")
                    w.close()
                    pool[i] = w = _Worker(ctx, slots[i])
                    continue
                kind, payload = message
                if kind == "init-failed":
                    raise AuditError(f"a worker could not start: {payload}")
                if kind == "started":
                    w.started = True
                    continue
                if kind == "done":
                    w.task, w.started = None, False
                    yield from payload
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
    """The driver's handle on one worker process: its pipe, and the batch of tasks it was last handed."""

    def __init__(self, ctx, config: AuditConfig):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(config, child), daemon=True)
        self.proc.start()
        child.close()
        self.task: list[Task] | None = None  # the batch it was handed (one task on the CPU)
        self.started = False  # the worker acknowledged self.task: if it dies now, its files are to blame

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
            conn.send(("done", auditor.audit_batch(task)))
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        auditor.close()
