"""Recovering the watermark from decoded frames: for each model the clip may come from and each alignment
hypothesis of ``detect.alignment``, VAE encode and sampler inversion of the frames to the initial noise through
the model interface, the keyed test with its Bonferroni correction over every (model, hypothesis) pair, and the
temporal tamper reading of the agreement maps.

Pure computation on frames and a :class:`~framemark.generator.models.VideoModel` (no files, no PyAV, no c2pa), so
it runs wherever torch does: in ``verify``, in the audit's workers, and on a GPU machine for benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from framemark.generator.models import ModelIdentity, VideoModel
from framemark.watermark import Extraction, WatermarkKey, extract

from . import DEFAULT_FPR, DEFAULT_INVERSION_STEPS
from .alignment import Hypothesis, conform_frames, hypotheses, interior_mask, uncrop


@dataclass(frozen=True)
class Recovery:
    """The extraction under the first (model, hypothesis) pair that detected the mark (else the strongest one);
    its p-value is already corrected for every pair the search could have tried. ``model``: the identity
    (``ModelIdentity``) of the model whose inversion gave that extraction; ``models_tried`` of ``models_total``
    models were inverted before the search stopped."""

    extraction: Extraction
    hypothesis: Hypothesis
    hypotheses_tried: int
    hypotheses_total: int
    model: ModelIdentity | None = None
    models_tried: int = 1
    models_total: int = 1


def as_models(models) -> list:
    """A sequence of ``VideoModel`` as a list; one ``VideoModel`` alone is the list of it (the one-model callers:
    benchmarks and lab code)."""
    return [models] if isinstance(models, VideoModel) else list(models)


def candidates(models, num_frames: int, height: int, width: int) -> list[tuple[int, Hypothesis]]:
    """The search plan for a clip of this shape: (model index, hypothesis) pairs, the models in order and each
    model's hypotheses (``detect.alignment.hypotheses``) in its own order. The Bonferroni correction counts every
    pair, so adding a model costs one more term per hypothesis; with one model the plan is that model's
    hypotheses and the p-values are those of a one-model search. A batched verifier reuses the plan."""
    return [(i, hyp) for i, model in enumerate(as_models(models))
            for hyp in hypotheses(model, num_frames, height, width)]


def recover_noise(model, frames: np.ndarray, hyp: Hypothesis, steps: int = DEFAULT_INVERSION_STEPS) -> torch.Tensor:
    """The initial noise z_hat the clip implies under ``hyp``: conform, undo the crop, VAE-encode, invert.
    It does not depend on the key, so one inversion serves every key tested against it."""
    conformed = conform_frames(frames, hyp.shape.frames, hyp.shape.height, hyp.shape.width)
    return model.invert(model.autoencoder.encode(uncrop(conformed, hyp.crop)), steps)


def check_hypothesis(model, key: WatermarkKey, z_hat: torch.Tensor, hyp: Hypothesis, total: int,
                     fpr: float = DEFAULT_FPR) -> Extraction:
    """``extract`` under one of ``total`` hypotheses: tested at ``fpr / total``, its p-value multiplied by
    ``total`` (Bonferroni), so that a search over all of them keeps the false-positive rate at ``fpr``."""
    ae = model.autoencoder
    mask = interior_mask(hyp.crop, hyp.shape.height, hyp.shape.width, ae.spatial_factor)
    ex = extract(key, z_hat, fpr=fpr / total, template_frames=ae.latent_frames(hyp.shape.frames), mask=mask)
    log_p = min(0.0, ex.log10_p_value + math.log10(total))
    return replace(ex, p_value=10.0 ** log_p, log10_p_value=log_p, fpr=fpr)


def conclude(models, plan: list[tuple[int, Hypothesis]], readings: list[Extraction]) -> Recovery:
    """The :class:`Recovery` of a search that read the first ``len(readings)`` pairs of ``plan``, in order
    (each ``check_hypothesis``-ed at ``total = len(plan)``): the strongest reading, which is the detection when
    the search stopped at one."""
    models = as_models(models)
    best = 0
    for i, ex in enumerate(readings):
        if ex.log10_p_value < readings[best].log10_p_value:
            best = i
    index, hyp = plan[best]
    return Recovery(extraction=readings[best], hypothesis=hyp, hypotheses_tried=len(readings),
                    hypotheses_total=len(plan), model=models[index].identity,
                    models_tried=len({i for i, _ in plan[:len(readings)]}), models_total=len(models))


def recover_watermark(models, key: WatermarkKey, frames: np.ndarray, fpr: float = DEFAULT_FPR,
                      steps: int = DEFAULT_INVERSION_STEPS) -> Recovery:
    """uint8 frames (T,H,W,3) of a possibly edited clip -> the watermark extraction under ``key``.

    ``models``: the models the clip may come from (a sequence of ``VideoModel``, or one). Tries the pairs of
    :func:`candidates` in order and stops at the first detection. Each pair is tested at ``fpr / N`` and its
    p-value multiplied by N (N = all pairs of all models, tried or not): by the union bound the chance that an
    unmarked clip, or a clip of a model not among ``models``, is detected under any of them stays <= ``fpr``,
    whenever the search stops.
    """
    models = as_models(models)
    if not models:
        raise ValueError("recover_watermark needs at least one model")
    plan = candidates(models, *frames.shape[:3])
    readings: list[Extraction] = []
    for index, hyp in plan:
        model = models[index]
        readings.append(check_hypothesis(model, key, recover_noise(model, frames, hyp, steps), hyp, len(plan), fpr))
        if readings[-1].detected:
            break
    return conclude(models, plan, readings)


# How many standard errors of a frame's agreement (0.5 / sqrt(elements) under "unmarked") a tamper claim needs:
# a frame is moved only if another template frame beats its own by this margin (of the difference), and foreign
# only if it does not match its template frame by this much. With 4096 elements, 4 sigma is 0.031.
TAMPER_SIGMAS = 4.0


def tamper_summary(ex: Extraction) -> dict:
    """Which latent frames are out of place or foreign, and how many cells look edited, from the agreement maps.

    Decisions rest on ``template_matrix`` (all elements, not only pilots) and prefer the untampered reading: a
    recovered frame stays at its own position unless another template frame matches it significantly better,
    because neighbouring frames of a clip share content and a weak frame can match a neighbour by a hair.
    """
    frame_agreement = [round(float(a), 3) for a in ex.frame_agreement]
    if not ex.detected or ex.template_matrix is None:
        return {"assessed": False, "frame_agreement": frame_agreement}
    m = np.asarray(ex.template_matrix)
    t_rec, t_tpl = m.shape
    sigma = 0.5 / math.sqrt(max(ex.template_elements, 1))
    assignment = []
    for j in range(t_rec):
        best = int(m[j].argmax())
        own = j if j < t_tpl else None
        moved = own is None or m[j, best] - m[j, own] > TAMPER_SIGMAS * math.sqrt(2.0) * sigma
        assignment.append(best if moved else own)
    agreement = [float(m[j, k]) for j, k in enumerate(assignment)]
    foreign = [j for j, a in enumerate(agreement) if a < 0.5 + TAMPER_SIGMAS * sigma]
    placed = [k for j, k in enumerate(assignment) if j not in foreign]
    reordered = placed != sorted(placed) or len(set(placed)) != len(placed)
    # a cell is low when it is closer to chance than to the clip's typical agreement
    typical = float(np.median([a for j, a in enumerate(agreement) if j not in foreign] or [0.5]))
    cells = np.asarray(ex.cell_agreement)
    edited_cells = int(((cells - 0.5) < 0.5 * max(typical - 0.5, 1e-6)).sum())
    return {
        "assessed": True,
        "frame_assignment": assignment,
        "reordered": bool(reordered),
        "foreign_latent_frames": foreign,
        "frame_agreement": [round(a, 3) for a in agreement],
        "low_agreement_cells": edited_cells,
        "cells": int(cells.size),
    }

