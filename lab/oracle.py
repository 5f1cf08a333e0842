"""Read colour, shape and motion back from a clip, so that prompt following can be measured.

The procedural world (``world.py``) is built so that this can be simple and transparent: the background is
always achromatic and the one object is a saturated colour. The oracle therefore never needs a learned model:

- **Mask.** Chroma (max - min of RGB) is ~0 on any grey background whatever its brightness, gradient or texture,
  and large on the object. The threshold is half the object's own chroma, i.e. the 50 % coverage level of its
  anti-aliased (or blurred) edge, which is where the true outline lies; an absolute floor keeps faint colour
  noise, ghosts and grey clips out. The largest connected component per frame is the object.
- **Colour.** Hue angle of the object's median colour, nearest palette hue. Hue is unchanged when a colour is
  mixed with any grey, so desaturation, a brightness shift or a half-covered edge pixel do not move it, and
  the palette is spread out in hue (>= 25 degrees between neighbours).
- **Shape.** The world draws every shape centred on its centroid (all five are point- or 5-fold-symmetric
  about their centre), so the mask is compared with each of the five ideal outlines, placed at the mask's
  centroid, scaled to its area and drawn through the same blur-and-threshold the mask went through (the blur
  is measured from the width of the object's edge); the best intersection-over-union wins. This reuses the
  world's own shape definitions instead of hand-tuned geometric thresholds, and survives blur and H.264's
  half-resolution chroma, which round a cross or a star towards a disc. The largest views are read and the
  few that fit some outline best are averaged, so frames spoilt by a ghost or a speckle carry little weight.
- **Motion.** From the centroid track (in frame-normalised coordinates, so any size works) and the area track:
  a large growth in linear size means growing; otherwise a vertical excursion that does not end where the
  linear trend says (up then down again) means bouncing; otherwise the dominant net displacement's direction.

The arithmetic is numpy and OpenCV only (``world`` is imported for its names), ~10 ms per 17x128x128 clip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from framemark.lab.world import COLOURS, SHAPES, SceneSpec

__all__ = ["OracleReading", "read_clip", "read_file", "score"]

# ---------------------------------------------------------------------------------------------------- tuning
# Chroma is max-min of RGB on 0..255. The least saturated palette colour (green) has chroma 150; 25 %
# desaturation leaves ~112 and its half-level threshold ~56. Grey backgrounds have chroma 0, H.264 chroma noise
# a few units and noise of sigma 0.03 per channel ~13 (before the pre-blur, ~4 after). 40 sits in between.
_CHROMA_FLOOR = 40.0
# Threshold at this fraction of the object's chroma: the 50 % coverage contour of an anti-aliased/blurred edge.
_EDGE_LEVEL = 0.5
# The object's chroma is estimated as this percentile of above-floor pixels: the edge ring (partial coverage)
# sits below it, the flat interior at or above it.
_OBJECT_PERCENTILE = 80.0
# Pre-blur, in pixels at 128 px: averages away per-pixel noise (sigma drops ~3x) before taking chroma.
_BLUR_SIGMA_128 = 0.8
# A per-frame component smaller than this fraction of the frame is a speckle, not the object. The smallest
# object the world draws (a growing triangle's first frame, radius 7 px at 128) covers ~0.7 % of the frame;
# colour speckles of a generated clip are a few pixels.
_MIN_AREA_FRAC = 0.003
# The object must be seen in at least this fraction of frames to count as found (isolated colour speckles in
# a few frames of a grey clip are not an object).
_MIN_FOUND_FRAC = 1 / 3
# Frames used to read the shape: the largest views, where the outline has the most pixels.
_SHAPE_FRAMES = 6
_SHAPE_VOTES = 3
# Outlines are drawn at these scales of the area-matched size (area is only roughly kept by blur + threshold).
_SHAPE_SCALES = (0.94, 1.0, 1.06)
# Growing multiplies the radius by 2.4; every other motion keeps it constant (ratio ~1).
_GROWTH_MIN = 1.5
# The smallest motion the world draws travels ~0.35 of the frame (bounce amplitude ~0.3); below this a clip
# is static and no motion is claimed.
_MOVE_MIN = 0.08


@dataclass(frozen=True)
class OracleReading:
    """What the oracle saw in one clip.

    ``colour``/``shape``/``motion`` are world names, or None when there is no object (or, for ``motion``, when
    it is static or seen in fewer than two frames). The rest is evidence for debugging a wrong reading:
    ``rgb`` the object's median colour (0..255), ``centroids`` per frame (x, y) as fractions of width and
    height with NaN where the object was not seen, ``areas`` per frame as fractions of the frame, and
    ``shape_fit`` the IoU with each of ``world.SHAPES`` in order.
    """

    colour: str | None
    shape: str | None
    motion: str | None
    found: bool
    rgb: tuple[int, int, int] | None = None
    centroids: tuple[tuple[float, float], ...] = ()
    areas: tuple[float, ...] = ()
    shape_fit: tuple[float, ...] = ()


# ---------------------------------------------------------------------------------------------------- shapes

def _shape_distance(index: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (in object radii, negative inside) to shape ``index`` at (u, v), y pointing down.

    Mirrors ``world._shape_distance`` (in numpy, so the oracle needs no torch); a test checks they agree.
    """
    au, av = np.abs(u), np.abs(v)
    name = SHAPES[index]
    if name == "circle":
        return np.sqrt(u * u + v * v) - 1.0
    if name == "square":
        return np.maximum(au, av) - 0.88
    if name == "triangle":
        return np.maximum(np.maximum(v, 0.866 * u - 0.5 * v), -0.866 * u - 0.5 * v) - 0.68
    if name == "star":
        theta = np.arctan2(v, u) + math.pi / 2
        sector = 2 * math.pi / 5
        a = np.remainder(theta + sector / 2, sector) - sector / 2
        return np.sqrt(u * u + v * v) - (0.55 + (1.35 - 0.55) * (1 - np.abs(a) / (sector / 2)))
    if name == "cross":
        return np.minimum(np.maximum(au - 1.05, av - 0.38), np.maximum(au - 0.38, av - 1.05))
    raise ValueError(f"no outline for shape {name!r}")  # pragma: no cover - edited together with SHAPES


