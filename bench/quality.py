"""Does the latent mark change what the generator makes? Marked against unmarked generation over the same prompts
and seeds, and a normality test of the marked noise itself.

    python bench/quality.py [--clips 50] [--device cpu] [--steps 20] [--json]

framemark's mark is not added to pixels: it chooses the signs of the initial noise z_T and leaves every element
exactly N(0, 1) (docs/watermark.md). So there is no "marked vs original" pair to take a PSNR of; the claim to
test is that marked clips are distributed like unmarked ones. Each prompt and seed is generated three times:
unmarked, marked with one fixed key (what one platform's clips look like: the same key for every clip), and
marked with a fresh random key per clip (the distribution over keys, which is what "exactly N(0, 1)" promises).

1. The prompt oracle (lab/oracle.py) reads colour, shape and motion from each clip: accuracy per arm and
   McNemar's exact test of each marked arm against unmarked, paired by prompt and seed.
2. VAE-space and pixel statistics: the clips encoded by the model's VAE; per-channel latent mean and standard
   deviation and pixel statistics (mean level, temporal difference energy, spread), each marked arm against
   unmarked by a two-sample Kolmogorov-Smirnov test on the per-clip values.
3. Each arm's z_T pooled over its clips against N(0, 1): Kolmogorov-Smirnov, moments, share of positive signs.

Prints tables; with --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_KEY  # noqa: E402

from framemark.generator.models import GenerationRequest, load_model  # noqa: E402
from framemark.lab import oracle, world  # noqa: E402
from framemark.watermark import Payload, WatermarkKey, embed  # noqa: E402


def mcnemar_exact(a_right: list[bool], b_right: list[bool]) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes."""
    b = sum(x and not y for x, y in zip(a_right, b_right))
    c = sum(y and not x for x, y in zip(a_right, b_right))
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2 * stats.binom.cdf(min(b, c), b + c, 0.5)))


def noise_summary(z: np.ndarray) -> dict:
    z = z.ravel().astype(np.float64)
    ks = stats.kstest(z, "norm")
    return {"elements": int(z.size), "mean": round(float(z.mean()), 5), "std": round(float(z.std()), 5),
            "skew": round(float(stats.skew(z)), 5), "excess_kurtosis": round(float(stats.kurtosis(z)), 5),
            "ks_statistic": round(float(ks.statistic), 6), "ks_p": round(float(ks.pvalue), 4),
            "positive_share": round(float((z > 0).mean()), 5)}


ARMS = ("unmarked", "marked, one key", "marked, key per clip")


