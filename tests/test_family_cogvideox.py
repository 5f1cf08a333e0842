"""The CogVideoX family behind the model interface, on tiny random ``CogVideoXPipeline`` folders built here from
diffusers configs (a small transformer, VAE and T5, the embedded model's word-level tokenizer, the scheduler
config of the published CogVideoX-2B) and loaded the way every front door loads a model: ``load_model(folder)``
and ``--model FOLDER``.

Random weights decide what can be asserted. The sampler's own latents carry the mark back through DDIM
inversion (10 steps: on these models about 95% of the signs of z_T come back, against 72% in z_0 itself, and
p-values near 1e-170, so p <= 1e-6 with the exact payload holds with a wide margin; at 2 steps it is still
1e-26, while 1 step cannot be inverted at all). The random VAE does not give the mark back from pixels, so from
files only the path is checked (signed, a watermark verdict part present), and a clip checked against another
family's model must not be detected.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from framemark.errors import GenerationError, ModelError
from framemark.generator.models import (DEFAULT_MODEL_DIR, GenerationRequest, autoencoder_sha256, ddim,
                                        load_autoencoder, load_model)
from framemark.generator.models.cogvideox import (COGVIDEOX15_DEFAULTS, COGVIDEOX_DEFAULTS, CogVideoXAutoencoder,
                                                  CogVideoXVideoModel)
from framemark.watermark import Payload, WatermarkKey, embed, extract

# scheduler/scheduler_config.json of THUDM/CogVideoX-2b
COGVIDEOX_2B_SCHEDULER = {
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
    "clip_sample_range": 1.0, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True, "sample_max_value": 1.0, "set_alpha_to_one": True, "snr_shift_scale": 3.0,
    "steps_offset": 0, "timestep_spacing": "trailing", "trained_betas": None,
}
TOY = {"frames": 9, "height": 64, "width": 64}
CARD = {"name": "cogvideox-toy", "version": "0",
        "defaults": {"steps": 10, **TOY, "guidance_scale": 6.0, "fps": 8.0},
        "limits": {"min_frames": 9, "max_frames": 17, "min_size": 32, "max_size": 96}}
PAYLOAD = Payload(0x0123456789AB)
STEPS = 10
PROMPT = "a blue square moving right"


def build_pipeline(patch_size_t: int | None = None, rotary: bool = False, sample_width: int = 8):
    """A random CogVideoXPipeline with the published layout: 16 latent channels, VAE x8 / x4, 2x2 patches and
    sin-cos positions (2B), or rotary positions (5B), or 2x2x2 patches with a sliced rotary table (1.5); text
    padded to 226 positions; the real 2B scheduler."""
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_DIR / "tokenizer", local_files_only=True)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                           num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
                                           is_encoder_decoder=False, use_cache=False, pad_token_id=0,
                                           eos_token_id=1, decoder_start_token_id=0))
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=16, out_channels=16, time_embed_dim=32,
        text_embed_dim=32, num_layers=2, sample_width=sample_width, sample_height=8, sample_frames=9, patch_size=2,
        patch_size_t=patch_size_t, temporal_compression_ratio=4, max_text_seq_length=226,
        use_rotary_positional_embeddings=rotary or patch_size_t is not None, patch_bias=patch_size_t is None)
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), latent_channels=16, layers_per_block=1,
                                 norm_num_groups=2, temporal_compression_ratio=4, sample_height=64, sample_width=64)
    return CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``bare``: CogVideoX 1.0 (2B-like) as a folder from elsewhere (no card); ``toy``: the same with a
    framemark.json; ``toy5b``: 1.0 with rotary positions (5B-like); ``toy15``: CogVideoX 1.5 (temporal patches,
    rotary table 64 x 96 pixels). The toys carry the card."""
    root = tmp_path_factory.mktemp("cogvideox")
    build_pipeline().save_pretrained(root / "bare")
    shutil.copytree(root / "bare", root / "toy")
    build_pipeline(rotary=True).save_pretrained(root / "toy5b")
    build_pipeline(patch_size_t=2, sample_width=12).save_pretrained(root / "toy15")
    for name in ("toy", "toy5b", "toy15"):
        (root / name / "framemark.json").write_text(json.dumps(CARD))
    return {name: root / name for name in ("bare", "toy", "toy5b", "toy15")}


