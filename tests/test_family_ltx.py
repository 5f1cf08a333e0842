"""The LTX-Video family behind the model interface, on a tiny random ``LTXPipeline`` built here from diffusers
configs (LTX's real latent geometry: 128 channels, x32 spatial, x8 temporal; its real scheduler config with
dynamic shifting and a terminal sigma), saved to a folder and loaded through ``load_model`` and ``--model``.

Random weights cannot say whether the sampler is inverted the right way by themselves: a weak random velocity field
barely moves the noise, and the final latent alone would still carry the mark. So the transformer's output layer
is scaled up until sampling moves the latent far from its noise (the final latent alone is *not* detected at
1e-6) while the flow stays smooth enough for Euler inversion; detecting the exact payload after ``invert`` is then
the inversion's doing. The random VAE does not give the mark back from pixels: the tests on files check the rest of
the chain (signing, the verdict, the model named) and the family boundary, not detection from pixels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from framemark.errors import GenerationError, ModelError
from framemark.generator.models import DEFAULT_MODEL_DIR, GenerationRequest, load_model
from framemark.generator.models.ltx import LTX_DEFAULTS, LTXAutoencoder, LTXVideoModel
from framemark.watermark import Payload, WatermarkKey, embed, extract

# LTX-Video 0.9.x's scheduler: the sigma shift grows with the latent sequence length, stretched to end at 0.1
LTX_SCHEDULER = dict(base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096, max_shift=2.05,
                     shift_terminal=0.1, use_dynamic_shifting=True)
# How much the transformer's output layer is scaled. Unscaled, 20 sampling steps keep 83% of the noise's signs in
# the final latent (detected without any inversion). At 20x, over 20 requests (seeds x prompts): the final latent
# alone gives p >= 10^-2.2 (never detected), the inversion p <= 10^-37 (mean 10^-48) with the exact payload.
VELOCITY_GAIN = 20.0
CARD = {"name": "ltx-tiny-random", "version": "0",
        "defaults": {"steps": 20, "frames": 17, "height": 128, "width": 128, "guidance_scale": 3.0, "fps": 25.0},
        "limits": {"max_frames": 33, "max_size": 256}}
PAYLOAD = Payload(0x5A17C0DE42)


def build_tiny_ltx(folder: Path, *, patch_size: int = 1, timestep_conditioning: bool = False) -> Path:
    """A random LTXPipeline with LTX's latent geometry and a few thousand parameters per part, saved to
    ``folder`` (the embedded model's word-level tokenizer; a one-layer T5). ``timestep_conditioning``: a VAE
    whose decoder takes a timestep, as LTX-Video 0.9.1 and later have."""
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    with torch.random.fork_rng():
        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_DIR / "tokenizer")
        text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                               num_heads=4, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                                               pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
        transformer = LTXVideoTransformer3DModel(in_channels=128 * patch_size**2, out_channels=128 * patch_size**2,
                                                 patch_size=patch_size, patch_size_t=1, num_attention_heads=2,
                                                 attention_head_dim=8, cross_attention_dim=16, num_layers=1,
                                                 caption_channels=32)
        with torch.no_grad():
            transformer.proj_out.weight.mul_(VELOCITY_GAIN)
            transformer.proj_out.bias.mul_(VELOCITY_GAIN)
        vae = AutoencoderKLLTXVideo(latent_channels=128, block_out_channels=(8, 8, 8, 8),
                                    decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
                                    decoder_layers_per_block=(1, 1, 1, 1, 1),
                                    spatio_temporal_scaling=(True, True, True, False),
                                    decoder_spatio_temporal_scaling=(True, True, True, False),
                                    decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4,
                                    upsample_factor=(1,) * 4, scaling_factor=0.9,
                                    timestep_conditioning=timestep_conditioning)
        # a normalisation that is not the identity, so a wrong convention shows
        vae.latents_mean.copy_(0.3 * torch.randn(128))
        vae.latents_std.copy_(0.5 + torch.rand(128))
        pipe = LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER), vae=vae,
                           text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)
        pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ltx_folder(tmp_path_factory) -> Path:
    """The tiny LTX model with a card for its own small request (17x128x128, 20 steps)."""
    folder = build_tiny_ltx(tmp_path_factory.mktemp("ltx") / "ltx-tiny-random")
    (folder / "framemark.json").write_text(json.dumps(CARD))
    return folder


@pytest.fixture(scope="module")
def ltx_model(ltx_folder) -> LTXVideoModel:
    return load_model(ltx_folder)


def _request(model, **kw) -> GenerationRequest:
    return model.check_inputs(GenerationRequest(**{"prompt": "a red ball bouncing", "seed": 3, **kw}))


# ------------------------------------------------------------------------------------------------ loading

def test_a_folder_without_a_card_gets_ltx_geometry_and_the_published_request(ltx_folder, tmp_path):
    folder = tmp_path / "ltx-copy"
    shutil.copytree(ltx_folder, folder)
    (folder / "framemark.json").unlink()
    model = load_model(folder)
    assert isinstance(model, LTXVideoModel) and isinstance(model.autoencoder, LTXAutoencoder)
    assert model.identity.name == "ltx-copy" and model.identity.family == "ltx"
    d = model.defaults
    assert d == LTX_DEFAULTS
    assert (d.steps, d.frames, d.height, d.width, d.guidance_scale, d.fps) == (50, 121, 512, 768, 3.0, 25.0)
    lim = model.limits
    # frames 1 + 8k (x8 temporal VAE, temporal patch 1), sides multiples of 32 (x32 VAE, patch 1) up to the
    # rotary embedding's 2048-pixel base, at most 257 frames; prompts up to LTXPipeline's 128-token context
    assert (lim.frame_step, lim.min_frames, lim.max_frames) == (8, 9, 257)
    assert (lim.size_multiple, lim.min_size, lim.max_size) == (32, 32, 2048)
    assert lim.max_prompt_tokens == model.max_sequence_length == 128
    assert (model.autoencoder.spatial_factor, model.autoencoder.temporal_factor) == (32, 8)
    assert model.latent_shape(121, 512, 768) == (1, 128, 16, 16, 24)
    assert model.check_inputs(GenerationRequest("a red ball")).frames == 121
    assert model.identity.weights_sha256 == load_model(ltx_folder).identity.weights_sha256


def test_a_card_narrows_the_defaults_and_limits(ltx_model):
    model = ltx_model
    assert model.identity.to_dict() == {"name": "ltx-tiny-random", "version": "0"}
    d, lim = model.defaults, model.limits
    assert (d.steps, d.frames, d.height, d.width, d.fps) == (20, 17, 128, 128, 25.0)
    assert (lim.max_frames, lim.max_size, lim.frame_step, lim.size_multiple) == (33, 256, 8, 32)
    assert lim.frame_counts() == (9, 17, 25, 33)
    assert model.latent_shape(17, 128, 128) == (1, 128, 3, 4, 4)
    # the word-level tokenizer: one token a word, plus </s>
    assert model.prompt_tokens("a red ball bouncing") == 5
    with pytest.raises(GenerationError, match="8k\\+1"):
        model.check_inputs(GenerationRequest("a red ball", frames=16))
    with pytest.raises(GenerationError, match="multiple of 32"):
        model.check_inputs(GenerationRequest("a red ball", height=112))
    with pytest.raises(GenerationError, match="129 tokens long; this model reads at most 128"):
        model.check_inputs(GenerationRequest(" ".join(["red"] * 128)))


def test_folders_ltxpipeline_cannot_sample_are_refused_in_words(ltx_folder, tmp_path):
    incomplete = tmp_path / "incomplete"
    shutil.copytree(ltx_folder, incomplete)
    shutil.rmtree(incomplete / "text_encoder")
    with pytest.raises(ModelError, match="incomplete: missing text_encoder"):
        load_model(incomplete)
    # LTXPipeline hands the transformer the unpatched latent grid: a patched transformer cannot be sampled
    patched = build_tiny_ltx(tmp_path / "patched", patch_size=2)
    with pytest.raises(ModelError, match="only unpatched latents; this transformer has patch_size 2"):
        load_model(patched)


# ------------------------------------------------------------------------------------------------ conventions

def test_the_autoencoder_uses_the_pipelines_normalisation(ltx_model):
    """encode gives ``(mean - latents_mean) * scaling_factor / latents_std`` of the posterior mean, and the
    pipeline's own frames are what ``decode`` makes of ``sample_latents``: both sides agree on one space."""
    model, vae = ltx_model, ltx_model.pipeline.vae
    frames = np.random.default_rng(0).integers(0, 256, (17, 128, 128, 3), dtype=np.uint8)
    z = model.autoencoder.encode(frames)
    assert z.shape == model.latent_shape(17, 128, 128) and z.dtype == torch.float32
    x = torch.from_numpy(frames).float().permute(3, 0, 1, 2)[None] / 127.5 - 1.0
    with torch.no_grad():
        raw = vae.encode(x).latent_dist.mean
    view = (1, 128, 1, 1, 1)
    expected = (raw - vae.latents_mean.view(view)) * 0.9 / vae.latents_std.view(view)
    torch.testing.assert_close(z, expected, rtol=1e-5, atol=1e-5)

    request = _request(model, steps=4)
    noise = model.initial_noise(request)
    clip = model.sample(request, noise)
    assert clip.shape == (17, 128, 128, 3) and clip.dtype == np.uint8
    decoded = model.autoencoder.decode(model.sample_latents(request, noise))
    assert np.abs(decoded.astype(int) - clip.astype(int)).max() <= 1

    images = frames[:3]
    rec = model.autoencoder.reconstruct_images(images)
    assert rec.shape == (3, 128, 128, 3) and rec.dtype == np.float32 and 0.0 <= rec.min() <= rec.max() <= 1.0
    # batched verification's one VAE call gives what one clip at a time does
    other = frames[::-1].copy()
    both = model.autoencoder.encode_many([frames, other])
    torch.testing.assert_close(both, torch.cat([z, model.autoencoder.encode(other)]), rtol=1e-4, atol=1e-4)


def test_a_timestep_conditioned_vae_decodes_at_the_cards_decode_timestep(tmp_path):
    """LTX-Video 0.9.1+ decodes with a timestep: the card's ``decode_timestep`` reaches the pipeline and the
    autoencoder alike (no decode noise: a clip stays a function of its initial noise)."""
    folder = build_tiny_ltx(tmp_path / "ltx-091", timestep_conditioning=True)
    (folder / "framemark.json").write_text(json.dumps({**CARD, "decode_timestep": 0.05}))
    model = load_model(folder)
    assert model.pipeline.vae.config.timestep_conditioning and model.autoencoder.decode_timestep == 0.05
    assert LTXAutoencoder.from_pretrained(folder).decode_timestep == 0.05
    request = _request(model, steps=3)
    noise = model.initial_noise(request)
    clip = model.sample(request, noise)
    assert np.array_equal(clip, model.sample(request, noise))
    decoded = model.autoencoder.decode(model.sample_latents(request, noise))
    assert np.abs(decoded.astype(int) - clip.astype(int)).max() <= 1
    # and the decode timestep matters: the same latents decoded at timestep 0 differ
    at_zero = LTXAutoencoder(model.pipeline.vae, folder, decode_timestep=0.0)
    assert not np.array_equal(at_zero.decode(model.sample_latents(request, noise)), decoded)
    # tiling and slicing (save_memory) leave a clip inside one tile as it was; a batch of images still decodes
    images = clip[:2]
    before = model.autoencoder.reconstruct_images(images)
    model.save_memory()
    assert model.pipeline.vae.use_slicing and model.pipeline.vae.use_tiling
    np.testing.assert_allclose(model.autoencoder.reconstruct_images(images), before, atol=1e-5)


def test_the_inversion_runs_the_pipelines_schedule_and_transformer_call(ltx_model):
    """Run forward, ``sigmas`` and ``velocity`` (what ``invert`` steps backwards along) reproduce LTXPipeline's own
    unconditional sampling: the same shifted schedule for this sequence length, the same transformer call."""
    model = ltx_model
    request = _request(model, steps=6, guidance_scale=1.0)
    noise = model.initial_noise(request)
    _, _, t, h, w = noise.shape
    pipe = model.pipeline
    sampled = pipe(prompt="", height=128, width=128, num_frames=17, frame_rate=model.defaults.fps,
                   num_inference_steps=6, guidance_scale=1.0, latents=model.pack(noise), output_type="latent",
                   max_sequence_length=model.max_sequence_length).frames
    pipeline_sigmas = pipe.scheduler.sigmas.clone()

    ascending = model.sigmas(t, h, w, 6)
    descending = torch.flip(ascending, dims=[0])
    torch.testing.assert_close(descending, pipeline_sigmas, rtol=0, atol=1e-7)
    # shifted for 48 tokens (not the pipeline's plain linspace) and stretched to end at the terminal 0.1
    assert not torch.allclose(descending[:-1], torch.linspace(1.0, 1 / 6, 6))
    assert abs(float(descending[-2]) - 0.1) < 1e-6 and float(descending[-1]) == 0.0

    velocity = model.velocity(1, t, h, w)
    x = model.pack(noise)
    with torch.no_grad():
        for hi, lo in zip(descending[:-1], descending[1:]):
            x = x + (lo - hi) * velocity(x, (hi * 1000).expand(1))
    torch.testing.assert_close(x, sampled, rtol=1e-5, atol=1e-5)


def test_a_learnt_inverse_is_one_euler_step_of_its_transformer(ltx_folder, ltx_model, tmp_path):
    """In LTX's token space, as the inversion: an inverse that is the generator's own transformer is exactly one
    inversion step (what a trained inverse starts from); a folder whose card names one loads its ``inverter/`` and
    inverts a batch as each clip alone."""
    from diffusers import LTXVideoTransformer3DModel

    noise = ltx_model.initial_noise(_request(ltx_model))
    z0 = 0.5 * noise + 0.1
    with torch.no_grad():
        torch.testing.assert_close(ltx_model.learnt_inversion(z0, ltx_model.pipeline.transformer),
                                   ltx_model.invert(z0, 1), rtol=1e-5, atol=1e-5)
    folder = tmp_path / "learnt"
    shutil.copytree(ltx_folder, folder)
    source = ltx_model.pipeline.transformer
    inverter = LTXVideoTransformer3DModel.from_config({**source.config, "num_layers": 1})
    inverter.load_state_dict(source.state_dict(), strict=False)
    inverter.save_pretrained(folder / "inverter")
    (folder / "framemark.json").write_text(json.dumps({**CARD, "verification": {"inversion": "learnt"}}))
    model = load_model(folder)
    assert model.inversion == "learnt" and model.inverter.config.num_layers == 1
    with torch.no_grad():
        alone = model.estimate_noise(z0, 10)
        both = model.estimate_noise(torch.cat([z0, noise]), 10)
        assert not torch.allclose(alone, model.invert(z0, 10), atol=1e-3)
    torch.testing.assert_close(both[:1], alone, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ the mark

def test_the_mark_comes_back_from_the_samplers_latents(ltx_model, watermark_key):
    """Marked noise -> ``sample_latents`` (classifier-free guidance 3, the card's 20 steps) -> ``invert`` with the
    generation's step count: the exact payload at p <= 1e-6; the sampled latent alone does not carry it, another
    key finds nothing, and a batch inverts as its clips do one by one."""
    model = ltx_model
    request = _request(model)
    shape = model.latent_shape(request.frames, request.height, request.width)
    z0 = model.sample_latents(request, embed(watermark_key, PAYLOAD, shape, seed=request.seed))
    assert z0.shape == shape

    recovered = model.invert(z0, request.steps)
    found = extract(watermark_key, recovered)
    assert found.detected and found.p_value <= 1e-6 and found.payload == PAYLOAD and found.crc_ok
    assert found.pilot_agreement > 0.6

    before = extract(watermark_key, z0)  # what inversion adds: the final latent is far from its noise
    assert not before.detected and before.p_value > 1e-6
    stranger = extract(WatermarkKey(bytes(range(1, 33))), recovered)
    assert not stranger.detected and stranger.p_value > 1e-6
    unmarked = model.sample_latents(request, model.initial_noise(request))
    plain = extract(watermark_key, model.invert(unmarked, request.steps))
    assert not plain.detected and plain.p_value > 1e-6

    both = model.invert(torch.cat([z0, unmarked]), request.steps)
    torch.testing.assert_close(both[:1], recovered, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(both[1:], model.invert(unmarked, request.steps), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------ files

@pytest.fixture(scope="module")
def ltx_clip(ltx_folder, cli, keyed_home, tmp_path_factory) -> tuple[Path, dict, Path]:
    """A marked, signed clip of the LTX model by `framemark generate --model`: (path, its record, the home)."""
    home = keyed_home("ltx-home")
    path = tmp_path_factory.mktemp("ltx-clips") / "ltx.mp4"
    result = cli("generate", "a red ball bouncing", "-o", path, "--model", ltx_folder, "--seed", 5, "--json",
                 home=home)
    assert result.exit_code == 0, result.output
    return path, json.loads(result.stdout.strip().splitlines()[-1]), home


def _verify(cli, path: Path, model_dir: Path, home: Path, *extra: str) -> dict:
    result = cli("verify", path, "--model", model_dir, "--json", *extra, home=home)
    assert result.exit_code == 0, result.output
    (verdict,) = json.loads(result.stdout)
    return verdict


def test_generate_writes_a_marked_signed_clip_naming_the_ltx_model(ltx_clip, ltx_folder, cli):
    path, record, home = ltx_clip
    assert record["ok"] and Path(record["path"]) == path and path.stat().st_size > 0
    assert (record["frames"], record["height"], record["width"], record["steps"]) == (17, 128, 128, 20)
    assert record["model"]["name"] == "ltx-tiny-random" and record["model"]["family"] == "ltx"
    assert record["model"]["weights_sha256"] == load_model(ltx_folder).identity.weights_sha256
    assert record["watermark"]["payload"] and record["c2pa"]["manifest_label"]

    verdict = _verify(cli, path, ltx_folder, home)
    assert verdict["verdict"] == "signed-synthetic" and not verdict["errors"]
    c2pa = verdict["c2pa"]
    assert c2pa["state"] in ("Valid", "Trusted") and c2pa["manifest"]["declares_synthetic"]
    assert c2pa["manifest"]["software_agent"]["name"] == "ltx-tiny-random"
    assert c2pa["manifest"]["soft_binding"]["value"] == record["watermark"]["payload"]
    # the random VAE does not give the mark back from pixels: the check ran, on LTX's grid, and said so
    mark = verdict["watermark"]
    assert mark is not None and "detected" in mark and 0.0 <= mark["p_value"] <= 1.0
    # the clip, centre crops of 0.9, 0.8 and 0.7 (each leaves whole 32-pixel cells) at the phases that keep the
    # box in the frame (a 0.9 crop moved half of a 32-pixel cell leaves it), and its mirror
    from framemark.detect import alignment

    plan = alignment.hypotheses(load_model(ltx_folder), 17, *verdict["watermark"]["alignment"]["generated_size"])
    own_phase = [h for h in plan if h.crop < 1.0 and h.phase == (0, 0)]
    assert [h.crop for h in own_phase] == list(alignment.CROP_FRACTIONS) and len(plan) > 2 + len(own_phase)
    assert mark["alignment"]["generated_frames"] == 17 and mark["alignment"]["hypotheses_total"] == len(plan)


def test_a_clip_checked_against_the_other_family_is_not_detected(ltx_clip, ltx_folder, cli, make_clip, tmp_path):
    """A clip of the embedded Wan model, detected by its own model, is "not detected" under the LTX model; the
    LTX clip checked against the Wan model is not detected either. Never a false alarm across families."""
    _, _, home = ltx_clip
    wan_clip = make_clip(tmp_path / "wan.mp4", "a blue square moving right", home=home, seed=1)
    own = _verify(cli, Path(wan_clip["path"]), DEFAULT_MODEL_DIR, home, "--no-classifier")
    assert own["watermark"]["detected"] and own["watermark"]["payload"] == wan_clip["watermark"]["payload"]

    across = _verify(cli, Path(wan_clip["path"]), ltx_folder, home, "--no-classifier")
    assert not across["watermark"]["detected"] and across["watermark"]["p_value"] > 1e-6
    assert across["watermark"]["payload"] is None and across["verdict"] == "signed-synthetic"

    ltx_path = ltx_clip[0]
    back = _verify(cli, ltx_path, DEFAULT_MODEL_DIR, home, "--no-classifier")
    assert not back["watermark"]["detected"] and back["watermark"]["p_value"] > 1e-6
