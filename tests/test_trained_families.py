"""The VAE path end to end, from files, with both trained models (issue 17): framemark-wan-tiny (the embedded
model, flow-matching Euler) and framemark-cogvideox-tiny (generator/cogvideox_model, DDIM in v-prediction).

Each model's marked, signed clip is written by `framemark generate --model`, read back from its MP4 by
`framemark verify`: VAE encode, the family's own inversion, the keyed test. Under its own model it is detected
with the exact payload and attributed to that model; under the other model it is not detected (a different VAE
and sampler give back noise, not a false alarm); with both registered each clip is found under its own model,
the p-value corrected for both. Trained weights are what make this assertable: random VAEs do not invert.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from framemark.generator.models import COGVIDEOX_MODEL_DIR, DEFAULT_MODEL_DIR
from framemark.generator.models.base import identity_of

PROMPT = "a red circle moving left on a textured background"
MODELS = {"wan": DEFAULT_MODEL_DIR, "cogvideox": COGVIDEOX_MODEL_DIR}
CLIP_IDS = {"wan": "00c0ffee1a01", "cogvideox": "00c0ffee1c02"}


def described(family: str) -> dict:
    identity = identity_of(MODELS[family], family)
    return {"name": identity.name, "version": identity.version, "family": family,
            "weights_sha256": identity.weights_sha256}


def reports(result) -> dict:
    assert result.exit_code == 0, result.output
    return {Path(r["file"]).stem: r for r in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, keyed_home, cli):
    """One signed clip per trained model, and verify reports under each model alone and under both registered."""
    folder = tmp_path_factory.mktemp("trained-families")
    home = keyed_home("trained-families")
    records, clips = {}, []
    for family, model in MODELS.items():
        clip = folder / f"{family}.mp4"
        made = cli("generate", PROMPT, "-o", clip, "--model", model, "--seed", 3, "--clip-id", CLIP_IDS[family],
                   "--json", home=home)
        assert made.exit_code == 0, made.output
        records[family] = json.loads(made.output.strip().splitlines()[-1])
        clips.append(clip)
    verified = {family: reports(cli("verify", *clips, "--model", model, "--json", home=home))
                for family, model in MODELS.items()}
    for family, model in MODELS.items():
        assert cli("models", "add", family, model, home=home).exit_code == 0
    verified["both"] = reports(cli("verify", *clips, "--json", home=home))
    return {"records": records, "verified": verified}


def test_the_cogvideox_model_is_its_own_family_and_small():
    identity = identity_of(COGVIDEOX_MODEL_DIR, "cogvideox")
    assert identity.name == "framemark-cogvideox-tiny"
    assert json.loads((COGVIDEOX_MODEL_DIR / "model_index.json").read_text())["_class_name"] == "CogVideoXPipeline"
    generator = [p for p in COGVIDEOX_MODEL_DIR.rglob("*.safetensors") if "inverter" not in p.parts]
    weights = sum(p.stat().st_size for p in generator)
    assert weights <= 40e6, weights  # fp16, within the 40 MB
    assert identity.weights_sha256 != identity_of(DEFAULT_MODEL_DIR, "wan").weights_sha256


def test_the_cogvideox_model_verifies_through_its_shallow_learnt_inverse():
    """Its card names the learnt inverse shipped beside it (docs/benchmarks.md, "A learnt inverse"): 2 of the
    transformer's 6 blocks, fp16, a few MB on top of the generator's 40."""
    from safetensors import safe_open

    folder = COGVIDEOX_MODEL_DIR / "inverter"
    assert json.loads((COGVIDEOX_MODEL_DIR / "framemark.json").read_text())["verification"]["inversion"] == "learnt"
    config = json.loads((folder / "config.json").read_text())
    generator = json.loads((COGVIDEOX_MODEL_DIR / "transformer" / "config.json").read_text())
    assert config["num_layers"] < generator["num_layers"]
    weights = folder / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size <= 6e6
    with safe_open(weights, "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}


@pytest.mark.parametrize("family", sorted(MODELS))
def test_a_clip_of_each_trained_model_is_marked_signed_and_recovered_from_its_file(runs, family):
    record = runs["records"][family]
    assert record["model"] == described(family)
    report = runs["verified"][family][family]
    mark = report["watermark"]
    assert mark["detected"] and mark["p_value"] <= 1e-6
    assert mark["payload"] == record["watermark"]["payload"]
    assert mark["model"] == described(family)
    assert report["c2pa"]["state"] == "Trusted" and report["verdict"] == "signed-synthetic"


@pytest.mark.parametrize("family,other", [("wan", "cogvideox"), ("cogvideox", "wan")])
def test_a_clip_checked_against_the_other_trained_model_is_not_detected(runs, family, other):
    mark = runs["verified"][other][family]["watermark"]
    assert not mark["detected"] and mark["payload"] is None and mark["p_value"] > 1e-6
    assert mark["model"] is None


@pytest.mark.parametrize("family", sorted(MODELS))
def test_with_both_registered_each_clip_is_attributed_to_its_own_model(runs, family):
    alone = runs["verified"][family][family]["watermark"]
    mark = runs["verified"]["both"][family]["watermark"]
    assert mark["detected"] and mark["payload"] == runs["records"][family]["watermark"]["payload"]
    assert mark["model"] == described(family)
    assert mark["models_total"] == 2
    assert mark["log10_p_value"] >= alone["log10_p_value"]  # corrected for more (model, hypothesis) pairs
