"""The edits a clip meets between generation and verification, as functions of frames.

Platforms re-encode, rescale and trim what is uploaded; people brighten, blur and crop. The robustness
benchmark and the tests apply these to real decoded frames and check what the verifier still finds. Each takes
uint8 frames (T,H,W,3) and returns uint8 frames; the H.264 one goes through a real encoder and decoder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np


def reencode(frames: np.ndarray, crf: int = 28, fps: float = 8.0) -> np.ndarray:
    """H.264 (libx264, yuv420p) at ``crf`` and back, as a platform's transcoder does."""
    from framemark import media  # here, so the geometry below imports without PyAV (the GPU machine has none)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reencoded.mp4"
        media.write_video(path, frames, fps=fps, crf=crf)
        return media.read_video(path).frames


def resize_and_back(frames: np.ndarray, scale: float = 0.75) -> np.ndarray:
    """Downscale by ``scale`` (area) and upscale back to the original size (bicubic)."""
    h, w = frames.shape[1:3]
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(cv2.resize(f, small, interpolation=cv2.INTER_AREA), (w, h),
                                interpolation=cv2.INTER_CUBIC) for f in frames])


def brighten(frames: np.ndarray, factor: float = 1.08) -> np.ndarray:
    """Multiply every pixel value by ``factor`` (clipped), e.g. +8% brightness."""
    return np.clip(frames.astype(np.float32) * factor + 0.5, 0, 255).astype(np.uint8)


def blur(frames: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian blur of each frame with standard deviation ``sigma`` pixels."""
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def drop_frames(frames: np.ndarray, fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """Remove ``fraction`` of the frames at random positions (order kept), as a trim or frame-rate cut does."""
    t = frames.shape[0]
    n_drop = int(round(t * fraction))
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(t, size=t - n_drop, replace=False))
    return frames[keep]

def remux(src, dst) -> None:
    """Stream-copy a file's video into a new MP4, as a platform's packager does: the same H.264 packets, but
    nothing else of the container survives (a C2PA manifest is stripped). File to file, unlike the edits above."""
    import av  # here, like reencode's PyAV import

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)


def centre_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """(top, left, box height, box width) of the central ``fraction`` of each side, in whole pixels; the
    verifier undoes crops with the same geometry."""
    ch, cw = max(1, round(height * fraction)), max(1, round(width * fraction))
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def interior_mask(crop: float, height: int, width: int, scale: int) -> np.ndarray | None:
    """(height // scale, width // scale) latent cells lying wholly inside what ``verify.uncrop`` restores of a
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


def center_crop(frames: np.ndarray, fraction: float = 0.8) -> np.ndarray:
    """Keep the central ``fraction`` of each side and resize back to the original size (bicubic)."""
    h, w = frames.shape[1:3]
    y0, x0, ch, cw = centre_box(h, w, fraction)
    return np.stack([cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_CUBIC)
                     for f in frames])


# The robustness conditions the watermark is measured under (docs/watermark.md), by name.
STANDARD: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda f: f,
    "h264_crf28": reencode,
    "resize_0.75": resize_and_back,
    "brightness_+8%": brighten,
    "blur_sigma1": blur,
    "drop_25%_frames": drop_frames,
    "crop_80%": center_crop,
}