@pytest.fixture(scope="module")
def models(folders):
    torch.set_num_threads(1)
    return {name: load_model(folder) for name, folder in folders.items()}


def _request(model, **kw) -> GenerationRequest:
    return model.check_inputs(GenerationRequest(PROMPT, **{"seed": 1, "steps": STEPS, **TOY, **kw}))


def _signs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((torch.sign(a) == torch.sign(b)).float().mean())


# ------------------------------------------------------------------------------------------------ the model


def test_a_cogvideox_folder_loads_with_limits_and_defaults_from_its_config(folders, models):
    bare = models["bare"]
    assert isinstance(bare, CogVideoXVideoModel)
    assert bare.identity.name == "bare" and bare.identity.family == "cogvideox"
    ae = bare.autoencoder
    assert (ae.spatial_factor, ae.temporal_factor, bare.latent_channels) == (8, 4, 16)
    assert ae.weights_sha256 == autoencoder_sha256(folders["bare"])
    alone = load_autoencoder(folders["bare"])  # the VAE without the sampler, as the classifier loads it
    assert isinstance(alone, CogVideoXAutoencoder) and alone.weights_sha256 == ae.weights_sha256
    lim = bare.limits
    # frames 1 + 8k (the VAE decodes odd latent counts only) up to twice the trained 9; sides multiples of
    # 8 x 2, up to twice the trained 64; T5 context
    assert (lim.min_frames, lim.max_frames, lim.frame_step) == (9, 17, 8)
    assert (lim.min_size, lim.max_size, lim.size_multiple) == (16, 128, 16)
    assert lim.max_prompt_tokens == 226
    assert bare.defaults == COGVIDEOX_DEFAULTS  # no card: CogVideoX-2B's published request
    assert (bare.defaults.frames, bare.defaults.height, bare.defaults.width) == (49, 480, 720)
    assert (bare.defaults.fps, bare.defaults.steps, bare.defaults.guidance_scale) == (8.0, 50, 6.0)
    assert bare.latent_shape(49, 480, 720) == (1, 16, 13, 60, 90)
    assert bare.latent_shape(9, 64, 64) == (1, 16, 3, 8, 8)
    # the card narrows them and names the model
    toy = models["toy"]
    assert toy.identity.to_dict() == {"name": "cogvideox-toy", "version": "0"}
    assert (toy.defaults.steps, toy.defaults.frames, toy.defaults.height, toy.defaults.fps) == (10, 9, 64, 8.0)
    assert (toy.limits.min_size, toy.limits.max_size, toy.limits.size_multiple) == (32, 96, 16)
    # prompts: one token a word plus </s>, refused past the 226 text positions, never truncated
    assert toy.prompt_tokens(PROMPT) == 6
    assert toy.check_inputs(GenerationRequest(" ".join(["red"] * 225))).frames == 9
    with pytest.raises(GenerationError, match="227 tokens"):
        toy.check_inputs(GenerationRequest(" ".join(["red"] * 226)))
    with pytest.raises(GenerationError, match="frames"):
        toy.check_inputs(GenerationRequest(PROMPT, frames=11))
    with pytest.raises(GenerationError, match="8k\\+1"):  # 4 latent frames would decode to 16
        toy.check_inputs(GenerationRequest(PROMPT, frames=13))


def test_cogvideox_15_takes_its_temporal_patch_and_rotary_bounds_from_the_config(models):
    m = models["toy15"]
    assert m.patch_size_t == 2 and m.latent_shape(9, 64, 64) == (1, 16, 3, 8, 8)
    assert COGVIDEOX15_DEFAULTS.frames == 81 and COGVIDEOX15_DEFAULTS.fps == 16.0
    # the rotary table is 8 x 12 latent cells: height at most 64, width at most 96 (the card allows 96 for both)
    assert m.check_inputs(GenerationRequest(PROMPT, height=64, width=96)).width == 96
    with pytest.raises(GenerationError, match="height must be at most 64"):
        m.check_inputs(GenerationRequest(PROMPT, height=80, width=64))


