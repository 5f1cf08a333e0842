"""The Wan family (Wan 2.1 / 2.2 text-to-video in diffusers, and the embedded framemark-wan-tiny): a causal 3D
VAE (x8 spatial, x4 temporal), a UMT5 text encoder, a flow-matching transformer with 2x2 patches.

Everything Wan-specific lives here: how prompts are encoded (padded to the pipeline's context length, zeroed
past each prompt's end, exactly as ``WanPipeline`` does), how latents are normalised (``latents_mean`` /
``latents_std`` of the VAE config), and how the sampler is inverted (flow-matching Euler, unconditional).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


from . import flow
from .base import (INVERTER_TIMESTEP, GenerationRequest, ModelDefaults, ModelLimits, TokenCounter, VideoAutoencoder,
                   VideoModel, execution_device, first_look_of, identity_of, learnt_inverse_of, load_pipeline,
                   load_vae, overridden, read_card)

PIPELINE_CLASS = "WanPipeline"
# Wan's text context: prompts are padded to it, as the real models are trained, so that a plain
# ``WanPipeline.from_pretrained(folder)(prompt)`` conditions the model exactly as framemark does.
MAX_SEQUENCE_LENGTH = 512
# A Wan 2.1 folder without a framemark.json: the request the published models are made for.
WAN_DEFAULTS = ModelDefaults(steps=50, frames=81, height=480, width=832, guidance_scale=5.0, fps=16.0)


def encode_prompts(tokenizer, text_encoder, prompts: list[str],
                   max_sequence_length: int = MAX_SEQUENCE_LENGTH) -> torch.Tensor:
    """Prompt embeddings exactly as ``WanPipeline`` makes them: padded, encoded, zeroed past each prompt's end.

    Encoding only up to the longest prompt and zero-padding afterwards gives the pipeline's result (padding is
    masked out of attention, then zeroed) at a fraction of the cost of encoding 512 positions. Training calls
    this too, so the conditioning the transformer learns is the one the pipeline gives it.
    """
    ids = tokenizer(prompts, padding="longest", max_length=max_sequence_length, truncation=True,
                    add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    device = execution_device(text_encoder)
    mask = ids.attention_mask.to(device)
    hidden = text_encoder(ids.input_ids.to(device), mask).last_hidden_state
    hidden = hidden * mask[..., None].to(hidden.dtype)
    return torch.nn.functional.pad(hidden, (0, 0, 0, max_sequence_length - hidden.shape[1]))


class WanAutoencoder(VideoAutoencoder):
    """``AutoencoderKLWan`` with the latent normalisation ``WanPipeline`` applies (decode ``z * std + mean``)."""

    def __init__(self, vae, folder: Path | None = None):
        self.vae = vae
        self.folder = folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> "WanAutoencoder":
        """The VAE of a Wan model folder alone (``FOLDER/vae``), for what needs no sampler."""
        folder = Path(folder)
        vae = load_vae(folder, "AutoencoderKLWan", device, dtype)
        return cls(vae, folder)

    @property
    def spatial_factor(self) -> int:
        return int(self.vae.config.scale_factor_spatial)

    @property
    def temporal_factor(self) -> int:
        return int(self.vae.config.scale_factor_temporal)

    def normalisation(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (mean, std), shaped (1,C,1,1,1)."""
        shape = (1, self.vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean, dtype=torch.float32, device=device).view(shape)
        std = torch.tensor(self.vae.config.latents_std, dtype=torch.float32, device=device).view(shape)
        return mean, std

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """VAE latents -> the sampler's space, float32 (``(z - mean) / std``, as WanPipeline does)."""
        mean, std = self.normalisation(raw.device)
        return (raw.float() - mean) / std

    def denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        """The sampler's space -> VAE latents, float32."""
        mean, std = self.normalisation(latents.device)
        return latents.float() * std + mean

    @property
    def device(self) -> torch.device:
        """Where the VAE computes (under model CPU offload its weights wait on the CPU between calls)."""
        return execution_device(self.vae)

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        return self.encode_many([frames])

    @torch.no_grad()
    def encode_many(self, clips: list[np.ndarray]) -> torch.Tensor:
        """One VAE call for clips of one shape (the VAE's slicing, when :meth:`VideoModel.save_memory` set it,
        still encodes them one at a time)."""
        vae = self.vae
        x = torch.from_numpy(np.stack(clips)).to(torch.float32).permute(0, 4, 1, 2, 3) / 127.5 - 1.0
        posterior_mean = vae.encode(x.to(self.device, vae.dtype)).latent_dist.mean.float()
        mean, std = self.normalisation(posterior_mean.device)
        return (posterior_mean - mean) / std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        vae = self.vae
        mean, std = self.normalisation(latents.device)
        video = vae.decode((latents.float() * std + mean).to(self.device, vae.dtype), return_dict=False)[0].float()
        return ((video[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def reconstruct_images(self, images: np.ndarray) -> np.ndarray:
        vae = self.vae
        x = torch.from_numpy(images).to(torch.float32).permute(0, 3, 1, 2)[:, :, None] / 127.5 - 1.0
        x = x.to(self.device, vae.dtype)
        rec = vae.decode(vae.encode(x).latent_dist.mean, return_dict=False)[0].float().clamp(-1, 1)
        return (rec[:, :, 0].permute(0, 2, 3, 1).cpu().numpy() + 1.0) / 2.0


class WanVideoModel(VideoModel):
    """A ``WanPipeline`` behind the model interface. ``pipeline`` is the diffusers object itself, for training
    code that needs the components."""

    autoencoder_class = WanAutoencoder
    supports_offload = True  # inputs go to execution_device(...): the prompt encoder, the VAE, the transformer

    def __init__(self, pipeline, folder: Path):
        self.pipeline = pipeline
        card = read_card(folder)
        self.identity = identity_of(folder, "wan")
        self.max_sequence_length = int(card.get("max_sequence_length", MAX_SEQUENCE_LENGTH))
        self._autoencoder = WanAutoencoder(pipeline.vae, folder)
        self.defaults = overridden(WAN_DEFAULTS, card, "defaults")
        self.limits = overridden(self._config_limits(), card, "limits")
        self.first_look = first_look_of(card)
        self.inversion, self.inverter = learnt_inverse_of(card, folder, pipeline.transformer)
        self._empty_prompt: torch.Tensor | None = None
        self._count_tokens = TokenCounter(pipeline.tokenizer)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> "WanVideoModel":
        """A Wan diffusers folder, offline; any problem with the folder is a ModelError."""
        folder = Path(folder)
        pipe = load_pipeline(folder, "WanPipeline", device, dtype)
        return cls(pipe, folder)

    def _config_limits(self) -> ModelLimits:
        """What the diffusers config allows: frames and sides on the VAE/patch grid, up to the transformer's
        rotary position range; prompts up to the text context."""
        t = self.pipeline.transformer.config
        patch_t, patch_h, _ = t.patch_size
        step = self._autoencoder.temporal_factor * patch_t
        multiple = self._autoencoder.spatial_factor * patch_h
        rope = int(getattr(t, "rope_max_seq_len", 1024))
        return ModelLimits(min_frames=1 + step, max_frames=1 + step * (rope - 1), frame_step=step,
                           min_size=multiple, max_size=multiple * rope, size_multiple=multiple,
                           max_prompt_tokens=self.max_sequence_length)

    @property
    def autoencoder(self) -> WanAutoencoder:
        return self._autoencoder

    @property
    def latent_channels(self) -> int:
        return int(self.pipeline.transformer.config.in_channels)

    @property
    def device(self) -> torch.device:
        return execution_device(self.pipeline.transformer)

    def prompt_tokens(self, prompt: str) -> int:
        return self._count_tokens(prompt)

    def _run(self, request: GenerationRequest, latents: torch.Tensor, output_type: str):
        return self.pipeline(
            prompt=request.prompt,
            negative_prompt="",
            height=request.height,
            width=request.width,
            num_frames=request.frames,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            latents=latents.to(self.device),
            output_type=output_type,
            max_sequence_length=self.max_sequence_length,
        )

    @torch.no_grad()
    def sample(self, request: GenerationRequest, latents: torch.Tensor) -> np.ndarray:
        frames = np.asarray(self._run(request, latents, "np").frames[0])
        return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    @torch.no_grad()
    def sample_latents(self, request: GenerationRequest, latents: torch.Tensor) -> torch.Tensor:
        return self._run(request, latents, "latent").frames.float()

    @torch.no_grad()
    def empty_prompt_embedding(self) -> torch.Tensor:
        """The embedding of "" that unconditional inversion conditions on, computed once."""
        if self._empty_prompt is None:
            pipe = self.pipeline
            self._empty_prompt = encode_prompts(pipe.tokenizer, pipe.text_encoder, [""],
                                                self.max_sequence_length).to(pipe.transformer.dtype)
        return self._empty_prompt

    def invert(self, latents: torch.Tensor, steps: int, *, differentiable: bool = False,
               prompt_embeds: torch.Tensor | None = None) -> torch.Tensor:
        transformer = self.pipeline.transformer
        sigmas = flow.ascending_sigmas(self.pipeline.scheduler, steps)
        with torch.set_grad_enabled(differentiable):
            embeds = self.empty_prompt_embedding() if prompt_embeds is None else prompt_embeds
            if embeds.shape[0] != latents.shape[0]:
                embeds = embeds.expand(latents.shape[0], -1, -1)

            def velocity(x, t):
                return transformer(hidden_states=x, timestep=t, encoder_hidden_states=embeds, return_dict=False)[0]

            z = flow.invert(velocity, latents.to(self.device, transformer.dtype), sigmas,
                            self.pipeline.scheduler.config.num_train_timesteps)
        return z.float()

    def learnt_inversion(self, latents: torch.Tensor, inverter=None) -> torch.Tensor:
        """The forward's output is a velocity: the noise is the latent plus it, one Euler step of the flow from
        sigma 0 to 1 (what a one-step inversion would take), so an inverse started from the generator's weights
        starts as that step and learns what it misses."""
        inverter = self._inverter(inverter)
        embeds = self.empty_prompt_embedding().to(inverter.dtype)
        if embeds.shape[0] != latents.shape[0]:
            embeds = embeds.expand(latents.shape[0], -1, -1)
        x = latents.to(self.device, torch.float32)
        t = torch.full((x.shape[0],), float(INVERTER_TIMESTEP), device=x.device)
        v = inverter(hidden_states=x.to(inverter.dtype), timestep=t, encoder_hidden_states=embeds,
                     return_dict=False)[0]
        return (x + v.float()).float()
