"""Whether a half-area crop's first look tells which phase of the latent grid to invert: the measurement behind
``detect.recovery.PHASE_TRACE_P`` (a crop at a phase other than its box's own is inverted only when its first
look shows a trace of the key).

    python bench/phase_gate.py [--clips N] [--unmarked M] [--edit crop_area50%_anywhere] [--cache runs/platform50] [--json]

Clips are bench/robustness.py's (same ``--cache``; made there if missing), the edit one of its platform suite (a
codec edit goes through the cache's file, made if missing). For each clip, the 70 % crop hypothesis of
``verify``'s plan at each of ``alignment.CROP_PHASES``, read as the search reads it: VAE encode and the keyed
test (the first look), then a 10-step inversion and the test again; raw -log10 p, before the search's correction.
A marked clip's phase is the one whose 70 % crop (the nearest to a half-area edit) inverts strongest; what
matters is whether its first look passes the gate. An unmarked clip's phased first looks are what the gate lets through for nothing. Prints a table; with
--json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robustness  # noqa: E402
from common import BENCH_KEY  # noqa: E402

CROP = 0.7
GATES = (1e-2, 0.5)  # the gate before this measurement, and PHASE_TRACE_P


def read_phases(model, frames) -> list[dict]:
    """Raw -log10 p of the first look and of the inversion of every crop hypothesis at every phase."""
    from framemark.detect import recovery

    plan = recovery.search_plan([model], frames, robustness.FPS)
    total = recovery.count_tests(plan)
    rows = []
    for entry in plan:
        hyp = entry.hypothesis
        if hyp.crop >= 1.0 or hyp.flip:
            continue
        latent = recovery.encode_hypothesis(model, frames, hyp)
        first = recovery.read_hypothesis(model, BENCH_KEY, latent, hyp, total)
        inverted = recovery.read_hypothesis(model, BENCH_KEY, model.estimate_noise(latent, 10), hyp, total)
        rows.append({"crop": hyp.crop, "phase": list(hyp.phase), "first": round(-first.log10_p_value, 2),
                     "inverted": round(-inverted.log10_p_value, 2)})
    return rows


def passes(first: float, gate: float) -> bool:
    return first >= -math.log10(gate)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=50, help="marked clips")
    ap.add_argument("--unmarked", type=int, default=30, help="unmarked clips")
    ap.add_argument("--edit", default="crop_area50%_anywhere")
    robustness.add_cache_arguments(ap)
    args = ap.parse_args(argv)

    from framemark.lab import attacks

    model = robustness.cached_clips_model(args, max(args.clips, args.unmarked))
    started = time.perf_counter()
    records = []
    for variant, n in (("framemark", args.clips), ("unmarked", args.unmarked)):
        for clip in range(n):
            frames = robustness.read_frames(args.cache / "files" / variant / f"{clip:03d}.mp4")
            edited = robustness.attacked_frames(args.cache, variant, clip, frames, args.edit, attacks.PLATFORM_SUITE)
            records.append({"clip": clip, "marked": variant == "framemark", "phases": read_phases(model, edited)})
            print(f"\r  {variant} {clip + 1}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    marked = [r for r in records if r["marked"]]
    best = [max((p for p in r["phases"] if p["crop"] == CROP), key=lambda p: p["inverted"]) for r in marked]
    off_phase = [b for b in best if b["phase"] != [0, 0]]
    blank = [p["first"] for r in records if not r["marked"] for p in r["phases"] if p["phase"] != [0, 0]]
    summary = {"marked_clips": len(marked), "best_phase_not_own": len(off_phase),
               "best_first_look": sorted(b["first"] for b in off_phase),
               "best_inverted": sorted(b["inverted"] for b in off_phase),
               "unmarked_phased_first_looks": len(blank), "unmarked_first_look_max": max(blank, default=0.0),
               "gates": {str(g): {"marked_best_phase_passes": sum(passes(b["first"], g) for b in off_phase),
                                  "unmarked_passes": sum(passes(f, g) for f in blank)} for g in GATES}}
    print(f"first looks at the crops' phases under {args.edit} ({len(marked)} marked, "
          f"{args.unmarked} unmarked clips)")
    print(f"marked clips whose strongest inversion is at another phase than the box's own: {len(off_phase)}")
    print("gate (uncorrected p)".ljust(24) + "their first look passes".rjust(26) + "unmarked phased passes".rjust(26))
    for g in GATES:
        row = summary["gates"][str(g)]
        print(f"{g:<24}" + f"{row['marked_best_phase_passes']:>20} of {len(off_phase):<3}"
              + f"{row['unmarked_passes']:>20} of {len(blank):<3}")
    print(f"largest unmarked phased first look: -log10 p {summary['unmarked_first_look_max']}")
    weak = [b for b in off_phase if not passes(b["first"], GATES[0])]
    print(f"marked clips that the {GATES[0]} gate leaves uninverted, at their phase: first look -log10 p "
          + ", ".join(f"{b['first']}" for b in weak) + "; inverted " + ", ".join(f"{b['inverted']}" for b in weak))
    if args.json:
        print(json.dumps({"records": records, "summary": summary, "edit": args.edit, "device": args.device,
                          "machine": platform.machine(), "seconds": round(time.perf_counter() - started, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
