"""The edit functions the robustness bench uses, and the verifier's undoing of a centre crop, on real frames."""

from __future__ import annotations

import random

import numpy as np

from framemark.detect import attacks, verify
from framemark.generator import world


def _frames() -> np.ndarray:
    spec = world.sample_specs(1, random.Random(3))[0]
    return world.to_uint8_frames(world.render([spec], seed=3)[0])


def test_every_condition_keeps_size_and_dtype():
    frames = _frames()
    for name, attack in attacks.STANDARD.items():
        out = attack(frames)
        assert out.dtype == np.uint8 and out.shape[1:] == frames.shape[1:], name
        expected_t = 13 if name == "drop_25%_frames" else frames.shape[0]
        assert out.shape[0] == expected_t, name


def test_conditions_change_the_pixels_by_plausible_amounts():
    frames = _frames().astype(np.float32)
    assert np.array_equal(attacks.STANDARD["clean"](frames.astype(np.uint8)), frames.astype(np.uint8))
    brighter = attacks.brighten(frames.astype(np.uint8)).astype(np.float32)
    assert 1.04 < brighter.mean() / frames.mean() < 1.09
    for name in ("h264_crf28", "resize_0.75", "blur_sigma1", "crop_80%"):
        err = np.abs(attacks.STANDARD[name](frames.astype(np.uint8)).astype(np.float32) - frames).mean()
        assert 0.3 < err < 40, (name, err)


def test_uncrop_puts_a_centre_crop_back_where_it_came_from():
    frames = _frames()
    restored = verify.uncrop(attacks.center_crop(frames, 0.8), 0.8)
    inner = (slice(None), slice(20, 108), slice(20, 108))
    err = np.abs(restored[inner].astype(np.float32) - frames[inner].astype(np.float32)).mean()
    unrelated = np.abs(restored[inner].astype(np.float32) - frames[::-1][inner].astype(np.float32)).mean()
    assert err < 8 and err < unrelated / 2


def test_hypotheses_cover_dropped_frames_and_crops():
    own_default = verify.hypotheses(17, 128, 128)
    assert [(h.shape.frames, h.crop) for h in own_default] == [(17, 1.0), (17, 0.9), (17, 0.8)]
    dropped = verify.hypotheses(13, 128, 128)
    assert [(h.shape.frames, h.crop) for h in dropped][:2] == [(13, 1.0), (17, 1.0)]
    odd = verify.hypotheses(120, 720, 1280)
    assert all(h.shape == verify.default_shape() for h in odd)
