"""How exactly a cropped clip's box must be restored for its watermark to be read: the measurement behind the crop
refinement (``detect.alignment.nudges``, ``detect.recovery.refine_crop``) and the edge fill of ``alignment.uncrop``.

    python bench/crop_placement.py [--clips N] [--cache runs/platform50] [--device cpu] [--json]

Clips are bench/robustness.py's marked ones (same ``--cache``; made there if missing). Each is cropped to half its
area off centre (``lab.attacks.crop_towards``, side 0.707, anchor (0.2, 0.8): the box at 7 and 30 px of 128) and
scaled back, then restored as the verifier restores a crop (``alignment.uncrop`` into ``alignment.crop_box``,
nudged) into a box of the crop's own size placed at the crop's position moved by 0 to 4 pixels down, and read
(VAE encode, 10-step inversion, the keyed test on the box's interior cells, ``alignment.interior_mask``, no
offset search): the evidence against the box's placement error. Then the same at the true position with the lost border
filled by reflection instead of repeating the edge (what ``uncrop`` did before). The raw -log10 p of each reading,
uncorrected (what one hypothesis of ``verify`` sees before its search's correction). Prints a table; with --json
the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robustness  # noqa: E402
from common import BENCH_KEY  # noqa: E402

FRACTION, ANCHOR = 0.5 ** 0.5, (0.2, 0.8)
MOVES = (0, 1, 2, 3, 4)


def reflected(frames: np.ndarray, crop: float, nudge: tuple[int, int, int]) -> np.ndarray:
    """``alignment.uncrop`` with the lost border reflected instead of the edge repeated: what it did before."""
    from framemark.detect import alignment

    h, w = frames.shape[1:3]
    top, left, bh, bw = alignment.crop_box(h, w, crop, nudge)
    return np.stack([cv2.copyMakeBorder(cv2.resize(f, (bw, bh), interpolation=cv2.INTER_AREA),
                                        top, h - bh - top, left, w - bw - left, cv2.BORDER_REFLECT_101)
                     for f in frames])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4)
    robustness.add_cache_arguments(ap)
    args = ap.parse_args(argv)

    from framemark.detect import alignment
    from framemark.lab import attacks
    from framemark.watermark import extract

    model = robustness.cached_clips_model(args, args.clips)
    ae, scale = model.autoencoder, model.autoencoder.spatial_factor
    started = time.perf_counter()
    rows = []
    for clip in range(args.clips):
        frames = robustness.read_frames(args.cache / "files" / "framemark" / f"{clip:03d}.mp4")
        h, w = frames.shape[1:3]
        upload = attacks.crop_towards(frames, FRACTION, ANCHOR)
        side = round(h * FRACTION)
        true_box = (round((h - side) * ANCHOR[0]), round((w - side) * ANCHOR[1]), side, side)
        # the crop's box as the verifier restores one: a crop of its side, nudged from the centre onto it
        crop = side / h
        centred = alignment.crop_box(h, w, crop)
        readings = {}
        for label, move, restore in [*((f"{m} px", m, alignment.uncrop) for m in MOVES),
                                     ("0 px, reflected", 0, reflected)]:
            nudge = (0, true_box[0] - centred[0] + move, true_box[1] - centred[1])
            z = model.estimate_noise(ae.encode(restore(upload, crop, nudge)), 10)
            ex = extract(BENCH_KEY, z, template_frames=ae.latent_frames(frames.shape[0]),
                         mask=alignment.interior_mask(crop, h, w, scale, nudge=nudge))
            readings[label] = round(-ex.log10_p_value, 2)
        rows.append({"clip": clip, "box": list(true_box), "readings": readings})
        print(f"\r  clip {clip + 1}/{args.clips}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    labels = list(rows[0]["readings"])
    medians = {label: statistics.median(r["readings"][label] for r in rows) for label in labels}
    print(f"raw -log10 p of a half-area crop off centre, by the restored box's error ({args.clips} clips)")
    print("placement".ljust(20) + "".join(f"clip {r['clip']:>3}".rjust(10) for r in rows) + "median".rjust(10))
    for label in labels:
        print(label.ljust(20) + "".join(f"{r['readings'][label]:10.1f}" for r in rows) + f"{medians[label]:10.1f}")
    if args.json:
        print(json.dumps({"rows": rows, "median": medians, "fraction": FRACTION, "anchor": ANCHOR,
                          "device": args.device, "machine": platform.machine(),
                          "seconds": round(time.perf_counter() - started, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
