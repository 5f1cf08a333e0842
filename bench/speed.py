"""What framemark costs in time: generation with and without the mark, signing, C2PA verification, watermark
recovery, the passive classifier and a full verify, as medians over repeats.

    python bench/speed.py [--repeats 7] [--device cpu|cuda] [--threads 2] [--json]

Marked and unmarked generation alternate (same prompt, seed and steps), so drift in the machine's speed hits
both alike; the mark's overhead is the ratio of their medians, and the cost of the marked noise itself
(`watermark.embed`: ChaCha20 key stream + truncated-normal draws) against `torch.randn` is timed on its own.
Rows that need PyAV or c2pa (writing, signing, reading files) are skipped with a note where those are not
installed (the GPU machine); they are CPU work on every machine. Prints a table; with --json the last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_KEY  # noqa: E402

from framemark.generator.models import GenerationRequest, load_model  # noqa: E402
from framemark.watermark import Payload, embed  # noqa: E402


def marked_noise(model, request, payload):
    """z_T as `framemark generate` marks it (generator.emit.watermarked_latents, which imports PyAV and c2pa with
    the file-writing half of emit; the GPU machine has neither), for a checked request."""
    return embed(BENCH_KEY, payload, model.latent_shape(request.frames, request.height, request.width),
                 seed=request.seed)


def timer(device: str):
    """A function that runs fn() and returns (its result, seconds), waiting for the GPU where there is one."""
    def run(fn):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out, time.perf_counter() - start
    return run


def has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="sampler steps (framemark generate's default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    timed = timer(args.device)
    model = load_model(None, device=args.device)
    request = model.check_inputs(GenerationRequest(prompt="a red circle moving left on a textured background",
                                                   seed=11, steps=args.steps))
    payload = Payload(0x5EED)
    times: dict[str, list[float]] = {}
    notes: dict[str, str] = {}

    def record(name, seconds):
        times.setdefault(name, []).append(seconds)

    # warm-up: first calls pay for allocation, kernel selection and lazy imports
    model.generate(request, latents=marked_noise(model, request, payload))
    marked_frames = plain_frames = None
    for _ in range(args.repeats):
        latents, s = timed(lambda: marked_noise(model, request, payload))
        record("embed: marked z_T", s)
        _, s = timed(lambda: model.initial_noise(request))
        record("plain z_T (torch.randn)", s)
        marked_frames, s = timed(lambda: model.generate(request, latents=marked_noise(model, request, payload)))
        record("generate, marked", s)
        plain_frames, s = timed(lambda: model.generate(request, latents=model.initial_noise(request)))
        record("generate, unmarked", s)

    from framemark.detect import recovery

    for _ in range(args.repeats):
        _, s = timed(lambda: recovery.recover_watermark(model, BENCH_KEY, marked_frames))
        record("watermark recovery, marked clip", s)
        _, s = timed(lambda: recovery.recover_watermark(model, BENCH_KEY, plain_frames))
        record("watermark recovery, unmarked clip (all hypotheses)", s)

    classifier = _classifier()
    if classifier is None:
        notes["classifier"] = "no passive classifier in this build"
    else:
        for _ in range(args.repeats):
            _, s = timed(lambda: classifier.score_frames(plain_frames))
            record("classifier", s)

    if has("av") and has("c2pa"):
        _file_rows(model, request, payload, classifier, args.repeats, record)
    else:
        notes["files"] = ("writing, signing, C2PA verification and full verify skipped: PyAV or c2pa is not "
                          "installed here (they run on the CPU on every machine; see the CPU table)")

    rows = [{"step": k, "median_ms": round(1000 * statistics.median(v), 2),
             "min_ms": round(1000 * min(v), 2), "runs": len(v)} for k, v in times.items()]
    gen_marked = statistics.median(times["generate, marked"])
    gen_plain = statistics.median(times["generate, unmarked"])
    summary = {
        "device": _device_name(args.device), "threads": args.threads, "steps": args.steps,
        "torch": torch.__version__, "machine": platform.machine(),
        "generation_ratio_marked_over_unmarked": round(gen_marked / gen_plain, 4),
        "embed_overhead_share_of_generation": round(
            (statistics.median(times["embed: marked z_T"]) - statistics.median(times["plain z_T (torch.randn)"]))
            / gen_plain, 5),
    }
    print(f"device: {summary['device']}  threads: {args.threads}  torch {torch.__version__}  "
          f"{request.frames}x{request.height}x{request.width}, {args.steps} sampler steps, {args.repeats} repeats")
    print(f"{'step':55s}{'median ms':>12s}{'min ms':>10s}")
    for r in rows:
        print(f"{r['step']:55s}{r['median_ms']:12.2f}{r['min_ms']:10.2f}")
    print(f"\ngeneration time, marked / unmarked (medians): {summary['generation_ratio_marked_over_unmarked']:.4f}")
    print(f"the marked noise's extra cost over torch.randn, as a share of generation: "
          f"{100 * summary['embed_overhead_share_of_generation']:.3f}%")
    for note in notes.values():
        print("note:", note)
    if args.json:
        print(json.dumps({"rows": rows, **summary, "notes": notes}))
    return 0


def _classifier():
    """The shipped passive classifier (``LoadedClassifier``: features + model; ``score_frames`` gives
    P(synthetic)), or None when this build has none."""
    try:
        from framemark.detect import classifier
        from framemark.errors import FramemarkError
    except ImportError:
        return None
    try:
        return classifier.load_default()
    except FramemarkError:
        return None


def _file_rows(model, request, payload, classifier, repeats, record) -> None:
    """The rows that need PyAV and c2pa. A full verify runs the passive classifier too, as `framemark verify`
    does (``classifier`` is None only in a build without one)."""
    from framemark import credentials, manifest, media, provenance
    from framemark.detect import verify

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        credentials.create_local(tmp)
        signer, anchors = credentials.load_signer(tmp), tuple(credentials.trust_anchors(tmp))
        frames = model.generate(request, latents=marked_noise(model, request, payload))
        plain = model.generate(request, latents=model.initial_noise(request))
        source, plain_file = tmp / "clip.mp4", tmp / "plain.mp4"
        media.write_video(plain_file, plain, fps=request.fps)
        identity = model.identity.to_dict()
        for i in range(repeats):
            start = time.perf_counter()
            media.write_video(source, frames, fps=request.fps)
            record("write H.264 MP4", time.perf_counter() - start)
            target = tmp / f"signed-{i}.mp4"
            start = time.perf_counter()
            definition = manifest.build_manifest(
                title=target.name, model=identity, prompt=request.prompt,
                generation={"seed": request.seed, "steps": request.steps, "frames": request.frames},
                payload=payload.to_bytes(), key_id=BENCH_KEY.key_id, duration_ms=2125)
            provenance.sign_file(source, target, definition, signer, media.jpeg(frames[len(frames) // 2]))
            record("sign (C2PA manifest + thumbnail, ES256)", time.perf_counter() - start)
            start = time.perf_counter()
            provenance.read_file(target, anchors)
            record("C2PA verify (Trusted)", time.perf_counter() - start)
            start = time.perf_counter()
            verify.verify_file(target, key=BENCH_KEY, models=[model], trust_anchors=anchors, classifier=classifier)
            record("full verify, signed marked file", time.perf_counter() - start)
            start = time.perf_counter()
            verify.verify_file(plain_file, key=BENCH_KEY, models=[model], trust_anchors=anchors, classifier=classifier)
            record("full verify, unmarked unsigned file", time.perf_counter() - start)


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()})"


if __name__ == "__main__":
    sys.exit(main())
