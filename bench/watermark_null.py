"""False alarms of the watermark test: wrong keys on marked noise, and p-values of unmarked noise.

    python bench/watermark_null.py [--wrong-keys 10000] [--unmarked 2000] [--json]

Pure codec measurement (no model): the null hypothesis "not marked with this key" is exercised by
  1. one marked z_T (the strongest possible mark) checked with many random wrong keys, and
  2. unmarked N(0, I) latents of the default shape, plus static "videos" (one noise frame repeated: the most
     correlated content there is) checked with the key.
It prints a histogram of the p-values: with the Bonferroni factor for frame alignment they are conservative,
i.e. piled towards 1, never below the uniform line in the low bins.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from framemark.watermark import Payload, WatermarkKey, embed, extract

from common import BENCH_KEY, p_value_histogram


SHAPE = (1, 16, 5, 16, 16)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wrong-keys", type=int, default=10_000)
    ap.add_argument("--unmarked", type=int, default=2_000)
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
    print(f"marked noise, right key: log10 p = {result['right_key_log10_p']:.1f}")
    print(f"{args.wrong_keys} wrong keys: {result['wrong_key_detections']} detections, min p {result['wrong_key_min_p']:.3g}")
    print(f"{args.unmarked} unmarked latents: {result['unmarked_detections']} detections")
    print(f"{'p-value bin':<18}{'wrong keys':>12}{'unmarked':>10}")
    for b in result["unmarked_histogram"]:
        print(f"{b:<18}{result['wrong_key_histogram'][b]:>12}{result['unmarked_histogram'][b]:>10}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
