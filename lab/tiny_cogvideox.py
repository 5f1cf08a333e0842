"""framemark-cogvideox-tiny: CogVideoX at small scale, built from diffusers and transformers classes.

The second family the project trains (issue 17). Why CogVideoX and not LTX-Video: both differ from Wan where it
matters to framemark, but at the world's 128-pixel clips LTX's x32 spatial compression leaves a 4x4 latent
(128x3x4x4), and a toy LTX VAE trained for as long as the Wan one lost the mark in the pixel round trip (sign
agreement after inversion 0.51, chance; docs/benchmarks.md). CogVideoX keeps Wan's latent geometry (16 channels,
x8 spatial, x4 temporal: 16x5x16x16 at 17x128x128) and changes everything else framemark touches: its own causal
VAE class, a joint text-video transformer with 2x2 patches and sin-cos positions (as CogVideoX-2B), and a
DDPM-family sampler, DDIM in v-prediction on a zero-terminal-SNR schedule, so the mark is recovered through a
different inversion (generator/models/ddim.py) than the flow-matching Euler one of Wan and LTX.

Its objective is therefore v-prediction on the scheduler's own alphas_cumprod (``OBJECTIVE``); the rest of
lab/train_generator.py's loop is shared with the flow families.
"""

from __future__ import annotations

import torch
from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                       CogVideoXTransformer3DModel)
from transformers import T5Config, T5EncoderModel

from . import world
from .tiny_wan import build_tokenizer as _word_tokenizer

MODEL_NAME = "framemark-cogvideox-tiny"
FAMILY = "cogvideox"
# The transformer's text positions: CogVideoXPipeline pads every prompt to them (no attention mask), and the
# joint positional embedding is built for exactly this many. 48 holds the card's 41 tokens.
MAX_SEQUENCE_LENGTH = 48
FPS = float(world.DEFAULT_FPS)

CARD = {
    "name": MODEL_NAME,
    "version": "1.0",
    "about": "framemark's CogVideoX-family model, trained at 17x128x128 on the procedural world "
             "(docs/model-card.md)",
    "defaults": {"steps": 20, "frames": world.DEFAULT_FRAMES, "height": world.DEFAULT_SIZE,
                 "width": world.DEFAULT_SIZE, "guidance_scale": 5.0, "fps": FPS},
    "limits": {"min_frames": 9, "max_frames": 33, "min_size": 64, "max_size": 256, "max_prompt_tokens": 41},
}

# The Wan toy's widths (32, 64, 128, 128) in CogVideoX's causal VAE: x8 spatial (three downsamples), x4 temporal.
# scaling_factor is set after training from the measured latent spread (``set_latent_statistics``).
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(32, 64, 128, 128), layers_per_block=1,
    norm_num_groups=16, temporal_compression_ratio=4, sample_height=world.DEFAULT_SIZE,
    sample_width=world.DEFAULT_SIZE, scaling_factor=1.0,
)

TEXT_ENCODER_CONFIG = dict(
    d_model=256, d_kv=32, d_ff=512, num_layers=2, num_heads=8, relative_attention_num_buckets=32,
    relative_attention_max_distance=64, dropout_rate=0.0, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
    use_cache=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False,
)

# CogVideoX-2B's layout (2x2 patches, sin-cos positions, no rotary) at the Wan toy's width and depth; sample_*
# is the trained extent (17x128x128: a 5x8x8 token grid), from which the model derives its size limits. A
# 128-wide time embedding (the adaptive norms it feeds are a third of the parameters) keeps the model <= 40 MB.
TRANSFORMER_CONFIG = dict(
    num_attention_heads=4, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=128,
    text_embed_dim=256, num_layers=6, sample_width=world.DEFAULT_SIZE // 8, sample_height=world.DEFAULT_SIZE // 8,
    sample_frames=world.DEFAULT_FRAMES, patch_size=2, temporal_compression_ratio=4,
    max_text_seq_length=MAX_SEQUENCE_LENGTH, use_rotary_positional_embeddings=False,
)

# scheduler/scheduler_config.json of THUDM/CogVideoX-2b: training noises with the same alphas_cumprod
SCHEDULER_CONFIG = dict(
    beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, clip_sample=False, clip_sample_range=1.0,
    num_train_timesteps=1000, prediction_type="v_prediction", rescale_betas_zero_snr=True, sample_max_value=1.0,
    set_alpha_to_one=True, snr_shift_scale=3.0, steps_offset=0, timestep_spacing="trailing",
)

VAE_CLASS, TRANSFORMER_CLASS, TEXT_ENCODER_CLASS = AutoencoderKLCogVideoX, CogVideoXTransformer3DModel, T5EncoderModel
OBJECTIVE = "v_prediction"


def build_tokenizer():
    tokenizer = _word_tokenizer()
    tokenizer.model_max_length = MAX_SEQUENCE_LENGTH
    return tokenizer


def build_text_encoder(vocab_size: int) -> T5EncoderModel:
    return T5EncoderModel(T5Config(vocab_size=vocab_size, **TEXT_ENCODER_CONFIG))


def build_vae() -> AutoencoderKLCogVideoX:
    return AutoencoderKLCogVideoX(**VAE_CONFIG)


def build_transformer() -> CogVideoXTransformer3DModel:
    return CogVideoXTransformer3DModel(**TRANSFORMER_CONFIG)


def build_scheduler() -> CogVideoXDDIMScheduler:
    return CogVideoXDDIMScheduler(**SCHEDULER_CONFIG)


def build_pipeline(vae=None, transformer=None, text_encoder=None) -> CogVideoXPipeline:
    """A CogVideoXPipeline from the given (trained) components, fresh random ones where not given."""
    tokenizer = build_tokenizer()
    return CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder if text_encoder is not None else build_text_encoder(len(tokenizer)),
        vae=vae if vae is not None else build_vae(),
        scheduler=build_scheduler(),
        transformer=transformer if transformer is not None else build_transformer(),
    )


def set_latent_statistics(vae: AutoencoderKLCogVideoX, mean: list[float], std: list[float]) -> None:
    """CogVideoX normalises with one number, the VAE config's ``scaling_factor`` (no shift): the inverse of the
    latents' root mean square over channels, so the normalised latents have unit second moment as the noise does."""
    second_moment = sum(m * m + s * s for m, s in zip(mean, std)) / len(mean)
    vae.register_to_config(scaling_factor=round(second_moment ** -0.5, 6))


def normalise(vae: AutoencoderKLCogVideoX, z: torch.Tensor) -> torch.Tensor:
    """Posterior latents -> the space the transformer samples in (``CogVideoXPipeline``'s convention)."""
    return z * vae.config.scaling_factor


def predict(transformer, tokenizer, text_encoder, xt: torch.Tensor, timestep: torch.Tensor,
            captions: list[str]) -> torch.Tensor:
    """The transformer's v-prediction for noisy latents ``xt`` (B,C,T,H,W) at integer ``timestep``, conditioned
    as CogVideoXPipeline conditions it (prompts padded to the text positions, no mask; (B,T,C,H,W) layout)."""
    ids = tokenizer(captions, padding="max_length", max_length=MAX_SEQUENCE_LENGTH, truncation=True,
                    add_special_tokens=True, return_tensors="pt").input_ids.to(xt.device)
    context = text_encoder(ids)[0]
    out = transformer(hidden_states=xt.permute(0, 2, 1, 3, 4), encoder_hidden_states=context,
                      timestep=timestep.long(), return_dict=False)[0]
    return out.permute(0, 2, 1, 3, 4)
