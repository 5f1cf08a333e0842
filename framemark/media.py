"""Reading and writing video files: the project's one place that talks to PyAV (FFmpeg).

Everything else in framemark sees video as ``uint8`` RGB arrays shaped ``(T, H, W, 3)`` plus a frame
rate. Keeping PyAV behind this module means its many exception types, its container quirks and its
colour handling are dealt with once:

* Any input that cannot be read as video raises :class:`~framemark.errors.MediaError` whose message
  names the file and says why in plain words. PyAV/FFmpeg exceptions, ``OSError``, ``ValueError``
  and friends never escape :func:`read_video` or :func:`probe_video`.
* :func:`write_video` always writes H.264 (libx264, yuv420p, BT.709 tagged) in MP4, atomically and
  byte-for-byte reproducibly for identical input on the same PyAV/FFmpeg build.

Truncated files: if decoding fails part-way (or the file simply ends early) after at least one
frame was decoded, :func:`read_video` returns the frames it got and sets ``Video.truncated``; a
watermark verifier can still look at what survived. If no frame at all can be decoded it raises
:class:`MediaError`.

Bounded decoding: an upload's size says nothing about what it decodes to (a 4K clip of 10 s is 7.5 GB of RGB,
a flat 16000x16000 frame a few kilobytes on disk). :func:`read_video` and :func:`iter_frames` therefore scale
each frame inside FFmpeg's scaler while decoding (``fit``: the working size; no full-resolution RGB array is
kept), stop after ``max_frames`` (and :func:`read_video` after ``max_bytes`` of held frames), and let the
caller refuse a frame, before it is converted, by its decoded size and timestamp (``limit``), so headers that
lie about a file's size or length cannot promise unbounded work. :func:`check_input` is what every front door
runs before anything reads a file's content: a FIFO, device or socket is refused by ``stat`` alone (opening
one can block forever) and the first bytes must announce a video container.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from framemark.errors import MediaError

__all__ = ["Video", "VideoInfo", "read_video", "iter_frames", "probe_video", "write_video", "check_input",
           "sniff_container", "content_problem", "fitted_size", "jpeg", "DEFAULT_FPS"]

log = logging.getLogger(__name__)

DEFAULT_FPS = 8.0
"""Frame rate assumed when a file does not state one (the generator's native rate)."""

FrameLimit = Callable[[int, int, float], "str | None"]
"""``limit(width, height, t)`` -> a refusal message or None: called with each decoded frame's size and timestamp
(seconds from the first frame) before it is converted; a message ends decoding with MediaError."""

# What PyAV can raise on bad input. av.error.FFmpegError subclasses also derive from the matching
# builtin (InvalidDataError -> ValueError, FileNotFoundError -> OSError, EOFError -> EOFError), but
# PyAV's Python layer raises plain builtins too, so we list those explicitly.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    av.error.FFmpegError,
    OSError,
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    StopIteration,
    RuntimeError,
    UnicodeError,
)

# H.264 in 8-bit yuv420p: crf 0 (lossless) .. 51 (worst).
_CRF_RANGE = range(0, 52)

# BT.709 is what players assume for untagged HD; we convert with that matrix *and* tag the stream, so
# browsers, ffplay and read_video all agree on the colours. (AVCOL_* value 1 is BT.709 for matrix,
# primaries and transfer alike; range 1 is "MPEG"/limited.)
_BT709 = 1
_LIMITED_RANGE = 1


@dataclass(frozen=True)
class Video:
    """Decoded video: ``frames`` is ``uint8`` RGB shaped ``(T, H, W, 3)``; ``fps`` frames per second.

    ``truncated`` is True when the file ended early or broke off with a decoding error after some
    frames were decoded (best effort: it compares against the frame count the container claims).
    """

    frames: np.ndarray
    fps: float
    truncated: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


@dataclass(frozen=True)
class VideoInfo:
    """What a file's headers say about its first video stream (see :func:`probe_video`).

    ``num_frames`` and ``duration_s`` come from the container when it records them, otherwise one is
    derived from the other and ``fps``; for files that record neither, the packets are counted.
    ``codec`` is FFmpeg's codec name (``"h264"``, ``"vp9"``, ...); ``container`` is FFmpeg's demuxer
    name (e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"`` for MP4/MOV, ``"matroska,webm"``, ``"avi"``).
    """

    width: int
    height: int
    fps: float
    num_frames: int
    duration_s: float
    codec: str
    container: str


# --------------------------------------------------------------------------------------------- reading


