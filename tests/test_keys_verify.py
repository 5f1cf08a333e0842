"""Key storage, marking by default, and `framemark verify` on real files (good, corrupt, not video)."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest
from click.testing import CliRunner

from framemark import keys
from framemark.cli import main
from framemark.generator import emit, pipeline
from framemark.watermark import Payload, WatermarkKey, extract


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMEMARK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_keys_init_writes_a_private_key_and_refuses_to_overwrite(home):
    result = run("keys", "init")
    assert result.exit_code == 0, result.output
    path = home / keys.WATERMARK_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = keys.load_watermark_key()
    assert key.key_id in result.output and key.secret.hex() not in result.output
    again = run("keys", "init")
    assert again.exit_code == 2 and "already exists" in again.output
    assert keys.load_watermark_key() == key
    assert run("keys", "init", "--force").exit_code == 0
    assert keys.load_watermark_key() != key


def test_malformed_key_file_is_a_clear_error(home):
    home.mkdir(parents=True)
    (home / keys.WATERMARK_KEY_FILE).write_text('{"version": 1, "secret": "zz"}')
    with pytest.raises(keys.KeyError_, match="not usable"):
        keys.load_watermark_key()


def test_first_generate_creates_the_key_and_marks_the_clip(home, tmp_path):
    out = tmp_path / "c.mp4"
    result = run("generate", "a red circle moving left", "-o", str(out), "--steps", "3", "--json")
    assert result.exit_code == 0, result.output
    assert "created a watermark key" in result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    key = keys.load_watermark_key()
    assert record["watermark"]["key_id"] == key.key_id
    unmarked = run("generate", "a red circle moving left", "-o", str(tmp_path / "u.mp4"), "--steps", "3",
                   "--no-watermark", "--json")
    assert json.loads(unmarked.output.strip().splitlines()[-1])["watermark"] is None


def test_generation_starts_from_the_marked_noise():
    """The marked z_T is what the sampler starts from: frames equal a direct call with those latents, and the
    latents themselves carry the payload."""
    pipe = pipeline.load_pipeline()
    key, payload = WatermarkKey(bytes(32)), Payload(0x123456789ABC)
    request = pipeline.GenerationRequest("a blue square moving right", seed=4, steps=3)
    z_t = emit.watermarked_latents(pipe, request, key, payload)
    assert z_t.shape == pipeline.latent_shape(pipe, request)
    assert extract(key, z_t).payload == payload
    plain = pipeline.generate_frames(pipe, request)
    marked = pipeline.generate_frames(pipe, request, latents=z_t)
    assert not np.array_equal(plain, marked)
    assert np.array_equal(marked, pipeline.generate_frames(pipe, request, latents=z_t.clone()))


def test_verify_reports_each_file_and_exits_3_on_bad_ones(home, tmp_path):
    run("keys", "init")
    good = tmp_path / "good.mp4"
    assert run("generate", "a red circle moving left", "-o", str(good), "--steps", "3").exit_code == 0
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    result = run("verify", str(good), str(corrupt), str(text), "--json", "--steps", "2")
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    reports = json.loads(result.output[result.output.index("["):])
    assert [r["file"] for r in reports] == [str(good), str(corrupt), str(text)]
    assert reports[0]["errors"] == [] and reports[0]["watermark"]["key_id"] == keys.load_watermark_key().key_id
    assert 0.0 <= reports[0]["watermark"]["p_value"] <= 1.0
    assert reports[1]["errors"] and reports[2]["errors"]


def test_verify_without_a_key_exits_2(home, tmp_path):
    result = run("verify", str(tmp_path / "x.mp4"))
    assert result.exit_code == 2 and "framemark keys init" in result.output
