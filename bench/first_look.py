"""Whether a model's first look (the watermark test on the VAE latent, before any inversion) predicts what the
inversion finds: the measurement behind a model card's ``verification.first_look``.

    python bench/first_look.py --clips N [--model DIR] [--cache runs/robustness] [--attacks a,b,...]
                               [--steps K] [--device cpu] [--write-card] [--json]

Clips and attacked files are bench/robustness.py's (same ``--cache``, same generation), so the two benches share
their most expensive stage. For every marked and unmarked clip under every attack of ``framemark.lab.attacks.SUITE``
the entries of ``verify``'s plan (``detect.recovery.search_plan``) are read in order, each on its VAE latent
(``encoded``) and on its inverted noise (``inverted``), and the raw, uncorrected log10 p of each reading is stored
(CACHE/first-look-STEPS.jsonl; a run resumes). Two searches are then scored from the same readings:

* ``inversion only``: every pair inverted, Bonferroni over the pairs (verify before the first look existed);
* ``first look``: each pair read encoded, then inverted unless the first look decided it or, with the card's
  ``first_look`` on, showed no trace of the key (uncorrected p > ``recovery.FIRST_LOOK_CONTINUE_P``); Bonferroni
  over pairs x stages (verify now).

A marked clip is read until both searches have stopped; an unmarked one on every pair's latent, and inverted
where the first-look search would invert it. Per attack: TPR at FPR 1e-6 of each search, the share of marked
clips decided by the first look alone, and the share of unmarked clips the first-look search inverts at all.
The last line of the table says whether ``first_look`` may be turned on for this model: the first-look search's
TPR at or above inversion-only's on every attack, and no unmarked clip detected; ``--write-card`` records that
answer as the model card's ``verification`` (``framemark.json``: ``first_look`` and how it was measured), the one
way a card's first look is turned on. A freshly trained model has none (its training export writes no
``verification``). Prints tables; with --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robustness  # noqa: E402
from common import BENCH_KEY, read_records  # noqa: E402

from framemark.lab import attacks  # noqa: E402

THRESHOLD = 6.0  # -log10 of FPR 1e-6


def read_pairs(model, frames, steps: int, marked: bool) -> list[dict]:
    """The readings of one clip: per pair of the plan, raw -log10 p of the encoded and (where needed) inverted
    stage, and the seconds each took."""
    from framemark.detect import recovery

    plan = recovery.search_plan([model], frames, robustness.FPS)
    pairs, full_done, staged_done = [], False, False
    for entry in plan:
        hyp = entry.hypothesis
        started = time.perf_counter()
        latent = recovery.encode_hypothesis(model, frames[entry.segment.start:entry.segment.stop], hyp)
        first = recovery.check_hypothesis(model, BENCH_KEY, latent, hyp, 1)
        row = {"encoded": -first.log10_p_value, "encode_s": round(time.perf_counter() - started, 4)}
        staged_inverts = not staged_done and first_look_continues(row["encoded"], len(plan))
        if (marked and not full_done) or staged_inverts:
            started = time.perf_counter()
            ex = recovery.check_hypothesis(model, BENCH_KEY, model.estimate_noise(latent, steps), hyp, 1)
            row.update(inverted=-ex.log10_p_value, invert_s=round(time.perf_counter() - started, 4))
        pairs.append(row)
        full_done = full_done or corrected(row.get("inverted", 0.0), len(plan)) >= THRESHOLD
        staged_done = staged_done or staged_detects(row, len(plan))
        if not marked and not staged_inverts:
            continue
        if full_done and staged_done:
            break
    return pairs


def corrected(raw: float, tests: int) -> float:
    return raw - math.log10(tests)


def first_look_continues(raw_encoded: float, n_pairs: int) -> bool:
    """The first-look search's rule (``recovery.worth_inverting`` with the card's first_look on)."""
    from framemark.detect.recovery import FIRST_LOOK_CONTINUE_P

    if corrected(raw_encoded, 2 * n_pairs) >= THRESHOLD:
        return False  # decided
    return raw_encoded >= -math.log10(FIRST_LOOK_CONTINUE_P)


def staged_detects(row: dict, n_pairs: int) -> bool:
    tests = 2 * n_pairs
    return (corrected(row["encoded"], tests) >= THRESHOLD
            or ("inverted" in row and first_look_continues(row["encoded"], n_pairs)
                and corrected(row["inverted"], tests) >= THRESHOLD))


def searches(pairs: list[dict], n_pairs: int) -> dict:
    """Both searches' outcome and cost on one clip's readings."""
    full_stat, full_s = 0.0, 0.0
    for row in pairs:
        full_s += row["encode_s"] + row.get("invert_s", 0.0)
        full_stat = max(full_stat, corrected(row.get("inverted", 0.0), n_pairs))
        if full_stat >= THRESHOLD:
            break
    staged_stat, staged_s, decided_first, inverted = 0.0, 0.0, False, 0
    for row in pairs:
        staged_s += row["encode_s"]
        staged_stat = max(staged_stat, corrected(row["encoded"], 2 * n_pairs))
        if staged_stat >= THRESHOLD:
            decided_first = True
            break
        if first_look_continues(row["encoded"], n_pairs) and "inverted" in row:
            inverted += 1
            staged_s += row["invert_s"]
            staged_stat = max(staged_stat, corrected(row["inverted"], 2 * n_pairs))
            if staged_stat >= THRESHOLD:
                break
    return {"full": full_stat >= THRESHOLD, "full_stat": full_stat, "full_s": full_s,
            "staged": staged_stat >= THRESHOLD, "staged_stat": staged_stat, "staged_s": staged_s,
            "decided_first": decided_first, "inverted_pairs": inverted}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded Wan model)")
    ap.add_argument("--cache", type=Path, default=Path("runs/robustness"),
                    help="bench/robustness.py's cache (clips and attacked files are shared)")
    ap.add_argument("--attacks", default=",".join(attacks.SUITE))
    ap.add_argument("--steps", type=int, default=None, help="inversion steps (default: verify's)")
    ap.add_argument("--gen-steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write-card", action="store_true",
                    help="record the answer in the model folder's framemark.json (verification.first_look)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from framemark.detect import DEFAULT_INVERSION_STEPS, recovery
    from framemark.generator.models import load_model

    torch.set_num_threads(args.threads)
    steps = args.steps or DEFAULT_INVERSION_STEPS
    attack_names = [a for a in args.attacks.split(",") if a]
    unknown = [a for a in attack_names if a not in attacks.SUITE]
    if unknown:
        ap.error(f"unknown attacks {unknown}; known: {', '.join(attacks.SUITE)}")
    args.cache.mkdir(parents=True, exist_ok=True)
    meta = robustness.prepare_clips(args.cache, args.clips, args.gen_steps, args.device, args.model)
    model = load_model(args.model, device=args.device)
    store = args.cache / f"first-look-{steps}.jsonl"
    done = read_records(store)
    with store.open("a") as out:
        for n, m in enumerate(meta, start=1):
            for marked in (True, False):
                variant = "framemark" if marked else "unmarked"
                frames = None
                for attack in attack_names:
                    if (m["clip"], marked, attack) in done:
                        continue
                    if frames is None:
                        frames = robustness.read_frames(args.cache / "files" / variant / f"{m['clip']:03d}.mp4")
                    edited = robustness.attacked_frames(args.cache, variant, m["clip"], frames, attack)
                    n_pairs = len(recovery.search_plan([model], edited, robustness.FPS))
                    r = {"clip": m["clip"], "marked": marked, "attack": attack, "pairs": n_pairs,
                         "readings": read_pairs(model, edited, steps, marked)}
                    out.write(json.dumps(r) + "\n")
                    out.flush()
                    done[(m["clip"], marked, attack)] = r
            print(f"\r  read {n}/{len(meta)} clips", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    rows = []
    for attack in attack_names:
        pos = [searches(done[(m["clip"], True, attack)]["readings"], done[(m["clip"], True, attack)]["pairs"])
               for m in meta]
        neg = [searches(done[(m["clip"], False, attack)]["readings"], done[(m["clip"], False, attack)]["pairs"])
               for m in meta]
        rows.append({
            "attack": attack, "clips": len(pos),
            "tpr_inversion_only": round(statistics.fmean(p["full"] for p in pos), 4),
            "tpr_first_look": round(statistics.fmean(p["staged"] for p in pos), 4),
            "decided_by_first_look": round(statistics.fmean(p["decided_first"] for p in pos), 4),
            "unmarked_inverted": round(statistics.fmean(q["inverted_pairs"] > 0 for q in neg), 4),
            "unmarked_detected": sum(q["full"] or q["staged"] for q in neg),
            "marked_s": {"inversion_only": round(float(np.median([p["full_s"] for p in pos])), 3),
                         "first_look": round(float(np.median([p["staged_s"] for p in pos])), 3)},
            "unmarked_s_first_look": round(float(np.median([q["staged_s"] for q in neg])), 3),
        })
    keeps_power = all(r["tpr_first_look"] >= r["tpr_inversion_only"] for r in rows)
    no_false = all(r["unmarked_detected"] == 0 for r in rows)
    print(f"\nfirst look against inversion only, {len(meta)} clips per attack, {steps} inversion steps "
          f"(model: {args.model or 'embedded'})")
    print(f"{'attack':30s}{'TPR inv.':>9s}{'TPR 1st':>9s}{'by 1st':>8s}{'unm. inv':>9s}{'unm. det':>9s}"
          f"{'s marked inv/1st':>18s}{'s unm.':>8s}")
    for r in rows:
        print(f"{r['attack']:30s}{r['tpr_inversion_only']:9.2f}{r['tpr_first_look']:9.2f}"
              f"{r['decided_by_first_look']:8.2f}{r['unmarked_inverted']:9.2f}{r['unmarked_detected']:9d}"
              f"{r['marked_s']['inversion_only']:9.2f}/{r['marked_s']['first_look']:<8.2f}"
              f"{r['unmarked_s_first_look']:8.2f}")
    print(f"\nfirst_look may be turned on for this model: {'yes' if keeps_power and no_false else 'no'} "
          f"(TPR kept on every attack: {keeps_power}; no unmarked detection: {no_false})")
    if args.write_card:
        write_card(args.model, keeps_power and no_false, len(meta), steps)
    if args.json:
        print(json.dumps({"rows": rows, "first_look_ok": keeps_power and no_false, "keeps_power": keeps_power,
                          "no_false_detection": no_false, "clips": len(meta), "steps": steps,
                          "continue_p": recovery.FIRST_LOOK_CONTINUE_P,
                          "model": str(args.model) if args.model else "embedded", "device": args.device,
                          "machine": platform.machine()}))
    return 0


def write_card(model_dir: Path | None, ok: bool, clips: int, steps: int) -> None:
    """``verification`` of the model's ``framemark.json``: the answer and the measurement behind it."""
    from framemark.generator.models import DEFAULT_MODEL_DIR
    from framemark.generator.models.base import CARD_FILE, read_card

    folder = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    card = read_card(folder)
    how = f"python bench/first_look.py --clips {clips} --steps {steps}"
    how += f" --model {model_dir}" if model_dir is not None else ""
    card["verification"] = {**(card.get("verification") or {}), "first_look": ok,
                            "measured_by": how + ' (docs/benchmarks.md, "The first look")'}
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote verification.first_look = {str(ok).lower()} to {folder / CARD_FILE}")


if __name__ == "__main__":
    sys.exit(main())