def read_video(path: str | os.PathLike[str], max_frames: int | None = None, *,
               fit: tuple[int, int] | None = None, max_bytes: int | None = None,
               limit: FrameLimit | None = None) -> Video:
    """Decode the first video stream of ``path`` to RGB frames.

    ``max_frames`` stops decoding after that many frames and ``max_bytes`` once the frames held would exceed that
    many bytes (at least one frame is always kept): longer clips are read from their start, to bound memory and
    time on long uploads; neither makes the video ``truncated``. ``fit`` = (max_width, max_height) scales every
    frame inside FFmpeg's scaler as it is decoded, keeping the aspect ratio and never enlarging (1920x1080 with
    ``fit=(256, 256)`` gives 256x144), so memory follows the working size, not the upload's. ``limit``: see
    :data:`FrameLimit` (a refusal raises MediaError, whatever was decoded before it).
    The frame rate is the stream's average rate, or :data:`DEFAULT_FPS` when the file has none.
    Raises :class:`MediaError` for anything that is not a readable video with at least one frame.
    """
    _check_bounds(max_frames, fit)
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1 or None, got {max_bytes}")
    name = _check_input_file(path)
    frames: list[np.ndarray] = []
    failure: BaseException | None = None
    stopped_early = False
    with _open_for_reading(name) as container:
        stream = _first_video_stream(container, name)
        fps = _stream_fps(stream)
        claimed = stream.frames  # 0 when the container does not say
        try:
            for rgb, _t in _decode(container, stream, name, fit, limit):
                if frames and rgb.shape != frames[0].shape:
                    raise MediaError(
                        f"cannot read video {name!r}: frame size changes mid-stream "
                        f"({frames[0].shape[1]}x{frames[0].shape[0]} -> {rgb.shape[1]}x{rgb.shape[0]})"
                    )
                if frames and max_bytes is not None and (len(frames) + 1) * rgb.nbytes > max_bytes:
                    stopped_early = True
                    break
                frames.append(rgb)
                if max_frames is not None and len(frames) >= max_frames:
                    stopped_early = True
                    break
        except _READ_ERRORS as exc:
            failure = exc
    if not frames:
        if failure is not None:
            raise MediaError(f"cannot read video {name!r}: no frame could be decoded ({_reason(failure)})") from failure
        raise MediaError(f"cannot read video {name!r}: the video stream contains no frames")
    truncated = failure is not None or (not stopped_early and 0 < len(frames) < claimed)
    if truncated:
        why = _reason(failure) if failure is not None else f"container lists {claimed} frames"
        log.warning("%s: decoded only %d frame(s), file looks truncated or damaged (%s)", name, len(frames), why)
    return Video(frames=_stacked(frames), fps=fps, truncated=truncated)


