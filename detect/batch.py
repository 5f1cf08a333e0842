"""Verifying several clips at once: their inversions in one batch, for a GPU.

On a GPU one 128-pixel clip's VAE encode and inversion leave most of the chip idle (the time goes to launching
small kernels), so a worker that holds several uploads gains by running their inversions together. The search
is :func:`~.recovery.recover_watermark`'s, clip by clip: the same plan (:func:`~.recovery.candidates`: every
(model, hypothesis) pair in order), the same stop at the first detection, the same Bonferroni total and the same
:func:`~.recovery.conclude`. Only the work is grouped: each round, every clip still searching offers its next
pair; pairs of one model and one generated shape are VAE-encoded (``encode_many``) and inverted in one call, in
chunks of at most ``batch_size`` clips (and :data:`MAX_BATCH_LATENT` latent elements, so a batch of large clips
never asks for more memory than one clip of a real model at 480p does); each clip's extraction is tested on its
own, and the clips that did not detect move on to their next pair.

A batch changes the order of floating-point sums inside the convolutions, nothing else. In fp32 the recovered
noise agrees with one-at-a-time inversion to ~1e-6 (the embedded model, CPU), and the test reads only its signs,
so the :class:`~.recovery.Recovery` is the same unless an element lies within rounding of zero
(``tests/test_batch.py`` checks marked, unmarked and edited clips). In bf16 or fp16 the same reordering is
rounded to 8 or 11 bits at every layer and shows: on the CPU in bf16, 1.1 % of the recovered signs of four marked
clips differed between batched and single inversion and the p-values moved (log10 p about -27 to -46 either
way), while every detection and payload agreed. Batching then changes a p-value as much as running on another
device does; use fp32 where rows must equal one-at-a-time rows bit for bit.

:func:`verify_files` is ``verify_file`` for a list of paths with the watermark recovery batched; the audit's GPU
workers and ``verify --batch-size`` use it through ``Runtime.verify_many``. The recovery half needs no PyAV or
c2pa (files are read only by :func:`verify_files`), so it runs on a GPU machine without them, as
``bench/batch_verify.py`` does.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from framemark.watermark import WatermarkKey

from . import DEFAULT_FPR, DEFAULT_INVERSION_STEPS
from .alignment import GenerationShape, prepare
from .recovery import (MAX_BATCH_LATENT, Candidate, EntryReadings, Reading, Recovery, as_models, conclude,
                       count_tests, latent_elements, polish, refine_tests, search_plan)
from .verdict import Verdict

# Clips per inversion call when the caller does not say, on a GPU (bench/batch_verify.py measures 1 to 32).
DEFAULT_BATCH_SIZE = 16
# verify_files holds at most this many bytes of decoded frames waiting for their batch's recovery.
MAX_HELD_BYTES = 2 << 30


def default_batch_size(device) -> int:
    """Clips per batch when the user does not say: :data:`DEFAULT_BATCH_SIZE` on a CUDA device, where batching
    pays; 1 elsewhere (on the CPU four inversions in one batch took 7 % less time than one by one: not worth
    holding several decoded clips for)."""
    return DEFAULT_BATCH_SIZE if str(device).startswith("cuda") else 1


@dataclass
class _Search:
    """One clip's place in the search: its frames, its plan and the readings so far (recover_watermark's loop,
    unrolled so that many clips can advance together)."""

    frames: np.ndarray
    plan: list[Candidate]
    readings: list[Reading] = field(default_factory=list)
    pair: int = 0  # the next pair of the plan to read

    @property
    def searching(self) -> bool:
        return self.pair < len(self.plan) and not any(r.extraction.detected for r in self.readings)

    @property
    def next_pair(self) -> Candidate:
        return self.plan[self.pair]

    def model_input(self) -> np.ndarray:
        """The frames for the next pair's encoder (``recovery.encode_hypothesis`` without the encode)."""
        entry = self.next_pair
        return prepare(self.frames[entry.segment.start:entry.segment.stop], entry.hypothesis)