def test_a_broken_cogvideox_folder_is_a_model_error_in_words(tmp_path, folders):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "model_index.json").write_text('{"_class_name": "CogVideoXPipeline"}')
    with pytest.raises(ModelError, match="incomplete: missing transformer"):
        load_model(incomplete)
    broken = tmp_path / "broken"
    shutil.copytree(folders["bare"], broken)
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(broken)


def test_sample_latents_are_what_sample_decodes(models):
    """The normalised space is the pipeline's own: decoding ``sample_latents`` (divided by the VAE's
    scaling_factor) gives the frames ``sample`` makes, and ``encode`` returns latents of the same shape."""
    for name in ("toy", "toy5b", "toy15"):
        m = models[name]
        request = _request(m, steps=3)
        z = m.initial_noise(request)
        z0 = m.sample_latents(request, z)
        assert z0.shape == z.shape == (1, 16, 3, 8, 8) and z0.dtype == torch.float32
        frames = m.sample(request, z)
        assert frames.shape == (9, 64, 64, 3) and frames.dtype == np.uint8
        assert np.abs(m.autoencoder.decode(z0).astype(int) - frames.astype(int)).max() <= 1, name
        assert m.autoencoder.encode(frames).shape == z.shape
        assert m.autoencoder.reconstruct_images(frames[:2]).shape == (2, 64, 64, 3)


# ------------------------------------------------------------------------------------------------ inversion


@pytest.mark.parametrize("steps", [2, 3, 7, 10, 50])
def test_ddim_inversion_undoes_the_schedulers_own_steps(steps):
    """With a network whose output does not depend on the sample, holding it fixed is exact: inverting the
    pipeline scheduler's ``step`` must give z_T back (3 and 7 steps: the ``t - T // steps`` rule leaves the
    grid; the schedule ends at zero SNR, where the last inverse step divides by sqrt(1 - a_s))."""
    from diffusers import CogVideoXDDIMScheduler

    scheduler = CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER)
    fields = {t: torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(t)) for t in range(1000)}
    model = lambda x, t: fields[int(t)]  # noqa: E731
    z_t = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    scheduler.set_timesteps(steps)
    x = z_t
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t), t, x, eta=0.0, return_dict=False)[0].float()
    back = ddim.invert(model, x, ddim.inverse_steps(scheduler, steps))
    torch.testing.assert_close(back, z_t, atol=2e-4, rtol=1e-4)


def test_one_zero_snr_step_has_nothing_to_invert_and_other_samplers_are_refused():
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    scheduler = CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER)
    x0 = torch.randn(1, 2, 3, 3)
    # x_0 = -v(x_T): one step keeps x_T only inside the network; the inverse stays finite instead of dividing by 0
    out = ddim.invert(lambda x, t: torch.randn_like(x), x0, ddim.inverse_steps(scheduler, 1))
    assert torch.isfinite(out).all()
    with pytest.raises(ModelError, match="supports DDIM"):
        ddim.check_scheduler(CogVideoXDPMScheduler(**COGVIDEOX_2B_SCHEDULER))


@pytest.mark.parametrize("name", ["toy", "toy5b", "toy15"])
def test_marked_noise_comes_back_from_the_samplers_latents(models, watermark_key, name):
    """The round trip without the VAE: marked z_T -> the pipeline (with guidance) -> z_0 -> unconditional DDIM
    inversion -> the exact payload at p <= 1e-6, in a batch as one by one. (toy15: 9 frames make 3 latent frames,
    padded to 4 for the 2-frame temporal patch; the first frame shares its token with that padding.)"""
    m = models[name]
    request = _request(m)
    z = embed(watermark_key, PAYLOAD, m.latent_shape(request.frames, request.height, request.width), seed=5)
    z0 = m.sample_latents(request, z)
    z_hat = m.invert(z0, STEPS)
    ex = extract(watermark_key, z_hat)
    assert ex.detected and ex.p_value <= 1e-6 and ex.payload == PAYLOAD and ex.crc_ok
    # the inversion does the work: z_0 of a random network still resembles z_T, the inverted noise far more
    assert _signs(z_hat, z) > _signs(z0, z) + 0.1
    other = m.sample_latents(_request(m, seed=2), embed(watermark_key, Payload(7), z.shape, seed=6))
    batch = m.invert(torch.cat([z0, other]), STEPS)
    torch.testing.assert_close(batch[:1], z_hat, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batch[1:], m.invert(other, STEPS), atol=1e-4, rtol=1e-4)
    # a wrong key finds nothing in the same noise
    wrong = extract(WatermarkKey(bytes(range(1, 33))), z_hat)
    assert not wrong.detected and wrong.p_value > 1e-6


