"""Benchmark the default text-to-video model: reconstruction, prompt following and CPU speed.

    python bench/generator.py [--model DIR] [--clips 100] [--json]
    python bench/generator.py --psnr-only [--json]   # reconstruction alone (after a change to the encoder)

Prints a table, then (with --json) one JSON object as the last line:
  vae_psnr_db          mean PSNR of VAE encode/decode over held-out procedural clips (17x128x128)
  oracle_heldout       {colour, shape, motion} accuracy of generated clips whose (colour, shape, motion)
                       combination was never seen in training, read back by the prompt oracle
  oracle_seen          the same for combinations seen in training
  cpu_seconds_per_clip median wall time of 5 default generations (20 steps) with --threads CPU threads

Every number comes from running the real model; prompts, seeds and scenes are fixed so runs are comparable.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time

import torch

from framemark.generator.models import GenerationRequest, model_dir_or_default
from framemark.lab import oracle, world

from common import add_model_arguments, load_model


def vae_psnr(model, clips: int, seed: int = 2024) -> float:
    """Mean PSNR (dB, signal range [-1, 1]) of encode->decode over held-out procedural clips.

    Measured on the raw diffusers VAE of a Wan-family model (``model.autoencoder.vae``), in float, without the
    uint8 rounding and latent normalisation of ``encode``/``decode``: the VAE's own reconstruction error."""
    rng = random.Random(seed)
    specs = world.sample_specs(clips, rng, combos=sorted(world.heldout_combos()))
    psnrs = []
    vae = model.autoencoder.vae
    with torch.no_grad():
        for start in range(0, clips, 4):
            batch = specs[start:start + 4]
            x = world.render(batch, seed=seed + start) * 2 - 1
            recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
            for a, b in zip(recon, x):
                psnrs.append(10 * math.log10(4.0 / ((a - b) ** 2).mean().item()))
    return statistics.fmean(psnrs)


def prompt_following(model, combos: list[tuple[str, str, str]], clips: int, seed: int) -> dict[str, float]:
    """Generate ``clips`` clips cycling through ``combos`` with their canonical prompts; oracle accuracy."""
    rng = random.Random(seed)
    order = list(combos)
    rng.shuffle(order)
    specs = [world.SceneSpec(*order[i % len(order)], background=world.BACKGROUNDS[i % len(world.BACKGROUNDS)])
             for i in range(clips)]
    readings = []
    for i, spec in enumerate(specs):
        request = GenerationRequest(prompt=world.canonical_prompt(spec), seed=seed + i)
        readings.append(oracle.read_clip(model.generate(request)))
        print(f"\r  {i + 1}/{clips} clips", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return oracle.score(readings, specs)


def seconds_per_clip(model, runs: int) -> float:
    times = []
    for i in range(runs):
        request = GenerationRequest(prompt="a red circle moving left", seed=i)
        start = time.perf_counter()
        model.generate(request)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=100, help="generated clips per oracle measurement")
    ap.add_argument("--psnr-clips", type=int, default=48)
    ap.add_argument("--timing-runs", type=int, default=5)
    ap.add_argument("--psnr-only", action="store_true",
                    help="measure VAE reconstruction only (generation does not use the encoder, so a tuned encoder "
                         "leaves the other numbers as they were)")
    add_model_arguments(ap)
    args = ap.parse_args(argv)

    model = load_model(args)
    started = time.perf_counter()
    if args.psnr_only:
        result = {"model": str(model_dir_or_default(args.model)), "vae_psnr_db": vae_psnr(model, args.psnr_clips)}
        print(f"{'vae_psnr_db':<28}{result['vae_psnr_db']:>10.2f}   >= 30")
        if args.json:
            print(json.dumps(result))
        return 0
    result = {
        "model": str(model_dir_or_default(args.model)),
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cpu_seconds_per_clip": seconds_per_clip(model, args.timing_runs),
        "vae_psnr_db": vae_psnr(model, args.psnr_clips),
        "oracle_heldout": prompt_following(model, sorted(world.heldout_combos()), args.clips, seed=10_000),
        "oracle_seen": prompt_following(model, world.train_combos(), args.clips, seed=20_000),
        "clips_per_measurement": args.clips,
    }
    result["bench_minutes"] = round((time.perf_counter() - started) / 60, 1)

    print(f"{'metric':<28}{'value':>10}   target")
    print(f"{'vae_psnr_db':<28}{result['vae_psnr_db']:>10.2f}   >= 30")
    for group in ("oracle_heldout", "oracle_seen"):
        for attr, acc in result[group].items():
            print(f"{group + '.' + attr:<28}{acc:>10.3f}   {'>= 0.8' if group == 'oracle_heldout' else ''}")
    print(f"{'cpu_seconds_per_clip':<28}{result['cpu_seconds_per_clip']:>10.2f}   <= 15 ({args.threads} threads)")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
