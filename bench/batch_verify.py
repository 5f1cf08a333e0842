"""Throughput of batched against one-at-a-time watermark verification (VAE encode + inversion + test) of the
embedded model's 128x128 clips, and whether the batched results are the same.

    python bench/batch_verify.py [--clips 64] [--unmarked 0.25] [--batch-sizes 1,4,8,16,32] [--device cuda]
                                 [--dtype fp32] [--save-memory] [--steps 10] [--threads 2] [--json]

The clips are made in memory by the model itself (marked ones from watermarked noise, unmarked ones from plain
noise; ``--unmarked`` of them unmarked, which the search inverts under every hypothesis), so the bench needs only
torch, diffusers, numpy and OpenCV: no PyAV, no c2pa (the GPU machine has neither). ``--clips-dir`` reads MP4 files
instead, with OpenCV, as bench/robustness.py does. One at a time is ``detect.recovery.recover_watermark`` on each
clip; batched is ``detect.batch.recover_watermark_batch`` over all of them at each batch size. A table per batch
size: clips/s, speed-up over one at a time, clips whose Recovery is identical to the one-at-a-time one (p-value,
payload, hypothesis, tries), peak GPU memory. With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_KEY  # noqa: E402

from framemark.detect.batch import recover_watermark_batch  # noqa: E402
from framemark.detect.recovery import recover_watermark  # noqa: E402
from framemark.generator.models import GenerationRequest, load_model  # noqa: E402
from framemark.watermark import Payload, embed  # noqa: E402

PROMPTS = ("a red ball bouncing", "a cyan star spinning", "a green square sliding left", "a yellow circle growing")


def make_clips(model, count: int, unmarked: float) -> tuple[list[np.ndarray], list[bool]]:
    """``count`` default-shape clips of the model, the first ``unmarked * count`` of them unmarked."""
    clips, marked = [], []
    n_plain = int(round(unmarked * count))
    for i in range(count):
        request = model.check_inputs(GenerationRequest(PROMPTS[i % len(PROMPTS)], seed=i))
        shape = model.latent_shape(request.frames, request.height, request.width)
        noise = model.initial_noise(request) if i < n_plain else embed(BENCH_KEY, Payload(1000 + i), shape, seed=i)
        clips.append(model.sample(request, noise))
        marked.append(i >= n_plain)
    return clips, marked


def read_clips(folder: Path) -> list[np.ndarray]:
    import cv2

    clips = []
    for path in sorted(folder.glob("*.mp4")):
        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(bgr[:, :, ::-1])
        cap.release()
        if frames:
            clips.append(np.ascontiguousarray(np.stack(frames)))
    return clips


def same(a, b) -> bool:
    ea, eb = a.extraction, b.extraction
    return (a.hypothesis == b.hypothesis and a.hypotheses_tried == b.hypotheses_tried
            and ea.log10_p_value == eb.log10_p_value and ea.detected == eb.detected
            and (ea.payload.hex if ea.payload else None) == (eb.payload.hex if eb.payload else None)
            and ea.bit_accuracy == eb.bit_accuracy)


def synchronise(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device, repeats: int) -> tuple[float, object]:
    """The best of ``repeats`` wall times of ``run()`` (after a warm-up), and its last result."""
    result = run()  # warm-up: kernels chosen, caches filled
    best = float("inf")
    for _ in range(repeats):
        synchronise(device)
        started = time.perf_counter()
        result = run()
        synchronise(device)
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--unmarked", type=float, default=0.25, help="fraction of the clips left unmarked")
    ap.add_argument("--clips-dir", type=Path, default=None, help="read these MP4 files instead of making clips")
    ap.add_argument("--batch-sizes", default="1,4,8,16,32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--save-memory", action="store_true")
    ap.add_argument("--steps", type=int, default=10, help="inversion steps")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per setting (the best is kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    if args.save_memory:
        model.save_memory()
    device = model.device
    started = time.perf_counter()
    if args.clips_dir is not None:
        clips, marked = read_clips(args.clips_dir), None
    else:
        clips, marked = make_clips(model, args.clips, args.unmarked)
    made_s = time.perf_counter() - started
    sizes = [int(b) for b in args.batch_sizes.split(",")]

    def one_at_a_time():
        return [recover_watermark(model, BENCH_KEY, frames, steps=args.steps) for frames in clips]

    alone_s, alone = timed(one_at_a_time, device, args.repeats)
    rows = []
    for size in sizes:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds, batched = timed(lambda: recover_watermark_batch(model, BENCH_KEY, clips, steps=args.steps,
                                                                 batch_size=size), device, args.repeats)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        rows.append({"batch_size": size, "seconds": round(seconds, 3), "clips_per_s": round(len(clips) / seconds, 3),
                     "speedup": round(alone_s / seconds, 2), "same": sum(same(a, b) for a, b in zip(alone, batched)),
                     "peak_gpu_mib": round(peak, 1) if peak is not None else None})
    detected = sum(r.extraction.detected for r in alone)
    best = max(rows, key=lambda r: r["clips_per_s"])
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "dtype": args.dtype, "save_memory": args.save_memory, "threads": args.threads,
        "steps": args.steps, "clips": len(clips), "marked": sum(marked) if marked is not None else None,
        "detected": detected, "clips_made_s": round(made_s, 1),
        "one_at_a_time": {"seconds": round(alone_s, 3), "clips_per_s": round(len(clips) / alone_s, 3)},
        "batched": rows, "best": {"batch_size": best["batch_size"], "speedup": best["speedup"]},
    }
    print(f"device: {summary['device']}  torch {summary['torch']}  dtype {args.dtype}  threads {args.threads}  "
          f"{len(clips)} clips 128x128 ({summary['marked']} marked, {detected} detected), {args.steps} inversion "
          f"steps")
    print(f"one at a time: {summary['one_at_a_time']['clips_per_s']:.2f} clips/s ({alone_s:.2f} s)")
    print(f"{'batch':>5}  {'clips/s':>8}  {'speed-up':>8}  {'same':>9}  {'peak GPU MiB':>12}")
    for r in rows:
        peak = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
        print(f"{r['batch_size']:>5}  {r['clips_per_s']:>8.2f}  {r['speedup']:>7.2f}x  "
              f"{r['same']:>4}/{len(clips):<4}  {peak:>12}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
