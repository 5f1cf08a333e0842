"""From video frames back to the diffusion model's initial noise: conform, VAE-encode, invert the sampler.

The watermark lives in the signs of z_T. To read it from a file we must undo the two maps generation applied:
the VAE decoder (undone approximately by the encoder's posterior mean) and the sampler's ODE (undone by running
the same ODE backwards, from sigma 0 to sigma 1, with the unconditional model since the prompt is unknown).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from framemark.errors import ModelError


def conform_frames(frames: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
    """Frames (T,H,W,3) uint8 resampled to the model's frame count and size.

    Time: frames are picked uniformly over the clip, so a clip whose frames were dropped or duplicated (fps
    change) is stretched back onto the generated timeline; the detector's frame alignment absorbs what remains.
    Space: resized with area averaging when shrinking, bicubic when enlarging.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected frames (T,H,W,3), got {frames.shape}")
    t = frames.shape[0]
    if t != num_frames:
        idx = np.round(np.linspace(0, t - 1, num_frames)).astype(int)
        frames = frames[idx]
    if frames.shape[1:3] != (height, width):
        shrink = frames.shape[1] * frames.shape[2] > height * width
        interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        frames = np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])
    return np.ascontiguousarray(frames)


def latent_normalisation(vae, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std), shaped (1,C,1,1,1): WanPipeline decodes ``latents * std + mean``."""
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=device).view(shape)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=device).view(shape)
    return mean, std


@torch.no_grad()
def encode_latents(pipe, frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T,H,W,3) -> normalised latents (1,C,t,h,w), the space the transformer samples in."""
    vae = pipe.vae
    x = torch.from_numpy(frames).to(torch.float32).permute(3, 0, 1, 2)[None] / 127.5 - 1.0
    posterior_mean = vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mean.float()
    mean, std = latent_normalisation(vae, posterior_mean.device)
    return (posterior_mean - mean) / std


def _flow_sigmas(pipe, steps: int) -> torch.Tensor:
    """The sampler's own sigma grid (shift included), ascending from 0 to 1 for inversion."""
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device="cpu")
    sigmas = scheduler.sigmas.to(torch.float32)  # descending, ends with 0
    ascending = torch.flip(sigmas, dims=[0])
    ascending[-1] = 1.0
    return ascending


def invert_flow(pipe, z0: torch.Tensor, steps: int, prompt_embeds: torch.Tensor | None = None,
                differentiable: bool = False) -> torch.Tensor:
    """Euler ODE inversion of a flow-matching sampler: z_0 -> z_T.

    Generation steps x <- x + (sigma_next - sigma) * v(x, sigma) from 1 down to 0; inversion takes the same
    steps upwards, evaluating the velocity at the current (lower) sigma. ``differentiable`` keeps the graph, so
    the encoder can be tuned through the inversion (``encoder_tuning``).
    """
    with torch.set_grad_enabled(differentiable):
        return _invert_flow(pipe, z0, steps, prompt_embeds)


def _invert_flow(pipe, z0: torch.Tensor, steps: int, prompt_embeds: torch.Tensor | None) -> torch.Tensor:
    if type(pipe.scheduler).__name__ != "FlowMatchEulerDiscreteScheduler":
        raise ModelError(f"sampler inversion supports flow-matching models; this model uses "
                         f"{type(pipe.scheduler).__name__}")
    if prompt_embeds is None:
        prompt_embeds = unconditional_embeddings(pipe)
    transformer = pipe.transformer
    x = z0.to(transformer.device, transformer.dtype)
    sigmas = _flow_sigmas(pipe, steps)
    for lo, hi in zip(sigmas[:-1], sigmas[1:]):
        t = (lo * pipe.scheduler.config.num_train_timesteps).expand(x.shape[0]).to(x.device)
        v = transformer(hidden_states=x, timestep=t, encoder_hidden_states=prompt_embeds, return_dict=False)[0]
        x = x + (hi - lo) * v
    return x.float()


@torch.no_grad()
def unconditional_embeddings(pipe) -> torch.Tensor:
    from framemark.generator.architecture import MAX_SEQUENCE_LENGTH, encode_prompts

    return encode_prompts(pipe.tokenizer, pipe.text_encoder, [""], MAX_SEQUENCE_LENGTH).to(pipe.transformer.dtype)

