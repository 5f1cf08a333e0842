"""The LTX-Video family (``LTXPipeline`` in diffusers: LTX-Video 0.9.x text-to-video): a causal 3D VAE with 128
latent channels (x32 spatial, x8 temporal), a T5 text encoder, and a flow-matching transformer that reads the
latent as a sequence of tokens (one per latent cell: LTXPipeline only samples unpatched latents).

Everything LTX-specific lives here:

- **Two layouts of one latent.** The watermark lives in the unpacked latent (1, C, t, h, w), the shape
  ``latent_shape`` gives and ``watermark.embed`` fills; the pipeline samples packed tokens (B, t*h*w, C).
  ``pack``/``unpack`` are the pipeline's own ``_pack_latents``/``_unpack_latents``, so the two never disagree.
- **Normalisation.** The sampler works in ``(z - latents_mean) * scaling_factor / latents_std`` (``latents_mean``
  and ``latents_std`` are buffers of the VAE's weights, ``scaling_factor`` its config), which the pipeline undoes
  before decoding. The autoencoder uses the pipeline's own ``_normalize_latents``/``_denormalize_latents``.
- **The sampler's schedule.** LTX shifts its sigmas by the video's length (``mu`` from the latent sequence length
  through ``calculate_shift`` and the scheduler config, then optionally stretched to ``shift_terminal``); the
  inversion computes the same grid with the pipeline's own ``calculate_shift`` and ``retrieve_timesteps``.
- **The frame rate is an input of the transformer.** Its rotary positions are scaled by
  ``(temporal factor / frame_rate, spatial factor, spatial factor)``; a clip is sampled at the request's fps, and
  inverted at the model's default fps unless told otherwise (``invert(..., fps=)``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from framemark.errors import ModelError

from . import flow
from .base import (INVERTER_TIMESTEP, GenerationRequest, ModelDefaults, ModelLimits, TokenCounter, VideoAutoencoder,
                   VideoModel, execution_device, first_look_of, identity_of, learnt_inverse_of, load_pipeline,
                   load_vae, overridden, read_card)

PIPELINE_CLASS = "LTXPipeline"
# LTXPipeline's own default context: prompts are padded to it (and a longer one would be truncated, which
# framemark refuses instead). A folder's framemark.json may name another ("max_sequence_length").
MAX_SEQUENCE_LENGTH = 128
# A folder without a framemark.json: the request LTX-Video is published for (768x512 landscape, 121 frames = 1+8*15,
# LTXPipeline's 25 fps frame-rate conditioning, 50 steps, guidance 3).
LTX_DEFAULTS = ModelDefaults(steps=50, frames=121, height=512, width=768, guidance_scale=3.0, fps=25.0)
# LTX-Video's model card: it "works best ... below 257 frames"; the transformer config names no frame limit.
LTX_MAX_FRAMES = 257
# The rotary embedding normalises pixel positions by its base size (2048 in diffusers): larger sides lie outside
# the range the model was trained on. Used when the loaded transformer does not say.
LTX_ROPE_BASE_SIDE = 2048
# LTXPipeline decodes at ``decode_timestep`` 0.0 by default (the VAE ignores it unless timestep-conditioned); a
# card may name another ("decode_timestep"). framemark never mixes decode noise in: clips stay a function of z_T.
DECODE_TIMESTEP = 0.0


def _pipeline_class():
    from diffusers import LTXPipeline

    return LTXPipeline


class LTXAutoencoder(VideoAutoencoder):
    """``AutoencoderKLLTXVideo`` with the latent normalisation ``LTXPipeline`` applies."""

    def __init__(self, vae, folder: Path | None = None, decode_timestep: float = DECODE_TIMESTEP):
        self.vae = vae
        self.folder = folder
        self.decode_timestep = float(decode_timestep)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> "LTXAutoencoder":
        """The VAE of an LTX model folder alone (``FOLDER/vae``), for what needs no sampler."""
        folder = Path(folder)
        vae = load_vae(folder, "AutoencoderKLLTXVideo", device, dtype)
        card = read_card(folder)
        return cls(vae, folder, card.get("decode_timestep", DECODE_TIMESTEP))

    @property
    def spatial_factor(self) -> int:
        return int(self.vae.spatial_compression_ratio)

    @property
    def temporal_factor(self) -> int:
        return int(self.vae.temporal_compression_ratio)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def device(self) -> torch.device:
        """Where the VAE computes (under model CPU offload its weights wait on the CPU between calls)."""
        return execution_device(self.vae)

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """VAE latents -> the sampler's space, float32 (LTXPipeline's ``_normalize_latents``)."""
        vae = self.vae
        return _pipeline_class()._normalize_latents(raw.float(), vae.latents_mean.float(), vae.latents_std.float(),
                                                    vae.config.scaling_factor)

    def denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        """The sampler's space -> VAE latents, float32 (LTXPipeline's ``_denormalize_latents``)."""
        vae = self.vae
        return _pipeline_class()._denormalize_latents(latents.float(), vae.latents_mean.float(),
                                                      vae.latents_std.float(), vae.config.scaling_factor)

    def _decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """VAE latents (B,C,t,h,w) -> video in [-1, 1] (B,3,T,H,W), float32, as LTXPipeline decodes them."""
        vae = self.vae
        if not vae.config.timestep_conditioning:
            return vae.decode(raw.to(self.device, vae.dtype), None, return_dict=False)[0].float()
        if getattr(vae, "use_slicing", False) and raw.shape[0] > 1:
            # diffusers' sliced decode pairs a batch's latents with its timesteps wrongly (0.42: it fails for
            # B > 1), so a timestep-conditioned VAE with slicing on (``save_memory``) is sliced here instead
            return torch.cat([self._decode_raw(one) for one in raw.split(1)])
        temb = torch.full((raw.shape[0],), self.decode_timestep, device=self.device, dtype=vae.dtype)
        return vae.decode(raw.to(self.device, vae.dtype), temb, return_dict=False)[0].float()

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        return self.encode_many([frames])

    @torch.no_grad()
    def encode_many(self, clips: list[np.ndarray]) -> torch.Tensor:
        """One VAE call for clips of one shape (the VAE's slicing, when :meth:`VideoModel.save_memory` set it,
        still encodes them one at a time)."""
        vae = self.vae
        x = torch.from_numpy(np.stack(clips)).to(torch.float32).permute(0, 4, 1, 2, 3) / 127.5 - 1.0
        posterior_mean = vae.encode(x.to(self.device, vae.dtype)).latent_dist.mean
        return self.normalise(posterior_mean)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        video = self._decode_raw(self.denormalise(latents.to(self.device)))
        return ((video[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def reconstruct_images(self, images: np.ndarray) -> np.ndarray:
        vae = self.vae
        x = torch.from_numpy(images).to(torch.float32).permute(0, 3, 1, 2)[:, :, None] / 127.5 - 1.0
        rec = self._decode_raw(vae.encode(x.to(self.device, vae.dtype)).latent_dist.mean).clamp(-1, 1)
        return (rec[:, :, 0].permute(0, 2, 3, 1).cpu().numpy() + 1.0) / 2.0


class LTXVideoModel(VideoModel):
    """An ``LTXPipeline`` behind the model interface. ``pipeline`` is the diffusers object itself, for code that
    needs the components."""

    autoencoder_class = LTXAutoencoder

    def __init__(self, pipeline, folder: Path):
        self.pipeline = pipeline
        card = read_card(folder)
        self.identity = identity_of(folder, "ltx")
        self._autoencoder = LTXAutoencoder(pipeline.vae, folder, card.get("decode_timestep", DECODE_TIMESTEP))
        self._check_geometry()
        tokenizer_max = int(getattr(pipeline.tokenizer, "model_max_length", MAX_SEQUENCE_LENGTH))
        self.max_sequence_length = int(card.get("max_sequence_length", min(MAX_SEQUENCE_LENGTH, tokenizer_max)))
        self.defaults = overridden(LTX_DEFAULTS, card, "defaults")
        self.limits = overridden(self._config_limits(), card, "limits")
        self.first_look = first_look_of(card)
        self.inversion, self.inverter = learnt_inverse_of(card, folder, pipeline.transformer)
        self._empty_prompt: tuple[torch.Tensor, torch.Tensor] | None = None
        self._count_tokens = TokenCounter(pipeline.tokenizer)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> "LTXVideoModel":
        """An LTX-Video diffusers folder, offline; any problem with the folder is a ModelError."""
        folder = Path(folder)
        pipe = load_pipeline(folder, "LTXPipeline", device, dtype)
        flow.check_scheduler(pipe.scheduler)
        return cls(pipe, folder)

    def _check_geometry(self) -> None:
        """Refuse, in words, what LTXPipeline cannot sample: it hands the transformer the unpatched latent grid
        (rotary positions, sequence length) and draws ``in_channels`` channels of noise, so only unpatched
        transformers whose input is the VAE's latent channels work (every published LTX-Video checkpoint)."""
        t = self.pipeline.transformer.config
        if (t.patch_size, t.patch_size_t) != (1, 1):
            raise ModelError(f"LTXPipeline samples only unpatched latents; this transformer has patch_size "
                             f"{t.patch_size} and patch_size_t {t.patch_size_t}")
        if t.in_channels != self._autoencoder.latent_channels:
            raise ModelError(f"the transformer reads {t.in_channels} channels but the VAE makes "
                             f"{self._autoencoder.latent_channels}")

    def _config_limits(self) -> ModelLimits:
        """What the config allows: frames 1 + 8k (the VAE's temporal factor times the temporal patch), sides
        multiples of 32 (spatial factor times patch) up to the rotary embedding's base size; prompts up to the
        text context."""
        t = self.pipeline.transformer.config
        step = self._autoencoder.temporal_factor * int(t.patch_size_t)
        multiple = self._autoencoder.spatial_factor * int(t.patch_size)
        rope = getattr(self.pipeline.transformer, "rope", None)
        side = min(int(getattr(rope, "base_height", LTX_ROPE_BASE_SIDE)),
                   int(getattr(rope, "base_width", LTX_ROPE_BASE_SIDE)))
        return ModelLimits(min_frames=1 + step, max_frames=1 + step * ((LTX_MAX_FRAMES - 1) // step),
                           frame_step=step, min_size=multiple, max_size=multiple * (side // multiple),
                           size_multiple=multiple, max_prompt_tokens=self.max_sequence_length)

    @property
    def autoencoder(self) -> LTXAutoencoder:
        return self._autoencoder

    @property
    def latent_channels(self) -> int:
        return self._autoencoder.latent_channels

    @property
    def device(self) -> torch.device:
        return execution_device(self.pipeline.transformer)

    def prompt_tokens(self, prompt: str) -> int:
        return self._count_tokens(prompt)

    # ------------------------------------------------------------------------------------------ token layout

    def pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.pack(latents.to(self.device, torch.float32))

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        """Unpacked (B,C,t,h,w) -> the pipeline's tokens (B, t*h*w, C)."""
        t = self.pipeline.transformer.config
        return _pipeline_class()._pack_latents(latents, t.patch_size, t.patch_size_t)

    def unpack(self, tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """Tokens (B, t*h*w, C) of a (t, h, w) latent grid -> unpacked (B,C,t,h,w)."""
        t = self.pipeline.transformer.config
        return _pipeline_class()._unpack_latents(tokens, frames, height, width, t.patch_size, t.patch_size_t)

    # ------------------------------------------------------------------------------------------ sampling

    def _call(self, request: GenerationRequest, latents: torch.Tensor, output_type: str):
        return self.pipeline(
            prompt=request.prompt,
            negative_prompt="",
            height=request.height,
            width=request.width,
            num_frames=request.frames,
            frame_rate=request.fps,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            latents=self.pack(latents.to(self.device, torch.float32)),
            decode_timestep=self._autoencoder.decode_timestep,
            decode_noise_scale=0.0,
            output_type=output_type,
            max_sequence_length=self.max_sequence_length,
        )

    @torch.no_grad()
    def sample(self, request: GenerationRequest, latents: torch.Tensor) -> np.ndarray:
        frames = np.asarray(self._call(request, latents, "np").frames[0])
        return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    @torch.no_grad()
    def sample_latents(self, request: GenerationRequest, latents: torch.Tensor) -> torch.Tensor:
        tokens = self._call(request, latents, "latent").frames
        return self.unpack(tokens, *latents.shape[2:]).float()

    # ------------------------------------------------------------------------------------------ inversion

    @torch.no_grad()
    def empty_prompt(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding of "" and its attention mask (1, L, D), (1, L), as LTXPipeline encodes the negative
        prompt; unconditional inversion conditions on it. Computed once."""
        if self._empty_prompt is None:
            embeds, mask, _, _ = self.pipeline.encode_prompt(
                prompt="", do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length,
                device=self.device)
            self._empty_prompt = (embeds, mask)
        return self._empty_prompt

    def sigmas(self, frames: int, height: int, width: int, steps: int) -> torch.Tensor:
        """The sampler's sigma grid for a (frames, height, width) latent and ``steps`` steps, ascending from 0 to
        1: LTXPipeline's ``np.linspace(1, 1/steps, steps)``, shifted by ``mu`` for the sequence length (and
        stretched to the scheduler's ``shift_terminal``), by the pipeline's own functions."""
        from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

        scheduler = self.pipeline.scheduler
        flow.check_scheduler(scheduler)
        config = scheduler.config
        mu = calculate_shift(frames * height * width, config.get("base_image_seq_len", 256),
                             config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                             config.get("max_shift", 1.15))
        ascending = flow.ascending_sigmas(scheduler, steps, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        if not torch.isfinite(ascending).all():
            raise ModelError(f"this scheduler has no usable {steps}-step schedule (try more steps)")
        return ascending

    def velocity(self, batch: int, frames: int, height: int, width: int, fps: float | None = None,
                 transformer=None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``v(tokens, timestep)``: the transformer's unconditional prediction for packed latents of a
        (frames, height, width) grid, called exactly as LTXPipeline calls it (the empty prompt and its mask,
        the latent grid, the rotary scale of ``fps``, default the model's); float32 out. ``transformer``
        defaults to the pipeline's (a learnt inverse is called the same way)."""
        transformer = self.pipeline.transformer if transformer is None else transformer
        embeds, mask = self.empty_prompt()
        embeds, mask = embeds.expand(batch, -1, -1), mask.expand(batch, -1)
        fps = self.defaults.fps if fps is None else fps
        spatial = self.pipeline.vae_spatial_compression_ratio
        scale = (self.pipeline.vae_temporal_compression_ratio / fps, spatial, spatial)

        def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            dtype = transformer.dtype
            return transformer(hidden_states=x.to(dtype), encoder_hidden_states=embeds.to(dtype), timestep=t,
                               encoder_attention_mask=mask, num_frames=frames, height=height, width=width,
                               rope_interpolation_scale=scale, return_dict=False)[0].float()
        return v

    def invert(self, latents: torch.Tensor, steps: int, *, differentiable: bool = False,
               fps: float | None = None) -> torch.Tensor:
        """Flow-matching Euler inversion in LTX's token space: pack, invert along the pipeline's schedule for
        this sequence length, unpack. Latents stay float32 between steps (the pipeline's convention).
        ``fps``: the frame rate the clip was sampled at (default the model's)."""
        batch, _, frames, height, width = latents.shape
        sigmas = self.sigmas(frames, height, width, steps)
        with torch.set_grad_enabled(differentiable):
            velocity = self.velocity(batch, frames, height, width, fps)
            tokens = self.pack(latents.to(self.device, torch.float32))
            z = flow.invert(velocity, tokens, sigmas, self.pipeline.scheduler.config.num_train_timesteps)
        return self.unpack(z, frames, height, width).float()

    def learnt_inversion(self, latents: torch.Tensor, inverter=None) -> torch.Tensor:
        """In LTX's token space, as its inversion: the forward's output is a velocity, and the noise the packed
        latent plus it (one Euler step of the flow from sigma 0 to 1, which the inverse starts as and improves)."""
        inverter = self._inverter(inverter)
        batch, _, frames, height, width = latents.shape
        velocity = self.velocity(batch, frames, height, width, transformer=inverter)
        tokens = self.pack(latents.to(self.device, torch.float32))
        t = torch.full((batch,), float(INVERTER_TIMESTEP), device=tokens.device)
        return self.unpack(tokens + velocity(tokens, t), frames, height, width).float()
