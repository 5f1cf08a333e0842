"""`framemark generate` end to end: files it writes, batches, and exit codes for bad input.

The commands run in-process through click's runner (conftest's ``cli``) against the real default model; one test
runs the installed console script to prove the entry point itself works.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framemark.media import probe_video, read_video

FAST = ["--steps", "3"]


def test_generate_writes_an_h264_clip_and_same_seed_gives_same_frames(tmp_path, cli):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for target in (a, b):  # two real runs (not the clip factory, which copies identical requests)
        result = cli("generate", "a red circle moving left", "-o", str(target), "--seed", "5", "--no-watermark",
                     "--no-sign", *FAST)
        assert result.exit_code == 0, result.output
    info = probe_video(a)
    assert (info.codec, info.width, info.height, info.num_frames, info.fps) == ("h264", 128, 128, 17, 8)
    assert np.array_equal(read_video(a).frames, read_video(b).frames)
    assert a.read_bytes() == b.read_bytes()


def test_marked_clips_are_unique_per_clip_id_and_reproducible_with_it(tmp_path, cli, keyed_home):
    """Each marked clip carries its own random clip id (so frames differ); the same id reproduces it exactly."""
    home = keyed_home("unique")
    paths = [tmp_path / f"{name}.mp4" for name in ("r1", "r2", "f1", "f2")]
    ids = [None, None, "0123456789ab", "0123456789ab"]
    for path, clip_id in zip(paths, ids):
        extra = ["--clip-id", clip_id] if clip_id else []
        result = cli("generate", "a red circle moving left", "-o", path, "--seed", 5, "--json", *extra, *FAST,
                     home=home)
        assert result.exit_code == 0, result.output
    r1, r2, f1, f2 = (read_video(p).frames for p in paths)
    assert not np.array_equal(r1, r2)
    # same frames; the files differ only by their manifests (each has its own instance id and signature)
    assert np.array_equal(f1, f2) and paths[2].read_bytes() != paths[3].read_bytes()
    plain = [tmp_path / "n1.mp4", tmp_path / "n2.mp4"]
    for path in plain:
        args = ["-o", path, "--seed", 5, "--clip-id", "0123456789ab", "--no-sign", *FAST]
        assert cli("generate", "a red circle moving left", *args, home=home).exit_code == 0
    assert plain[0].read_bytes() == plain[1].read_bytes()
    assert cli("generate", "a red circle", "-o", tmp_path / "x.mp4", "--clip-id", "xyz", home=home).exit_code == 2


def test_generate_json_output_is_machine_readable(tmp_path, cli):
    result = cli("generate", "a green star growing", "-o", tmp_path / "c.mp4", "--json", *FAST)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert record["ok"] and record["seed"] == 0 and record["path"].endswith("c.mp4")
    assert record["model"]["name"] == "framemark-wan-tiny"
    assert record["c2pa"]["alg"] == "es256" and record["c2pa"]["prompt_policy"] == "hash"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]  # no temporary files left behind


@pytest.mark.parametrize("args, message", [
    (["   "], "empty"),
    ([" ".join(["blue"] * 50)], "tokens"),
    (["a red circle", "--height", "100"], "height"),
    (["a red circle", "--frames", "18"], "frames"),
    (["a red circle", "--model", "/nonexistent/model"], "not found"),
])
def test_bad_requests_exit_2_with_a_message_and_no_traceback(tmp_path, cli, args, message):
    result = cli("generate", *args, "-o", tmp_path / "x.mp4", *FAST)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.mp4").exists()


def test_prompt_and_prompts_file_are_exclusive(tmp_path, cli):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moving left\n")
    result = cli("generate", "a red circle", "--prompts", prompts, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "either" in result.output
    assert cli("generate", "-o", tmp_path / "x.mp4").exit_code == 2


def test_batch_keeps_going_past_a_bad_prompt_and_exits_3(tmp_path, cli, keyed_home):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# comment\na red circle moving left\n\n" + " ".join(["red"] * 60) + "\na blue cross falling\n")
    out = tmp_path / "clips"
    result = cli("generate", "--prompts", prompts, "-o", out, "--json", *FAST, home=keyed_home("batch"))
    assert result.exit_code == 3, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["ok"] for r in records] == [True, False, True]
    assert [r["seed"] for r in records] == [0, 1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["0001.mp4", "0003.mp4"]
    assert probe_video(out / "0003.mp4").num_frames == 17


def test_incomplete_model_folder_is_reported_not_raised(tmp_path, cli):
    from framemark.generator.models import DEFAULT_MODEL_DIR

    broken = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, broken)
    shutil.rmtree(broken / "transformer")
    result = cli("generate", "a red circle", "-o", tmp_path / "x.mp4", "--model", broken)
    assert result.exit_code == 2 and "incomplete" in result.output


def test_console_script_entry_point(tmp_path):
    exe = Path(sys.executable).with_name("framemark")
    result = subprocess.run([str(exe), "generate", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--prompts" in result.stdout
