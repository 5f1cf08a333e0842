"""The CogVideoX family (CogVideoX-2B / 5B and CogVideoX 1.5 text-to-video in diffusers): a causal 3D VAE
(``AutoencoderKLCogVideoX``, x8 spatial, x4 temporal, 16 channels), a T5 text encoder, and an expert transformer
with 2x2 patches (1.5: 2x2x2) sampled by DDIM in v-prediction on a zero-terminal-SNR schedule.

Everything CogVideoX-specific lives here:

- **Layout.** ``CogVideoXPipeline`` keeps latents as (B, F, C, H, W); the model interface and the watermark use
  (B, C, F, H, W). The permutation happens at the edges (:meth:`CogVideoXVideoModel.sample`, ``sample_latents``,
  ``invert``) and nowhere else.
- **Normalised latents.** The pipeline's own sampling space: the VAE posterior times the VAE config's
  ``scaling_factor`` (the pipeline decodes ``latents / scaling_factor``; no shift), and the initial noise z_T in
  units of the scheduler's ``init_noise_sigma`` (``prepare_latents`` multiplies given latents by it; 1.0 for
  DDIM). So the watermark's N(0, 1) noise goes into the pipeline as it is, ``sample_latents`` returns what the
  pipeline would decode, ``autoencoder.encode`` returns the same space (posterior mean x ``scaling_factor``), and
  ``invert`` divides by ``init_noise_sigma`` on the way out, back to the watermark's units.
- **CogVideoX 1.5** (``patch_size_t`` set) packs two latent frames into one token; the pipeline pads the latent
  frames at the front to a multiple of it and drops the padding before decoding. framemark's latents never
  include the padding (the watermark is in the frames the decoder sees): sampling prepends fresh noise for the
  padding frames, inversion prepends copies of the first clean frame (the best guess of what the sampler made
  there) and drops them again. Only the first latent frame shares its token with that guess: on a random toy at
  9 frames (3 latent frames, 1 padding frame) it recovers 76% of its signs against 94% for the others; at 13
  frames nothing is padded and every frame recovers about 93%.
- **Inversion** is DDIM run backwards (``ddim.py``: the network's v held fixed across each of the sampler's own
  steps, taken in reverse), unconditional, with the transformer called exactly as the pipeline calls it (the
  padded empty-prompt embedding, the int timestep, the rotary embedding when
  ``use_rotary_positional_embeddings``). One step cannot be inverted on this zero-terminal-SNR schedule (see
  ``ddim.py``); two and more can.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from framemark.errors import GenerationError

from . import ddim
from .base import (INVERTER_TIMESTEP, GenerationRequest, ModelDefaults, ModelLimits, TokenCounter, VideoAutoencoder,
                   VideoModel, first_look_of, identity_of, learnt_inverse_of, load_pipeline, load_vae, overridden,
                   read_card)

PIPELINE_CLASS = "CogVideoXPipeline"
# A CogVideoX folder without a framemark.json: the request the published models are made for. 1.0 (2B, 5B): the
# diffusers example (guidance 6, 50 steps, exported at 8 fps) at the transformer's trained 480x720x49 (6 s at
# 8 fps). 1.5 (patch_size_t set): 768x1360x81, 5 s at 16 fps, as its model card publishes.
COGVIDEOX_DEFAULTS = ModelDefaults(steps=50, frames=49, height=480, width=720, guidance_scale=6.0, fps=8.0)
COGVIDEOX15_DEFAULTS = ModelDefaults(steps=50, frames=81, height=768, width=1360, guidance_scale=6.0, fps=16.0)
# How far past its trained extent (``sample_frames``; ``sample_height`` x ``sample_width`` for 1.0) a folder
# without a card may be asked to go. 1.0's positional embeddings (3D sin-cos or rotary over a crop region) exist
# for any grid, so the bound is ours; 1.5's rotary table is sliced, which bounds each side by its sample size.
EXTENT_FACTOR = 2
# The seed of the noise in CogVideoX 1.5's padding latent frames (discarded before decoding; it only has to be
# deterministic and independent of the clip's own noise).
PADDING_SEED = 0x0C06_1D30


class CogVideoXAutoencoder(VideoAutoencoder):
    """``AutoencoderKLCogVideoX`` in the pipeline's latent units: encode ``posterior mean * scaling_factor``,
    decode ``latents / scaling_factor``."""

    def __init__(self, vae, folder: Path | None = None):
        self.vae = vae
        self.folder = folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> "CogVideoXAutoencoder":
        """The VAE of a CogVideoX model folder alone (``FOLDER/vae``), for what needs no sampler."""
        folder = Path(folder)
        vae = load_vae(folder, "AutoencoderKLCogVideoX", device, dtype)
        return cls(vae, folder)

    @property
    def spatial_factor(self) -> int:
        # as CogVideoXPipeline computes it: one x2 downsampling per block after the first
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def temporal_factor(self) -> int:
        return int(self.vae.config.temporal_compression_ratio)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """VAE latents -> the sampler's space, float32 (times ``scaling_factor``, as CogVideoXPipeline does)."""
        return raw.float() * self.scaling_factor

    def denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        """The sampler's space -> VAE latents, float32."""
        return latents.float() / self.scaling_factor

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        vae = self.vae
        x = torch.from_numpy(frames).to(torch.float32).permute(3, 0, 1, 2)[None] / 127.5 - 1.0
        return self.normalise(vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mean)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        vae = self.vae
        z = self.denormalise(latents).to(vae.device, vae.dtype)
        video = vae.decode(z, return_dict=False)[0].float()
        return ((video[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def reconstruct_images(self, images: np.ndarray) -> np.ndarray:
        vae = self.vae
        x = torch.from_numpy(images).to(torch.float32).permute(0, 3, 1, 2)[:, :, None] / 127.5 - 1.0
        x = x.to(vae.device, vae.dtype)
        rec = vae.decode(vae.encode(x).latent_dist.mean, return_dict=False)[0].float().clamp(-1, 1)
        return (rec[:, :, 0].permute(0, 2, 3, 1).cpu().numpy() + 1.0) / 2.0


class CogVideoXVideoModel(VideoModel):
    """A ``CogVideoXPipeline`` behind the model interface. ``pipeline`` is the diffusers object itself, for lab
    code that needs the components."""

    autoencoder_class = CogVideoXAutoencoder

    def __init__(self, pipeline, folder: Path):
        self.pipeline = pipeline
        card = read_card(folder)
        config = pipeline.transformer.config
        self.identity = identity_of(folder, "cogvideox")
        # the transformer's text positions: the pipeline pads every prompt to them, and CogVideoX 1.0's joint
        # positional embedding only fits that length, so it is the one context length, not a card setting
        self.max_sequence_length = int(config.max_text_seq_length)
        self.patch_size_t = int(config.patch_size_t) if config.patch_size_t is not None else None
        self._autoencoder = CogVideoXAutoencoder(pipeline.vae, folder)
        self.defaults = overridden(COGVIDEOX15_DEFAULTS if self.patch_size_t else COGVIDEOX_DEFAULTS, card,
                                   "defaults")
        self.limits = overridden(self._config_limits(), card, "limits")
        self.first_look = first_look_of(card)
        self.inversion, self.inverter = learnt_inverse_of(card, folder, pipeline.transformer)
        self._empty_prompt: torch.Tensor | None = None
        self._count_tokens = TokenCounter(pipeline.tokenizer)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> "CogVideoXVideoModel":
        """A CogVideoX diffusers folder, offline; any problem with the folder is a ModelError."""
        folder = Path(folder)
        pipe = load_pipeline(folder, "CogVideoXPipeline", device, dtype)
        return cls(pipe, folder)

    # ------------------------------------------------------------------------------------------ geometry

    def _side_bounds(self) -> tuple[int, int]:
        """The largest height and width the config allows (see ``EXTENT_FACTOR``)."""
        t, s = self.pipeline.transformer.config, self._autoencoder.spatial_factor
        if self.patch_size_t:  # the rotary table is sliced to the grid: each side at most its sample size
            return int(t.sample_height) * s, int(t.sample_width) * s
        longest = EXTENT_FACTOR * max(int(t.sample_height), int(t.sample_width)) * s
        return longest, longest

    def _config_limits(self) -> ModelLimits:
        """What the diffusers config allows: frames 1 + 8k (below), sides on the VAE x patch grid, up to
        ``EXTENT_FACTOR`` times the trained length and the positional bounds; prompts up to the transformer's text
        positions (226 for the published models).

        Frames step by twice the VAE's temporal factor: ``AutoencoderKLCogVideoX`` compresses time 1 + 4k -> 1 + k
        but decodes only an odd number of latent frames back to 1 + 4(k-1) frames; an even count (13 frames ->
        4 latent frames) decodes to 16, a clip whose frames no longer sit on the latent grid of its noise. The
        published lengths (49, 81) are all 1 + 8k."""
        t = self.pipeline.transformer.config
        step = 2 * self._autoencoder.temporal_factor
        multiple = self._autoencoder.spatial_factor * int(t.patch_size)
        most = max(self._side_bounds())
        max_frames = 1 + step * ((EXTENT_FACTOR * (int(t.sample_frames) - 1)) // step)
        return ModelLimits(min_frames=1 + step, max_frames=max_frames, frame_step=step, min_size=multiple,
                           max_size=most - most % multiple, size_multiple=multiple,
                           max_prompt_tokens=self.max_sequence_length)

    def check_inputs(self, request: GenerationRequest) -> GenerationRequest:
        full = super().check_inputs(request)
        if self.patch_size_t:  # 1.5 bounds height and width separately (its rotary table)
            most_h, most_w = self._side_bounds()
            for name, value, most in (("height", full.height, most_h), ("width", full.width, most_w)):
                if value > most:
                    raise GenerationError(f"{name} must be at most {most} for this model (got {value})")
        return full

    def _padding(self, latent_frames: int) -> int:
        """Latent frames CogVideoX 1.5's pipeline prepends to reach a multiple of ``patch_size_t``."""
        return (-latent_frames) % self.patch_size_t if self.patch_size_t else 0

    @property
    def autoencoder(self) -> CogVideoXAutoencoder:
        return self._autoencoder

    @property
    def latent_channels(self) -> int:
        return int(self.pipeline.transformer.config.in_channels)

    @property
    def device(self) -> torch.device:
        return self.pipeline.transformer.device

    def prompt_tokens(self, prompt: str) -> int:
        return self._count_tokens(prompt)

    # ------------------------------------------------------------------------------------------ sampling

    def pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(1,C,t,h,w) unit noise -> the pipeline's (1,F,C,h,w), 1.5's padding frames prepended, in the dtype the
        pipeline steps in (its text encoder's)."""
        x = latents.to(torch.float32).permute(0, 2, 1, 3, 4)
        pad = self._padding(x.shape[1])
        if pad:
            gen = torch.Generator("cpu").manual_seed(PADDING_SEED)
            x = torch.cat([torch.randn((x.shape[0], pad, *x.shape[2:]), generator=gen), x.cpu()], dim=1)
        return x.to(self.device, self.pipeline.text_encoder.dtype)

    def _run(self, request: GenerationRequest, latents: torch.Tensor, output_type: str):
        return self.pipeline(
            prompt=request.prompt,
            negative_prompt="",
            height=request.height,
            width=request.width,
            num_frames=request.frames,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            use_dynamic_cfg=False,
            eta=0.0,
            latents=self.pipeline_latents(latents),
            output_type=output_type,
            max_sequence_length=self.max_sequence_length,
        )

    @torch.no_grad()
    def sample(self, request: GenerationRequest, latents: torch.Tensor) -> np.ndarray:
        frames = np.asarray(self._run(request, latents, "np").frames[0])
        return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    @torch.no_grad()
    def sample_latents(self, request: GenerationRequest, latents: torch.Tensor) -> torch.Tensor:
        out = self._run(request, latents, "latent").frames  # (1, F + pad, C, h, w)
        return out[:, self._padding(latents.shape[2]):].permute(0, 2, 1, 3, 4).float()

    # ------------------------------------------------------------------------------------------ inversion

    @torch.no_grad()
    def empty_prompt_embedding(self) -> torch.Tensor:
        """The embedding of "" that unconditional inversion conditions on, computed once: the pipeline's own
        negative-prompt embedding (padded to ``max_sequence_length``)."""
        if self._empty_prompt is None:
            embeds, _ = self.pipeline.encode_prompt(prompt="", do_classifier_free_guidance=False,
                                                    num_videos_per_prompt=1,
                                                    max_sequence_length=self.max_sequence_length, device=self.device)
            self._empty_prompt = embeds
        return self._empty_prompt

    def rotary_embedding(self, latent_height: int, latent_width: int, latent_frames: int):
        """The pipeline's image_rotary_emb for a latent grid (frames including 1.5's padding), or None for the
        models with sin-cos positions."""
        if not self.pipeline.transformer.config.use_rotary_positional_embeddings:
            return None
        s = self._autoencoder.spatial_factor
        return self.pipeline._prepare_rotary_positional_embeddings(latent_height * s, latent_width * s,
                                                                   latent_frames, self.device)

    def _call(self, transformer, sample: torch.Tensor, t: int, embeds: torch.Tensor, rotary) -> torch.Tensor:
        """``transformer`` on the pipeline's (B, F, C, h, w) ``sample`` at training timestep ``t``, called exactly as
        the pipeline calls it."""
        timestep = torch.tensor(t, dtype=torch.int64, device=transformer.device).expand(sample.shape[0])
        with transformer.cache_context("cond_uncond"):
            return transformer(hidden_states=sample.to(transformer.dtype), encoder_hidden_states=embeds,
                               timestep=timestep, image_rotary_emb=rotary, attention_kwargs=None,
                               return_dict=False)[0]

    def _inversion_input(self, latents: torch.Tensor, batch_embeds: torch.Tensor | None):
        """Clean latents (B,C,t,h,w) -> the pipeline's layout with 1.5's padding, the prompt embedding for the
        batch, the rotary embedding and the padding."""
        batch, _, frames, height, width = latents.shape
        pad = self._padding(frames)
        rotary = self.rotary_embedding(height, width, frames + pad)
        embeds = self.empty_prompt_embedding() if batch_embeds is None else batch_embeds
        if embeds.shape[0] != batch:
            embeds = embeds.expand(batch, -1, -1)
        x = latents.to(self.device, torch.float32).permute(0, 2, 1, 3, 4)  # (B, F, C, h, w)
        if pad:
            x = torch.cat([x[:, :1].expand(-1, pad, -1, -1, -1), x], dim=1)
        return x, embeds, rotary, pad

    def invert(self, latents: torch.Tensor, steps: int, *, differentiable: bool = False,
               prompt_embeds: torch.Tensor | None = None) -> torch.Tensor:
        pipe = self.pipeline
        transformer = pipe.transformer
        prediction = ddim.check_scheduler(pipe.scheduler)
        schedule = ddim.inverse_steps(pipe.scheduler, steps)
        with torch.set_grad_enabled(differentiable):
            x, embeds, rotary, pad = self._inversion_input(latents, prompt_embeds)
            z = ddim.invert(lambda sample, t: self._call(transformer, sample, t, embeds, rotary), x, schedule,
                            prediction)
            return (z[:, pad:].permute(0, 2, 1, 3, 4) / float(pipe.scheduler.init_noise_sigma)).float()

    def learnt_inversion(self, latents: torch.Tensor, inverter=None) -> torch.Tensor:
        """The forward's output is the noise itself (at t = 0 a v-prediction transformer answers in the noise's
        units: v = eps there)."""
        inverter = self._inverter(inverter)
        x, embeds, rotary, pad = self._inversion_input(latents, None)
        out = self._call(inverter, x, INVERTER_TIMESTEP, embeds.to(inverter.dtype), rotary)
        return out[:, pad:].permute(0, 2, 1, 3, 4).float()
