"""The model side of one worker process: loaded once, used by one thread, behind a bounded queue.

A diffusers pipeline is not safe to use from two threads at once (the sampler's scheduler keeps state), so each
worker process runs every model job (verify, generate, match by content) on a single thread that owns the model,
the watermark key, the signer and a ledger connection; torch parallelises each job over the process's cores.
The event loop never runs model code: it awaits the job's future. In front of the thread is a counter of jobs
admitted (running + waiting); at ``queue_limit`` the next request is refused at once with :class:`Busy` (the app
answers 503 with ``Retry-After``), so no connection ever waits on an unbounded queue. Throughput scales with
worker processes (`serve --workers`), each with its own model.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .settings import Settings


class Busy(Exception):
    """The queue is full; ``retry_after`` is a guess, in seconds, at when a slot frees up."""

    def __init__(self, retry_after: int, pending: int, limit: int):
        super().__init__(f"the verification queue is full ({pending} of {limit} jobs); retry in {retry_after} s")
        self.retry_after, self.pending, self.limit = retry_after, pending, limit


class Unavailable(Exception):
    """What a job needs is not configured here (no watermark key, no signer): a message for the client."""


@dataclass
class ModelState:
    """What the model thread owns. Only that thread touches ``pipe`` and ``ledger``."""

    settings: Settings
    key: object | None = None
    pipe: object | None = None
    model: dict | None = None
    signer: object | None = None
    anchors: tuple[bytes, ...] = ()
    ledger: object | None = None
    notes: list[str] = field(default_factory=list)

    def ledger_path(self) -> Path:
        from framemark import ledger as ledgers

        return Path(self.settings.ledger_path) if self.settings.ledger_path else ledgers.default_path()

    def reading_ledger(self):
        """The ledger to resolve payloads in, when there is one (opened on first need: another process may create
        it after this one started)."""
        if self.ledger is None and self.ledger_path().exists():
            from framemark.ledger import Ledger

            self.ledger = Ledger(self.ledger_path(), create=False)
        return self.ledger

    def writing_ledger(self):
        if self.ledger is None:
            from framemark.ledger import Ledger

            self.ledger = Ledger(self.ledger_path())
        return self.ledger


def load_state(settings: Settings) -> ModelState:
    """Key, trust anchors, signer and model, as `framemark verify` and `generate` load them. Raises
    FramemarkError for unusable material (the server then refuses to start, in words)."""
    import torch

    from framemark import credentials
    from framemark import keys as keystore
    from framemark.generator import pipeline

    threads = settings.threads or max(1, (os.cpu_count() or 1) // max(1, settings.workers))
    torch.set_num_threads(threads)
    state = ModelState(settings=settings)
    key_file = Path(settings.key_file) if settings.key_file else None
    if key_file is not None or keystore.watermark_key_path().exists():
        state.key = keystore.load_watermark_key(key_file)
        state.pipe = pipeline.load_pipeline(settings.model_dir)
        state.model = pipeline.model_identity(state.pipe)
    else:
        state.notes.append(f"no watermark key at {keystore.watermark_key_path()}: uploads are checked for C2PA "
                           f"manifests only and /v1/generate is off (run `framemark keys init`)")
    state.anchors = tuple(credentials.trust_anchors()
                          + [credentials.read_trust_file(Path(p)) for p in settings.trust_files])
    paths = credentials.CredentialPaths.of()
    if paths.signer_chain.exists() and paths.signer_key.exists():
        state.signer = credentials.load_signer()
    elif state.key is not None:
        state.notes.append("no C2PA signing credentials: /v1/generate is off (run `framemark keys init`)")
    return state


class Engine:
    """One worker process's model thread and the bounded queue in front of it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.limit = max(1, settings.queue_limit)
        self.state: ModelState | None = None
        self._pending = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="framemark-model")
        self._durations: deque[float] = deque(maxlen=32)
        self.jobs_done = 0

    # ---------------------------------------------------------------------------------------------- lifecycle
    def load(self) -> ModelState:
        """Load the model on the model thread (blocking); called once at start-up."""
        self.state = self._executor.submit(load_state, self.settings).result()
        return self.state

    def close(self) -> None:
        def _close():
            if self.state is not None and self.state.ledger is not None:
                self.state.ledger.close()
                self.state.ledger = None
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
        """Run ``job(state, *args)`` on the model thread; admits first unless the caller already did."""
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
            return job(self.state, *args)
        finally:
            self._durations.append(time.perf_counter() - started)
            self.jobs_done += 1


# -------------------------------------------------------------------------------------------------- the jobs
# Each runs on the model thread with the ModelState as first argument.

def verify_job(state: ModelState, path: str, first_frame: bool) -> dict:
    from framemark.detect import verify as verifier

    s = state.settings
    result = verifier.verify_file(path, key=state.key, pipe=state.pipe, fpr=s.fpr, steps=s.steps,
                                  max_frames=s.max_frames, trust_anchors=state.anchors,
                                  ledger=state.reading_ledger())
    if first_frame and result.get("verdict") is not None:
        result["first_frame"] = first_frame_data_url(path)
    return result


def first_frame_data_url(path: str, longest: int = 480) -> str | None:
    """The first frame as a JPEG data URL (longest side at most ``longest``), for the web page."""
    import cv2

    from framemark import media
    from framemark.errors import FramemarkError

    try:
        frame = media.read_video(path, max_frames=1).frames[0]
    except FramemarkError:
        return None
    h, w = frame.shape[:2]
    scale = longest / max(h, w)
    if scale < 1:
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii") if ok else None


def watermark_job(state: ModelState, path: str) -> dict:
    """The watermark part of a verification (for /matches/byContent): detected, payload, key id, p-value."""
    from framemark.detect import verify as verifier

    if state.key is None:
        raise Unavailable("this service has no watermark key, so it cannot read watermarks")
    import inspect

    s = state.settings
    # the passive classifier says nothing about the watermark: skip it where verify_file has one
    extra = {"classifier": None} if "classifier" in inspect.signature(verifier.verify_file).parameters else {}
    result = verifier.verify_file(path, key=state.key, pipe=state.pipe, fpr=s.fpr, steps=s.steps,
                                  max_frames=s.max_frames, trust_anchors=state.anchors, ledger=None, **extra)
    return {"verdict": result.get("verdict"), "watermark": result.get("watermark"), "errors": result.get("errors")}


def generate_job(state: ModelState, request: dict, out_path: str) -> dict:
    from framemark.generator import emit, pipeline

    if state.key is None or state.signer is None or state.pipe is None:
        raise Unavailable("generation is off on this service: it needs a watermark key and C2PA signing "
                          "credentials (`framemark keys init` on the server)")
    req = pipeline.GenerationRequest(prompt=request["prompt"], seed=request["seed"], steps=request["steps"],
                                     frames=request["frames"])
    clip = emit.emit_clip(state.pipe, req, out_path, key=state.key, signer=state.signer,
                          prompt_policy=request.get("prompt_policy", "hash"), ledger=state.writing_ledger())
    return clip.to_dict()
