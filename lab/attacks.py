"""The edits a clip meets between generation and verification, as functions of frames.

Platforms re-encode, rescale and trim what is uploaded; people brighten, blur and crop. The robustness
benchmark and the tests apply these to real decoded frames and check what the verifier still finds. Each takes
uint8 frames (T,H,W,3) and returns uint8 frames; the H.264 one goes through a real encoder and decoder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from framemark.detect.alignment import centre_box


def encode(frames: np.ndarray, path: str | Path, codec: str = "libx264", crf: int = 28, fps: float = 8.0) -> None:
    """Write ``frames`` to an MP4 at ``path`` with ``codec`` at ``crf`` (yuv420p): ``libx264`` through framemark's
    own writer, ``libx265`` (H.265/HEVC) or ``libvpx-vp9`` (VP9) as a platform's transcoder would."""
    import av  # here, so the geometry below imports without PyAV (the GPU machine has none)

    from framemark import media

    if codec == "libx264":
        media.write_video(path, frames, fps=fps, crf=crf)
        return
    options = {"crf": str(crf)}
    if codec == "libvpx-vp9":
        options.update({"b": "0", "row-mt": "0", "deadline": "good", "cpu-used": "4"})
    elif codec == "libx265":
        options.update({"preset": "medium", "x265-params": "log-level=error:pools=1:frame-threads=1"})
    h, w = frames.shape[1:3]
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=round(fps), options=options)
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        for rgb in frames:
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def reencode(frames: np.ndarray, crf: int = 28, fps: float = 8.0, codec: str = "libx264") -> np.ndarray:
    """Encode with ``codec`` at ``crf`` and decode again, as a platform's transcoder does (H.264 by default)."""
    from framemark import media

    h, w = frames.shape[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reencoded.mp4"
        encode(frames, path, codec=codec, crf=crf, fps=fps)
        return media.read_video(path).frames[:, :h, :w]


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


def center_crop(frames: np.ndarray, fraction: float = 0.8) -> np.ndarray:
    """Keep the central ``fraction`` of each side and resize back to the original size (bicubic)."""
    h, w = frames.shape[1:3]
    y0, x0, ch, cw = centre_box(h, w, fraction)
    return np.stack([cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_CUBIC)
                     for f in frames])


def contrast(frames: np.ndarray, factor: float = 0.8) -> np.ndarray:
    """Scale each frame's deviations from its mean grey level by ``factor`` (0.8 = contrast lowered by 20%)."""
    f = frames.astype(np.float32)
    mean = f.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((f - mean) * factor + mean + 0.5, 0, 255).astype(np.uint8)


def gaussian_noise(frames: np.ndarray, sigma: float = 0.02, seed: int = 0) -> np.ndarray:
    """Add white Gaussian noise of standard deviation ``sigma`` (in units of the full 0..1 range)."""
    noise = np.random.default_rng(seed).normal(0.0, sigma * 255.0, frames.shape).astype(np.float32)
    return np.clip(frames.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)


def rotate(frames: np.ndarray, degrees: float = 2.0) -> np.ndarray:
    """Rotate each frame about its centre by ``degrees`` (counter-clockwise), same size, corners filled black
    (bilinear), as an editor's straighten tool leaves them."""
    h, w = frames.shape[1:3]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    return np.stack([cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                     for f in frames])


def text_overlay(frames: np.ndarray, text: str = "@user posted", scale: float | None = None) -> np.ndarray:
    """Burn a caption into the lower part of every frame (white with a black outline), as platforms and meme
    tools do. The font scales with the frame: about a sixth of the height is covered."""
    h, w = frames.shape[1:3]
    scale = scale if scale is not None else h / 256.0
    thickness = max(1, round(2 * scale))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    origin = (max(0, (w - tw) // 2), h - max(2, h // 12))
    out = []
    for f in frames:
        f = np.ascontiguousarray(f.copy())
        cv2.putText(f, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(f, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        out.append(f)
    return np.stack(out)


def change_frame_rate(frames: np.ndarray, ratio: float = 0.75) -> np.ndarray:
    """Resample to ``ratio`` x the frame rate over the same duration by taking the nearest earlier frame, as
    ffmpeg's fps filter does (0.75: 8 -> 6 fps, 17 frames -> 13)."""
    t = frames.shape[0]
    n = max(1, int(round((t - 1) * ratio)) + 1)
    return frames[np.minimum(np.floor(np.arange(n) / ratio + 1e-6).astype(int), t - 1)]


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


@dataclass(frozen=True)
class CodecAttack:
    """An edit that ends in a real encoder: ``before`` (an edit of the frames, or None), then ``codec`` at ``crf``.
    Its encoded file is what a benchmark can cache and carry to a machine without PyAV."""

    codec: str
    crf: int
    before: Callable[[np.ndarray], np.ndarray] | None = None

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return reencode(self.before(frames) if self.before else frames, self.crf, codec=self.codec)


# The peer benchmark's codec conditions (they need PyAV), then every condition of its suite (bench/robustness.py,
# docs/benchmarks.md), by name.
CODEC_ATTACKS: dict[str, CodecAttack] = {
    "h264_crf23": CodecAttack("libx264", 23),
    "h264_crf28": CodecAttack("libx264", 28),
    "h264_crf35": CodecAttack("libx264", 35),
    "h265_crf28": CodecAttack("libx265", 28),
    "vp9_crf40": CodecAttack("libvpx-vp9", 40),
    "crop_80%+h264_crf28": CodecAttack("libx264", 28, lambda f: center_crop(f, 0.8)),
}
SUITE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda f: f,
    **{name: CODEC_ATTACKS[name] for name in ("h264_crf23", "h264_crf28", "h264_crf35", "h265_crf28", "vp9_crf40")},
    "resize_0.5": lambda f: resize_and_back(f, 0.5),
    "resize_0.75": lambda f: resize_and_back(f, 0.75),
    "crop_80%": lambda f: center_crop(f, 0.8),
    "crop_60%": lambda f: center_crop(f, 0.6),
    "drop_25%_frames": lambda f: drop_frames(f, 0.25),
    "drop_50%_frames": lambda f: drop_frames(f, 0.5),
    "fps_8_to_6": lambda f: change_frame_rate(f, 0.75),
    "brightness_+10%": lambda f: brighten(f, 1.10),
    "contrast_x0.8": lambda f: contrast(f, 0.8),
    "blur_sigma1": lambda f: blur(f, 1.0),
    "blur_sigma2": lambda f: blur(f, 2.0),
    "noise_sigma0.02": lambda f: gaussian_noise(f, 0.02),
    "rotate_2deg": lambda f: rotate(f, 2.0),
    "text_overlay": text_overlay,
    "crop_80%+h264_crf28": CODEC_ATTACKS["crop_80%+h264_crf28"],
    "resize_0.75+brightness_+10%": lambda f: brighten(resize_and_back(f, 0.75), 1.10),
}