@lru_cache(maxsize=1)
def _unit_areas() -> np.ndarray:
    """Area of each shape at radius 1, so a mask's area gives the radius its outline should be drawn at."""
    n = 801
    g = (np.arange(n) + 0.5) / n * 3.0 - 1.5
    u, v = np.meshgrid(g, g)
    cell = (3.0 / n) ** 2
    return np.array([np.count_nonzero(_shape_distance(i, u, v) <= 0) * cell for i in range(len(SHAPES))])


def _shape_fit(mask: np.ndarray, cx: float, cy: float, sigma: float) -> np.ndarray:
    """IoU of a binary mask with each shape's outline drawn the way the mask was made.

    The outline is centred at the mask's centroid, sized to its area (best of a few scales), anti-aliased like
    the world draws it, blurred by ``sigma`` (pixels, the edge blur measured on the clip) and cut at the half
    level, exactly as the mask was cut. Blur and H.264's half-resolution chroma round the corners of a cross or
    a star; an equally blurred cross still fits that far better than a circle does.
    """
    area = float(np.count_nonzero(mask))
    radii = np.sqrt(area / _unit_areas())
    reach = int(math.ceil(1.4 * radii.max() * max(_SHAPE_SCALES) + 3 * sigma)) + 2
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    icx, icy = int(cx), int(cy)
    y0, y1 = min(int(ys.min()), icy - reach), max(int(ys.max()) + 1, icy + reach + 1)
    x0, x1 = min(int(xs.min()), icx - reach), max(int(xs.max()) + 1, icx + reach + 1)
    # Pixels outside the frame cannot be in the mask; an outline reaching there simply loses IoU.
    yy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    xx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    window = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    window[sy0 - y0:min(y1, h) - y0, sx0 - x0:min(x1, w) - x0] = mask[sy0:min(y1, h), sx0:min(x1, w)]
    # Every (shape, scale) outline as a channel of one image, so that one blur call draws them all.
    alphas = np.stack([
        np.clip(0.5 - _shape_distance(i, xx / (r0 * scale), yy / (r0 * scale)) * (r0 * scale), 0.0, 1.0)
        for i, r0 in enumerate(radii) for scale in _SHAPE_SCALES], axis=-1).astype(np.float32)
    drawn = cv2.GaussianBlur(alphas, (0, 0), sigma) if sigma > 0.05 else alphas
    inside = drawn >= 0.5
    inter = np.count_nonzero(inside & window[..., None], axis=(0, 1))
    ious = inter / (np.count_nonzero(inside, axis=(0, 1)) + area - inter)
    return ious.reshape(len(SHAPES), len(_SHAPE_SCALES)).max(axis=1)


