"""What a front door refuses to decode: size, resolution and duration limits, and how they are written.

Every front door applies the same :class:`Limits`: `verify` and the Python API (an error entry), the audit (a row
saying so) and the service (413/422). They are checked from the file size and the container headers before any
frame is decoded (:meth:`Limits.header_problem`), and again on every decoded frame (:meth:`Limits.frame_problem`,
``media.read_video``'s ``limit``), so a file whose headers lie about its size or length still stops at the limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from framemark.detect import DEFAULT_MAX_FRAMES
from framemark.media import VideoInfo


@dataclass(frozen=True)
class Limits:
    """``max_frames`` is not a refusal: longer clips are checked on their first ``max_frames`` frames.
    ``max_width``/``max_height`` apply to the longer/shorter side, so portrait video is not penalised."""

    max_bytes: int = 2 * 1024 ** 3
    max_duration_s: float = 600.0
    max_width: int = 3840
    max_height: int = 2160
    max_frames: int = DEFAULT_MAX_FRAMES

    def size_problem(self, size: int) -> str | None:
        if size > self.max_bytes:
            return f"over the size limit: {format_bytes(size)} > {format_bytes(self.max_bytes)} (--max-size)"
        return None

    def resolution_problem(self, width: int, height: int) -> str | None:
        long_side, short_side = max(width, height), min(width, height)
        lim_long, lim_short = max(self.max_width, self.max_height), min(self.max_width, self.max_height)
        if long_side > lim_long or short_side > lim_short:
            return (f"over the resolution limit: {width}x{height} > {self.max_width}x{self.max_height} "
                    f"(--max-resolution)")
        return None

    def duration_problem(self, duration_s: float) -> str | None:
        if duration_s > self.max_duration_s:
            return f"over the duration limit: {duration_s:.1f} s > {self.max_duration_s:g} s (--max-duration)"
        return None

    def video_problem(self, width: int, height: int, duration_s: float) -> str | None:
        return self.resolution_problem(width, height) or self.duration_problem(duration_s)

    def header_problem(self, info: VideoInfo) -> str | None:
        """Resolution and duration as the headers state them (``media.probe_video``), the duration being
        :func:`claimed_duration_s`."""
        return self.video_problem(info.width, info.height, claimed_duration_s(info))

    def frame_problem(self, width: int, height: int, t: float) -> str | None:
        """A decoded frame's size and timestamp (seconds from the first frame) against the same limits: what was
        actually decoded, whatever the headers said (``media.read_video(..., limit=limits.frame_problem)``)."""
        problem = self.resolution_problem(width, height)
        if problem is None and t > self.max_duration_s:
            problem = f"over the duration limit: the decoded frames run past {self.max_duration_s:g} s (--max-duration)"
        return problem


def claimed_duration_s(info: VideoInfo) -> float:
    """How long a file says it is: the longer of its recorded duration and its frame count at its rate. A header
    may declare a frame count its duration does not account for (10^9 frames in 2 s); taking the longer reading
    means a lying header cannot promise unbounded decoding."""
    return max(info.duration_s, info.num_frames / info.fps if info.fps > 0 else 0.0)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
               "mib": 1024 ** 2, "g": 1024 ** 3, "gb": 1024 ** 3, "gib": 1024 ** 3, "t": 1024 ** 4, "tb": 1024 ** 4,
               "tib": 1024 ** 4}


def parse_size(text: str) -> int:
    """'500MB', '2G', '1.5GiB', '1048576' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 500MB, 2G, 1048576)")
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if value < 1:
        raise ValueError(f"size must be at least 1 byte, got {text!r}")
    return int(value)


def parse_resolution(text: str) -> tuple[int, int]:
    """'3840x2160' -> (3840, 2160)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"not a resolution: {text!r} (example: 3840x2160)")
    return int(m.group(1)), int(m.group(2))


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
