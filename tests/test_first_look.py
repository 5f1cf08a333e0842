"""The first look: the watermark test on a clip's VAE latent before any inversion (``detect.recovery.STAGES``).
A marked clip of the embedded model is decided by it alone; the inversion runs only where the first look leaves a
clip undecided and, on a model whose card turns ``first_look`` on, not for a clip that shows no trace of the key
(crops at their own phase excepted: their first look does not predict the inversion); the p-value counts both
stages of every pair. Real model, real H.264 files."""

from __future__ import annotations

import copy
import math

import pytest

from framemark import media
from framemark.detect.recovery import (ENCODE_AHEAD, FIRST_LOOK_CONTINUE_P, REFINE_SHARE, count_refinements,
                                       count_tests, encode_entries, encode_hypothesis, recover_watermark,
                                       refine_tests, search_plan)
from framemark.generator.models.base import first_look_of
from framemark.lab import attacks
from framemark.watermark import extract

PROMPT = "a cyan star bouncing"


@pytest.fixture(scope="module")
def clips(tmp_path_factory, keyed_home, make_clip):
    folder = tmp_path_factory.mktemp("first-look")
    home = keyed_home("first-look")
    marked, plain = folder / "marked.mp4", folder / "plain.mp4"
    record = make_clip(marked, PROMPT, home=home, seed=11, clip_id="0123456789ab", sign=False)
    make_clip(plain, PROMPT, home=home, seed=11, watermark=False, sign=False)
    frames = media.read_video(marked).frames
    return {"marked": frames, "plain": media.read_video(plain).frames,
            "cropped": attacks.STANDARD["crop_80%"](frames), "payload": record["watermark"]["payload"]}


def test_the_first_look_is_on_only_where_a_card_says_it_was_measured_to_work(model):
    from framemark.generator.models import COGVIDEOX_MODEL_DIR, load_model

    assert model.first_look is True  # measured: docs/benchmarks.md, "The first look"
    # measured too, and off: the CogVideoX toy's clean latents carry no trace of the key
    assert load_model(COGVIDEOX_MODEL_DIR).first_look is False
    assert first_look_of({}) is False
    assert first_look_of({"verification": {"first_look": "yes"}}) is False  # only an explicit true counts
    assert first_look_of({"verification": {"first_look": True}}) is True


def test_a_marked_clip_is_decided_by_its_latent_alone(clips, model, watermark_key):
    frames = clips["marked"]
    found = recover_watermark([model], watermark_key, frames)
    assert found.extraction.detected and found.extraction.payload.hex == clips["payload"]
    assert (found.stage, found.inversions, found.hypotheses_tried) == ("encoded", 0, 1)
    # the reported p-value is the latent's own test times every test the search could make (pairs x stages, and
    # with crops in the plan their refinements' share of the budget set aside: a weighted union bound summing to 1)
    plan = search_plan([model], frames)
    hyp = plan[0].hypothesis
    raw = extract(watermark_key, encode_hypothesis(model, frames, hyp),
                  template_frames=model.autoencoder.latent_frames(hyp.shape.frames))
    assert count_tests(plan) == pytest.approx(2 * len(plan) / (1 - REFINE_SHARE))
    assert 2 * len(plan) / count_tests(plan) + count_refinements(plan) / refine_tests(plan) == pytest.approx(1.0)
    assert found.extraction.log10_p_value == pytest.approx(raw.log10_p_value + math.log10(count_tests(plan)))


def test_an_unmarked_clip_is_not_inverted_when_the_card_allows_and_is_otherwise(clips, model, watermark_key):
    cheap = recover_watermark([model], watermark_key, clips["plain"])
    plan = search_plan([model], clips["plain"])
    crops = [entry for entry in plan if entry.hypothesis.crop < 1.0]
    own_phase = [entry for entry in crops if entry.hypothesis.phase == (0, 0)]
    assert not cheap.extraction.detected
    # crops are always inverted at their own phase (their first look does not predict it), at the other phases
    # only on a trace; no trace of the key, so none refined
    assert 0 < len(own_phase) < len(crops)
    assert cheap.hypotheses_tried == cheap.hypotheses_total and cheap.inversions == len(own_phase)
    # the first look shows no trace of the key on any pair: an uncorrected p above the continue bound
    assert cheap.extraction.log10_p_value - math.log10(count_tests(plan)) > math.log10(FIRST_LOOK_CONTINUE_P)
    unmeasured = copy.copy(model)
    unmeasured.first_look = False  # a model without the measurement: every undecided core hypothesis is inverted
    full = recover_watermark([unmeasured], watermark_key, clips["plain"])
    assert not full.extraction.detected
    inverted = [entry for entry in plan if (entry.hypothesis.core and entry.hypothesis.crop >= 1.0)
                or (entry.hypothesis.crop < 1.0 and entry.hypothesis.phase == (0, 0))]
    assert 0 < len(inverted) < len(plan)  # mirrors cost an encode only
    assert full.inversions == len(inverted) and full.hypotheses_tried == len(plan)


def test_a_crop_is_found_under_its_hypothesis_by_either_search(clips, model, watermark_key):
    unmeasured = copy.copy(model)
    unmeasured.first_look = False
    for m in (model, unmeasured):
        found = recover_watermark([m], watermark_key, clips["cropped"])
        assert found.extraction.detected and found.hypothesis.crop < 1.0, m.first_look
        assert found.extraction.payload.hex == clips["payload"]


def test_entries_encoded_together_are_the_entries_encoded_alone(clips, model):
    import torch

    frames = clips["plain"]
    plan = search_plan([model], frames)
    together = encode_entries([model], frames, plan, 0)
    assert sorted(together) == list(range(ENCODE_AHEAD))
    for i, latent in together.items():
        alone = encode_hypothesis(model, frames, plan[i].hypothesis)
        assert latent.shape == alone.shape and torch.allclose(latent, alone, atol=1e-4)
    assert sorted(encode_entries([model], frames, plan, len(plan) - 1)) == [len(plan) - 1]  # nothing after it
    # frames dropped (13 of 17): the clip's own shape, then the default one; a call never mixes two shapes
    dropped = search_plan([model], frames[:13])
    assert dropped[0].hypothesis.shape != dropped[1].hypothesis.shape
    assert sorted(encode_entries([model], frames[:13], dropped, 0)) == [0]
