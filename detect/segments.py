"""Finding a generated clip in time: where in a longer upload it may sit, read cheaply from the frames.

A platform loops a clip, re-times it, or a person splices it between other footage. The watermark search
(``detect.recovery``) then needs the frames of the clip itself, not of the whole upload: stretched onto the
generated timeline, a loop reads as reordered frames (tamper) and a splice as foreign frames or nothing at all.
This module proposes the stretches of an upload worth testing, from tiny grey thumbnails alone: hard cuts (a
frame unlike the one before it), and a period that repeats (a loop). Which stretches to test depends on the
content only, never on the key, so the search may count them in its correction and stay exact. What it does not
find: a clip spliced in with a cross-fade (no hard cut), or one re-timed past the models' durations.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Thumbnail side, pixels: enough to see a cut, cheap for 18,000 frames.
THUMB = 16
# A cut: the frame-to-frame change at least this many times the upload's median change, and at least CUT_FLOOR
# (mean absolute difference of 0..1 grey thumbnails).
CUT_RATIO = 6.0
CUT_FLOOR = 0.04
# A loop: the upload repeats with a period whose mean difference is below this share of the consecutive-frame
# change (re-encoding leaves a little).
LOOP_RATIO = 0.35
# At most this many stretches are tested per upload (the longest plausible ones first): a long upload of many
# short shots costs at most this many searches.
MAX_SEGMENTS = 6
# Generated clips re-timed by up to this factor either way are still recognised by their duration.
RETIME = 2.0


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of the upload; ``copies``: how many times it repeats back to back from ``start`` (a
    loop of the clip; 1 for none). ``whole``: it is the whole upload (no other footage around it)."""

    start: int
    stop: int
    copies: int = 1
    whole: bool = False

    @property
    def frames(self) -> int:
        return self.stop - self.start

    def describe(self, fps: float, total_frames: int) -> dict:
        """The verdict's account: where the marked stretch sits, in frames and seconds."""
        return {"start_frame": self.start, "end_frame": self.stop, "start_s": round(self.start / fps, 3),
                "end_s": round(self.stop / fps, 3), "copies": self.copies,
                "upload_frames": total_frames, "upload_s": round(total_frames / fps, 3),
                "inside_other_footage": not self.whole and self.copies * self.frames < total_frames}


def thumbnails(frames: np.ndarray) -> np.ndarray:
    """(T, THUMB, THUMB) float32 grey thumbnails in 0..1 (area-averaged)."""
    return np.stack([cv2.resize(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), (THUMB, THUMB),
                                interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32) / 255.0


def cuts(thumbs: np.ndarray) -> list[int]:
    """Frame indices where a new shot starts (a hard cut), not counting 0."""
    if thumbs.shape[0] < 3:
        return []
    change = np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2))  # change[i]: frame i -> i + 1
    threshold = max(CUT_FLOOR, CUT_RATIO * float(np.median(change)))
    return [int(i) + 1 for i in np.flatnonzero(change > threshold)]


def period(thumbs: np.ndarray, shortest: int, longest: int) -> int | None:
    """The loop period of the upload (in frames) when it repeats itself back to back at least twice, else None."""
    t = thumbs.shape[0]
    consecutive = float(np.abs(np.diff(thumbs, axis=0)).mean()) if t > 1 else 0.0
    if consecutive <= 1e-3:  # a still upload repeats at every period; that is not a loop
        return None
    best, best_score = None, LOOP_RATIO
    for p in range(max(2, shortest), min(longest, t // 2) + 1):
        score = float(np.abs(thumbs[p:] - thumbs[:-p]).mean()) / consecutive
        if score < best_score:
            best, best_score = p, score
    return best


def segments(frames: np.ndarray, fps: float, durations: tuple[float, float, float]) -> list[Segment]:
    """The stretches of an upload to search, most likely first.

    ``durations``: the shortest, the usual (default) and the longest clip (seconds) the models make; a stretch is
    plausible when its duration is within :data:`RETIME` of the shortest to longest range. A loop's first period
    comes first when the upload repeats itself back to back; then the whole upload when it is plausible, or when
    nothing else is (a short upload, or a long one without cuts: the search then reads it as before); then the
    plausible shots between cuts, those nearest the usual duration first, at most :data:`MAX_SEGMENTS` in all.
    """
    t = frames.shape[0]
    shortest, usual, longest = durations
    lo, hi = shortest / RETIME, longest * RETIME

    def plausible(n: int) -> bool:
        return lo <= n / fps <= hi

    thumbs = thumbnails(frames)
    found: list[Segment] = []
    p = period(thumbs, max(2, int(lo * fps)), int(hi * fps) + 1)
    if p is not None:
        found.append(Segment(0, p, copies=t // p))
    if plausible(t) or p is None:
        bounds = [0, *cuts(thumbs), t]
        shots = [Segment(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
        if plausible(t) or len(shots) == 1 or not any(plausible(s.frames) for s in shots):
            found.append(Segment(0, t, whole=True))
        if len(shots) > 1:
            found += sorted((s for s in shots if plausible(s.frames)),
                            key=lambda s: (abs(np.log(s.frames / fps / usual)), s.start))
    return found[:MAX_SEGMENTS]