def recover_watermark_batch(models, key: WatermarkKey, clips: list[np.ndarray], fpr: float = DEFAULT_FPR,
                            steps: int = DEFAULT_INVERSION_STEPS, batch_size: int = DEFAULT_BATCH_SIZE,
                            rates: list[float | None] | None = None) -> list[Recovery]:
    """``recover_watermark(models, key, frames, fpr, steps, fps)`` for each clip of ``clips`` (uint8 (T,H,W,3)
    arrays, any shapes) and its frame rate in ``rates`` (None: the whole clip only), in order, with the encodes and
    inversions of clips that share a model and a generated shape run together, at most ``batch_size`` at a
    time."""
    rates = list(rates) if rates is not None else [None] * len(clips)
    models = as_models(models)
    if not models:
        raise ValueError("recover_watermark_batch needs at least one model")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    searches = [_Search(frames, search_plan(models, frames, fps)) for frames, fps in zip(clips, rates)]
    while True:
        groups: dict[tuple[int, GenerationShape], list[_Search]] = {}
        for search in searches:
            if search.searching:
                entry = search.next_pair
                groups.setdefault((entry.model, entry.hypothesis.shape), []).append(search)
        if not groups:
            break
        for (index, shape), group in groups.items():
            model = models[index]
            per_call = max(1, min(batch_size, MAX_BATCH_LATENT // latent_elements(model, shape)))
            for start in range(0, len(group), per_call):
                _advance(model, key, group[start:start + per_call], steps, fpr)
    return [conclude(models, s.plan, s.readings, polish(models, key, s.frames, s.plan, s.readings, steps, fpr))
            for s in searches]


def _advance(model, key: WatermarkKey, chunk: list[_Search], steps: int, fpr: float) -> None:
    """Read the next pair of each clip of ``chunk`` (one model, one generated shape) through
    ``recovery.EntryReadings``, the steps ``recover_watermark`` takes for one: the VAE encodes in one call, each
    clip's first look tested on its own, then the inversions of the clips it leaves undecided in one call; a crop
    that shows a trace is refined clip by clip (rare on unmarked clips, and its readings depend on each other)."""
    latents = model.autoencoder.encode_many([s.model_input() for s in chunk])
    entries = [EntryReadings(model, key, s.pair, s.next_pair.hypothesis, count_tests(s.plan), fpr) for s in chunk]
    undecided = [i for i, entry in enumerate(entries) if entry.look(latents[i:i + 1])]
    if undecided:
        z_hat = model.estimate_noise(latents[undecided], steps).cpu()
        for row, i in enumerate(undecided):
            entries[i].take_inversion(z_hat[row:row + 1])
    for search, entry in zip(chunk, entries):
        segment = search.next_pair.segment
        search.readings += entry.refine(search.frames[segment.start:segment.stop], refine_tests(search.plan), steps)
        search.pair += 1


# ------------------------------------------------------------------------------------------------ files

def verify_files(paths: list[str | os.PathLike], *, key: WatermarkKey | None, models=(), trust_anchors=(),
                 ledger=None, classifier=None, settings=None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> list[Verdict]:
    """``verify_file`` for each of ``paths``, in order, with their watermark recoveries batched
    (:func:`recover_watermark_batch`) between its two halves (``verify.open_file``, ``verify.finish``). Never
    raises for a bad file: its verdict says what went wrong, and the others are unaffected. Decoded clips wait for
    their batch up to :data:`MAX_HELD_BYTES` of frames; a verdict's ``timing.watermark_s`` is its share of its
    batch's recovery time."""
    from .verify import VerifySettings, finish, open_file

    settings = settings or VerifySettings()
    verdicts: list[Verdict | None] = [None] * len(paths)
    waiting: list[tuple[int, object]] = []  # (index, verify.OpenedFile)
    held = 0

    def done(i: int, opened, recovery, watermark_s: float) -> None:
        verdicts[i] = finish(opened, recovery, watermark_s, ledger=ledger, classifier=classifier,
                             trust_anchors=trust_anchors)

    def flush() -> None:
        nonlocal held
        if not waiting:
            return
        started = time.perf_counter()
        recoveries = recover_watermark_batch(models, key, [o.video.frames for _, o in waiting], fpr=settings.fpr,
                                             steps=settings.steps, batch_size=batch_size,
                                             rates=[o.video.fps for _, o in waiting])
        share = round((time.perf_counter() - started) / len(waiting), 4)
        for (i, opened), recovery in zip(waiting, recoveries):
            done(i, opened, recovery, share)
        waiting.clear()
        held = 0

    for i, path in enumerate(paths):
        opened = open_file(path, key, trust_anchors, settings)
        if opened.video is None:
            verdicts[i] = opened.verdict
        elif key is None:
            done(i, opened, None, 0.0)
        else:
            waiting.append((i, opened))
            held += opened.video.frames.nbytes
            if held >= MAX_HELD_BYTES:
                flush()
    flush()
    return verdicts
