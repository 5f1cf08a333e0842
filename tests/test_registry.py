"""Which model a clip came from: the model registry (`framemark models`), verification against every registered
model with the p-value corrected for each, and the audit's fingerprint of the models it checks against.

Two models that really differ: the embedded one, and a copy of its folder whose transformer and VAE are
re-initialised with a fixed seed (same text encoder and card, other weights and name). A clip of the embedded
model is detected under it, named in the verdict; the other model alone does not detect it (no false alarm);
with both registered it is detected, corrected for two models. (The other model's own clips cannot be read
back from files: its random VAE does not invert. Models that share a VAE read each other's marks: see
docs/provenance.md, "Which model".)
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from framemark.detect.alignment import CROP_FRACTIONS, CROP_PHASES
from framemark.generator.models import DEFAULT_MODEL_DIR
from framemark.generator.models.base import identity_of

OTHER_NAME = "framemark-wan-reinit"
PROMPT = "a yellow square moving down"
CLIP_OF_EMBEDDED = "00c0ffee0a01"  # with conftest's fixed key: deterministic detection (see conftest)
CLIP_OF_OTHER = "00c0ffee0b02"
# the entries of one model's plan for a square 128-pixel clip: the clip, every crop at every phase, the mirror
PLAN = 1 + len(CROP_FRACTIONS) * len(CROP_PHASES) + 1


def reports_of(result) -> dict:
    return {Path(r["file"]).name: r for r in json.loads(result.stdout)}


def reinitialised_copy(folder: Path, seed: int = 0) -> Path:
    """The embedded model's folder with a freshly initialised transformer and VAE (``seed``) and its own name."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    torch.manual_seed(seed)
    for part, cls in (("transformer", WanTransformer3DModel), ("vae", AutoencoderKLWan)):
        fresh = cls.from_config(cls.load_config(folder / part))
        shutil.rmtree(folder / part)
        fresh.save_pretrained(folder / part)
    card = json.loads((folder / "framemark.json").read_text())
    (folder / "framemark.json").write_text(json.dumps({**card, "name": OTHER_NAME}))
    return folder


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    return reinitialised_copy(tmp_path_factory.mktemp("models") / "reinit")


# ------------------------------------------------------------------------------------------------ the CLI

def test_models_add_list_remove(cli, tmp_path, other_model):
    home = tmp_path / "home"
    empty = cli("models", "list", home=home)
    assert empty.exit_code == 0 and "no models registered" in empty.output and str(DEFAULT_MODEL_DIR) in empty.output
    assert json.loads(cli("models", "list", "--json", home=home).output) == []

    added = cli("models", "add", "tiny", DEFAULT_MODEL_DIR, home=home)
    assert added.exit_code == 0 and "registered tiny" in added.output
    assert cli("models", "add", "reinit", other_model, home=home).exit_code == 0
    rows = json.loads(cli("models", "list", "--json", home=home).output)
    assert [(r["name"], r["folder"], r["problem"]) for r in rows] == [
        ("tiny", str(DEFAULT_MODEL_DIR.resolve()), None), ("reinit", str(other_model.resolve()), None)]
    assert all(r["added_at"].endswith("+00:00") for r in rows)
    prose = cli("models", "list", home=home)
    assert prose.exit_code == 0 and prose.output.index("tiny") < prose.output.index("reinit")

    removed = cli("models", "remove", "tiny", home=home)
    assert removed.exit_code == 0 and "removed tiny" in removed.output
    assert [r["name"] for r in json.loads(cli("models", "list", "--json", home=home).output)] == ["reinit"]