@pytest.mark.parametrize("name", ["toy", "toy5b", "toy15"])
def test_inversion_calls_the_transformer_as_the_pipeline_does(models, name):
    """Same hidden states (B,F,C,H,W), empty-prompt embedding, timestep and rotary embedding (5B, 1.5) as the
    pipeline's own unguided call on the same latents: inversion evaluates the network the sampler ran."""
    m = models[name]
    calls = []
    hook = m.pipeline.transformer.register_forward_hook(lambda mod, args, kwargs, out: calls.append(kwargs),
                                                        with_kwargs=True)
    z = torch.randn(1, 16, 4, 8, 8, generator=torch.Generator().manual_seed(4))  # 13 frames: no 1.5 padding
    try:
        m.pipeline(prompt="", height=64, width=64, num_frames=13, num_inference_steps=1, guidance_scale=1.0,
                   latents=z.permute(0, 2, 1, 3, 4).contiguous(), output_type="latent",
                   max_sequence_length=m.max_sequence_length)
        m.invert(z, 1)
    finally:
        hook.remove()
    theirs, ours = calls
    assert set(ours) == set(theirs)
    rotary = theirs["image_rotary_emb"]
    assert (rotary is None) == (name == "toy")
    for key, value in theirs.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(ours[key], value), key
        elif isinstance(value, tuple):
            assert isinstance(ours[key], tuple) and all(map(torch.equal, ours[key], value)), key
        else:
            assert ours[key] == value, key


def test_inversion_is_differentiable_when_asked(models):
    m = models["toy"]
    z0 = torch.randn(1, 16, 3, 8, 8, requires_grad=True)
    m.invert(z0, 2, differentiable=True).square().sum().backward()
    assert z0.grad is not None and torch.isfinite(z0.grad).all() and z0.grad.abs().sum() > 0
    assert not m.invert(z0, 2).requires_grad


# ------------------------------------------------------------------------------------------- learnt inverse

def _with_inverter(tmp_path, folders, card_inversion="learnt", layers: int = 1):
    """A copy of the toy folder with an ``inverter/`` (its transformer cut to ``layers`` blocks) and a card that
    names ``card_inversion``."""
    from diffusers import CogVideoXTransformer3DModel

    folder = tmp_path / "with-inverter"
    shutil.copytree(folders["toy"], folder)
    source = CogVideoXTransformer3DModel.from_pretrained(folder / "transformer")
    inverter = CogVideoXTransformer3DModel.from_config({**source.config, "num_layers": layers})
    inverter.load_state_dict(source.state_dict(), strict=False)
    inverter.save_pretrained(folder / "inverter")
    card = {**CARD, "verification": {"inversion": card_inversion}}
    (folder / "framemark.json").write_text(json.dumps(card))
    return folder


