"""Verifying uploaded files: read the C2PA manifest, recover the initial noise and test it for our watermark,
resolve a stripped manifest through the ledger, and decide a verdict.

One file's problems (unreadable, not a video) are reported in that file's result and never stop the others.
The result follows the verdict format of shared/DESIGN.md (the classifier part joins it when it is built);
docs/provenance.md explains the C2PA and ledger parts and the verdict precedence.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from framemark import media, provenance
from framemark.errors import FramemarkError
from framemark.ledger import Ledger
from framemark.generator import pipeline as gen_pipeline
from framemark.watermark import Extraction, WatermarkKey, extract

from . import DEFAULT_FPR, DEFAULT_INVERSION_STEPS, attacks, inversion


@dataclass(frozen=True)
class GenerationShape:
    frames: int
    height: int
    width: int


@dataclass(frozen=True)
class Hypothesis:
    """How the uploaded clip may relate to the generated one: its generated shape and the centre crop applied
    (the fraction of each side that was kept and scaled back up; 1.0 = not cropped)."""

    shape: GenerationShape
    crop: float


@dataclass(frozen=True)
class Recovery:
    """The extraction under the first hypothesis that detected the mark (else the strongest one); its p-value is
    already corrected for every hypothesis the search could have tried."""

    extraction: Extraction
    hypothesis: Hypothesis
    hypotheses_tried: int
    hypotheses_total: int


# Centre crops the search undoes, after "not cropped". A crop between grid points is only partly undone.
CROP_FRACTIONS: tuple[float, ...] = (0.9, 0.8)


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
        return default_shape()


def default_shape() -> GenerationShape:
    default = gen_pipeline.GenerationRequest(prompt="x")
    return GenerationShape(default.frames, default.height, default.width)


def hypotheses(num_frames: int, height: int, width: int) -> list[Hypothesis]:
    """Every (generated shape, crop) the search may try, most likely first.

    The generated shape is the clip's own when the model can make it; the default shape is added when that
    differs, because a default clip with frames dropped (17 -> 13) also has a valid shape of its own.
    """
    shapes = [generation_shape(num_frames, height, width)]
    if shapes[0] != default_shape():
        shapes.append(default_shape())
    found = [Hypothesis(shape, 1.0) for shape in shapes]
    found += [Hypothesis(shapes[0], crop) for crop in CROP_FRACTIONS]
    return found


def uncrop(frames: np.ndarray, crop: float) -> np.ndarray:
    """Undo a centre crop of ``crop`` that was scaled back to full size: shrink the frames by ``crop`` into the
    centre of a canvas of the original size. The lost border is filled by reflection; it carries no mark."""
    if crop >= 1.0:
        return frames
    h, w = frames.shape[1:3]
    top, left, ih, iw = attacks.centre_box(h, w, crop)
    out = []
    for f in frames:
        small = cv2.resize(f, (iw, ih), interpolation=cv2.INTER_AREA)
        out.append(cv2.copyMakeBorder(small, top, h - ih - top, left, w - iw - left, cv2.BORDER_REFLECT_101))
    return np.stack(out)


def recover_noise(pipe, frames: np.ndarray, hyp: Hypothesis, steps: int = DEFAULT_INVERSION_STEPS) -> torch.Tensor:
    """The initial noise z_hat the clip implies under ``hyp``: conform, undo the crop, VAE-encode, invert.
    It does not depend on the key, so one inversion serves every key tested against it."""
    conformed = inversion.conform_frames(frames, hyp.shape.frames, hyp.shape.height, hyp.shape.width)
    return inversion.invert_flow(pipe, inversion.encode_latents(pipe, uncrop(conformed, hyp.crop)), steps)


def check_hypothesis(pipe, key: WatermarkKey, z_hat: torch.Tensor, hyp: Hypothesis, total: int,
                    fpr: float = DEFAULT_FPR) -> Extraction:
    """``extract`` under one of ``total`` hypotheses: tested at ``fpr / total``, its p-value multiplied by
    ``total`` (Bonferroni), so that a search over all of them keeps the false-positive rate at ``fpr``."""
    latent_frames = (hyp.shape.frames - 1) // pipe.vae_scale_factor_temporal + 1
    mask = attacks.interior_mask(hyp.crop, hyp.shape.height, hyp.shape.width, pipe.vae_scale_factor_spatial)
    ex = extract(key, z_hat, fpr=fpr / total, template_frames=latent_frames, mask=mask)
    log_p = min(0.0, ex.log10_p_value + math.log10(total))
    return replace(ex, p_value=10.0 ** log_p, log10_p_value=log_p, fpr=fpr)


def recover_watermark(pipe, key: WatermarkKey, frames: np.ndarray, fpr: float = DEFAULT_FPR,
                      steps: int = DEFAULT_INVERSION_STEPS) -> Recovery:
    """uint8 frames (T,H,W,3) of a possibly edited clip -> the watermark extraction under ``key``.

    Tries the hypotheses in order and stops at the first detection. Each hypothesis is tested at
    ``fpr / H`` and its p-value multiplied by H (H = all hypotheses, tried or not): by the union bound the
    chance that an unmarked clip is detected under any of them stays <= ``fpr``, whenever the search stops.
    """
    candidates = hypotheses(*frames.shape[:3])
    total = len(candidates)
    best: tuple[Extraction, Hypothesis] | None = None
    for tried, hyp in enumerate(candidates, start=1):
        ex = check_hypothesis(pipe, key, recover_noise(pipe, frames, hyp, steps), hyp, total, fpr)
        if best is None or ex.log10_p_value < best[0].log10_p_value:
            best = (ex, hyp)
        if ex.detected:
            break
    return Recovery(extraction=best[0], hypothesis=best[1], hypotheses_tried=tried, hypotheses_total=total)


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


def verify_file(path: str | os.PathLike, *, key: WatermarkKey | None, pipe, fpr: float = DEFAULT_FPR,
                steps: int = DEFAULT_INVERSION_STEPS, max_frames: int = 600,
                trust_anchors: tuple[bytes, ...] | list[bytes] = (), ledger: Ledger | None = None) -> dict:
    """The verdict object for one file. Never raises for a bad file: problems go to ``errors``.

    ``trust_anchors``: PEM root certificates a C2PA signer must chain to for the manifest to be Trusted.
    ``ledger``: where a decoded payload is looked up when the file's own manifest is absent or Invalid.
    """
    started = time.perf_counter()
    result: dict = {"file": str(path), "c2pa": None, "watermark": None, "ledger": None, "verdict": "no-evidence",
                    "errors": []}
    lap = _stage_timer(result)
    # C2PA first: it needs no model and still says something about files that do not decode as video
    result["c2pa"], c2pa_error = check_c2pa(path, trust_anchors)
    result["c2pa"]["soft_binding_matches_watermark"] = None
    lap("c2pa_s")
    try:
        video = media.read_video(path, max_frames=max_frames)
    except FramemarkError as exc:
        result["errors"].append(str(exc))
        result["verdict"] = None
        lap("decode_s")
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result
    lap("decode_s")
    if c2pa_error:
        result["errors"].append(c2pa_error)
    if video.truncated:
        # still checked (a partial clip can carry the mark), but the file is damaged and the caller must know
        result["errors"].append(f"file is truncated or damaged: only {video.frames.shape[0]} frame(s) decoded")
    if key is None:
        result["errors"].append("no watermark key: the watermark was not checked")
    else:
        recovery = recover_watermark(pipe, key, video.frames, fpr=fpr, steps=steps)
        ex = recovery.extraction
        mark = ex.to_dict()
        mark["alignment"] = {"generated_frames": recovery.hypothesis.shape.frames,
                             "generated_size": [recovery.hypothesis.shape.height, recovery.hypothesis.shape.width],
                             "crop_undone": recovery.hypothesis.crop,
                             "hypotheses_tried": recovery.hypotheses_tried,
                             "hypotheses_total": recovery.hypotheses_total}
        mark["tamper"] = tamper_summary(ex)
        if ex.detected and not ex.crc_ok:
            # the key's mark is there (the p-value says so) but the 64 bits are too damaged to trust: never hand
            # out a clip id that would resolve to someone else's clip
            mark["payload"], mark["clip_id"] = None, None
            mark["payload_unreadable"] = True
        result["watermark"] = mark
        if ex.detected:
            tampered = mark["tamper"]["foreign_latent_frames"] or mark["tamper"]["reordered"]
            result["verdict"] = "tampered" if tampered else "watermarked-synthetic"
    lap("watermark_s")
    result["c2pa"]["soft_binding_matches_watermark"] = soft_binding_agrees(result["c2pa"], result["watermark"])
    if needs_ledger(result["c2pa"], result["watermark"]):
        result["ledger"] = resolve_through_ledger(ledger, result["watermark"], trust_anchors)
    lap("ledger_s")
    result["verdict"] = decide_verdict(result["c2pa"], result["verdict"])
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def _stage_timer(result: dict):
    """Informational only: ``result["timing"]`` gets the seconds each stage took (``c2pa_s``, ``decode_s``,
    ``watermark_s`` = VAE encode + inversion + extraction, ``ledger_s``), for audits and benchmarks. A stage that
    did not run is absent. Nothing reads it to decide anything."""
    timing: dict = {}
    result["timing"] = timing
    last = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        timing[stage] = round(now - last[0], 4)
        last[0] = now
    return lap


# ------------------------------------------------------------------------------------------------ provenance

def check_c2pa(path: str | os.PathLike, trust_anchors) -> tuple[dict, str | None]:
    """The ``c2pa`` part of a verdict, and an error message when c2pa could not parse the file at all."""
    try:
        return provenance.read_file(path, tuple(trust_anchors)), None
    except provenance.ProvenanceError as exc:
        return {"state": None, "codes": [], "informational": [], "manifest": None, "error": str(exc)}, str(exc)


def soft_binding_agrees(c2pa_part: dict, mark: dict | None) -> bool | None:
    """Whether a manifest's framemark soft binding names the payload the watermark carries; None when either
    is missing (no manifest, another algorithm, watermark not detected or not readable)."""
    binding = (c2pa_part.get("manifest") or {}).get("soft_binding") or {}
    if binding.get("alg") != provenance.SOFT_BINDING_ALG or not mark or not mark.get("payload"):
        return None
    return binding.get("value") == mark["payload"]


def needs_ledger(c2pa_part: dict, mark: dict | None) -> bool:
    """Look the payload up only when the file's own manifest cannot speak for it: absent, Invalid or unreadable,
    and the watermark was detected with a payload that passed its CRC."""
    return (c2pa_part.get("state") not in ("Trusted", "Valid") and bool(mark) and bool(mark.get("detected"))
            and bool(mark.get("payload")))


RECOVERED_STATEMENT = ("manifest recovered through the watermark from the ledger, not bound to these bytes: it "
                       "describes the clip this watermark payload was issued to, whose bytes these may no longer be")


def resolve_through_ledger(ledger: Ledger | None, mark: dict, trust_anchors) -> dict:
    """The ``ledger`` part of a verdict: the original manifest of the clip the payload was issued to.

    The stored manifest store is validated on its own (``provenance.read_manifest_store``): claim signature,
    signing credential against ``trust_anchors``, assertion hashes; its hard binding cannot be checked because
    the bytes it was made for are not these. ``bound_to_file`` is therefore always False.
    """
    base = {"looked_up": False, "found": False, "payload": mark["payload"], "key_id": mark.get("key_id"),
            "recovered": False, "bound_to_file": False}
    if ledger is None:
        return {**base, "statement": "no ledger to look the payload up in"}
    base["looked_up"] = True
    base["ledger"] = str(ledger.path)
    try:
        entries = ledger.lookup(mark["payload"][:12], key_id=mark.get("key_id"))
    except FramemarkError as exc:
        return {**base, "statement": f"ledger lookup failed: {exc}"}
    if not entries:
        return {**base, "statement": f"payload {mark['payload']} of key {mark.get('key_id')} is not in the ledger"}
    entry = entries[0]
    base.update(found=True, matches=len(entries), entry=entry.to_dict())
    if entry.manifest_store is None:
        return {**base, "statement": "the ledger knows this clip, but it was emitted without a C2PA manifest"}
    checked = provenance.read_manifest_store(entry.manifest_store, tuple(trust_anchors))
    return {**base, "recovered": True, "manifest": checked["manifest"], "manifest_json": checked["manifest_json"],
            "signature": {"state": checked["state"], "codes": checked["codes"],
                          "hard_binding": checked["hard_binding"]},
            "statement": RECOVERED_STATEMENT}


def decide_verdict(c2pa_part: dict, watermark_verdict: str | None) -> str | None:
    """Combine the evidence, strongest claim first (docs/provenance.md, "Verdicts"):

    1. ``tampered``: the file's manifest is Invalid (its signature, assertions or hard binding fail), its
       framemark soft binding names another payload than the watermark carries, or the watermark shows frames
       reordered or foreign;
    2. ``signed-synthetic``: a Trusted or Valid manifest declares a synthetic digitalSourceType;
    3. ``watermarked-synthetic``: our watermark was detected;
    4. ``likely-synthetic``: reserved for the passive classifier (not emitted yet);
    5. ``no-evidence``: none of the above. A manifest recovered through the ledger never raises the verdict on
       its own: the watermark already did, and the recovered manifest is not bound to these bytes.
    """
    if watermark_verdict is None:
        return None
    state = c2pa_part.get("state")
    if (state == "Invalid" or c2pa_part.get("soft_binding_matches_watermark") is False
            or watermark_verdict == "tampered"):
        return "tampered"
    if state in ("Trusted", "Valid") and (c2pa_part.get("manifest") or {}).get("declares_synthetic"):
        return "signed-synthetic"
    if watermark_verdict == "watermarked-synthetic":
        return "watermarked-synthetic"
    return "no-evidence"
