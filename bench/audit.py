"""Benchmark `framemark audit`: files per second for 1 and 2 local workers and the Ray engine, and where the time
goes (hashing, probing, C2PA, decode, watermark recovery = VAE encode + sampler inversion, ledger, classifier when
verify has one, thumbnail).

    python bench/audit.py [--clips 100] [--unmarked 0.2] [--cache runs/audit-bench] [--configs local1,local2,ray2]
                          [--json]

Clips are generated once into --cache (``framemark generate --prompts``, marked and signed with the bench key;
a fraction --unmarked without watermark or manifest, which cost verify 3-4x more: every alignment hypothesis is
tried) and reused by later runs. Each configuration audits the whole set into a fresh results folder; its rate
is reported two ways: end to end (start-up of workers/cluster included) and steady (from the first row to the
last). `load` is the 1-minute load average before/after each configuration: on a shared machine, anything above
the core count means other work took CPU and the rates are low by that much; the CPU seconds per file (recorded
in every row's `timing.cpu_s`) do not depend on it. Prints a table, then (with --json) one JSON object as the
last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_KEY  # noqa: E402

from framemark import audit, keys, runtime  # noqa: E402
from framemark.detect import DEFAULT_INVERSION_STEPS  # noqa: E402

# the `framemark` command, run by this interpreter (whichever environment it is installed in)
FRAMEMARK = [sys.executable, "-c", "from framemark.cli import main; main()"]
STAGES = ("hash_s", "probe_s", "c2pa_s", "decode_s", "watermark_s", "ledger_s", "classifier_s", "thumbnail_s")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange")
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("moving left", "moving right", "moving up", "moving down")


def prompts(n: int, offset: int) -> list[str]:
    return [f"a {COLOURS[(i + offset) % len(COLOURS)]} {SHAPES[(i + offset) // 3 % len(SHAPES)]} "
            f"{MOTIONS[(i + offset) // 7 % len(MOTIONS)]}" for i in range(n)]


def generate(cache: Path, clips: int, unmarked_fraction: float, gen_steps: int) -> tuple[list[Path], list[Path]]:
    """The cached clips (generated on first use): (marked and signed, unmarked)."""
    home = cache / "home"
    n_plain = round(clips * unmarked_fraction)
    n_marked = clips - n_plain
    env = {**os.environ, "FRAMEMARK_HOME": str(home)}
    key_file = home / "watermark-key.json"
    if not key_file.exists():
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys.write_private(key_file, json.dumps(BENCH_KEY.to_dict()))
    sets = []
    for name, n, extra in (("marked", n_marked, ["--clip-id", "0000000b0000"]),
                           ("unmarked", n_plain, ["--no-watermark", "--no-sign", "--seed", "1000"])):
        folder = cache / name
        have = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
        if len(have) < n:
            shutil.rmtree(folder, ignore_errors=True)
            listing = cache / f"{name}-prompts.txt"
            listing.write_text("\n".join(prompts(n, 0 if name == "marked" else 5)) + "\n")
            print(f"generating {n} {name} clips into {folder} (once; reused later) ...", file=sys.stderr, flush=True)
            subprocess.run([*FRAMEMARK, "generate", "--prompts", str(listing), "-o", str(folder), "--steps",
                            str(gen_steps), *extra], env=env, check=True, stdout=subprocess.DEVNULL)
            have = sorted(folder.glob("*.mp4"))
        sets.append(have[:n])
    return sets[0], sets[1]


def run_config(name: str, items: list[audit.Item], config: audit.AuditConfig, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    kind, workers = name.rstrip("0123456789"), int(name[len(name.rstrip("0123456789")):] or 1)
    if kind == "ray":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local cluster for the bench

        def engine(tasks, cfg):
            return audit.ray_outcomes(tasks, cfg, workers=workers, threads=1)
    else:
        def engine(tasks, cfg):
            return audit.local_outcomes(tasks, cfg, workers=workers)
    stamps: list[float] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = audit.run_audit(items, config, out, engine=engine,
                             progress=lambda p: stamps.append(time.perf_counter()) if p.done else None)
    wall = time.perf_counter() - started
    rows = result.rows
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
    return {"config": name, "engine": kind, "workers": workers, "files": len(rows), "wall_s": round(wall, 1),
            "files_per_s": round(len(rows) / wall, 3), "steady_files_per_s": round(steady, 3) if steady else None,
            "first_row_after_s": round(stamps[0] - started, 1) if stamps else None,
            "verdicts": result.summary["verdicts"], "rows": rows,
            "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def breakdown(rows: list[dict]) -> dict:
    """Per stage: share of the summed per-file time, and the median per file, for marked and unmarked files."""
    out = {}
    def marked(row: dict) -> bool:  # by the watermark, not the verdict: the classifier flags unmarked clips too
        return bool((row.get("watermark") or {}).get("detected"))

    for group, members in (("marked", [r for r in rows if marked(r)]),
                           ("unmarked", [r for r in rows if not marked(r)])):
        if not members:
            continue
        total = sum(r["elapsed_s"] for r in members) or 1.0
        stages = {}
        for stage in STAGES:
            values = [r["timing"][stage] for r in members if stage in (r.get("timing") or {})]
            if values:
                stages[stage] = {"share": round(sum(values) / total, 4),
                                 "median_s": round(statistics.median(values), 4)}
        known = sum(s["share"] for s in stages.values())
        stages["other_s"] = {"share": round(max(0.0, 1 - known), 4), "median_s": None}
        median = statistics.median(r["elapsed_s"] for r in members)
        cpu = [r["timing"]["cpu_s"] for r in members if "cpu_s" in (r.get("timing") or {})]
        out[group] = {"files": len(members), "median_elapsed_s": round(median, 3),
                      "mean_cpu_s": round(statistics.fmean(cpu), 3) if cpu else None, "stages": stages}
    cpu_all = [r["timing"]["cpu_s"] for r in rows if "cpu_s" in (r.get("timing") or {})]
    if cpu_all:  # contention-free capacity: what one fully used core gets through
        out["files_per_core_s"] = round(len(cpu_all) / sum(cpu_all), 3)
    return out


def inversion_split(paths: list[Path], steps: int, threads: int) -> dict:
    """Inside watermark recovery: the VAE encode and the sampler inversion of one hypothesis, timed apart."""
    import torch

    from framemark import media
    from framemark.detect.alignment import conform_frames
    from framemark.generator.models import load_model

    torch.set_num_threads(threads)
    model = load_model()
    d = model.defaults
    encode, invert = [], []
    for path in paths:
        frames = conform_frames(media.read_video(path).frames, d.frames, d.height, d.width)
        t = time.perf_counter()
        z0 = model.autoencoder.encode(frames)
        encode.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.estimate_noise(z0, steps)
        invert.append(time.perf_counter() - t)
    return {"vae_encode_s": round(statistics.median(encode), 4), "inversion_s": round(statistics.median(invert), 4),
            "steps": steps, "threads": threads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--unmarked", type=float, default=0.2, help="fraction of unmarked clips")
    ap.add_argument("--cache", type=Path, default=Path("runs/audit-bench"))
    ap.add_argument("--configs", default="local1,local2,ray2",
                    help="comma-separated: localN (N worker processes), rayN (N actors on a local Ray cluster)")
    ap.add_argument("--gen-steps", type=int, default=10, help="sampler steps of the generated clips")
    ap.add_argument("--steps", type=int, default=DEFAULT_INVERSION_STEPS, help="inversion steps")
    ap.add_argument("--generate-only", action="store_true", help="make the cached clips and stop")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()

    marked, plain = generate(args.cache, args.clips, args.unmarked, args.gen_steps)
    if args.generate_only:
        print(f"{len(marked)} marked and {len(plain)} unmarked clips in {args.cache}")
        return
    items = [audit.Item(str(p.resolve())) for p in marked + plain]
    home = args.cache / "home"
    os.environ["FRAMEMARK_HOME"] = str(home)
    # loaded as `framemark audit` loads it: the bench home's key (BENCH_KEY), local CA and ledger
    resolved = runtime.resolve(runtime.Options(key_file=str(keys.watermark_key_path(home)), steps=args.steps,
                                               ledger_path=str((home / "ledger.db").resolve())), "verify")
    config = audit.AuditConfig(resolved)
    results = []
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        print(f"auditing {len(items)} clips with {name} ...", file=sys.stderr, flush=True)
        results.append(run_config(name, items, config, args.cache / "outs" / name))
    reference = {r["file"]: (r["verdict"], (r["watermark"] or {}).get("p_value")) for r in results[0]["rows"]}
    for res in results[1:]:
        res["same_as_" + results[0]["config"]] = all(
            reference.get(r["file"]) == (r["verdict"], (r["watermark"] or {}).get("p_value")) for r in res["rows"])
    split = inversion_split(marked[:5], args.steps, threads=os.cpu_count() or 1)

    print(f"\nframemark audit over {len(items)} clips ({len(marked)} marked+signed, {len(plain)} unmarked), "
          f"17x128x128, {os.cpu_count()} CPU cores ({platform.machine()}), inversion steps {args.steps}\n")
    print(f"{'config':<8} {'files/s':>8} {'steady':>8} {'wall s':>7} {'1st row s':>9} {'load':>10}  verdicts")
    for r in results:
        v = ", ".join(f"{n} {k}" for k, n in r["verdicts"].items() if n)
        print(f"{r['config']:<8} {r['files_per_s']:>8.3f} {r['steady_files_per_s'] or 0:>8.3f} {r['wall_s']:>7.1f} "
              f"{r['first_row_after_s'] or 0:>9.1f} {'%.1f/%.1f' % tuple(r['load_1min']):>10}  {v}")
    times = breakdown(results[0]["rows"])
    print(f"\nwhere the time goes ({results[0]['config']}; share of summed per-file time, median per file):")
    for group, info in times.items():
        if group == "files_per_core_s":
            print(f"  CPU time: {info:.3f} files per core-second of worker CPU (capacity per core, without "
                  f"contention or start-up)")
            continue
        print(f"  {group} ({info['files']} files, median {info['median_elapsed_s']:.2f} s/file, mean CPU "
              f"{info['mean_cpu_s']} s/file):")
        for stage, s in info["stages"].items():
            med = f"{s['median_s']:.4f} s" if s["median_s"] is not None else ""
            print(f"    {stage:<13} {100 * s['share']:5.1f} %  {med}")
    print(f"  inside one hypothesis of watermark recovery: VAE encode {split['vae_encode_s']:.3f} s, "
          f"inversion ({split['steps']} steps) {split['inversion_s']:.3f} s ({split['threads']} threads)")
    if "classifier_s" not in json.dumps(times):
        print("  classifier: not part of verify yet (no time spent)")
    if args.json:
        for r in results:
            r.pop("rows")
        print(json.dumps({"clips": len(items), "marked": len(marked), "unmarked": len(plain),
                          "cpu_count": os.cpu_count(), "machine": platform.machine(), "steps": args.steps,
                          "configs": results, "breakdown": times, "inversion_split": split}))


if __name__ == "__main__":
    main()