def compare(stats_by_arm: dict[str, list], names: list[str]) -> list[dict]:
    """Per statistic: its mean in each arm and the two-sample KS p-value of each marked arm against unmarked."""
    arrays = {arm: np.asarray(v) for arm, v in stats_by_arm.items()}
    rows = []
    for j, name in enumerate(names):
        row = {"statistic": name, **{arm: round(float(arrays[arm][:, j].mean()), 5) for arm in ARMS}}
        for arm in ARMS[1:]:
            row[f"ks_p[{arm}]"] = round(float(stats.ks_2samp(arrays[arm][:, j], arrays["unmarked"][:, j]).pvalue), 4)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--steps", type=int, default=20, help="sampler steps (framemark generate's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(None, device=args.device)
    rng = random.Random(4242)
    combos = sorted(world.heldout_combos()) + world.train_combos()
    rng.shuffle(combos)

    right = {arm: {a: [] for a in ("colour", "shape", "motion")} for arm in ARMS}
    latent_stats = {arm: [] for arm in ARMS}
    pixel_stats = {arm: [] for arm in ARMS}
    noise = {arm: [] for arm in ARMS}
    for i in range(args.clips):
        spec = world.SceneSpec(*combos[i % len(combos)], background=world.BACKGROUNDS[i % 3])
        request = model.check_inputs(GenerationRequest(prompt=world.canonical_prompt(spec), seed=12000 + i,
                                                       steps=args.steps))
        shape = model.latent_shape(request.frames, request.height, request.width)
        # as generator.emit.watermarked_latents marks (emit itself imports PyAV and c2pa, absent on the GPU machine)
        latents = {"unmarked": model.initial_noise(request),
                   "marked, one key": embed(BENCH_KEY, Payload.random(rng), shape, seed=request.seed),
                   "marked, key per clip": embed(WatermarkKey(rng.randbytes(32)), Payload.random(rng), shape,
                                                 seed=request.seed)}
        for arm, z in latents.items():
            noise[arm].append(z.numpy())
            frames = model.generate(request, latents=z)
            reading = oracle.read_clip(frames)
            for k, attr in enumerate(("colour", "shape", "motion")):
                right[arm][attr].append(getattr(reading, attr) == spec.combo[k])
            with torch.no_grad():
                lat = model.autoencoder.encode(frames).float().cpu().numpy()[0]  # (C, T, h, w)
            latent_stats[arm].append(np.concatenate([lat.mean(axis=(1, 2, 3)), lat.std(axis=(1, 2, 3))]))
            f = frames.astype(np.float64) / 255.0
            pixel_stats[arm].append([f.mean(), np.abs(np.diff(f, axis=0)).mean(), f.std()])
        print(f"\r  {i + 1}/{args.clips} prompt/seed triples", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    oracle_rows = []
    for attr in ("colour", "shape", "motion", "all three"):
        got = {arm: (right[arm][attr] if attr != "all three" else [all(x) for x in zip(*right[arm].values())])
               for arm in ARMS}
        row = {"attribute": attr, **{arm: round(statistics.fmean(got[arm]), 3) for arm in ARMS}}
        for arm in ARMS[1:]:
            row[f"mcnemar_p[{arm}]"] = round(mcnemar_exact(got[arm], got["unmarked"]), 4)
        oracle_rows.append(row)
    channels = len(latent_stats["unmarked"][0]) // 2
    latent_rows = compare(latent_stats, [f"latent ch{c} mean" for c in range(channels)]
                          + [f"latent ch{c} std" for c in range(channels)])
    pixel_rows = compare(pixel_stats, ["mean level", "mean |frame difference|", "pixel std"])
    noise_rows = {arm: noise_summary(np.stack(z)) for arm, z in noise.items()}
    bonferroni = 0.05 / len(latent_rows)
    latent_summary = {arm: {"smallest_ks_p": min(r[f"ks_p[{arm}]"] for r in latent_rows),
                            "below_bonferroni": sum(r[f"ks_p[{arm}]"] < bonferroni for r in latent_rows),
                            "below_0.05": sum(r[f"ks_p[{arm}]"] < 0.05 for r in latent_rows)} for arm in ARMS[1:]}

    print(f"{args.clips} prompts x seeds, {args.steps} sampler steps, device {args.device}; arms: {', '.join(ARMS)}")
    print("\nprompt oracle accuracy (McNemar p against unmarked, paired by prompt and seed)")
    print(f"{'attribute':12s}" + "".join(f"{arm:>22s}" for arm in ARMS))
    for r in oracle_rows:
        cells = [f"{r['unmarked']:.3f}"] + [f"{r[arm]:.3f} (p {r[f'mcnemar_p[{arm}]']:.2f})" for arm in ARMS[1:]]
        print(f"{r['attribute']:12s}" + "".join(f"{c:>22s}" for c in cells))
    print(f"\nVAE latents of the clips, {channels} channels x (mean, std) = {len(latent_rows)} KS tests per arm "
          f"(Bonferroni level {bonferroni:.4f}):")
    for arm, v in latent_summary.items():
        print(f"  {arm:22s} smallest p {v['smallest_ks_p']:.4f}; below Bonferroni {v['below_bonferroni']}, "
              f"below 0.05 {v['below_0.05']} (expected by chance {0.05 * len(latent_rows):.1f})")
    print(f"\n{'pixel statistic':26s}" + "".join(f"{arm:>22s}" for arm in ARMS))
    for r in pixel_rows:
        cells = [f"{r['unmarked']:.4f}"] + [f"{r[arm]:.4f} (p {r[f'ks_p[{arm}]']:.3f})" for arm in ARMS[1:]]
        print(f"{r['statistic']:26s}" + "".join(f"{c:>22s}" for c in cells))
    print("\ninitial noise against N(0, 1), pooled over all clips of the arm")
    print(f"{'noise':22s}{'elements':>10s}{'mean':>9s}{'std':>9s}{'skew':>9s}{'ex.kurt':>9s}{'>0':>9s}{'KS D':>10s}"
          f"{'KS p':>8s}")
    for arm, s in noise_rows.items():
        print(f"{arm:22s}{s['elements']:10d}{s['mean']:9.4f}{s['std']:9.4f}{s['skew']:9.4f}"
              f"{s['excess_kurtosis']:9.4f}{s['positive_share']:9.4f}{s['ks_statistic']:10.6f}{s['ks_p']:8.4f}")
    if args.json:
        print(json.dumps({"clips": args.clips, "steps": args.steps, "device": args.device, "oracle": oracle_rows,
                          "latent": latent_rows, "latent_summary": latent_summary, "pixels": pixel_rows,
                          "noise": noise_rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
