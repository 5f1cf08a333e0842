"""False alarms of the watermark test: wrong keys on marked noise, and p-values of unmarked noise.

    python bench/watermark_null.py [--wrong-keys 10000] [--unmarked 2000] [--files 2] [--json]

The null hypothesis "not marked with this key" is exercised by
  1. one marked z_T (the strongest possible mark) checked with many random wrong keys (pure codec);
  2. unmarked N(0, I) latents of the default shape, plus static "videos" (one noise frame repeated: the most
     correlated content there is) checked with the key (pure codec);
  3. marked clips made by the default model and written as files (``--files``), each checked with
     ``--wrong-keys / --files`` random wrong keys the way `framemark verify` checks a key: every hypothesis of
     the search, Bonferroni-corrected (the recovered noise does not depend on the key, so each hypothesis is
     inverted once per file and tested against every key).
It prints a histogram of the p-values: with the Bonferroni factor for frame alignment they are conservative,
i.e. piled towards 1, never below the uniform line in the low bins.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from framemark.watermark import Payload, WatermarkKey, embed, extract

from common import BENCH_KEY, p_value_histogram


SHAPE = (1, 16, 5, 16, 16)


def wrong_keys_on_files(n_files: int, keys_per_file: int, rng: np.random.Generator) -> dict:
    """Part 3: marked files of the default model against wrong keys, as `verify` would test each key."""
    from framemark import media
    from framemark.detect import alignment, recovery
    from framemark.generator import emit
    from framemark.generator.models import GenerationRequest, load_model
    from framemark.lab import world

    torch.set_num_threads(2)
    model = load_model()
    combos = sorted(world.heldout_combos())
    p_values, right = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_files):
            spec = world.SceneSpec(*combos[i % len(combos)], background=world.BACKGROUNDS[i % 3])
            request = GenerationRequest(prompt=world.canonical_prompt(spec), seed=5000 + i)
            path = Path(tmp) / f"marked-{i}.mp4"
            emit.emit_clip(model, request, path, key=BENCH_KEY, payload=Payload(0x123456000000 + i))
            frames = media.read_video(path).frames
            candidates = alignment.hypotheses(model, *frames.shape[:3])
            z_hats = [(hyp, recovery.recover_noise(model, frames, hyp)) for hyp in candidates]
            right.append(min(recovery.check_hypothesis(model, BENCH_KEY, z, hyp, len(candidates)).log10_p_value
                             for hyp, z in z_hats))
            for _ in range(keys_per_file):
                key = WatermarkKey(rng.bytes(32))
                p_values.append(min(recovery.check_hypothesis(model, key, z, hyp, len(candidates)).p_value
                                    for hyp, z in z_hats))
    return {"files": n_files, "checks": len(p_values), "detections": int(sum(p <= 1e-6 for p in p_values)),
            "min_p": float(min(p_values)), "right_key_log10_p": [round(v, 1) for v in right],
            "histogram": p_value_histogram(p_values)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wrong-keys", type=int, default=10_000)
    ap.add_argument("--unmarked", type=int, default=2_000)
    ap.add_argument("--files", type=int, default=2,
                    help="marked clips of the default model checked with --wrong-keys keys in all (0: codec only)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(7)
    key = BENCH_KEY
    marked = embed(key, Payload(0xABCDEF012345), SHAPE, seed=1)
    wrong = [extract(WatermarkKey(rng.bytes(32)), marked).p_value for _ in range(args.wrong_keys)]
    right = extract(key, marked)

    unmarked = []
    for i in range(args.unmarked):
        z = torch.from_numpy(rng.standard_normal(SHAPE).astype(np.float32))
        if i % 2:  # static clip: every latent frame the same
            z = z[:, :, :1].expand(SHAPE).contiguous()
        unmarked.append(extract(key, z).p_value)

    result = {
        "wrong_keys": args.wrong_keys,
        "wrong_key_detections": int(sum(p <= 1e-6 for p in wrong)),
        "wrong_key_min_p": float(min(wrong)),
        "right_key_log10_p": float(right.log10_p_value),
        "unmarked": args.unmarked,
        "unmarked_detections": int(sum(p <= 1e-6 for p in unmarked)),
        "unmarked_share_p_le": {str(a): float(np.mean(np.asarray(unmarked) <= a)) for a in (0.01, 0.05, 0.1, 0.5)},
        "wrong_key_histogram": p_value_histogram(wrong),
        "unmarked_histogram": p_value_histogram(unmarked),
    }
    if args.files:
        result["marked_files"] = wrong_keys_on_files(args.files, args.wrong_keys // args.files, rng)
    print(f"marked noise, right key: log10 p = {result['right_key_log10_p']:.1f}")
    print(f"{args.wrong_keys} wrong keys: {result['wrong_key_detections']} detections, min p {result['wrong_key_min_p']:.3g}")
    print(f"{args.unmarked} unmarked latents: {result['unmarked_detections']} detections")
    print(f"{'p-value bin':<18}{'wrong keys':>12}{'unmarked':>10}")
    for b in result["unmarked_histogram"]:
        print(f"{b:<18}{result['wrong_key_histogram'][b]:>12}{result['unmarked_histogram'][b]:>10}")
    if args.files:
        files = result["marked_files"]
        print(f"{files['files']} marked files, {files['checks']} wrong-key checks (all hypotheses): "
              f"{files['detections']} detections, min p {files['min_p']:.3g}; right key log10 p "
              f"{files['right_key_log10_p']}")
        print("  histogram: " + " / ".join(str(c) for c in files["histogram"].values()))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
