"""Verifying uploaded files: read the video, recover the initial noise, test it for our watermark.

One file's problems (unreadable, not a video) are reported in that file's result and never stop the others.
The result follows the verdict format of shared/DESIGN.md; the C2PA, ledger and classifier parts join it as
they are built.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from framemark import media
from framemark.errors import FramemarkError
from framemark.generator import pipeline as gen_pipeline
from framemark.watermark import Extraction, WatermarkKey, extract

from . import DEFAULT_FPR, DEFAULT_INVERSION_STEPS, inversion


@dataclass(frozen=True)
class GenerationShape:
    frames: int
    height: int
    width: int


def generation_shape(num_frames: int, height: int, width: int) -> GenerationShape:
    """The shape the clip was most likely generated at: its own when the model can make it, else the default.

    A clip re-encoded at its own size keeps its shape; one that was resized, cropped or had frames dropped is
    mapped back onto the default 17x128x128 grid.
    """
    request = gen_pipeline.GenerationRequest(prompt="x", frames=num_frames, height=height, width=width)
    try:
        gen_pipeline.validate(request)
        return GenerationShape(num_frames, height, width)
    except FramemarkError:
        default = gen_pipeline.GenerationRequest(prompt="x")
        return GenerationShape(default.frames, default.height, default.width)


def recover_watermark(pipe, key: WatermarkKey, frames: np.ndarray, fpr: float = DEFAULT_FPR,
                      steps: int = DEFAULT_INVERSION_STEPS) -> Extraction:
    """uint8 frames (T,H,W,3) of a possibly edited clip -> the watermark extraction under ``key``."""
    shape = generation_shape(frames.shape[0], frames.shape[1], frames.shape[2])
    z_hat = inversion.recover_noise(pipe, frames, shape.frames, shape.height, shape.width, steps)
    latent_frames = (shape.frames - 1) // pipe.vae_scale_factor_temporal + 1
    return extract(key, z_hat, fpr=fpr, template_frames=latent_frames)


def _tamper_summary(ex: Extraction) -> dict:
    """Which latent frames look foreign or out of place, from the agreement maps."""
    assignment = list(ex.frame_assignment)
    expected = list(range(len(assignment)))
    frame_agreement = [round(float(a), 3) for a in ex.frame_agreement]
    if not ex.detected:
        return {"assessed": False, "frame_agreement": frame_agreement}
    # a marked frame agrees far above chance; one below half the clip's excess over 0.5 did not come from the model
    excess = max(ex.bit_accuracy - 0.5, 1e-6)
    foreign = [i for i, a in enumerate(ex.frame_agreement) if a - 0.5 < 0.5 * excess]
    cells = np.asarray(ex.cell_agreement)
    edited_cells = int(((cells - 0.5) < 0.5 * excess).sum())
    return {
        "assessed": True,
        "frame_assignment": assignment,
        "reordered": assignment != expected and not foreign,
        "foreign_latent_frames": foreign,
        "frame_agreement": frame_agreement,
        "low_agreement_cells": edited_cells,
        "cells": int(cells.size),
    }


def verify_file(path: str | os.PathLike, *, key: WatermarkKey | None, pipe, fpr: float = DEFAULT_FPR,
                steps: int = DEFAULT_INVERSION_STEPS, max_frames: int = 600) -> dict:
    """The verdict object for one file. Never raises for a bad file: problems go to ``errors``."""
    started = time.perf_counter()
    result: dict = {"file": str(path), "watermark": None, "verdict": "no-evidence", "errors": []}
    try:
        video = media.read_video(path, max_frames=max_frames)
    except FramemarkError as exc:
        result["errors"].append(str(exc))
        result["verdict"] = None
        return result
    if video.truncated:
        # still checked (a partial clip can carry the mark), but the file is damaged and the caller must know
        result["errors"].append(f"file is truncated or damaged: only {video.frames.shape[0]} frame(s) decoded")
    if key is None:
        result["errors"].append("no watermark key: the watermark was not checked")
    else:
        ex = recover_watermark(pipe, key, video.frames, fpr=fpr, steps=steps)
        mark = ex.to_dict()
        mark["tamper"] = _tamper_summary(ex)
        result["watermark"] = mark
        if ex.detected:
            tampered = mark["tamper"]["foreign_latent_frames"] or mark["tamper"]["reordered"]
            result["verdict"] = "tampered" if tampered else "watermarked-synthetic"
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result
