"""Train a learnt inverse of a model's sampler: one transformer forward from a clip's clean latent to its noise.

    python -m framemark.lab.inverter_training --model generator/cogvideox_model --out runs/inverter --minutes 6

Why: verifying a clip means recovering its initial noise, and the sampler run backwards keeps the watermark only
at about ten steps (docs/benchmarks.md, "The first look"): ten transformer forwards per upload, 12.7 % of a
CogVideoX-2B generation at 480p, where the clean latent itself reads nothing. A network trained to map the
sampler's output back to its input costs one forward.

The inverse is a transformer of the model's own architecture, started from the model's weights (its first
``--blocks`` blocks) and called at timestep 0 with the empty prompt, the way the family's inversion calls it
(``VideoModel.learnt_inversion``: for CogVideoX the output is the noise, for the flow families Wan and LTX-Video a
velocity added to the latent, so that it starts as one Euler step of the flow). Data: noise the sampler starts from
and the clean latent it makes (20 steps, guidance 5, grammar captions), decoded by the frozen VAE, degraded the
way files are (``encoder_tuning.degrade``) and encoded again, so the inverse learns from what a verifier sees.
Loss: the logistic sign loss the encoder tuning uses (the watermark reads signs) plus a small MSE that keeps the
output in the noise's units. The inverse never sees a key or a marked clip: it is one fixed function of the
upload, so the keyed test's null distribution is unchanged.

Before and after, on held-out captions, it reports the sign agreement of the sampler inversion (10 steps) and of
the learnt inverse with the true noise under each of ``encoder_tuning.EVAL_CONDITIONS``. ``--install`` then puts
``inverter/`` into the model folder and turns it on in the card (``verification.inversion = "learnt"``), but only
where the learnt inverse agrees at least as well as the sampler inversion under every condition; a freshly trained
model has none. The attack suite is the fuller measurement (docs/benchmarks.md, "A learnt inverse").
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import shutil
import sys
import time
from pathlib import Path

import torch

from framemark.detect import DEFAULT_INVERSION_STEPS
from framemark.generator.models import load_model
from framemark.generator.models.base import CARD_FILE, INVERTER_FOLDER, read_card

from .fitting import fit
from .encoder_tuning import (cell_mask, decode, degrade, encode, evaluate, held_out_and_training_latents,
                             sign_loss)

MSE_WEIGHT = 0.1
# the state-dict keys of the transformer blocks an inverse may leave out (CogVideoX and LTX: transformer_blocks.N,
# Wan: blocks.N)
BLOCK_KEY = re.compile(r"^(transformer_)?blocks\.\d+\.")


def new_inverter(model, blocks: int | None = None):
    """A trainable fp32 copy of the model's transformer (the inverse's starting point), keeping its first
    ``blocks`` transformer blocks (all by default): a shallower inverse costs less per upload."""
    source = model.pipeline.transformer
    depth = int(source.config.num_layers)
    if blocks is None or blocks >= depth:
        inverter = copy.deepcopy(source).float()
    else:
        if blocks < 1:
            raise SystemExit(f"--blocks must be at least 1, got {blocks}")
        inverter = type(source).from_config({**source.config, "num_layers": blocks})
        missing, unexpected = inverter.load_state_dict(source.state_dict(), strict=False)
        if missing or any(not BLOCK_KEY.match(k) for k in unexpected):
            raise SystemExit(f"inverter does not take the model's weights: missing {missing[:3]}")
        inverter = inverter.to(source.device, torch.float32)
    inverter.requires_grad_(True).train()
    return inverter


def train(model, inverter, data: dict, minutes: float, max_steps: int, batch: int, lr: float, seed: int,
          log_every: int = 50) -> list[dict]:
    """Fit ``inverter`` on ``data`` ((z_T, z0) pairs); returns the loss history."""
    ae, device = model.autoencoder, model.device
    ae.vae.requires_grad_(False)
    params = [p for p in inverter.parameters() if p.requires_grad]
    rng = random.Random(seed)
    n = data["z0"].shape[0]

    def batch_loss():
        idx = torch.tensor([rng.randrange(n) for _ in range(batch)])
        z0 = data["z0"][idx].to(device)
        z_t = data["z_t"][idx].to(device).float()
        with torch.no_grad():
            x, crop = degrade(decode(ae, z0), rng)
            z_hat = encode(ae, x)
        mask = cell_mask(crop, z0, ae.spatial_factor)
        if not mask.any():
            return None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            z_inv = model.learnt_inversion(z_hat, inverter)
        return sign_loss(z_inv, z_t)[mask].mean() + MSE_WEIGHT * ((z_inv - z_t) ** 2)[mask].mean()

    history = fit(params, batch_loss, minutes=minutes, max_steps=max_steps, lr=lr, warmup=100, label="inverter",
                  log_every=log_every)
    inverter.eval().requires_grad_(False)
    return history


def at_least_as_good(learnt: dict, sampler: dict) -> bool:
    """Whether the learnt inverse's sign agreement is at or above the sampler inversion's under every condition
    both report on."""
    both = [k for k in sampler if sampler[k]["sign_agreement"] is not None and k in learnt]
    return bool(both) and all(learnt[k]["sign_agreement"] >= sampler[k]["sign_agreement"] for k in both)


def install(model_dir: Path, exported: Path, command: str) -> None:
    """``exported`` becomes the model folder's ``inverter/`` and the card's ``verification.inversion``."""
    target = model_dir / INVERTER_FOLDER
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(exported, target)
    card = read_card(model_dir)
    card["verification"] = {**(card.get("verification") or {}), "inversion": "learnt",
                            "inversion_measured_by": command + f" ({INVERTER_FOLDER}/inverter_training.json)"}
    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m framemark.lab.inverter_training",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="model folder (any family)")
    ap.add_argument("--out", type=Path, required=True, help="folder for inverter/ (with its inverter_training.json)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--train-clips", type=int, default=8192)
    ap.add_argument("--eval-clips", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=None, help="transformer blocks the inverse keeps (default: all)")
    ap.add_argument("--install", action="store_true",
                    help="put the inverse into the model folder and name it in the card, if it beats the sampler's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="toy sizes on the CPU (tests)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.train_clips, args.eval_clips, args.batch, args.steps = 2, 2, 1, 2
    torch.manual_seed(args.seed)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = load_model(args.model, device=args.device)
    started = time.time()
    held_out, data = held_out_and_training_latents(model, args.eval_clips, args.train_clips, args.seed, args.smoke,
                                                   train_batch=128)
    inv_steps = 2 if args.smoke else DEFAULT_INVERSION_STEPS
    sampler = evaluate(model, held_out, 16, inv_steps)
    print(json.dumps({"sampler inversion": sampler}), flush=True)
    inverter = new_inverter(model, args.blocks)
    history = train(model, inverter, data, args.minutes, args.steps, args.batch, args.lr, args.seed,
                    log_every=1 if args.smoke else 50)
    learnt = evaluate(model, held_out, 16, invert=lambda z: model.learnt_inversion(z, inverter))
    print(json.dumps({"learnt inverse": learnt}), flush=True)
    folder = args.out / "inverter"
    inverter.half().cpu().save_pretrained(folder, safe_serialization=True)
    command = "python -m framemark.lab.inverter_training " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command, "blocks": int(inverter.config.num_layers), "train_clips": args.train_clips,
              "eval_clips": args.eval_clips, "batch": args.batch, "lr": args.lr,
              "steps": history[-1]["step"] if history else 0, "minutes": round((time.time() - started) / 60, 2),
              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "sampler_inversion_steps": inv_steps, "sampler inversion": sampler, "learnt inverse": learnt,
              "history": history}
    (folder / "inverter_training.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"exported {folder}", flush=True)
    if args.install:
        if at_least_as_good(learnt, sampler):
            install(args.model, folder, command)
            print(f"installed {args.model / INVERTER_FOLDER}; {args.model / CARD_FILE}: verification.inversion = "
                  f"learnt", flush=True)
        else:
            print("not installed: the learnt inverse agrees less than the sampler inversion under some condition",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