def test_models_errors_are_words_and_exit_2(cli, tmp_path, other_model):
    home = tmp_path / "home"
    assert cli("models", "add", "tiny", DEFAULT_MODEL_DIR, home=home).exit_code == 0

    def refused(*args, says: str):
        result = cli("models", *args, home=home)
        assert result.exit_code == 2, result.output
        assert says in result.output, result.output

    refused("add", "tiny", other_model, says="already registered")
    refused("add", "again", DEFAULT_MODEL_DIR, says="already registered")
    refused("add", "bad name!", other_model, says="model name must be")
    refused("add", "missing", tmp_path / "nowhere", says="model folder not found")
    (tmp_path / "plain").mkdir()
    refused("add", "plain", tmp_path / "plain", says="no model_index.json")
    unknown = tmp_path / "sd"
    unknown.mkdir()
    (unknown / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    refused("add", "sd", unknown, says="framemark supports")
    refused("remove", "nobody", says="no model named 'nobody'")
    refused("add", "tiny", says="Missing argument")

    (home / "models.json").write_text("{not json")
    refused("list", says="model registry")
    refused("add", "x", other_model, says="model registry")


def test_a_registered_folder_that_moved_is_named(cli, tmp_path, keyed_home):
    home = keyed_home("moved")
    moved = tmp_path / "moved-model"
    shutil.copytree(DEFAULT_MODEL_DIR / "scheduler", moved / "scheduler")
    shutil.copy(DEFAULT_MODEL_DIR / "model_index.json", moved)
    assert cli("models", "add", "moved", moved, home=home).exit_code == 0
    shutil.rmtree(moved)
    (row,) = json.loads(cli("models", "list", "--json", home=home).output)
    assert "model folder not found" in row["problem"]
    clip = tmp_path / "any.mp4"
    clip.write_bytes(b"")  # verification refuses to start before it reads any file
    result = cli("verify", clip, home=home)
    assert result.exit_code == 2 and "model folder not found" in result.output and str(moved) in result.output


# ------------------------------------------------------------------------------------------------ verification

@pytest.fixture(scope="module")
def two_clips(tmp_path_factory, keyed_home, make_clip, cli, other_model):
    """A home with the fixed key, a marked unsigned clip of each model, and verify reports with the embedded
    model alone (nothing registered: both clips), the other model alone and both registered (other first: the
    embedded model's clip)."""
    folder = tmp_path_factory.mktemp("two-models")
    home = keyed_home("two-models")
    embedded, other = folder / "embedded.mp4", folder / "other.mp4"
    records = {"embedded.mp4": make_clip(embedded, PROMPT, home=home, clip_id=CLIP_OF_EMBEDDED, sign=False)}
    made = cli("generate", PROMPT, "-o", other, "--model", other_model, "--clip-id", CLIP_OF_OTHER, "--no-sign",
               "--json", home=home)
    assert made.exit_code == 0, made.output
    records["other.mp4"] = json.loads(made.output.strip().splitlines()[-1])

    def verified(*clips) -> dict:
        result = cli("verify", *clips, "--json", home=home)
        assert result.exit_code == 0, result.output
        return reports_of(result)

    runs = {"embedded alone": verified(embedded, other)}
    assert cli("models", "add", "reinit", other_model, home=home).exit_code == 0
    runs["other alone"] = verified(embedded)
    assert cli("models", "add", "tiny", DEFAULT_MODEL_DIR, home=home).exit_code == 0
    runs["both"] = verified(embedded)
    return {"records": records, "runs": runs}


def described(folder: Path) -> dict:
    identity = identity_of(folder, "wan")
    return {"name": identity.name, "version": identity.version, "family": "wan",
            "weights_sha256": identity.weights_sha256}


def test_the_two_models_differ(other_model):
    mine, theirs = described(DEFAULT_MODEL_DIR), described(other_model)
    assert mine["name"] == "framemark-wan-tiny" and theirs["name"] == OTHER_NAME
    assert mine["weights_sha256"] != theirs["weights_sha256"]


def test_emitted_clips_name_their_model_with_its_weights_hash(two_clips, other_model):
    records = two_clips["records"]
    assert records["embedded.mp4"]["model"] == described(DEFAULT_MODEL_DIR)
    assert records["other.mp4"]["model"] == described(other_model)


def test_a_clip_verifies_under_its_own_model_which_is_named(two_clips):
    report = two_clips["runs"]["embedded alone"]["embedded.mp4"]
    mark = report["watermark"]
    assert mark["detected"] and mark["p_value"] <= 1e-6
    assert mark["payload"] == two_clips["records"]["embedded.mp4"]["watermark"]["payload"]
    assert mark["model"] == described(DEFAULT_MODEL_DIR)
    # the clip, centre crops of 0.9, 0.8 and 0.7 at each of four phases of the latent grid, the mirror
    assert (mark["models_tried"], mark["models_total"], mark["alignment"]["hypotheses_total"]) == (1, 1, PLAN)
    assert report["verdict"] == "watermarked-synthetic"


@pytest.mark.parametrize("clip,model", [("embedded.mp4", "other alone"), ("other.mp4", "embedded alone")])
def test_a_clip_checked_against_another_model_is_not_detected(two_clips, clip, model):
    report = two_clips["runs"][model][clip]
    mark = report["watermark"]
    assert not mark["detected"] and mark["payload"] is None and mark["p_value"] > 1e-6
    assert mark["model"] is None and mark["alignment"]["hypotheses_tried"] == PLAN
    assert report["verdict"] != "watermarked-synthetic" and report["ledger"] is None


def test_with_both_registered_the_clip_is_detected_corrected_for_two_models(two_clips):
    alone = two_clips["runs"]["embedded alone"]["embedded.mp4"]["watermark"]
    mark = two_clips["runs"]["both"]["embedded.mp4"]["watermark"]
    assert mark["detected"] and mark["payload"] == two_clips["records"]["embedded.mp4"]["watermark"]["payload"]
    assert mark["model"] == described(DEFAULT_MODEL_DIR)
    assert (mark["models_tried"], mark["models_total"]) == (2, 2)
    # the other model is tried first: all its hypotheses fail, the embedded model's first detects
    assert (mark["alignment"]["hypotheses_tried"], mark["alignment"]["hypotheses_total"]) == (PLAN + 1, 2 * PLAN)
    # the same reading as with the embedded model alone, its p-value multiplied by twice as many entries
    assert mark["bit_accuracy"] == alone["bit_accuracy"]
    assert mark["log10_p_value"] == pytest.approx(alone["log10_p_value"] + math.log10(2), abs=2e-3)


# ------------------------------------------------------------------------------------------------ the audit

def test_the_audit_fingerprint_names_the_models_checked(monkeypatch, keyed_home, other_model, cli):
    from framemark import runtime
    from framemark.audit.config import AuditConfig

    def fingerprint(**options):
        return AuditConfig(runtime.resolve(runtime.Options(**options), "verify")).fingerprint()["model"]

    home = keyed_home("audit-models")
    monkeypatch.setenv("FRAMEMARK_HOME", str(home))
    assert fingerprint() == "embedded"  # what results folders made before the registry hold
    assert fingerprint(model_dir=str(other_model)) == str(other_model)
    assert cli("models", "add", "reinit", other_model, home=home).exit_code == 0
    assert fingerprint() == str(other_model.resolve())
    assert cli("models", "add", "tiny", DEFAULT_MODEL_DIR, home=home).exit_code == 0
    assert fingerprint() == [str(other_model.resolve()), str(DEFAULT_MODEL_DIR.resolve())]
