"""What one worker (a process of the local engine, a Ray actor) does with a task or a batch of tasks: the limits,
the verdict, the thumbnail, and a row that says so when any of it fails.

A worker loads through the runtime once (:class:`Auditor`: ``resolved.load()``, model and classifier loaded, the
ledger opened on first need) on its own device (:func:`on_device`: one worker per GPU), and calls
``runtime.verify(path)`` per file, or, for a batch (a worker on a GPU), ``runtime.verify_many(paths)``, which
inverts the batch's clips together and gives the same verdicts; nothing here loads a key, a model or a ledger by
itself. Limits come first, from ``stat`` and the container headers, so a file over a limit is never decoded; the
runtime then decodes what is within them as `verify` does (``detect.verify.decode``: bounded in frames and bytes,
every decoded frame held to the same limits), so a worker's memory does not follow an upload's resolution.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

from framemark import media
from framemark.detect.verdict import Verdict
from framemark.errors import FramemarkError

from .config import AuditConfig
from .plan import Task
from .rows import audit_row, utc_now

THUMBNAIL_SIZE = 112  # longest side, pixels
THUMBNAIL_QUALITY = 80


@dataclass
class Outcome:
    """A worker's answer for one task: the row, and a small JPEG thumbnail when the file decoded."""

    row: dict
    thumbnail: bytes | None = None


def on_device(config: AuditConfig, device: str) -> AuditConfig:
    """``config`` for a worker that runs the model on ``device`` (the rest of the runtime is the same)."""
    options = config.resolved.options
    if options.device == device:
        return config
    return replace(config, resolved=replace(config.resolved, options=replace(options, device=device)))


class Auditor:
    """The verifier of one worker process or Ray actor: one runtime, loaded once, with the worker's torch
    threads (``config.threads``; None: all of this machine's cores) on the worker's device."""

    def __init__(self, config: AuditConfig):
        self.config = config
        resolved = config.resolved
        threads = config.threads or max(1, os.cpu_count() or 1)
        # the runtime refuses and bounds by the audit's limits, whatever the options it was resolved with said
        options = replace(resolved.options, threads=threads, limits=config.limits)
        self.runtime = replace(resolved, options=options).load()

    def audit(self, task: Task) -> Outcome:
        """The outcome of ``task``; a bug of ours on an odd file is that file's row, never the batch's end."""
        try:
            return audit_file(task, self.config, self.runtime)
        except Exception as exc:  # noqa: BLE001 - the row carries it
            return crash_outcome(task, f"internal error while checking this file: {type(exc).__name__}: {exc}")

    def audit_batch(self, tasks: list[Task]) -> list[Outcome]:
        """The outcomes of ``tasks``, in order, their inversions batched. Should the batch itself fail (a bug of
        ours), each task is checked again on its own, so that only the file to blame gets an error row."""
        if len(tasks) == 1:
            return [self.audit(tasks[0])]
        try:
            return audit_files(tasks, self.config, self.runtime)
        except Exception:  # noqa: BLE001 - found again, and reported on its own file, below
            return [self.audit(task) for task in tasks]

    def close(self) -> None:
        self.runtime.close()


@dataclass
class _Checked:
    """A task after its limits: the problem that stops it (None: verify it), the container facts, and when its
    check began (wall clock and this process's CPU clock)."""

    task: Task
    problem: str | None
    video: dict | None
    duration_s: float | None
    probe_s: float
    started: float
    cpu_started: float


def audit_file(task: Task, config: AuditConfig, runtime) -> Outcome:
    """Check one file: limits first (size, then resolution and duration from the headers), then verify."""
    checked = _limits(task, config)
    verdict = runtime.verify(task.path) if checked.problem is None else _refused(checked)
    return _outcome(checked, verdict, config)


