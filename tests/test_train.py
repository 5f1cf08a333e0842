"""The training script in --smoke mode: both stages run, checkpoints resume, and the export is a loadable model."""

from __future__ import annotations

import json

import numpy as np
import torch

from framemark.generator.models import GenerationRequest, load_model
from framemark.lab import train_generator as train


def test_smoke_training_exports_a_model_the_model_interface_generates_with(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--smoke", "--out", str(out), "--device", "cpu"]) == 0
    model = out / "model"
    record = json.loads((model / "training.json").read_text())
    assert record["vae"]["steps"] == 3 and record["dit"]["steps"] == 3
    assert record["command"].startswith("python -m framemark.lab.train_generator --smoke")
    assert (out / "vae.ckpt").exists() and (out / "dit.ckpt").exists()

    loaded = load_model(model)
    assert loaded.limits.max_frames == 33 and loaded.defaults.frames == 17  # the card training wrote
    frames = loaded.generate(GenerationRequest("a red circle moving left", steps=2, frames=9, height=64, width=64))
    assert frames.shape == (9, 64, 64, 3)

    # a second invocation finds the finished checkpoints and does not train again
    capsys.readouterr()
    assert train.main(["--smoke", "--out", str(out), "--device", "cpu", "--export", str(tmp_path / "again")]) == 0
    log = capsys.readouterr().out
    assert "resumed at step 3" in log
    again = load_model(tmp_path / "again")
    for a, b in zip(loaded.pipeline.transformer.state_dict().values(),
                    again.pipeline.transformer.state_dict().values()):
        assert torch.equal(a, b)


def test_vae_stage_can_continue_from_an_exported_vae(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert train.main(["--smoke", "--stage", "vae", "--out", str(first), "--device", "cpu"]) == 0
    assert train.main(["--smoke", "--stage", "vae", "--out", str(second), "--device", "cpu",
                       "--init-vae", str(first / "vae")]) == 0
    record = json.loads((second / "vae" / "training.json").read_text())
    assert record["initialised_from"]["steps"] == 3
    assert np.isfinite(record["history"][-1]["mse"])
