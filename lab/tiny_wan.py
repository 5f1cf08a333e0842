"""The embedded model's architecture: Wan at small scale, built from diffusers and transformers classes.

Using the real Wan classes (not look-alikes) means the code that loads, runs, inverts and verifies our small
model is the same code that serves a real Wan-family checkpoint loaded from a folder.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from framemark.generator.models.wan import MAX_SEQUENCE_LENGTH, encode_prompts  # noqa: F401 - training uses both

from . import world

MODEL_NAME = "framemark-wan-tiny"
# The model card (framemark.json) training writes beside the weights: what the model was made for. The
# word-level tokenizer makes one token per word plus </s>: 41 tokens are 40 words (the grammar's longest caption
# has 12).
CARD = {
    "name": MODEL_NAME,
    "about": "framemark's own model, trained at 17x128x128 on a procedural world; other sizes in range run but "
             "follow prompts less well (docs/model-card.md)",
    "defaults": {"steps": 20, "frames": world.DEFAULT_FRAMES, "height": world.DEFAULT_SIZE,
                 "width": world.DEFAULT_SIZE, "guidance_scale": 5.0, "fps": float(world.DEFAULT_FPS)},
    "limits": {"min_frames": 5, "max_frames": 33, "min_size": 64, "max_size": 256, "max_prompt_tokens": 41},
}

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"

# Spatial x8 (three downsamples), temporal x4 (two), 16 latent channels: the real Wan 2.1 VAE's geometry.
VAE_CONFIG = dict(
    base_dim=32,
    decoder_base_dim=32,
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=1,
    attn_scales=[],
    temperal_downsample=[False, True, True],
    dropout=0.0,
    latents_mean=[0.0] * 16,
    latents_std=[1.0] * 16,
)

TEXT_ENCODER_CONFIG = dict(
    d_model=256,
    d_kv=32,
    d_ff=512,
    num_layers=2,
    num_heads=8,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=64,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    is_encoder_decoder=False,
    use_cache=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    tie_word_embeddings=False,
)

TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=4,
    attention_head_dim=64,
    in_channels=16,
    out_channels=16,
    text_dim=256,
    freq_dim=128,
    ffn_dim=1024,
    num_layers=6,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=256,
)

SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=3.0)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the world's grammar; any other word maps to <unk>."""
    vocab = {PAD: 0, EOS: 1, UNK: 2}
    for word in world.vocabulary():
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # lower case, punctuation dropped: 'A red circle, moving left.' reads as the grammar's words
    core.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s]"), " ")])
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                  model_max_length=MAX_SEQUENCE_LENGTH)
    return tok


def build_text_encoder(vocab_size: int) -> UMT5EncoderModel:
    return UMT5EncoderModel(UMT5Config(vocab_size=vocab_size, **TEXT_ENCODER_CONFIG))


def build_vae() -> AutoencoderKLWan:
    return AutoencoderKLWan(**VAE_CONFIG)


def build_transformer() -> WanTransformer3DModel:
    return WanTransformer3DModel(**TRANSFORMER_CONFIG)


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)


def build_pipeline(vae: AutoencoderKLWan | None = None, transformer: WanTransformer3DModel | None = None,
                   text_encoder: UMT5EncoderModel | None = None) -> WanPipeline:
    """A WanPipeline from the given (trained) components, fresh random ones where not given."""
    tokenizer = build_tokenizer()
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder if text_encoder is not None else build_text_encoder(len(tokenizer)),
        vae=vae if vae is not None else build_vae(),
        scheduler=build_scheduler(),
        transformer=transformer if transformer is not None else build_transformer(),
    )


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------ training hooks
# What lab/train_generator.py needs to know of a family, beside the builders above (lab/tiny_ltx.py has the same).

FAMILY = "wan"
VAE_CLASS, TRANSFORMER_CLASS, TEXT_ENCODER_CLASS = AutoencoderKLWan, WanTransformer3DModel, UMT5EncoderModel
TIME_SHIFT = SCHEDULER_CONFIG["shift"]
OBJECTIVE = "flow"  # rectified flow: x_t = (1 - s) x0 + s eps, the network predicts eps - x0


def set_latent_statistics(vae: AutoencoderKLWan, mean: list[float], std: list[float]) -> None:
    """WanPipeline reads the latent normalisation from the VAE config."""
    vae.register_to_config(latents_mean=mean, latents_std=std)


def normalise(vae: AutoencoderKLWan, z: torch.Tensor) -> torch.Tensor:
    """Posterior latents -> the space the transformer samples in (``WanPipeline``'s convention)."""
    mean = torch.tensor(vae.config.latents_mean, device=z.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=z.device).view(1, -1, 1, 1, 1)
    return (z - mean) / std


def predict(transformer, tokenizer, text_encoder, xt: torch.Tensor, timestep: torch.Tensor,
             captions: list[str]) -> torch.Tensor:
    """The transformer's flow prediction for noisy latents ``xt`` at ``timestep`` (sigma x 1000), conditioned as WanPipeline
    conditions it."""
    context = encode_prompts(tokenizer, text_encoder, captions)
    return transformer(hidden_states=xt, timestep=timestep, encoder_hidden_states=context, return_dict=False)[0]
