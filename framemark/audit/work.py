"""What one worker (a process of the local engine, a Ray actor) does with one task: the limits, the verdict,
the thumbnail, and a row that says so when any of it fails.

A worker loads through the runtime once (:class:`Auditor`: ``resolved.load()``, model and classifier loaded, the
ledger opened on first need) and calls ``runtime.verify(path)`` per file; nothing here loads a key, a model or a
ledger by itself. Limits come first, from ``stat`` and the container headers, so a file over a limit is never
decoded.
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


class Auditor:
    """The verifier of one worker process or Ray actor: one runtime, loaded once, with the worker's torch
    threads (``config.threads``; None: all of this machine's cores)."""

    def __init__(self, config: AuditConfig):
        self.config = config
        resolved = config.resolved
        threads = config.threads or max(1, os.cpu_count() or 1)
        self.runtime = replace(resolved, options=replace(resolved.options, threads=threads)).load()

    def audit(self, task: Task) -> Outcome:
        """The outcome of ``task``; a bug of ours on an odd file is that file's row, never the batch's end."""
        try:
            return audit_file(task, self.config, self.runtime)
        except Exception as exc:  # noqa: BLE001 - the row carries it
            return crash_outcome(task, f"internal error while checking this file: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self.runtime.close()


def audit_file(task: Task, config: AuditConfig, runtime) -> Outcome:
    """Check one file: limits first (size, then resolution and duration from the headers), then verify."""
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
            problem = limits.video_problem(info.width, info.height, info.duration_s)
    if problem is not None:
        verdict = Verdict.not_checked(task.path, [f"not checked: {problem}"])
    else:
        verdict = runtime.verify(task.path)
    thumb, thumb_s = None, 0.0
    if config.thumbnails and verdict.checked:
        t = time.perf_counter()
        thumb = thumbnail(task.path)
        thumb_s = time.perf_counter() - t
    timing = {"hash_s": task.hash_s, "probe_s": round(probe_s, 4), "thumbnail_s": round(thumb_s, 4),
              "cpu_s": round(time.process_time() - cpu_started, 3)}  # CPU time of the worker, all its threads
    row = audit_row(verdict, sha256=task.sha256, size=task.size, duration_s=duration_s,
                    elapsed_s=round(time.perf_counter() - started, 3), mtime_ns=task.mtime_ns, label=task.label,
                    audited_at=utc_now(), timing=timing, video=video)
    return Outcome(row, thumb)


def thumbnail(path: str) -> bytes | None:
    """A JPEG of the middle of the first frames, longest side THUMBNAIL_SIZE; None if the file does not decode."""
    try:
        frames = media.read_video(path, max_frames=9).frames
        return media.jpeg(frames[len(frames) // 2], longest=THUMBNAIL_SIZE, quality=THUMBNAIL_QUALITY)
    except FramemarkError:
        return None


def crash_outcome(task: Task, message: str) -> Outcome:
    """The row for a file whose worker died or raised: the batch goes on, the row says what happened."""
    row = audit_row(Verdict.not_checked(task.path, [message]), sha256=task.sha256, size=task.size,
                    mtime_ns=task.mtime_ns, label=task.label, audited_at=utc_now())
    return Outcome(row)
