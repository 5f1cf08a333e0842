"""Training a learnt inverse (lab/inverter_training.py): a smoke run on the CPU trains a shallow copy of a model's
transformer (the shipped CogVideoX model's, the embedded Wan model's), exports it as a diffusers folder the model
loads as its ``inverter/``, and reports the sampler inversion and the learnt inverse side by side; it is installed
only where it does at least as well."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from framemark.generator.models import COGVIDEOX_MODEL_DIR, DEFAULT_MODEL_DIR, load_model
from framemark.lab import inverter_training as it


def test_smoke_training_exports_an_inverter_the_model_loads(tmp_path):
    out = tmp_path / "run"
    assert it.main(["--smoke", "--model", str(COGVIDEOX_MODEL_DIR), "--out", str(out), "--device", "cpu",
                    "--blocks", "1"]) == 0
    report = json.loads((out / "inverter" / "inverter_training.json").read_text())
    assert report["blocks"] == 1 and report["steps"] == 2
    assert set(report["sampler inversion"]) == set(report["learnt inverse"])
    assert "centre crop 0.8" in report["learnt inverse"]

    trained = load_file(out / "inverter" / "diffusion_pytorch_model.safetensors")
    shipped = load_file(COGVIDEOX_MODEL_DIR / "transformer" / "diffusion_pytorch_model.safetensors")
    assert all(k in shipped and shipped[k].shape == v.shape for k, v in trained.items())
    assert not any(k.startswith("transformer_blocks.1.") for k in trained)  # one block kept
    assert any(not torch.equal(shipped[k], v) for k, v in trained.items())  # and trained from the model's weights

    folder = tmp_path / "model"
    shutil.copytree(COGVIDEOX_MODEL_DIR, folder, ignore=shutil.ignore_patterns("inverter"))
    shutil.copytree(out / "inverter", folder / "inverter")
    model = load_model(folder)
    assert model.inversion == "learnt" and model.inverter.config.num_layers == 1
    z0 = torch.zeros(model.latent_shape(9, 64, 64))
    with torch.no_grad():
        assert model.estimate_noise(z0, 10).shape == z0.shape


def test_a_flow_model_trains_an_inverse_that_starts_as_one_euler_step(tmp_path):
    """The embedded Wan model: its inverse keeps the generator's block naming (blocks.N) and loads as its own."""
    out = tmp_path / "wan"
    assert it.main(["--smoke", "--model", str(DEFAULT_MODEL_DIR), "--out", str(out), "--device", "cpu",
                    "--blocks", "1"]) == 0
    trained = load_file(out / "inverter" / "diffusion_pytorch_model.safetensors")
    assert any(k.startswith("blocks.0.") for k in trained) and not any(k.startswith("blocks.1.") for k in trained)
    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    it.install(folder, out / "inverter", "python -m framemark.lab.inverter_training ...")
    model = load_model(folder)
    assert model.inversion == "learnt" and model.inverter.config.num_layers == 1
    z0 = torch.randn(model.latent_shape(17, 128, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the generator's own transformer as the inverse is exactly one inversion step
        torch.testing.assert_close(model.learnt_inversion(z0, model.pipeline.transformer), model.invert(z0, 1),
                                   rtol=1e-4, atol=1e-4)
        assert not torch.allclose(model.estimate_noise(z0, 10), model.invert(z0, 10), atol=1e-2)


def test_an_inverse_is_installed_only_where_it_agrees_at_least_as_well_as_the_sampler(tmp_path):
    sampler = {"clean": {"sign_agreement": 0.59}, "crop": {"sign_agreement": 0.58}, "coarse": {"sign_agreement": None}}
    assert it.at_least_as_good({"clean": {"sign_agreement": 0.61}, "crop": {"sign_agreement": 0.58}}, sampler)
    assert not it.at_least_as_good({"clean": {"sign_agreement": 0.61}, "crop": {"sign_agreement": 0.57}}, sampler)
    assert not it.at_least_as_good({}, sampler)

    folder = tmp_path / "model"
    shutil.copytree(COGVIDEOX_MODEL_DIR, folder, ignore=shutil.ignore_patterns("inverter"))
    card = json.loads((folder / "framemark.json").read_text())
    card["verification"] = {"first_look": False, "measured_by": "bench/first_look.py"}
    (folder / "framemark.json").write_text(json.dumps(card))
    assert load_model(folder).inversion == "sampler"
    it.install(folder, COGVIDEOX_MODEL_DIR / "inverter", "python -m framemark.lab.inverter_training ...")
    written = json.loads((folder / "framemark.json").read_text())["verification"]
    assert written["inversion"] == "learnt" and written["first_look"] is False  # the first look's entry is kept
    assert written["measured_by"] == "bench/first_look.py" and "inverter_training" in written["inversion_measured_by"]
    assert load_model(folder).inversion == "learnt"
