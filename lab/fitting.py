"""The optimisation loop the lab's fine-tuning scripts share (encoder tuning, learnt inverses): AdamW on a list of
parameters, a short linear warm-up then a cosine to 10 % of the rate over a time or step budget, gradients
clipped to norm 1, the mean loss logged every few steps."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch


def fit(params: list[torch.nn.Parameter], batch_loss: Callable[[], torch.Tensor | None], *, minutes: float,
        max_steps: int, lr: float, warmup: int, label: str, log_every: int = 50) -> list[dict]:
    """Step ``params`` on ``batch_loss()`` (a fresh batch's loss, or None for a batch with nothing to learn from)
    until ``max_steps`` or ``minutes``; returns the loss history."""
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    history, running, count, step = [], 0.0, 0, 0
    start = time.time()
    while step < max_steps and time.time() - start < 60 * minutes:
        progress = max(step / max_steps, (time.time() - start) / (60 * minutes))
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1))))
        loss = batch_loss()
        if loss is None:
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        running, count = running + loss.item(), count + 1
        if step % log_every == 0:
            history.append({"step": step, "seconds": round(time.time() - start, 1), "loss": running / count})
            print(f"[{time.strftime('%H:%M:%S')}] {label} step {step} loss {running / count:.4f}", flush=True)
            running, count = 0.0, 0
    return history