def audit_files(tasks: list[Task], config: AuditConfig, runtime) -> list[Outcome]:
    """:func:`audit_file` for each of ``tasks``, the files within the limits verified in one batch. A row's
    ``elapsed_s`` and ``cpu_s`` count its own limits and thumbnail plus an equal share of the batch."""
    checked = [_limits(task, config) for task in tasks]
    todo = [i for i, c in enumerate(checked) if c.problem is None]
    verdicts: dict[int, Verdict] = {}
    share = (0.0, 0.0)
    if todo:
        started, cpu_started = time.perf_counter(), time.process_time()
        found = runtime.verify_many([checked[i].task.path for i in todo], batch_size=len(todo))
        share = ((time.perf_counter() - started) / len(todo), (time.process_time() - cpu_started) / len(todo))
        verdicts = dict(zip(todo, found))
    return [_outcome(c, verdicts[i], config, batch=(len(todo), *share)) if i in verdicts
            else _outcome(c, _refused(c), config) for i, c in enumerate(checked)]


def _limits(task: Task, config: AuditConfig) -> _Checked:
    started, cpu_started = time.perf_counter(), time.process_time()
    limits = config.limits
    video = None
    duration_s = None
    problem = limits.size_problem(task.size)
    probe_s = 0.0
    if problem is None:
        t = time.perf_counter()
        try:
            info = media.probe_video(task.path)
        except FramemarkError:
            info = None  # verify reports why the file does not read
        probe_s = time.perf_counter() - t
        if info is not None:
            duration_s = round(info.duration_s, 3)
            video = {"width": info.width, "height": info.height, "fps": round(info.fps, 3),
                     "frames": info.num_frames, "codec": info.codec}
            problem = limits.header_problem(info)
    return _Checked(task, problem, video, duration_s, probe_s, started, cpu_started)


def _refused(checked: _Checked) -> Verdict:
    return Verdict.not_checked(checked.task.path, [f"not checked: {checked.problem}"])


def _outcome(checked: _Checked, verdict: Verdict, config: AuditConfig,
             batch: tuple[int, float, float] | None = None) -> Outcome:
    """The row (and thumbnail) of a checked task. ``batch``: the files verified with it, and its share of
    their wall and CPU seconds, counted as its own in place of the clocks since its check began (which ran on
    while the batch's other files were read); the row's ``timing.batch_files`` says how many there were."""
    task = checked.task
    t, cpu_t = time.perf_counter(), time.process_time()
    thumb, thumb_s = None, 0.0
    if config.thumbnails and verdict.checked:
        thumb = thumbnail(task.path)
        thumb_s = time.perf_counter() - t
    if batch is None:
        elapsed_s, cpu_s = time.perf_counter() - checked.started, time.process_time() - checked.cpu_started
    else:
        elapsed_s = checked.probe_s + batch[1] + (time.perf_counter() - t)
        cpu_s = batch[2] + (time.process_time() - cpu_t)
    timing = {"hash_s": task.hash_s, "probe_s": round(checked.probe_s, 4), "thumbnail_s": round(thumb_s, 4),
              "cpu_s": round(cpu_s, 3)}  # CPU time of the worker, all its threads
    if batch is not None:
        timing["batch_files"] = batch[0]
    row = audit_row(verdict, sha256=task.sha256, size=task.size, duration_s=checked.duration_s,
                    elapsed_s=round(elapsed_s, 3), mtime_ns=task.mtime_ns, label=task.label, audited_at=utc_now(),
                    timing=timing, video=checked.video)
    return Outcome(row, thumb)


def thumbnail(path: str) -> bytes | None:
    """A JPEG of the middle of the first frames, longest side THUMBNAIL_SIZE (scaled while decoded: a 4K file costs
    no more than a small one); None if the file does not decode."""
    try:
        frames = media.read_video(path, max_frames=9, fit=(THUMBNAIL_SIZE, THUMBNAIL_SIZE)).frames
        return media.jpeg(frames[len(frames) // 2], longest=THUMBNAIL_SIZE, quality=THUMBNAIL_QUALITY)
    except FramemarkError:
        return None


def crash_outcome(task: Task, message: str) -> Outcome:
    """The row for a file whose worker died or raised: the batch goes on, the row says what happened."""
    row = audit_row(Verdict.not_checked(task.path, [message]), sha256=task.sha256, size=task.size,
                    mtime_ns=task.mtime_ns, label=task.label, audited_at=utc_now())
    return Outcome(row)
