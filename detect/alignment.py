"""How an uploaded clip may relate to the clip the model generated, and undoing that before inversion.

A platform resizes, re-times and crops what it hosts. The verifier cannot know which edit was made, so it tries a
fixed list of hypotheses (the generated shape, and a centre crop scaled back up); each one is counted in the
p-value's correction. The hypotheses come from the model's own limits and defaults, never from a guess of ours
about one model, and every geometric step (conform, uncrop, the cells a crop leaves intact) is defined here
once; the attack suite crops with the same :func:`centre_box`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Centre crops the search undoes, after "not cropped". A crop between grid points is only partly undone.
CROP_FRACTIONS: tuple[float, ...] = (0.9, 0.8)


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


def default_shape(model) -> GenerationShape:
    d = model.defaults
    return GenerationShape(d.frames, d.height, d.width)


def generation_shape(model, num_frames: int, height: int, width: int) -> GenerationShape:
    """The shape the clip was most likely generated at: its own when the model can make it, else the model's
    default. A clip re-encoded at its own size keeps its shape; one that was resized, cropped or had frames
    dropped is mapped back onto the default grid."""
    if model.limits.shape_ok(num_frames, height, width):
        return GenerationShape(num_frames, height, width)
    return default_shape(model)


def hypotheses(model, num_frames: int, height: int, width: int) -> list[Hypothesis]:
    """Every (generated shape, crop) the search may try, most likely first.

    The generated shape is the clip's own when the model can make it; the default shape is added when that
    differs, because a default clip with frames dropped (17 -> 13) also has a valid shape of its own.
    """
    shapes = [generation_shape(model, num_frames, height, width)]
    if shapes[0] != default_shape(model):
        shapes.append(default_shape(model))
    found = [Hypothesis(shape, 1.0) for shape in shapes]
    # a crop is undone only where whole latent cells survive it: on a coarse grid (LTX: 32-pixel cells, a 64-pixel
    # side) a 0.9 crop leaves none, and there is nothing to test. Fixed by the shape, so the p-value stays exact.
    scale = model.autoencoder.spatial_factor
    found += [Hypothesis(shapes[0], crop) for crop in CROP_FRACTIONS
              if interior_mask(crop, shapes[0].height, shapes[0].width, scale).any()]
    return found


def conform_frames(frames: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
    """Frames (T,H,W,3) uint8 resampled to the generated frame count and size.

    Time: frames are picked uniformly over the clip, so a clip whose frames were dropped or duplicated (fps
    change) is stretched back onto the generated timeline; the detector's frame alignment absorbs what remains.
    Space: resized with area averaging when shrinking, bicubic when enlarging.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected frames (T,H,W,3), got {frames.shape}")
    t = frames.shape[0]
    if t != num_frames:
        idx = np.round(np.linspace(0, t - 1, num_frames)).astype(int)
        frames = frames[idx]
    if frames.shape[1:3] != (height, width):
        shrink = frames.shape[1] * frames.shape[2] > height * width
        interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        frames = np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])
    return np.ascontiguousarray(frames)


def centre_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """(top, left, box height, box width) of the central ``fraction`` of each side, in whole pixels."""
    ch, cw = max(1, round(height * fraction)), max(1, round(width * fraction))
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def uncrop(frames: np.ndarray, crop: float) -> np.ndarray:
    """Undo a centre crop of ``crop`` that was scaled back to full size: shrink the frames by ``crop`` into the
    centre of a canvas of the original size. The lost border is filled by reflection; it carries no mark."""
    if crop >= 1.0:
        return frames
    h, w = frames.shape[1:3]
    top, left, ih, iw = centre_box(h, w, crop)
    out = []
    for f in frames:
        small = cv2.resize(f, (iw, ih), interpolation=cv2.INTER_AREA)
        out.append(cv2.copyMakeBorder(small, top, h - ih - top, left, w - iw - left, cv2.BORDER_REFLECT_101))
    return np.stack(out)


def interior_mask(crop: float, height: int, width: int, scale: int) -> np.ndarray | None:
    """(height // scale, width // scale) latent cells lying wholly inside what :func:`uncrop` restores of a
    centre crop of ``crop``; None when nothing was cropped. Fixed by the hypothesis alone, so restricting the
    watermark test to them keeps it exact."""
    if crop >= 1.0:
        return None
    top, left, ch, cw = centre_box(height, width, crop)
    ys = np.arange(height // scale) * scale
    xs = np.arange(width // scale) * scale
    rows = (ys >= top) & (ys + scale <= top + ch)
    cols = (xs >= left) & (xs + scale <= left + cw)
    return rows[:, None] & cols[None, :]