def _edge_blur(mask: np.ndarray, chroma: np.ndarray, level: float, unit: float) -> float:
    """How blurred the object's edge is: the Gaussian sigma (pixels) to draw outlines with so that they are cut
    like the mask was.

    A step edge blurred by sigma rises from 20 % to 80 % over 1.683 sigma, so the area of that band around the
    object divided by the object's perimeter gives sigma; the world's own one-pixel anti-aliasing ramp
    (variance 1/12) is taken out because the outlines are drawn with it already. Measured rather than searched:
    with enough blur a square and a circle cut the same, so letting each outline pick its own blur would make
    blurred circles read as squares. ``unit`` is the frame's size in 128ths, for the reach of the band.
    """
    m = mask.astype(np.uint8)
    side = 2 * int(math.ceil(5 * unit)) + 1
    near = cv2.dilate(m, np.ones((side, side), np.uint8)) > 0
    band = np.count_nonzero(near & (chroma >= 0.2 * level) & (chroma < 0.8 * level))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    total = band / max(perimeter, 1.0) / 1.683
    return math.sqrt(max(total * total - 1 / 12, 0.0))


# ---------------------------------------------------------------------------------------------------- colour

def _hue_deg(rgb: np.ndarray) -> np.ndarray:
    """Hue angle in degrees of (..., 3) RGB in the opponent plane (2R-G-B, sqrt(3)(G-B)), where every grey is
    the origin: mixing a colour with any grey moves it towards the origin, never round it. Within a few degrees
    of HSV hue, but a smooth function of RGB (HSV hue jumps between its six sectors)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.degrees(np.arctan2(math.sqrt(3) * (g - b), 2 * r - g - b)) % 360.0


_PALETTE_NAMES = tuple(COLOURS)
_PALETTE_HUES = _hue_deg(np.array([COLOURS[n] for n in _PALETTE_NAMES]))


def _nearest_colour(rgb: np.ndarray) -> str:
    diff = np.abs(_PALETTE_HUES - _hue_deg(rgb))
    diff = np.minimum(diff, 360.0 - diff)
    return _PALETTE_NAMES[int(np.argmin(diff))]


# ---------------------------------------------------------------------------------------------------- motion

def _motion(t: np.ndarray, x: np.ndarray, y: np.ndarray, size: np.ndarray) -> str | None:
    """Classify a track; t in [0, 1], x and y as frame fractions, size = sqrt(area) (linear scale)."""
    if len(t) < 2:
        return None
    third = max(1, len(t) // 3)
    growth = float(np.median(size[-third:]) / max(np.median(size[:third]), 1e-9))
    if growth >= _GROWTH_MIN:
        return "growing"
    # Net displacement from a least-squares line: uses every frame, so one bad centroid cannot flip it, and a
    # symmetric hop (|sin| over whole periods) has zero trend.
    span = float(t[-1] - t[0])
    tc = t - t.mean()
    denom = float((tc * tc).sum()) or 1.0
    net_x = float((tc * (x - x.mean())).sum() / denom) * span
    net_y = float((tc * (y - y.mean())).sum() / denom) * span
    bounce = float(y.max() - y.min()) - abs(net_y)
    linear = max(abs(net_x), abs(net_y))
    if max(bounce, linear) < _MOVE_MIN:
        return None
    if bounce > linear:
        return "bouncing"
    if abs(net_x) >= abs(net_y):
        return "right" if net_x > 0 else "left"
    return "down" if net_y > 0 else "up"


# ---------------------------------------------------------------------------------------------------- reading

def _blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of every frame; frames are packed as channels of one image (OpenCV takes up to 512
    channels), which is several times faster than one call per frame."""
    t, h, w, _ = frames.shape
    out = np.empty_like(frames)
    step = 170  # 170 frames x 3 channels < 512
    for s in range(0, t, step):
        chunk = frames[s:s + step]
        packed = np.ascontiguousarray(chunk.transpose(1, 2, 0, 3)).reshape(h, w, -1)
        blurred = cv2.GaussianBlur(packed, (0, 0), sigma).reshape(h, w, len(chunk), 3)
        out[s:s + step] = blurred.transpose(2, 0, 1, 3)
    return out


def _not_found(t: int) -> OracleReading:
    nan = float("nan")
    return OracleReading(None, None, None, False, None, ((nan, nan),) * t, (0.0,) * t, ())