def iter_frames(path: str | os.PathLike[str], fit: tuple[int, int] | None = None, max_frames: int | None = None,
                *, limit: FrameLimit | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """Decode ``path`` one frame at a time: yields ``(frame, t)``, a ``uint8`` RGB frame (H, W, 3) and its
    timestamp in seconds from the first frame, holding nothing between frames (for callers that must look at a
    long upload without keeping it). ``fit``, ``max_frames`` and ``limit`` as for :func:`read_video`.

    Raises MediaError when the file cannot be opened or no frame decodes; a file that breaks off after some
    frames simply ends (logged; :func:`read_video` reports it as ``truncated``). The file is closed when the
    generator is exhausted or closed.
    """
    _check_bounds(max_frames, fit)
    name = _check_input_file(path)
    count = 0
    with _open_for_reading(name) as container:
        stream = _first_video_stream(container, name)
        try:
            for frame, t in _decode(container, stream, name, fit, limit):
                count += 1
                yield frame, t
                if max_frames is not None and count >= max_frames:
                    return
        except _READ_ERRORS as exc:
            if not count:
                raise MediaError(f"cannot read video {name!r}: no frame could be decoded ({_reason(exc)})") from exc
            log.warning("%s: decoding broke off after %d frame(s) (%s)", name, count, _reason(exc))
            return
    if not count:
        raise MediaError(f"cannot read video {name!r}: the video stream contains no frames")


def _check_bounds(max_frames: int | None, fit: tuple[int, int] | None) -> None:
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    if fit is not None and (len(fit) != 2 or min(int(fit[0]), int(fit[1])) < 1):
        raise ValueError(f"fit must be (max_width, max_height), both >= 1, or None; got {fit!r}")


def fitted_size(width: int, height: int, fit: tuple[int, int] | None) -> tuple[int, int]:
    """The size a ``width`` x ``height`` frame is decoded at under ``fit``: inside (max_width, max_height), the
    aspect ratio kept (to the nearest pixel), never enlarged."""
    if fit is None:
        return width, height
    scale = min(1.0, fit[0] / width, fit[1] / height)
    if scale >= 1.0:
        return width, height
    return max(1, min(int(fit[0]), round(width * scale))), max(1, min(int(fit[1]), round(height * scale)))


def _decode(container: Any, stream: Any, name: str, fit: tuple[int, int] | None,
            limit: FrameLimit | None) -> Iterator[tuple[np.ndarray, float]]:
    """The stream's frames as RGB arrays (scaled by FFmpeg when ``fit`` asks for it) and their timestamps.
    PyAV's errors pass through, for the caller to weigh against what was decoded already."""
    stream.thread_type = "AUTO"  # frame + slice threads: several times faster on long clips
    fps = _stream_fps(stream)
    start: float | None = None
    for index, frame in enumerate(container.decode(stream)):
        when = frame.time
        if when is None or not math.isfinite(when):
            when = index / fps
        if start is None:
            start = when
        t = max(0.0, when - start)
        width, height = int(frame.width), int(frame.height)
        if limit is not None:
            problem = limit(width, height, t)
            if problem is not None:
                raise MediaError(f"cannot read video {name!r}: {problem}")
        out_w, out_h = fitted_size(width, height, fit)
        if (out_w, out_h) == (width, height):
            rgb = frame.to_ndarray(format="rgb24")
        else:  # scaled in FFmpeg's scaler, from the decoder's own frame: no full-size RGB copy is ever made
            rgb = frame.to_ndarray(format="rgb24", width=out_w, height=out_h, interpolation="AREA")
        yield rgb, t


def _stacked(frames: list[np.ndarray]) -> np.ndarray:
    """``np.stack(frames)`` while letting go of each frame as it is copied, so the peak is one clip, not two."""
    out = np.empty((len(frames), *frames[0].shape), dtype=frames[0].dtype)
    for i in range(len(frames)):
        out[i] = frames[i]
        frames[i] = None  # type: ignore[call-overload]
    return out


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read the headers of ``path`` (no decoding) to learn its size, rate, length and codec.

    Cheap enough to run before :func:`read_video` to enforce resolution/duration limits. Only when the
    container records neither a frame count nor a duration are the packets counted (a demux pass,
    still without decoding). Raises :class:`MediaError` like :func:`read_video`, including for a
    video stream that provably has no frames.
    """
    name = _check_input_file(path)
    with _open_for_reading(name) as container:
        stream = _first_video_stream(container, name)
        try:
            codec_ctx = stream.codec_context
            width, height = int(codec_ctx.width), int(codec_ctx.height)
            codec = codec_ctx.name
            fmt = container.format.name
            fps = _stream_fps(stream)
            num_frames = int(stream.frames or 0)
            duration_s = _header_duration_s(container, stream)
            if num_frames <= 0 and duration_s is not None and duration_s > 0:
                num_frames = max(1, round(duration_s * fps))
            if num_frames <= 0:  # nothing recorded (or recorded as empty): count packets
                num_frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
            if duration_s is None or duration_s <= 0:
                duration_s = num_frames / fps
        except _READ_ERRORS as exc:
            raise MediaError(f"cannot read video {name!r}: {_reason(exc)}") from exc
    if width <= 0 or height <= 0:
        raise MediaError(f"cannot read video {name!r}: the video stream has no frame size")
    if num_frames <= 0:
        raise MediaError(f"cannot read video {name!r}: the video stream contains no frames")
    return VideoInfo(
        width=width, height=height, fps=fps, num_frames=num_frames, duration_s=float(duration_s),
        codec=codec, container=fmt,
    )


def check_input(path: str | os.PathLike[str]) -> str:
    """What every front door checks before anything reads a file's content (C2PA, the decoder): a regular file
    (a FIFO, device or socket is refused from ``stat`` alone: opening one can block forever), not empty, whose
    first bytes announce a video container (:func:`sniff_container`; an image renamed .mp4 is "not a video").
    Returns the container's name; raises :class:`MediaError`."""
    name = _check_input_file(path)
    try:
        with open(name, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise MediaError(f"cannot read video {name!r}: {exc.strerror or exc}") from exc
    problem = content_problem(head)
    if problem is not None:
        raise MediaError(f"cannot read video {name!r}: {problem}")
    return sniff_container(head) or ""


def _check_input_file(path: str | os.PathLike[str]) -> str:
    """Reject what FFmpeg would misreport or hang on: missing paths, folders, devices/FIFOs, empty files."""
    name = os.fsdecode(os.fspath(path))
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise MediaError(f"cannot read video {name!r}: file not found") from None
    except OSError as exc:
        raise MediaError(f"cannot read video {name!r}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise MediaError(f"cannot read video {name!r}: it is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(f"cannot read video {name!r}: {special_file_kind(st.st_mode)}, not a regular file")
    if st.st_size == 0:
        raise MediaError(f"cannot read video {name!r}: the file is empty (0 bytes)")
    return name


def special_file_kind(mode: int) -> str:
    """What a non-regular file is, in words (``os.stat(...).st_mode``)."""
    if stat.S_ISFIFO(mode):
        return "it is a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "it is a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "it is a device"
    if stat.S_ISDIR(mode):
        return "it is a directory"
    return "it is a special file"


@contextmanager
def _open_for_reading(name: str) -> Iterator[Any]:
    """``av.open`` for reading, with every failure (open, use or close) turned into MediaError."""
    try:
        container = av.open(name, mode="r")
    except _READ_ERRORS as exc:
        raise MediaError(f"cannot read video {name!r}: {_reason(exc)}") from exc
    try:
        yield container
    except MediaError:
        raise
    except _READ_ERRORS as exc:
        raise MediaError(f"cannot read video {name!r}: {_reason(exc)}") from exc
    finally:
        try:
            container.close()
        except _READ_ERRORS:  # nothing useful to report; the caller already has its answer or error
            pass


def _first_video_stream(container: Any, name: str) -> Any:
    streams = container.streams.video
    if not streams:
        kinds = sorted({s.type for s in container.streams})
        has = f" (streams found: {', '.join(kinds)})" if kinds else ""
        raise MediaError(f"cannot read video {name!r}: the file contains no video stream{has}")
    return streams[0]


def _stream_fps(stream: Any) -> float:
    rate = stream.average_rate
    if rate is not None and rate > 0 and math.isfinite(float(rate)):
        return float(rate)
    return DEFAULT_FPS


def _header_duration_s(container: Any, stream: Any) -> float | None:
    """Stream duration if recorded, else the container's (AV_TIME_BASE units), else None."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _reason(exc: BaseException | None) -> str:
    """A human reason for a PyAV/OS failure; FFmpeg's own text is kept in brackets for debugging."""
    if isinstance(exc, av.error.InvalidDataError):
        return "not a readable video (corrupt, truncated or not a video file) [invalid data]"
    if isinstance(exc, EOFError):  # includes av.error.EOFError
        return "the file ends unexpectedly (truncated?)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, av.error.DecoderNotFoundError):
        return "its video codec is not supported"
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"


# --------------------------------------------------------------------------------------------- writing


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: float, crf: int = 18) -> None:
    """Write ``frames`` (``uint8`` RGB, ``(T, H, W, 3)``) to ``path`` as H.264/yuv420p MP4.

    * Odd width/height are padded to even (yuv420p needs it) by repeating the last row/column, so the
      file may be one pixel wider/taller than ``frames``.
    * Atomic: the video is written to a hidden temporary file in the same folder, fsynced, then
      ``os.replace``-d over ``path``; a crash leaves either the old file or the complete new one.
    * Deterministic: x264 runs single-threaded and nothing time-dependent is muxed, so identical
      input gives byte-identical files (on the same PyAV/FFmpeg build).
    * ``fps`` may be fractional (29.97 or ``Fraction(30000, 1001)``); it is stored as a fraction with
      denominator <= 1001. ``crf``: 0 = lossless .. 51 = worst; 18 is visually near-lossless.
    * ``moov`` is placed at the front (faststart) so players can start before the download ends.

    Bad arguments (wrong dtype/shape, non-positive fps, crf out of range) raise ``ValueError``: they are
    the caller's bug, not the user's file. Failures to create or encode the file raise MediaError.
    """
    frames = _validated_frames(frames)
    rate = _validated_rate(fps)
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or int(crf) not in _CRF_RANGE:
        raise ValueError(f"crf must be an int in 0..51, got {crf!r}")
    frames = _pad_to_even(frames)

    name = os.fsdecode(os.fspath(path))
    folder, base = os.path.split(os.path.abspath(name))
    tmp = os.path.join(folder, f".{base}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # A Python file object (not a path) so we can fsync before the rename; "x" refuses to clobber.
        with open(tmp, "x+b") as fh:
            _encode_h264(fh, frames, rate, int(crf))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, name)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, (av.error.FFmpegError, OSError, ValueError)):
            raise MediaError(f"cannot write video {name!r}: {_reason(exc)}") from exc
        raise


def _encode_h264(fh: Any, frames: np.ndarray, rate: Fraction, crf: int) -> None:
    height, width = frames.shape[1:3]
    with av.open(fh, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(
            "libx264", rate=rate, options={"crf": str(crf), "preset": "medium", "threads": "1"}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ctx = stream.codec_context
        ctx.thread_count = 1  # x264's output depends on its thread count; 1 makes it machine-independent
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = _BT709
        ctx.color_range = _LIMITED_RANGE
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=_BT709, dst_color_range=_LIMITED_RANGE)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            container.mux(packet)


def _validated_frames(frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (0..255), got dtype {frames.dtype}; convert before writing")
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be shaped (T, H, W, 3) RGB, got {frames.shape}")
    if min(frames.shape[:3]) < 1:
        raise ValueError(f"frames must have at least one frame and one pixel, got {frames.shape}")
    return frames


def _validated_rate(fps: float) -> Fraction:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a number, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    exact = Fraction(fps) if isinstance(fps, (int, Fraction)) else Fraction(value)
    rate = exact.limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps {fps!r} is too small to represent")
    return rate


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


# --------------------------------------------------------------------------------------------- sniffing

SNIFF_BYTES = 1024
"""How many leading bytes :func:`sniff_container` looks at."""

# ISO BMFF brands that are still images or audio, not video
_NON_VIDEO_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis",
                               b"M4A ", b"M4B ", b"M4P ", b"jp2 ", b"crx "})
_BMFF_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"uuid"})


