"""The model side of one worker process: one runtime, used by one thread, behind a bounded queue.

A diffusers pipeline is not safe to use from two threads at once (the sampler's scheduler keeps state), so each
worker process loads one :class:`~framemark.runtime.Runtime` (key, model, classifier, signer, ledger connection:
``framemark.runtime`` is the one loader) on a single thread and runs every model job (verify, generate, match by
content) there; torch parallelises each job over the process's cores. The event loop never runs model code: it
awaits the job's future. In front of the thread is a counter of jobs admitted (running + waiting); at
``queue_limit`` the next request is refused at once with :class:`Busy` (the app answers 503 with
``Retry-After``), so no connection ever waits on an unbounded queue. Throughput scales with worker processes
(`serve --workers`), each with its own runtime.
"""

from __future__ import annotations

import asyncio
import base64
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .settings import Settings


class Busy(Exception):
    """The queue is full; ``retry_after`` is a guess, in seconds, at when a slot frees up."""

    def __init__(self, retry_after: int, pending: int, limit: int):
        super().__init__(f"the verification queue is full ({pending} of {limit} jobs); retry in {retry_after} s")
        self.retry_after, self.pending, self.limit = retry_after, pending, limit


class Unavailable(Exception):
    """What a job needs is not configured here (no watermark key, no signer): a message for the client."""


GENERATION_OFF = ("generation is off on this service: it needs a watermark key and C2PA signing credentials "
                  "(`framemark keys init` on the server)")


def load_runtime(settings: Settings):
    """The worker's runtime, as `framemark verify` and `generate` load theirs. Raises FramemarkError for unusable
    material (the server then refuses to start, in words)."""
    from framemark.runtime import resolve

    return resolve(settings.runtime_options(), "serve").load()


class Engine:
    """One worker process's model thread, the runtime it owns, and the bounded queue in front of it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.limit = max(1, settings.queue_limit)
        self.runtime = None
        self._pending = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="framemark-model")
        self._durations: deque[float] = deque(maxlen=32)
        self.jobs_done = 0

    # ---------------------------------------------------------------------------------------------- lifecycle
    def load(self):
        """Load the runtime on the model thread (blocking); called once, when the app is made."""
        self.runtime = self._executor.submit(load_runtime, self.settings).result()
        return self.runtime

    @property
    def model(self):
        """The loaded model (None without a watermark key: C2PA checks only)."""
        return self.runtime.model if self.runtime is not None else None

    def close(self) -> None:
        def _close():
            if self.runtime is not None:
                self.runtime.close()
        try:
            self._executor.submit(_close).result(timeout=30)
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------------------------------------- the queue
    @property
    def pending(self) -> int:
        return self._pending

    def retry_after(self) -> int:
        typical = sum(self._durations) / len(self._durations) if self._durations else 5.0
        return int(min(300, max(1, math.ceil(typical * max(1, self._pending)))))

    def admit(self) -> None:
        """Take a slot or raise Busy."""
        with self._lock:
            if self._pending >= self.limit:
                raise Busy(self.retry_after(), self._pending, self.limit)
            self._pending += 1

    def release(self) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)

    def check_room(self) -> None:
        """Raise Busy when full, without taking a slot (before accepting an upload's body)."""
        with self._lock:
            if self._pending >= self.limit:
                raise Busy(self.retry_after(), self._pending, self.limit)

    async def run(self, job, *args, admitted: bool = False):
        """Run ``job(runtime, *args)`` on the model thread; admits first unless the caller already did."""
        if not admitted:
            self.admit()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._timed, job, args)
        finally:
            self.release()

    def _timed(self, job, args):
        started = time.perf_counter()
        try:
            return job(self.runtime, *args)
        finally:
            self._durations.append(time.perf_counter() - started)
            self.jobs_done += 1


# -------------------------------------------------------------------------------------------------- the jobs
# Each runs on the model thread with the worker's Runtime as first argument.

def verify_job(runtime, path: str, first_frame: bool):
    """The upload's Verdict, and its first frame as a data URL when asked for and the file could be checked."""
    verdict = runtime.verify(path)
    return verdict, (first_frame_data_url(path) if first_frame and verdict.checked else None)


def first_frame_data_url(path: str, longest: int = 480) -> str | None:
    """The first frame as a JPEG data URL (longest side at most ``longest``), for the web page."""
    from framemark import media
    from framemark.errors import FramemarkError

    try:
        frame = media.read_video(path, max_frames=1, fit=(longest, longest)).frames[0]  # scaled while decoded
        jpeg = media.jpeg(frame, longest=longest, quality=85)
    except FramemarkError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def watermark_job(runtime, path: str):
    """The watermark part of a verification (for /matches/byContent): the Verdict without the ledger lookup or
    the passive classifier, which say nothing about the watermark."""
    if runtime.key is None:
        raise Unavailable("this service has no watermark key, so it cannot read watermarks")
    return runtime.verify(path, ledger=False, classifier=False)


def generate_job(runtime, request, out_path: str, prompt_policy: str):
    """Emit one clip (a GenerationRequest) to ``out_path``: marked, signed and recorded in the ledger."""
    if runtime.key is None or runtime.signer is None or runtime.model is None:
        raise Unavailable(GENERATION_OFF)
    return runtime.emit(request, out_path, prompt_policy=prompt_policy)
