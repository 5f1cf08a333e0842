"""The embedded default model through the model interface: loading, determinism, the latents seam, limits read
from the model folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from framemark.errors import GenerationError, ModelError
from framemark.generator.models import DEFAULT_MODEL_DIR, GenerationRequest, load_model
from framemark.lab import oracle, tiny_wan, world


def _request(**kw) -> GenerationRequest:
    base = dict(prompt="a blue square moving right", seed=3, steps=8)
    base.update(kw)
    return GenerationRequest(**base)


def test_default_model_is_a_small_diffusers_folder_that_wanpipeline_loads():
    from diffusers import WanPipeline

    folder = DEFAULT_MODEL_DIR
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 80 * 2**20
    assert not list(folder.rglob("*.bin")) and list(folder.rglob("*.safetensors"))
    pipe = WanPipeline.from_pretrained(folder, local_files_only=True)
    assert type(pipe.transformer).__name__ == "WanTransformer3DModel"
    assert type(pipe.vae).__name__ == "AutoencoderKLWan"
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    assert pipe.vae_scale_factor_spatial == 8 and pipe.vae_scale_factor_temporal == 4
    record = json.loads((folder / "training.json").read_text())
    # the record keeps the command as it was run; the trainer has since moved to framemark.lab.train_generator
    assert record["command"].startswith("python -m framemark.generator.train")


def test_limits_and_defaults_come_from_the_model_folder(model):
    """The toy's card (framemark.json, written by training from lab.tiny_wan.CARD) sets its envelope; the
    multiples come from the diffusers config (VAE x8 spatial and x4 temporal, 2x2 patches)."""
    card = json.loads((DEFAULT_MODEL_DIR / "framemark.json").read_text())
    # training writes the envelope; bench/first_look.py --write-card adds the measured verification setting
    assert card.pop("verification")["first_look"] is True
    assert card == json.loads(json.dumps(tiny_wan.CARD))
    lim, d = model.limits, model.defaults
    assert (lim.frame_step, lim.size_multiple) == (4, 16)
    assert (lim.min_frames, lim.max_frames, lim.min_size, lim.max_size) == (5, 33, 64, 256)
    assert lim.frame_counts() == (5, 9, 13, 17, 21, 25, 29, 33)
    assert (d.frames, d.height, d.width, d.fps, d.steps) == (17, 128, 128, 8.0, 20)
    assert model.identity.to_dict() == {"name": "framemark-wan-tiny", "version": "2.1"}
    assert model.latent_shape(17, 128, 128) == (1, 16, 5, 16, 16)
    # 40 words are 41 tokens with the word-level tokenizer's </s>: the longest prompt the toy takes
    assert model.prompt_tokens(" ".join(["red"] * 40)) == lim.max_prompt_tokens == 41


def test_a_model_folder_without_a_card_takes_its_limits_from_the_config(tmp_path):
    """What a Wan folder from elsewhere gets: grid multiples from the VAE and patch size, prompts up to Wan's
    512-token context, the published Wan 2.1 request as its defaults."""
    import shutil

    folder = tmp_path / "wan-copy"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    (folder / "framemark.json").unlink()
    other = load_model(folder)
    assert other.identity.name == "wan-copy" and other.identity.version == "2.1"
    assert (other.limits.frame_step, other.limits.size_multiple, other.limits.max_prompt_tokens) == (4, 16, 512)
    assert (other.defaults.frames, other.defaults.height, other.defaults.width) == (81, 480, 832)
    assert other.identity.weights_sha256 == load_model().identity.weights_sha256


def test_same_seed_gives_the_same_frames_bit_for_bit(model):
    a = model.generate(_request())
    b = model.generate(_request())
    c = model.generate(_request(seed=4))
    assert a.shape == (17, 128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_initial_latents_are_a_parameter_of_the_call(model):
    request = model.check_inputs(_request(steps=4))
    seeded = model.initial_noise(request)
    assert seeded.shape == (1, 16, 5, 16, 16)
    other = torch.randn(seeded.shape, generator=torch.Generator().manual_seed(99))
    from_seed = model.generate(request)
    from_given = model.generate(request, latents=seeded.clone())
    from_other = model.generate(request, latents=other)
    assert np.array_equal(from_seed, from_given)
    assert not np.array_equal(from_seed, from_other)


def test_other_sizes_in_range_generate(model):
    frames = model.generate(_request(frames=9, height=64, width=96, steps=3))
    assert frames.shape == (9, 64, 96, 3)


@pytest.mark.parametrize("kw, message", [
    ({"prompt": "   "}, "empty"),
    ({"prompt": " ".join(["red"] * 41)}, "tokens"),
    ({"frames": 16}, "frames"),
    ({"frames": 65}, "frames"),
    ({"height": 120}, "height"),
    ({"width": 512}, "width"),
    ({"steps": 0}, "steps"),
])
def test_requests_the_model_cannot_serve_are_refused(model, kw, message):
    with pytest.raises(GenerationError, match=message):
        model.check_inputs(_request(**kw))


def test_missing_or_broken_model_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="no model_index.json"):
        load_model(tmp_path)
    broken = tmp_path / "broken"
    for name in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        (broken / name).mkdir(parents=True)
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        load_model(broken)
    (broken / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    with pytest.raises(ModelError, match="cannot load"):
        load_model(broken)
    (broken / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ModelError, match="supports CogVideoXPipeline, LTXPipeline, WanPipeline"):
        load_model(broken)
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    with pytest.raises(ModelError, match="incomplete"):
        load_model(incomplete)


@pytest.mark.slow
def test_generated_clips_follow_their_prompts(model):
    """A small sample of what bench/generator.py measures at scale: the oracle reads back what was asked."""
    specs = [world.SceneSpec(c, s, m, "flat") for c, s, m in world.train_combos()[::27]][:8]
    readings = [oracle.read_clip(model.generate(GenerationRequest(prompt=world.canonical_prompt(spec), seed=100 + i)))
        for i, spec in enumerate(specs)]
    accuracy = oracle.score(readings, specs)
    assert accuracy["colour"] >= 0.75, accuracy