def sniff_container(head: bytes) -> str | None:
    """The video container the first bytes of a file announce, or None. Content, not the name, decides."""
    if len(head) >= 12 and head[4:8] in _BMFF_BOXES:
        if head[4:8] == b"ftyp" and head[8:12] in _NON_VIDEO_BRANDS:
            return None
        return "mp4/mov"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "matroska/webm"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"0&\xb2u\x8ef\xcf\x11"):
        return "asf/wmv"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "mpeg-ps"
    for start, step in ((0, 188), (4, 192)):  # MPEG-TS, M2TS
        if len(head) > start + 2 * step and all(head[start + k * step] == 0x47 for k in range(3)):
            return "mpeg-ts"
    if head.startswith(b"OggS") and (b"\x80theora" in head or b"OVP80" in head or b"\x01video" in head):
        return "ogg-video"
    if head.startswith(b"DKIF"):
        return "ivf"
    if head.startswith(b"YUV4MPEG2"):
        return "y4m"
    if head.startswith(b"\x00\x00\x00\x01") and len(head) > 4 and (head[4] & 0x1F) in (7, 9):
        return "h264-annexb"
    return None


# what a file that is not a video usually is, by its first bytes (for the message that refuses it)
_NOT_VIDEO_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG image"), (b"\xff\xd8\xff", 0, "a JPEG image"), (b"GIF8", 0, "a GIF image"),
    (b"WEBP", 8, "a WebP image"), (b"BM", 0, "a BMP image"), (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"), (b"%PDF", 0, "a PDF document"), (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"\x1f\x8b", 0, "a gzip archive"), (b"ID3", 0, "MP3 audio"), (b"fLaC", 0, "FLAC audio"),
    (b"WAVE", 8, "WAV audio"),
)
VIDEO_CONTAINERS = "MP4/MOV, Matroska/WebM, AVI, MPEG-TS, ..."