def read_clip(frames: np.ndarray) -> OracleReading:
    """Read the object's colour, shape and motion from uint8 RGB frames shaped (T, H, W, 3)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"expected uint8 frames shaped (T>=2, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    smooth = _blur(frames, _BLUR_SIGMA_128 * max(1.0, min(h, w) / 128.0))
    r, g, b = smooth[..., 0], smooth[..., 1], smooth[..., 2]
    # Elementwise rather than .max(axis=-1): numpy reductions over a length-3 axis are ~10x slower.
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)

    min_area = max(4, int(round(_MIN_AREA_FRAC * h * w)))
    candidates = chroma[chroma >= _CHROMA_FLOOR]
    if candidates.size < min_area:
        return _not_found(t)
    level = float(np.percentile(candidates, _OBJECT_PERCENTILE))
    mask = (chroma >= max(_CHROMA_FLOOR, _EDGE_LEVEL * level)).astype(np.uint8)

    masks: list[np.ndarray | None] = [None] * t
    cents = np.full((t, 2), np.nan)
    areas = np.zeros(t)
    touches = np.zeros(t, dtype=bool)
    for k in range(t):
        n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask[k], connectivity=4)
        if n < 2:
            continue
        best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = int(stats[best, cv2.CC_STAT_AREA])
        if area < min_area:
            continue
        x, y, bw, bh = (int(stats[best, i]) for i in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                                       cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        masks[k] = labels == best
        cents[k] = centroids[best] + 0.5  # pixel centres, as the world draws them
        areas[k] = area
        touches[k] = x == 0 or y == 0 or x + bw == w or y + bh == h

    seen = np.flatnonzero(areas > 0)
    if len(seen) < max(1, math.ceil(_MIN_FOUND_FRAC * t)):
        return _not_found(t)

    # Colour from the object's core (well above the edge level), pooled over all frames where it was seen.
    core = np.zeros((t, h, w), dtype=bool)
    for k in seen:
        core[k] = masks[k] & (chroma[k] >= 0.75 * level)
    if not core.any():
        core = np.stack([m if m is not None else np.zeros((h, w), bool) for m in masks])
    rgb = np.median(smooth[core], axis=0)
    colour = _nearest_colour(rgb)

    # Shape from the largest whole views (a frame cut by the border would misrepresent the outline).
    pool = seen[~touches[seen]] if (~touches[seen]).any() else seen
    pick = pool[np.argsort(areas[pool])[::-1][:_SHAPE_FRAMES]]
    unit = min(h, w) / 128.0
    blur = float(np.median([_edge_blur(masks[k], chroma[k], level, unit) for k in pick[:_SHAPE_VOTES]]))
    fits = np.array([_shape_fit(masks[k], *cents[k], blur) for k in pick])
    # A frame spoilt by a ghost or a speckle fits every outline badly; trust the frames that fit something well.
    fit = fits[np.argsort(fits.max(axis=1))[::-1][:_SHAPE_VOTES]].mean(axis=0)
    shape = SHAPES[int(np.argmax(fit))]

    tt = seen / (t - 1)
    norm = cents[seen] / np.array([w, h])
    motion = _motion(tt, norm[:, 0], norm[:, 1], np.sqrt(areas[seen] / (h * w)))

    cent_n = cents / np.array([w, h])
    return OracleReading(
        colour=colour, shape=shape, motion=motion, found=True,
        rgb=tuple(int(round(c)) for c in rgb),
        centroids=tuple((float(a), float(b)) for a, b in cent_n),
        areas=tuple(float(a) for a in areas / (h * w)),
        shape_fit=tuple(round(float(f), 4) for f in fit),
    )


def read_file(path: str | os.PathLike[str]) -> OracleReading:
    """Read a video file; unreadable files raise ``framemark.errors.MediaError`` like everywhere else."""
    from framemark.media import read_video  # here, so reading frames needs no PyAV (the GPU machine has none)

    return read_clip(read_video(path).frames)


def score(readings: Sequence[OracleReading],
          specs: Sequence[SceneSpec | tuple[str, str, str]]) -> dict[str, float]:
    """Per-attribute accuracy of readings against what was asked for; a None reading counts as wrong.

    ``specs`` are ``world.SceneSpec``s or (colour, shape, motion) tuples, in the same order as ``readings``.
    """
    if len(readings) != len(specs):
        raise ValueError(f"{len(readings)} readings but {len(specs)} specs")
    if not readings:
        raise ValueError("nothing to score")
    wanted = [s.combo if isinstance(s, SceneSpec) else tuple(s) for s in specs]
    out = {}
    for i, attr in enumerate(("colour", "shape", "motion")):
        hits = sum(getattr(r, attr) is not None and getattr(r, attr) == want[i] for r, want in zip(readings, wanted))
        out[attr] = hits / len(readings)
    return out
