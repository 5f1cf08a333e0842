"""Batched verification gives what one-at-a-time verification gives: the same Recovery for every clip (p-values,
payload, the hypothesis and model it was read under, how many were tried) and the same verdicts, for real clips
of the embedded model (marked, unmarked, and edited so that the search needs other hypotheses and shapes)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from framemark import media
from framemark.detect.batch import recover_watermark_batch, verify_files
from framemark.detect.recovery import recover_watermark
from framemark.detect.verify import VerifySettings, verify_file
from framemark.lab import attacks

PROMPT = "a cyan star bouncing"


@pytest.fixture(scope="module")
def files(tmp_path_factory, keyed_home, make_clip):
    """Marked, unmarked, cropped (found under a crop hypothesis), frames dropped (13 frames: a shape of its own,
    read at 17), resized (not a shape the model makes: read at the default), cropped off the latent grid (found
    at another phase and polished)."""
    folder = tmp_path_factory.mktemp("batch")
    home = keyed_home("batch")
    marked, plain = folder / "marked.mp4", folder / "plain.mp4"
    record = make_clip(marked, PROMPT, home=home, seed=11, clip_id="0123456789ab", sign=False)
    make_clip(plain, PROMPT, home=home, seed=11, watermark=False, sign=False)
    video = media.read_video(marked)
    paths = {"marked": marked, "plain": plain}
    for name in ("crop_80%", "drop_25%_frames", "resize_0.75"):
        paths[name] = folder / f"{name}.mp4"
        media.write_video(paths[name], attacks.STANDARD[name](video.frames), fps=video.fps)
    # half the area, the box off the latent grid: detected weakly, then polished (recovery.polish); read by the
    # batched-equals-alone check only, since its search costs several more inversions
    off_grid = folder / "crop_off_grid.mp4"
    media.write_video(off_grid, attacks.crop_towards(video.frames, 0.5 ** 0.5, (5 / 37, 31 / 37)), fps=video.fps)
    return {"paths": paths, "off_grid": off_grid, "payload": record["watermark"]["payload"]}


def same_recovery(a, b) -> None:
    """Every field of two Recovery objects equal, the extraction's arrays element by element."""
    assert (a.hypothesis, a.hypotheses_tried, a.hypotheses_total) == (b.hypothesis, b.hypotheses_tried,
                                                                       b.hypotheses_total)
    assert (a.model, a.models_tried, a.models_total) == (b.model, b.models_tried, b.models_total)
    assert (a.stage, a.inversions) == (b.stage, b.inversions)
    for f in dataclasses.fields(a.extraction):
        x, y = getattr(a.extraction, f.name), getattr(b.extraction, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


def test_batched_recovery_equals_one_at_a_time(files, model, watermark_key):
    paths = {**files["paths"], "crop_off_grid": files["off_grid"]}
    clips = {name: media.read_video(path).frames for name, path in paths.items()}
    alone = {name: recover_watermark([model], watermark_key, frames) for name, frames in clips.items()}
    # batch 2: the six clips need several rounds and several calls per round (marked ones stop after one pair)
    batched = dict(zip(clips, recover_watermark_batch([model], watermark_key, list(clips.values()), batch_size=2)))
    for name in clips:
        same_recovery(batched[name], alone[name])
    # the clips exercise what the batching must get right: stops, crops, other generated shapes
    found = {name: r.extraction.detected for name, r in alone.items()}
    assert found == {"marked": True, "plain": False, "crop_80%": True, "drop_25%_frames": True,
                     "resize_0.75": True, "crop_off_grid": True}
    assert alone["crop_off_grid"].stage == "refined"
    assert alone["plain"].hypotheses_tried == alone["plain"].hypotheses_total
    assert alone["crop_80%"].hypothesis.crop < 1.0
    assert alone["drop_25%_frames"].hypothesis.shape.frames == 17 and clips["drop_25%_frames"].shape[0] == 13
    for name in ("marked", "crop_80%", "drop_25%_frames", "resize_0.75", "crop_off_grid"):
        assert alone[name].extraction.payload.hex == files["payload"], name


def test_batch_size_does_not_change_a_recovery(files, model, watermark_key):
    clips = [media.read_video(files["paths"][name]).frames for name in ("marked", "drop_25%_frames", "marked")]
    one = recover_watermark_batch(model, watermark_key, clips, batch_size=1)
    many = recover_watermark_batch(model, watermark_key, clips, batch_size=8)
    for a, b in zip(one, many):
        same_recovery(a, b)


def test_verify_files_gives_verify_files_verdicts(files, model, watermark_key, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)  # a video's header, no video
    paths = [files["paths"]["marked"], broken, files["paths"]["plain"], files["paths"]["crop_80%"]]
    settings = VerifySettings()
    alone = [verify_file(p, key=watermark_key, models=[model], settings=settings).to_dict() for p in paths]
    batched = [v.to_dict() for v in verify_files(paths, key=watermark_key, models=[model], settings=settings,
                                                  batch_size=4)]
    for a, b in zip(alone, batched):
        for row in (a, b):
            row.pop("timing"), row.pop("seconds")
        assert a == b
    assert [r["verdict"] for r in batched] == ["watermarked-synthetic", None, "no-evidence",
                                               "watermarked-synthetic"]


def test_verify_files_without_a_key_checks_c2pa_only(files):
    verdicts = verify_files([files["paths"]["marked"]], key=None, models=[])
    assert verdicts[0].watermark is None
    assert "no watermark key: the watermark was not checked" in verdicts[0].errors


def test_batch_arguments_are_checked(model, watermark_key):
    with pytest.raises(ValueError, match="batch_size"):
        recover_watermark_batch(model, watermark_key, [], batch_size=0)
    with pytest.raises(ValueError, match="at least one model"):
        recover_watermark_batch([], watermark_key, [])
    assert recover_watermark_batch(model, watermark_key, []) == []


# ------------------------------------------------------------------------------------------------ front doors

def _rows(out) -> dict:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {Path(r["file"]).name: (r["verdict"], r["errors"], r["watermark"]) for r in rows}


def test_an_audit_in_batches_gives_the_rows_of_one_file_at_a_time(files, cli, keyed_home, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("marked", "plain", "crop_80%"):
        shutil.copyfile(files["paths"][name], folder / f"{name}.mp4")
    (folder / "notes.mp4").write_text("not a video")  # a file that fails in the batch, alone
    home = keyed_home("batch-audit")
    outs = {}
    for batch in ("1", "4"):
        outs[batch] = tmp_path / f"out{batch}"
        result = cli("audit", folder, "--out", outs[batch], "--batch-size", batch, "--json", home=home)
        assert result.exit_code == 0, result.output
    one, many = _rows(outs["1"]), _rows(outs["4"])
    assert one == many
    # the second audit did verify its four files as one batch (a batch that fails is retried one by one)
    timings = [json.loads(line)["timing"] for line in (outs["4"] / "results.jsonl").read_text().splitlines()]
    assert [t.get("batch_files") for t in timings] == [4, 4, 4, 4]
    assert all("batch_files" not in json.loads(line)["timing"]
               for line in (outs["1"] / "results.jsonl").read_text().splitlines())
    assert one["marked.mp4"][0] == one["crop_80%.mp4"][0] == "watermarked-synthetic"
    assert one["notes.mp4"][0] is None


def test_verify_in_batches_prints_what_one_at_a_time_prints(files, cli, keyed_home):
    home = keyed_home("batch-verify")
    paths = [files["paths"][name] for name in ("marked", "drop_25%_frames", "plain")]
    shown = []
    for batch in ("1", "2"):
        result = cli("verify", *paths, "--json", "--batch-size", batch, home=home)
        assert result.exit_code == 0, result.output
        reports = json.loads(result.stdout)
        shown.append([{k: v for k, v in r.items() if k not in ("timing", "seconds")} for r in reports])
    assert shown[0] == shown[1]
    assert [r["verdict"] for r in shown[0]] == ["watermarked-synthetic", "watermarked-synthetic", "likely-synthetic"]


def test_in_bf16_a_batch_moves_p_values_but_not_what_is_found(files, watermark_key):
    """bf16 rounds the batch's other order of sums visibly (detect/batch.py says how much): the p-values may
    move, the detections, payloads and hypotheses do not."""
    from framemark.generator.models import load_model

    half = load_model(dtype="bf16")
    clips = [media.read_video(files["paths"][name]).frames for name in ("marked", "plain")]
    alone = [recover_watermark(half, watermark_key, frames) for frames in clips]
    batched = recover_watermark_batch(half, watermark_key, clips, batch_size=2)
    for a, b in zip(alone, batched):
        assert (a.extraction.detected, a.hypothesis, a.hypotheses_tried) == (b.extraction.detected, b.hypothesis,
                                                                             b.hypotheses_tried)
        assert (a.extraction.payload.hex if a.extraction.payload else None) == \
            (b.extraction.payload.hex if b.extraction.payload else None)
    assert [a.extraction.detected for a in alone] == [True, False]
    assert alone[0].extraction.payload.hex == files["payload"]