def content_problem(head: bytes) -> str | None:
    """Why a file whose first bytes are ``head`` is not read as video (None: they announce a video container).
    The one wording every front door uses: the CLI, the audit and the API in an error entry, the service in its
    415 answer."""
    if sniff_container(head) is not None:
        return None
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return f"not a video: its content is an ISO file of brand {head[8:12].decode('latin-1')!r} (a still image " \
               f"or audio, not video)"
    kind = next((what for sig, at, what in _NOT_VIDEO_SIGNATURES if head[at:at + len(sig)] == sig), None)
    if kind is None and head and _looks_like_text(head):
        kind = "text"
    if kind is not None:
        return f"not a video: its content is {kind}"
    return f"not a video: its content is not a readable video container ({VIDEO_CONTAINERS})"


def _looks_like_text(head: bytes) -> bool:
    """Printable UTF-8 (a character cut by the end of ``head`` allowed)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[:exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


# --------------------------------------------------------------------------------------------- stills

def jpeg(frame: np.ndarray, longest: int | None = None, quality: int = 85) -> bytes:
    """One uint8 RGB frame (H,W,3) as JPEG bytes, shrunk (area averaging) so its longest side is at most
    ``longest``: the manifest's thumbnail, the audit report's and the web page's pictures."""
    import cv2

    h, w = frame.shape[:2]
    if longest is not None and max(h, w) > longest:
        scale = longest / max(h, w)
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError("could not encode a frame as JPEG")
    return buf.tobytes()
