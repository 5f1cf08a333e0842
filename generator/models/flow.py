"""Flow-matching Euler sampling, run backwards: the inversion shared by the families that sample this way (Wan,
and LTX-Video in its own token space).

Generation steps x <- x + (sigma_next - sigma) * v(x, sigma) from sigma 1 down to 0; inversion takes the same
steps upwards, evaluating the velocity at the current (lower) sigma, so the clean latent z_0 is carried back to
the initial noise z_T whose signs hold the watermark.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from framemark.errors import ModelError

FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler",)


def check_scheduler(scheduler) -> None:
    if type(scheduler).__name__ not in FLOW_SCHEDULERS:
        raise ModelError(f"sampler inversion supports flow-matching models; this model uses "
                         f"{type(scheduler).__name__}")


def ascending_sigmas(scheduler, steps: int, **set_timesteps) -> torch.Tensor:
    """The sampler's own sigma grid for ``steps`` steps (shift included), ascending from 0 to 1.
    ``set_timesteps``: what the family's pipeline passes the scheduler besides the step count (LTX: its
    ``sigmas`` and the dynamic shift ``mu``)."""
    check_scheduler(scheduler)
    scheduler.set_timesteps(steps, device="cpu", **set_timesteps)
    sigmas = scheduler.sigmas.to(torch.float32)  # descending, ends with 0
    ascending = torch.flip(sigmas, dims=[0])
    ascending[-1] = 1.0
    return ascending


def invert(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z0: torch.Tensor,
           sigmas: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """Euler ODE inversion z_0 -> z_T along ascending ``sigmas``; ``velocity(x, t)`` is the model's prediction at
    timestep ``t`` (sigma times the training timesteps, one per batch element)."""
    x = z0
    for lo, hi in zip(sigmas[:-1], sigmas[1:]):
        t = (lo * num_train_timesteps).expand(x.shape[0]).to(x.device)
        x = x + (hi - lo) * velocity(x, t)
    return x
