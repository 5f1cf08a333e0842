"""Marked clips are found after the edits platforms make (issue 18): reframed onto a canvas (black, coloured or
blurred bars), mirrored, strip-cut for a vertical feed, looped, spliced into real footage; the geometry and the
stretch are read from the content (``detect.alignment.content_box``, ``detect.segments``), every hypothesis is
counted in the p-value, and real footage under the same edits is never detected. Real model, real H.264 files,
the real `framemark verify` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from framemark import media
from framemark.detect import alignment, segments
from framemark.lab import attacks

PROMPT = "a cyan star bouncing"


@pytest.fixture(scope="module")
def clip(tmp_path_factory, keyed_home, make_clip):
    folder = tmp_path_factory.mktemp("platform")
    home = keyed_home("platform")
    marked = folder / "marked.mp4"
    record = make_clip(marked, PROMPT, home=home, seed=11, clip_id="0123456789ab", sign=False)
    return {"frames": media.read_video(marked).frames, "payload": record["watermark"]["payload"],
            "folder": folder, "home": home}


@pytest.mark.parametrize("fill", ["black", "colour", "blur"])
@pytest.mark.parametrize("canvas", [(720, 1280), (1920, 1080)])
def test_the_content_box_is_read_from_the_bars(clip, fill, canvas):
    edited = attacks.on_canvas(clip["frames"][:6], *canvas, fill=fill)
    picture = attacks.fit_into(clip["frames"][:1], *canvas).shape[1:3]
    box = alignment.content_box(edited)
    assert box is not None
    top, left, h, w = box
    expect_top, expect_left = (canvas[0] - picture[0]) // 2, (canvas[1] - picture[1]) // 2
    # within the two pixels trimmed at each bar, plus a little for the codec-free resampling's soft edge
    assert abs(top - expect_top) <= 8 and abs(left - expect_left) <= 8, (box, expect_top, expect_left)
    assert abs(h - picture[0]) <= 16 and abs(w - picture[1]) <= 16, (box, picture)
    assert alignment.content_box(clip["frames"]) is None  # a clip without bars has none


def test_a_strip_is_placed_back_in_the_generated_frame(clip):
    shape = alignment.GenerationShape(17, 128, 128)
    assert alignment.strip_of((0, 0, 640, 360), shape) == pytest.approx((1.0, 0.5625))
    assert alignment.strip_of((0, 0, 720, 720), shape) == (1.0, 1.0)
    mask = alignment.interior_mask(1.0, 128, 128, 8, (1.0, 0.5625))
    assert mask[:, 4:12].all() and not mask[:, :3].any() and not mask[:, 13:].any()


def test_loops_and_splices_are_found_in_time(clip):
    frames = clip["frames"]
    looped = segments.segments(attacks.loop(frames), 8.0, (0.625, 2.125, 4.125))
    assert (looped[0].start, looped[0].stop, looped[0].copies) == (0, 17, 3)
    spliced = attacks.splice(frames)
    found = segments.segments(spliced, 8.0, (0.625, 2.125, 4.125))
    middle = (spliced.shape[0] - 17) // 2
    # the shot nearest the models' usual duration comes first: the clip
    assert abs(found[0].start - middle) <= 1 and abs(found[0].stop - (middle + 17)) <= 1, found
    assert all(not s.whole for s in found)
    alone = segments.segments(frames, 8.0, (0.625, 2.125, 4.125))
    assert alone[0].whole and (alone[0].start, alone[0].stop) == (0, 17)


def _verify(cli, clip, paths):
    result = cli("verify", *map(str, paths), "--json", home=clip["home"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_stretches_of_a_longer_upload_are_searched_without_crops_or_mirrors(clip, model):
    # the whole clip: crops (each registered within its reach) and mirrors; a splice's stretches: plain views only,
    # so that up to MAX_SEGMENTS stretches do not each cost every crop's and mirror's encode
    from framemark.detect import recovery

    whole = recovery.search_plan([model], clip["frames"], 8.0)
    assert any(c.hypothesis.crop < 1.0 for c in whole) and any(c.hypothesis.flip for c in whole)
    assert all(c.hypothesis.reach == alignment.crop_reach(c.hypothesis.crop, c.hypothesis.shape, 8)
               for c in whole)
    # a box against any edge is within a quarter of a cell (2 px) of a position the search reads: registration's
    # whole cells within reach, each also at the phases' half cell down and right
    for crop in alignment.CROP_FRACTIONS:
        reach = alignment.crop_reach(crop, alignment.GenerationShape(17, 128, 128), 8)[0]
        room = (1.0 - crop) * 128 / 2  # px between the centred box and either edge
        read = [8 * k + 4 * p for k in range(-reach, reach + 1) for p in (0, 1)]
        assert all(min(abs(edge - r) for r in read) <= 2 for edge in (-room, room)), crop
    spliced = recovery.search_plan([model], attacks.splice(clip["frames"]), 8.0)
    stretches = [c for c in spliced if not c.segment.whole]
    assert stretches and all(c.hypothesis.crop == 1.0 and not c.hypothesis.flip for c in stretches)


def test_refinements_are_fixed_by_the_hypothesis_and_stay_in_the_frame(model):
    from dataclasses import replace

    from framemark.detect import recovery

    plan = recovery.search_plan([model], np.zeros((17, 128, 128, 3), np.uint8))
    crops = [c.hypothesis for c in plan if c.hypothesis.crop < 1.0]
    assert crops and all(not alignment.nudges(c.hypothesis) for c in plan if c.hypothesis.crop >= 1.0)
    # every crop at every half-cell phase of the latent grid, its own phase first
    assert {(h.crop, h.phase) for h in crops} == {(c, p) for c in alignment.CROP_FRACTIONS
                                                  for p in ((0, 0), (0, 4), (4, 0), (4, 4))}
    assert [h.phase for h in crops[:len(alignment.CROP_FRACTIONS)]] == [(0, 0)] * len(alignment.CROP_FRACTIONS)
    full = len(alignment.NUDGE_SIZES) * len(alignment.NUDGE_MOVES) ** 2 - 1
    for hyp in crops:
        grid = alignment.nudges(hyp)
        assert 0 < len(grid) <= full and (0, 0, 0) not in grid and len(set(grid)) == len(grid)
        for nudge in grid:
            placed = replace(hyp, nudge=nudge).placement
            top, left, h, w = alignment.crop_box(128, 128, hyp.crop, placed)
            assert 0 <= top and 0 <= left and top + h <= 128 and left + w <= 128 and h < 128
            mask = alignment.interior_mask(hyp.crop, 128, 128, 8, nudge=placed)
            assert mask.any() and mask.sum() <= (h // 8) * (w // 8)
    # a phase that would push the box out of a small frame is not searched (58 px of 64, 3 px from the top)
    assert alignment.box_fits(64, 64, 0.9, (0, 0, 0)) and not alignment.box_fits(64, 64, 0.9, (0, 4, 4))
    # side changes keep the aspect; moves move the box and the cells tested with it
    assert alignment.crop_box(480, 832, 0.7, (6, 0, 0))[2:] == (342, 593)
    moved = alignment.interior_mask(0.7, 128, 128, 8, nudge=(0, 8, 0))
    assert np.array_equal(moved[1:], alignment.interior_mask(0.7, 128, 128, 8)[:-1])
    # the weighted union bound: plain and refined readings share the level exactly
    total = 2 * len(plan) / recovery.count_tests(plan) + recovery.count_refinements(plan) / recovery.refine_tests(plan)
    assert total == pytest.approx(1.0)


def test_a_crop_between_the_searched_fractions_is_refined_towards_its_box(clip, model, watermark_key):
    # a centred crop keeping 0.75 of each side lies between the searched 0.8 and 0.7: under 0.8 the restored box
    # (102 px) is 3 px off the crop's (96 px) at the edges; the refinement moves it a pixel or two at a time
    # towards the crop's, and the reading grows with every step it takes
    from dataclasses import replace

    from framemark.detect import recovery

    frames = attacks.center_crop(clip["frames"], 0.75)
    plan = recovery.search_plan([model], frames, 8.0)
    pair = next(i for i, c in enumerate(plan) if c.hypothesis.crop == 0.8)
    hyp, total = plan[pair].hypothesis, recovery.count_tests(plan)
    latent = recovery.encode_hypothesis(model, frames, hyp)
    raw = [recovery.read_hypothesis(model, watermark_key, z, hyp, total) for z in (latent, model.invert(latent, 10))]
    coarse = min(ex.log10_p_value for ex in raw)
    assert coarse < -2  # a trace of the key at least
    price = math.log10(recovery.refine_tests(plan))
    readings = recovery.refine_crop(model, watermark_key, frames, pair, hyp, raw, recovery.refine_tests(plan))
    assert 0 < len(readings) <= recovery.MAX_REFINE_READINGS and {r.stage for r in readings} == {"refined"}
    best = min(readings, key=lambda r: r.extraction.log10_p_value)
    assert best.extraction.detected and best.extraction.payload.hex == clip["payload"]
    assert best.extraction.log10_p_value + price < coarse - 2
    side = alignment.crop_box(128, 128, best.hypothesis.crop, best.hypothesis.placement)[2]
    assert abs(side - 96) < abs(round(0.8 * 128) - 96)
    # what starts a refinement: a trace without a detection
    trace = replace(raw[0], detected=False, log10_p_value=-3.0)
    assert recovery.worth_refining(hyp, [trace])
    assert not recovery.worth_refining(hyp, [replace(trace, log10_p_value=-1.0)])
    assert not recovery.worth_refining(hyp, [trace, replace(trace, detected=True)])
    assert not recovery.worth_refining(plan[0].hypothesis, [trace])  # not a crop


def test_a_crop_off_the_latent_grid_is_read_at_another_phase(clip, model, watermark_key):
    from dataclasses import replace

    # half the area kept, the box 7 px from the top and 30 px from the left of 128: at its own phase the restored
    # box is 3 and 4 px off the cells of registration's whole-cell offsets, and the mark reads nothing; moved
    # half a cell on each axis it is within a pixel, and the first look alone already shows the key
    from framemark.detect import recovery

    frames = attacks.PLATFORM_EDITS["crop_area50%_offcentre"](clip["frames"])
    plan = recovery.search_plan([model], frames, 8.0)
    total = recovery.count_tests(plan)
    own, moved = (next(c.hypothesis for c in plan if c.hypothesis.crop == 0.7 and c.hypothesis.phase == phase)
                  for phase in ((0, 0), (4, 4)))
    readings = {}
    for hyp in (own, moved):
        latent = recovery.encode_hypothesis(model, frames, hyp)
        first = recovery.read_hypothesis(model, watermark_key, latent, hyp, total)
        inverted = recovery.check_hypothesis(model, watermark_key, model.invert(latent, 10), hyp, total)
        readings[hyp.phase] = (first, inverted)
    assert not any(ex.detected for ex in readings[(0, 0)])
    assert not recovery.worth_refining(own, [recovery.read_hypothesis(model, watermark_key,
                                                                      recovery.encode_hypothesis(model, frames, own),
                                                                      own, total)])
    first, inverted = readings[(4, 4)]
    assert recovery.worth_inverting(model, first, moved)  # its first look shows a trace
    assert inverted.detected and inverted.payload.hex == clip["payload"]
    # an unmarked first look at another phase is not inverted; at the crop's own phase it always is
    blank = recovery.read_hypothesis(model, watermark_key, _unmarked_latent(model, moved), moved, total)
    assert blank.log10_p_value > math.log10(recovery.PHASE_TRACE_P)
    assert not recovery.worth_inverting(model, blank, moved)
    assert recovery.worth_inverting(model, blank, own)
    # the gate reads the test's own p-value: a trace too weak to survive the search's correction still counts
    faint = replace(blank, log10_p_value=-1.0)
    assert recovery.corrected(faint, total, recovery.DEFAULT_FPR).log10_p_value == 0.0
    assert recovery.worth_inverting(model, faint, moved)


def _unmarked_latent(model, hyp):
    """Noise of the latent shape of ``hyp`` that no key marked."""
    import torch

    s = hyp.shape
    return torch.randn(model.latent_shape(s.frames, s.height, s.width), generator=torch.Generator().manual_seed(5))


@pytest.mark.slow
def test_marked_clips_are_found_after_platform_edits_and_real_footage_is_not(clip, cli):
    # a crop to 60 % of the area is found in every clip of the platform bench (50); half the area in 94-98 %
    # (docs/benchmarks.md says so), so it is not asserted here
    edits = ["letterbox_1280x720", "vertical_1080x1920_blur", "hflip", "strip_9x16", "loop_x3", "splice_20s_real",
             "crop_area60%"]
    paths = []
    for name in edits:
        path = clip["folder"] / f"{name}.mp4"
        media.write_video(path, attacks.PLATFORM_SUITE[name](clip["frames"]), fps=8.0)
        paths.append(path)
    reports = dict(zip(edits, _verify(cli, clip, paths)))
    for name, report in reports.items():
        mark = report["watermark"]
        assert mark["detected"] and mark["payload"] == clip["payload"], (name, mark["log10_p_value"])
    assert reports["hflip"]["watermark"]["alignment"]["flipped"] is True
    assert reports["letterbox_1280x720"]["watermark"]["alignment"]["content_box"] is not None
    assert reports["strip_9x16"]["watermark"]["alignment"]["strip"][1] < 1.0
    cropped = reports["crop_area60%"]["watermark"]["alignment"]
    assert cropped["crop_undone"] < 1.0 and cropped["crop_box"] is not None
    loop = reports["loop_x3"]
    assert loop["verdict"] == "watermarked-synthetic" and loop["watermark"]["segment"]["copies"] == 3
    splice = reports["splice_20s_real"]
    assert splice["verdict"] == "watermarked-segment"
    seg = splice["watermark"]["segment"]
    assert seg["inside_other_footage"] and 9.5 <= seg["start_s"] <= 10.5 and seg["end_s"] - seg["start_s"] > 1.9

    real = attacks.real_footage(clip["frames"], seconds=2.125)
    real_paths = []
    for name in ("letterbox_1280x720", "hflip"):
        path = clip["folder"] / f"real-{name}.mp4"
        media.write_video(path, attacks.PLATFORM_SUITE[name](real), fps=8.0)
        real_paths.append(path)
    for report in _verify(cli, clip, real_paths):
        assert report["watermark"]["detected"] is False, report["file"]
        assert np.isfinite(report["watermark"]["log10_p_value"])


def test_a_weak_crop_detection_is_polished_for_its_payload(clip, model, watermark_key):
    # a half-area crop whose box (5 and 31 px from the top and left of 128) sits 2 px above the box the search
    # reads at phase (4, 4) detects there, weakly, and the search would stop at it; polishing walks the box onto
    # the crop's and reports the stronger reading, with the clip's payload
    from dataclasses import replace

    from framemark.detect import recovery

    frames = attacks.crop_towards(clip["frames"], 0.5 ** 0.5, (5 / 37, 31 / 37))
    plan = recovery.search_plan([model], frames, 8.0)
    pair = next(i for i, c in enumerate(plan) if c.hypothesis.crop == 0.7 and c.hypothesis.phase == (4, 4))
    hyp = plan[pair].hypothesis
    ex = recovery.check_hypothesis(model, watermark_key,
                                   model.invert(recovery.encode_hypothesis(model, frames, hyp), 10), hyp,
                                   recovery.count_tests(plan))
    assert ex.detected and ex.log10_p_value > -recovery.POLISH_BELOW  # a weak detection
    stop = [recovery.Reading(pair, "inverted", ex)]
    polished = recovery.polish([model], watermark_key, frames, plan, stop)
    assert 0 < len(polished) <= recovery.MAX_REFINE_READINGS and {r.stage for r in polished} == {"refined"}
    found = recovery.conclude([model], plan, stop, polished)
    assert found.extraction.log10_p_value < ex.log10_p_value and found.stage == "refined"
    assert found.extraction.detected and found.extraction.payload.hex == clip["payload"]
    assert found.hypothesis.nudge[1] == -2 and found.inversions == 1 + len(polished)  # up onto the crop's box
    # a strong detection, or one without a box to move, is left as it is
    strong = [replace(stop[0], extraction=replace(ex, log10_p_value=-recovery.POLISH_BELOW - 1))]
    assert recovery.polish([model], watermark_key, frames, plan, strong) == []
    plain = [recovery.Reading(0, "inverted", ex)]
    assert plan[0].hypothesis.crop == 1.0 and recovery.polish([model], watermark_key, frames, plan, plain) == []
