"""framemark-ltx-tiny: LTX-Video at small scale, built from diffusers and transformers classes.

The second family the project trains (issue 17): LTX-Video's geometry is the furthest from Wan's of the three
families framemark serves (a 128-channel latent at x32 spatial and x8 temporal compression, the transformer
working on one token per latent cell), so the watermark codec, the inversion and the passive classifier meet a
genuinely different latent. Its objective is the same rectified flow as Wan's, so lab/train_generator.py trains
both with one loop. At the world's 17x128x128 the latent is 128x3x4x4 (6,144 elements per clip).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel
from transformers import T5Config, T5EncoderModel

from . import world
from .tiny_wan import build_tokenizer  # noqa: F401 - the same word-level tokenizer over the world's grammar

MODEL_NAME = "framemark-ltx-tiny"
FAMILY = "ltx"
# LTXPipeline's text context: prompts are padded to it (and masked), as the pipeline does at sampling time
MAX_SEQUENCE_LENGTH = 128
FPS = float(world.DEFAULT_FPS)

CARD = {
    "name": MODEL_NAME,
    "version": "1.0",
    "about": "framemark's LTX-Video-family model, trained at 17x128x128 on the procedural world (docs/model-card.md)",
    "defaults": {"steps": 20, "frames": world.DEFAULT_FRAMES, "height": world.DEFAULT_SIZE,
                 "width": world.DEFAULT_SIZE, "guidance_scale": 5.0, "fps": FPS},
    "limits": {"min_frames": 9, "max_frames": 33, "min_size": 64, "max_size": 256, "max_prompt_tokens": 41},
}

# x32 spatial (a 4x4 patchify, then three 2x downsamples) and x8 temporal (three 2x): LTX-Video's geometry, with
# narrow blocks. No timestep conditioning and no decoder noise: a clip is a function of its initial noise.
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=128,
    block_out_channels=(24, 48, 96, 96), decoder_block_out_channels=(24, 48, 96, 96),
    layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
    spatio_temporal_scaling=(True, True, True, False), decoder_spatio_temporal_scaling=(True, True, True, False),
    decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False, False, False, False),
    upsample_factor=(1, 1, 1, 1), patch_size=4, patch_size_t=1, timestep_conditioning=False, scaling_factor=1.0,
)

TEXT_ENCODER_CONFIG = dict(
    d_model=256, d_kv=32, d_ff=512, num_layers=2, num_heads=8, relative_attention_num_buckets=32,
    relative_attention_max_distance=64, dropout_rate=0.0, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
    use_cache=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False,
)

TRANSFORMER_CONFIG = dict(
    in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=64,
    cross_attention_dim=256, num_layers=6, caption_channels=256,
)

# A static shift, as the Wan toy uses: at 48 tokens per clip LTX's dynamic shift would extrapolate below its
# calibrated range. The pipeline passes `mu`, which a scheduler without dynamic shifting ignores.
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)

VAE_CLASS, TRANSFORMER_CLASS, TEXT_ENCODER_CLASS = AutoencoderKLLTXVideo, LTXVideoTransformer3DModel, T5EncoderModel
TIME_SHIFT = SCHEDULER_CONFIG["shift"]
OBJECTIVE = "flow"  # rectified flow: x_t = (1 - s) x0 + s eps, the network predicts eps - x0


def build_text_encoder(vocab_size: int) -> T5EncoderModel:
    return T5EncoderModel(T5Config(vocab_size=vocab_size, **TEXT_ENCODER_CONFIG))


def build_vae() -> AutoencoderKLLTXVideo:
    return AutoencoderKLLTXVideo(**VAE_CONFIG)


def build_transformer() -> LTXVideoTransformer3DModel:
    return LTXVideoTransformer3DModel(**TRANSFORMER_CONFIG)


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)


def build_pipeline(vae=None, transformer=None, text_encoder=None) -> LTXPipeline:
    """An LTXPipeline from the given (trained) components, fresh random ones where not given."""
    tokenizer = build_tokenizer()
    tokenizer.model_max_length = MAX_SEQUENCE_LENGTH
    return LTXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder if text_encoder is not None else build_text_encoder(len(tokenizer)),
        vae=vae if vae is not None else build_vae(),
        scheduler=build_scheduler(),
        transformer=transformer if transformer is not None else build_transformer(),
    )


def set_latent_statistics(vae: AutoencoderKLLTXVideo, mean: list[float], std: list[float]) -> None:
    """LTXPipeline reads the latent normalisation from the VAE's buffers (saved with its weights)."""
    with torch.no_grad():
        vae.latents_mean.copy_(torch.tensor(mean))
        vae.latents_std.copy_(torch.tensor(std))


def normalise(vae: AutoencoderKLLTXVideo, z: torch.Tensor) -> torch.Tensor:
    """Posterior latents -> the space the transformer samples in (``LTXPipeline._normalize_latents``)."""
    return LTXPipeline._normalize_latents(z, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)


def predict(transformer, tokenizer, text_encoder, xt: torch.Tensor, timestep: torch.Tensor,
             captions: list[str]) -> torch.Tensor:
    """The transformer's flow prediction for noisy latents ``xt`` (B,C,T,H,W) at ``timestep`` (sigma x 1000), conditioned and
    called as LTXPipeline calls it (padded, masked T5 context; packed tokens; the rotary scale of the world's fps)."""
    ids = tokenizer(captions, padding="max_length", max_length=MAX_SEQUENCE_LENGTH, truncation=True,
                    add_special_tokens=True, return_tensors="pt")
    device = xt.device
    context = text_encoder(ids.input_ids.to(device))[0]
    mask = ids.attention_mask.bool().to(device)
    b, _, t, h, w = xt.shape
    tokens = LTXPipeline._pack_latents(xt, 1, 1)
    out = transformer(hidden_states=tokens, encoder_hidden_states=context, timestep=timestep,
                      encoder_attention_mask=mask, num_frames=t, height=h, width=w,
                      rope_interpolation_scale=(8 / FPS, 32, 32), return_dict=False)[0]
    return LTXPipeline._unpack_latents(out, t, h, w, 1, 1)
