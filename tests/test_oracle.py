"""The oracle against real renders of the world: clean, degraded like generated clips, and with no object at all.

Everything is rendered by ``world.render`` (no mocks): the oracle is what prompt following is measured with, so
it is measured itself on the very clips it must read.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from framemark.errors import MediaError
from framemark.lab import oracle, world
from framemark.lab.oracle import OracleReading, read_clip, read_file, score
from framemark.media import read_video, write_video

ATTRS = ("colour", "shape", "motion")


def every_combo_specs() -> list[world.SceneSpec]:
    """All 240 (colour, shape, motion) triples once; the background cycles with the sum of the indices so that
    every colour, shape and motion meets every background kind."""
    specs = []
    for i, colour in enumerate(world.COLOURS):
        for j, shape in enumerate(world.SHAPES):
            for k, motion in enumerate(world.MOTIONS):
                specs.append(world.SceneSpec(colour, shape, motion, world.BACKGROUNDS[(i + j + k) % 3]))
    return specs


def render_frames(specs: list[world.SceneSpec], seed: int, **kw) -> list[np.ndarray]:
    out = []
    for start in range(0, len(specs), 40):  # batches bound the memory the renderer needs
        clips = world.render(specs[start:start + 40], seed=seed + start, **kw)
        out.extend(world.to_uint8_frames(c) for c in clips)
    return out


def degrade(frames: np.ndarray, rng: np.random.Generator, path: Path) -> np.ndarray:
    """What a generated clip looks like at worst: soft edges, washed-out colour, noise, and a lossy codec."""
    x = frames.astype(np.float32) / 255.0
    x = np.stack([cv2.GaussianBlur(f, (0, 0), 1.2) for f in x])
    grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    x = grey + 0.75 * (x - grey)  # saturation down by a quarter, brightness kept
    x = x + rng.standard_normal(x.shape, dtype=np.float32) * 0.03
    x = (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    write_video(path, x, fps=8, crf=28)
    return read_video(path).frames


def confusions(readings: list[OracleReading], specs: list[world.SceneSpec]) -> list[tuple[str, str, str | None]]:
    return [(a, getattr(s, a), getattr(r, a)) for r, s in zip(readings, specs) for a in ATTRS
            if getattr(r, a) != getattr(s, a)]


@pytest.fixture(scope="module")
def specs() -> list[world.SceneSpec]:
    return every_combo_specs()


@pytest.fixture(scope="module")
def clips(specs) -> list[np.ndarray]:
    return render_frames(specs, seed=7)


# ---------------------------------------------------------------------------------------------------- accuracy

def test_specs_cover_every_combo_and_background(specs):
    assert len(specs) >= 240
    assert {s.combo for s in specs} == set(world.all_combos())
    assert {s.background for s in specs} == set(world.BACKGROUNDS)
    for attr, names in zip(ATTRS, (world.COLOURS, world.SHAPES, world.MOTIONS)):
        for name in names:
            assert {s.background for s in specs if getattr(s, attr) == name} == set(world.BACKGROUNDS)


def test_reads_clean_renders(clips, specs):
    readings = [read_clip(c) for c in clips]
    acc = score(readings, specs)
    assert all(r.found for r in readings)
    # The issue asks for 0.95 per attribute; every seed tried reads all 240 correctly, so hold a tighter bar
    # that a regression cannot slip under.
    assert min(acc.values()) >= 0.98, (acc, confusions(readings, specs)[:20])


def test_reads_degraded_renders(clips, specs, tmp_path):
    """Blur + desaturation + noise + H.264 crf 28 all at once, on half of the combos (every colour x shape with
    three motions, every motion with half the colour x shape pairs; the codec dominates the test's time)."""
    rng = np.random.default_rng(3)
    def parity(s: world.SceneSpec) -> int:
        return (list(world.COLOURS).index(s.colour) + world.SHAPES.index(s.shape) + world.MOTIONS.index(s.motion)) % 2

    idx = [n for n, s in enumerate(specs) if parity(s) == 0]
    sub = [specs[n] for n in idx]
    readings = [read_clip(degrade(clips[n], rng, tmp_path / f"{n}.mp4")) for n in idx]
    acc = score(readings, sub)
    assert min(acc.values()) >= 0.95, (acc, confusions(readings, sub)[:20])


def test_any_size_and_length():
    """Coordinates are normalised: non-square frames, other lengths and the smallest clip (two frames) read alike."""
    rng = random.Random(11)
    for (h, w, t) in ((96, 160, 9), (160, 96, 12)):
        specs = world.sample_specs(18, rng, world.all_combos())
        readings = [read_clip(c) for c in render_frames(specs, seed=h, frames=t, height=h, width=w)]
        acc = score(readings, specs)
        assert min(acc.values()) >= 0.94, (h, w, t, acc, confusions(readings, specs))
    spec = world.SceneSpec("cyan", "triangle", "left", "gradient")
    reading = read_clip(render_frames([spec], seed=5, frames=2)[0])
    assert (reading.colour, reading.shape, reading.motion) == spec.combo


# ---------------------------------------------------------------------------------------------------- no object

def painted_out(clip: np.ndarray) -> np.ndarray:
    """The clip's own background with the object removed: the background is static, and a moving object
    uncovers every pixel in some frame, so each pixel is taken from the frame where it is greyest."""
    c = clip.astype(np.int16)
    chroma = c.max(axis=-1) - c.min(axis=-1)
    t = chroma.argmin(axis=0)
    bg = np.take_along_axis(clip, t[None, :, :, None], axis=0)[0]
    assert (bg.max(axis=-1).astype(int) - bg.min(axis=-1)).max() <= 1, "object not fully painted out"
    return np.repeat(bg[None], clip.shape[0], axis=0)


@pytest.mark.parametrize("background", world.BACKGROUNDS)
def test_grey_background_alone_reads_as_nothing(background, tmp_path):
    specs = [world.SceneSpec(colour, "square", motion, background)
             for colour, motion in (("red", "left"), ("green", "up"), ("blue", "right"), ("yellow", "down"))]
    rng = np.random.default_rng(0)
    for n, clip in enumerate(render_frames(specs, seed=21)):
        empty = painted_out(clip)
        for frames in (empty, degrade(empty, rng, tmp_path / f"{n}.mp4")):
            reading = read_clip(frames)
            assert not reading.found
            assert (reading.colour, reading.shape, reading.motion) == (None, None, None)
            assert len(reading.centroids) == len(reading.areas) == len(frames)


def test_grey_object_reads_as_nothing(clips):
    """An achromatic object is not an object of any palette colour: the oracle keys on colour, not contrast."""
    for clip in clips[::40]:
        grey = clip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        frames = np.repeat(grey.round().astype(np.uint8)[..., None], 3, axis=-1)
        assert read_clip(frames).colour is None


def test_colour_speckles_are_not_an_object():
    rng = np.random.default_rng(1)
    frames = np.full((17, 128, 128, 3), 120, np.uint8)
    for t in range(17):
        for _ in range(8):
            y, x = rng.integers(0, 126, size=2)
            frames[t, y:y + 2, x:x + 2] = rng.integers(0, 256, size=3)
    assert not read_clip(frames).found


# ---------------------------------------------------------------------------------------------------- api

def test_reading_diagnostics(clips, specs):
    n = next(i for i, s in enumerate(specs) if s.motion == "right")
    r = read_clip(clips[n])
    assert r.found and len(r.centroids) == len(r.areas) == clips[n].shape[0]
    xs = [c[0] for c in r.centroids]
    assert all(0 < x < 1 for x in xs) and xs[-1] - xs[0] > 0.3
    assert all(a > 0 for a in r.areas)
    assert len(r.shape_fit) == len(world.SHAPES) and world.SHAPES[int(np.argmax(r.shape_fit))] == r.shape
    assert np.abs(np.array(r.rgb) - np.array(world.COLOURS[specs[n].colour])).max() < 20
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.colour = "red"


def test_shape_outlines_match_the_world():
    """The oracle's numpy copy of the world's shape definitions must not drift from the original."""
    g = torch.linspace(-1.6, 1.6, 161)
    v, u = torch.meshgrid(g, g, indexing="ij")
    for i in range(len(world.SHAPES)):
        ids = torch.tensor([i])
        expected = world._shape_distance(ids, u[None, None], v[None, None])[0, 0].numpy()
        got = oracle._shape_distance(i, u.numpy().astype(np.float64), v.numpy().astype(np.float64))
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_read_file_round_trip(clips, specs, tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, clips[0], fps=8, crf=18)
    reading = read_file(path)
    assert (reading.colour, reading.shape, reading.motion) == specs[0].combo
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(MediaError):
        read_file(broken)


def test_read_clip_rejects_non_frames():
    with pytest.raises(ValueError):
        read_clip(np.zeros((17, 32, 32, 3), np.float32))
    with pytest.raises(ValueError):
        read_clip(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError):
        read_clip(np.zeros((4, 32, 32), np.uint8))


def test_score_counts_none_as_wrong():
    hit = OracleReading("red", "star", "up", True)
    miss = OracleReading(None, None, None, False)
    wrong = OracleReading("blue", "star", None, True)
    want = world.SceneSpec("red", "star", "up", "flat")
    assert score([hit, miss, wrong, hit], [want, want, ("red", "star", "up"), want]) == \
        {"colour": 0.5, "shape": 0.75, "motion": 0.5}
    with pytest.raises(ValueError):
        score([hit], [want, want])
    with pytest.raises(ValueError):
        score([], [])
