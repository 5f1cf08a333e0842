"""The edit functions the robustness bench uses, and the verifier's undoing of a centre crop, on real frames."""

from __future__ import annotations

import random

import numpy as np

from framemark.detect import alignment
from framemark.lab import attacks, world


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
    restored = alignment.uncrop(attacks.center_crop(frames, 0.8), 0.8)
    inner = (slice(None), slice(20, 108), slice(20, 108))
    err = np.abs(restored[inner].astype(np.float32) - frames[inner].astype(np.float32)).mean()
    unrelated = np.abs(restored[inner].astype(np.float32) - frames[::-1][inner].astype(np.float32)).mean()
    assert err < 8 and err < unrelated / 2


def test_hypotheses_cover_dropped_frames_and_crops(model):
    own_default = alignment.hypotheses(model, 17, 128, 128)
    crops = [(17, c, False) for c in (0.9, 0.8, 0.7)]
    assert [(h.shape.frames, h.crop, h.flip) for h in own_default] == [
        (17, 1.0, False), *crops * 4, (17, 1.0, True)]
    assert [h.phase for h in own_default[1:13]] == [(0, 0)] * 3 + [(0, 4)] * 3 + [(4, 0)] * 3 + [(4, 4)] * 3
    assert [h.core for h in own_default[:4]] == [True, True, True, False] and not own_default[-1].core
    dropped = alignment.hypotheses(model, 13, 128, 128)
    assert [(h.shape.frames, h.crop) for h in dropped][:2] == [(13, 1.0), (17, 1.0)]
    odd = alignment.hypotheses(model, 120, 720, 1280)
    assert all(h.shape == alignment.default_shape(model) for h in odd)
    # a 16:9 frame for a square model: stretched back, and also as the strip of a square frame it may be
    assert [h.strip for h in odd[:2]] == [(1.0, 1.0), (0.5625, 1.0)]
    boxed = alignment.hypotheses(model, 17, 720, 1280, box=(0, 280, 720, 720))
    assert (boxed[0].box, boxed[0].strip) == ((0, 280, 720, 720), (1.0, 1.0)) and boxed[1].box is None


def test_peer_suite_attacks_do_what_their_names_say():
    frames = _frames()
    f32 = frames.astype(np.float32)
    for name, attack in attacks.SUITE.items():
        out = attack(frames)
        assert out.dtype == np.uint8 and out.shape[1:] == frames.shape[1:], name
    # frame counts: half dropped; 8 -> 6 fps keeps the duration with 3/4 of the frames
    assert attacks.SUITE["drop_50%_frames"](frames).shape[0] == 9  # round(8.5) = 8 dropped
    assert attacks.SUITE["fps_8_to_6"](frames).shape[0] == 13
    assert np.array_equal(attacks.change_frame_rate(frames, 1.0), frames)
    # photometric edits move the statistics they name and little else
    lower = attacks.contrast(frames, 0.8).astype(np.float32)
    assert abs(lower.mean() - f32.mean()) < 1.0 and 0.75 < lower.std() / f32.std() < 0.85
    noisy = attacks.gaussian_noise(frames, 0.02).astype(np.float32)
    assert 3.5 < (noisy - f32).std() < 5.6  # 0.02 x 255 = 5.1, less where clipping bites
    # a 2 degree rotation leaves the centre in place and blackens the corners
    turned = attacks.rotate(frames, 2.0)
    assert np.abs(turned[:, 60:68, 60:68].astype(np.float32) - f32[:, 60:68, 60:68]).mean() < 12
    assert turned[:, 0, -1].max() == 0
    # the caption is white and sits in the lower part of the frame
    captioned = attacks.text_overlay(frames)
    changed = np.argwhere(np.any(captioned != frames, axis=(0, 3)))
    assert changed[:, 0].min() > 90 and (captioned == 255).all(axis=3).sum() > 100
    # other codecs really re-encode: close to the source, not identical
    for name in ("h265_crf28", "vp9_crf40"):
        err = np.abs(attacks.SUITE[name](frames).astype(np.float32) - f32).mean()
        assert 0.3 < err < 15, (name, err)
    assert set(attacks.CODEC_ATTACKS) <= set(attacks.SUITE)
