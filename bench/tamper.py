"""Tamper localisation examples: what the agreement maps say about swapped, foreign and edited parts of a clip.

    python bench/tamper.py [--clips 3] [--json]

For each marked clip (default model, fixed bench key, H.264 files as `framemark generate` writes them) it makes
three edits of the decoded frames and runs the verifier on each, and on the unedited frames (which must not be
reported as tampered):
  none     the clip as written
  swap     frames 5-8 and 9-12 exchanged (latent frames 2 and 3 of 5 change places)
  foreign  frames 13-16 replaced by the same frames of an unmarked clip of the same prompt and seed
  region   a grey box painted over the top-left quarter (64x64 pixels) of every frame
and prints the frame assignment, per-latent-frame agreement, the tamper summary `framemark verify` reports, and
for the region edit the cell agreement map (4x4 latent cells = 32x32 pixels each) with the edited cells marked.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np

from framemark import media
from framemark.detect import recovery
from framemark.generator import emit
from framemark.generator.models import GenerationRequest
from framemark.lab import world
from framemark.watermark import Payload

from common import BENCH_KEY, add_model_arguments, load_model


def edits(marked: np.ndarray, unmarked: np.ndarray) -> dict[str, np.ndarray]:
    swap = marked.copy()
    swap[5:9], swap[9:13] = marked[9:13], marked[5:9]
    foreign = marked.copy()
    foreign[13:17] = unmarked[13:17]
    region = marked.copy()
    region[:, :64, :64] = 128
    return {"none": marked, "swap": swap, "foreign": foreign, "region": region}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=3)
    add_model_arguments(ap)
    args = ap.parse_args(argv)
    model = load_model(args)
    key = BENCH_KEY
    rng = random.Random(5)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.clips):
            spec = world.sample_specs(1, rng)[0]
            request = GenerationRequest(prompt=world.canonical_prompt(spec), seed=300 + i)
            marked_path, plain_path = Path(tmp) / "m.mp4", Path(tmp) / "u.mp4"
            emit.emit_clip(model, request, marked_path, key=key, payload=Payload.random(rng))
            emit.emit_clip(model, request, plain_path, key=None)
            marked, unmarked = media.read_video(marked_path).frames, media.read_video(plain_path).frames
            for name, frames in edits(marked, unmarked).items():
                ex = recovery.recover_watermark(model, key, frames).extraction
                summary = recovery.tamper_summary(ex)
                row = {"clip": i, "prompt": request.prompt, "edit": name, "detected": ex.detected,
                       "log10_p": round(ex.log10_p_value, 1), "tamper": summary}
                print(f"clip {i} ({request.prompt}) {name}: detected={ex.detected} log10 p={ex.log10_p_value:.1f}")
                print(f"  frame assignment {summary.get('frame_assignment')}  frame agreement "
                      f"{summary['frame_agreement']}")
                print(f"  reordered={summary.get('reordered')} foreign latent frames="
                      f"{summary.get('foreign_latent_frames')} low-agreement cells="
                      f"{summary.get('low_agreement_cells')}/{summary.get('cells')}")
                if name == "region":
                    cells = np.asarray(ex.cell_agreement).mean(axis=0)  # over latent frames
                    row["cell_agreement_mean_over_frames"] = np.round(cells, 3).tolist()
                    print("  cell agreement (mean over latent frames; the box covers the top-left 2x2 cells):")
                    for line in cells:
                        print("   " + " ".join(f"{v:.2f}" for v in line))
                results.append(row)
    print("verdict-level summary (edit: clips reported tampered / reordered / with foreign frames):")
    for name in ("none", "swap", "foreign", "region"):
        rows = [r for r in results if r["edit"] == name]
        flagged = [r for r in rows if r["tamper"].get("reordered") or r["tamper"].get("foreign_latent_frames")]
        reordered = sum(bool(r["tamper"].get("reordered")) for r in rows)
        foreign = sum(bool(r["tamper"].get("foreign_latent_frames")) for r in rows)
        print(f"  {name:<8} {len(flagged)}/{len(rows)} tampered, {reordered} reordered, {foreign} with foreign frames")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