def test_a_learnt_inverse_is_one_forward_of_the_folders_inverter(tmp_path, folders, models):
    model = load_model(_with_inverter(tmp_path, folders))
    assert model.inversion == "learnt" and model.inverter.config.num_layers == 1
    z0 = torch.randn(model.latent_shape(9, 64, 64), generator=torch.Generator().manual_seed(5))
    # the contract: the inverter called as the pipeline calls a transformer, at timestep 0, on the empty prompt
    inverter = model.inverter
    with torch.no_grad():
        direct = inverter(hidden_states=z0.permute(0, 2, 1, 3, 4),
                          encoder_hidden_states=model.empty_prompt_embedding(),
                          timestep=torch.zeros(1, dtype=torch.int64), return_dict=False)[0].permute(0, 2, 1, 3, 4)
        learnt = model.estimate_noise(z0, STEPS)
        sampler = model.invert(z0, STEPS)
    assert learnt.shape == z0.shape and torch.allclose(learnt, direct, atol=1e-6)
    assert not torch.allclose(learnt, sampler, atol=1e-3)
    other = torch.randn(z0.shape, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():  # several uploads in one call (detect/batch.py) are inverted as each alone
        both = model.estimate_noise(torch.cat([z0, other]), STEPS)
        assert torch.allclose(both[:1], learnt, atol=1e-5)
        assert torch.allclose(both[1:], model.estimate_noise(other, STEPS), atol=1e-5)
    with torch.no_grad():  # a folder whose card does not name one inverts through its sampler
        assert models["toy"].inversion == "sampler" and models["toy"].inverter is None
        assert torch.equal(models["toy"].estimate_noise(z0, STEPS), models["toy"].invert(z0, STEPS))
    with pytest.raises(ModelError, match="no learnt inverse"):
        models["toy"].learnt_inversion(z0)


def test_adding_an_inverter_leaves_the_models_identity_unchanged(tmp_path, folders):
    from framemark.generator.models.base import identity_of

    folder = _with_inverter(tmp_path, folders)
    assert identity_of(folder, "cogvideox").weights_sha256 == identity_of(folders["toy"], "cogvideox").weights_sha256


@pytest.mark.parametrize("case", ["unknown kind", "no inverter folder"])
def test_a_card_naming_an_inverse_it_cannot_have_is_a_model_error(tmp_path, folders, case):
    folder = _with_inverter(tmp_path, folders, card_inversion="learnt" if case == "no inverter folder" else "magic")
    if case == "no inverter folder":
        shutil.rmtree(folder / "inverter")
    with pytest.raises(ModelError, match="inverter is missing" if case == "no inverter folder" else "one of sampler"):
        load_model(folder)


# ------------------------------------------------------------------------------------------------ front doors


@pytest.fixture(scope="module")
def cogvideox_clip(folders, cli, keyed_home, tmp_path_factory):
    home = keyed_home("cogvideox")
    path = tmp_path_factory.mktemp("cogvideox-clips") / "clip.mp4"
    result = cli("generate", PROMPT, "-o", path, "--model", folders["toy"], "--seed", 3, "--json", home=home)
    assert result.exit_code == 0, result.output
    return {"path": path, "home": home, "record": json.loads(result.stdout.strip().splitlines()[-1])}


def _verify(cli, clip, *extra):
    result = cli("verify", clip["path"], "--json", *extra, home=clip["home"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]


def test_generate_with_a_cogvideox_folder_writes_a_marked_signed_clip_that_verifies(cli, folders, cogvideox_clip):
    record = cogvideox_clip["record"]
    assert cogvideox_clip["path"].stat().st_size > 0
    assert record["watermark"]["payload"] and record["c2pa"] and record["model"]["name"] == "cogvideox-toy"
    from framemark import media

    video = media.read_video(cogvideox_clip["path"])
    assert video.frames.shape == (9, 64, 64, 3) and video.fps == 8.0
    report = _verify(cli, cogvideox_clip, "--model", folders["toy"])
    assert report["verdict"] == "signed-synthetic"
    # the random VAE does not carry the mark through pixels; the watermark check itself ran under this key
    mark = report["watermark"]
    assert mark is not None and mark["key_id"] == record["watermark"]["key_id"]
    assert 0.0 <= mark["p_value"] <= 1.0


def test_a_cogvideox_clip_checked_against_the_embedded_wan_model_is_not_detected(cli, cogvideox_clip):
    report = _verify(cli, cogvideox_clip)  # no --model: the embedded Wan toy
    mark = report["watermark"]
    assert mark["detected"] is False and mark["p_value"] > 1e-6 and mark["payload"] is None
    assert report["verdict"] == "signed-synthetic"
