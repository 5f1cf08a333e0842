"""The embedded default model through the pipeline wrapper: loading, determinism, the latents seam, limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from framemark.errors import GenerationError, ModelError
from framemark.generator import architecture, oracle, pipeline, world


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(2)
    return pipeline.load_pipeline()


def _request(**kw) -> pipeline.GenerationRequest:
    base = dict(prompt="a blue square moving right", seed=3, steps=8)
    base.update(kw)
    return pipeline.GenerationRequest(**base)


def test_default_model_is_a_small_diffusers_folder_that_wanpipeline_loads():
    from diffusers import WanPipeline

    folder = pipeline.DEFAULT_MODEL_DIR
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 80 * 2**20
    assert not list(folder.rglob("*.bin")) and list(folder.rglob("*.safetensors"))
    pipe = WanPipeline.from_pretrained(folder, local_files_only=True)
    assert type(pipe.transformer).__name__ == "WanTransformer3DModel"
    assert type(pipe.vae).__name__ == "AutoencoderKLWan"
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    assert pipe.vae_scale_factor_spatial == 8 and pipe.vae_scale_factor_temporal == 4
    record = json.loads((folder / "training.json").read_text())
    assert record["command"].startswith("python -m framemark.generator.train")


def test_same_seed_gives_the_same_frames_bit_for_bit(pipe):
    a = pipeline.generate_frames(pipe, _request())
    b = pipeline.generate_frames(pipe, _request())
    c = pipeline.generate_frames(pipe, _request(seed=4))
    assert a.shape == (17, 128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_initial_latents_are_a_parameter_of_the_call(pipe):
    request = _request(steps=4)
    seeded = pipeline.initial_latents(pipe, request)
    assert seeded.shape == (1, 16, 5, 16, 16)
    other = torch.randn(seeded.shape, generator=torch.Generator().manual_seed(99))
    from_seed = pipeline.generate_frames(pipe, request)
    from_given = pipeline.generate_frames(pipe, request, latents=seeded.clone())
    from_other = pipeline.generate_frames(pipe, request, latents=other)
    assert np.array_equal(from_seed, from_given)
    assert not np.array_equal(from_seed, from_other)


def test_other_sizes_in_range_generate(pipe):
    frames = pipeline.generate_frames(pipe, _request(frames=9, height=64, width=96, steps=3))
    assert frames.shape == (9, 64, 96, 3)


@pytest.mark.parametrize("kw, message", [
    ({"prompt": "   "}, "empty"),
    ({"prompt": " ".join(["red"] * (architecture.MAX_PROMPT_WORDS + 1))}, "words"),
    ({"frames": 16}, "frames"),
    ({"frames": 65}, "frames"),
    ({"height": 120}, "height"),
    ({"width": 512}, "width"),
    ({"steps": 0}, "steps"),
])
def test_requests_the_model_cannot_serve_are_refused(kw, message):
    with pytest.raises(GenerationError, match=message):
        pipeline.validate(_request(**kw))


def test_missing_or_broken_model_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        pipeline.load_pipeline(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="incomplete"):
        pipeline.load_pipeline(tmp_path)
    broken = tmp_path / "broken"
    for name in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        (broken / name).mkdir(parents=True)
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot load"):
        pipeline.load_pipeline(broken)


@pytest.mark.slow
def test_generated_clips_follow_their_prompts(pipe):
    """A small sample of what bench/generator.py measures at scale: the oracle reads back what was asked."""
    specs = [world.SceneSpec(c, s, m, "flat") for c, s, m in world.train_combos()[::27]][:8]
    readings = [oracle.read_clip(pipeline.generate_frames(
        pipe, pipeline.GenerationRequest(prompt=world.canonical_prompt(spec), seed=100 + i)))
        for i, spec in enumerate(specs)]
    accuracy = oracle.score(readings, specs)
    assert accuracy["colour"] >= 0.75, accuracy
