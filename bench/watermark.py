"""Where the latent watermark survives along the generation -> file -> verification chain.

    python bench/watermark.py [--clips 8] [--steps 10] [--json]

For each clip (held-out and seen prompts, fixed seeds, one key) it measures the sign agreement between the
embedded z_T and the recovered z_hat, and whether `extract` detects the mark (p <= 1e-6) and decodes the payload,
at three points of the chain:
  latent   the sampler's output latent inverted directly (no VAE): the ceiling the sampler inversion allows
  roundtrip that latent decoded to uint8 frames and re-encoded by the VAE, then inverted (no file)
  file     the clip written as H.264 (CRF 18) and verified from the file, as `framemark verify` does
Unmarked clips (same seeds, --no-watermark) are verified from files as the false-positive check.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from framemark import media
from framemark.detect import recovery
from framemark.generator import emit
from framemark.generator.models import GenerationRequest
from framemark.lab import world
from framemark.watermark import Payload, WatermarkKey, extract

from common import BENCH_KEY, add_model_arguments, load_model


def _agree(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.sign() == b.sign()).float().mean())


def measure(model, key: WatermarkKey, specs, steps: int, workdir: Path) -> list[dict]:
    """One row per spec; ``model`` is a Wan-family ``VideoModel`` (the latent stage calls its diffusers pipeline
    for ``output_type="latent"``, which the model interface does not offer)."""
    rows = []
    pipe = model.pipeline
    for i, spec in enumerate(specs):
        request = model.check_inputs(GenerationRequest(prompt=world.canonical_prompt(spec), seed=9000 + i))
        payload = Payload.random()
        z_t = emit.watermarked_latents(model, request, key, payload)
        with torch.no_grad():
            x0 = pipe(prompt=request.prompt, negative_prompt="", height=request.height, width=request.width,
                      num_frames=request.frames, num_inference_steps=request.steps,
                      guidance_scale=request.guidance_scale, latents=z_t.clone(), output_type="latent",
                      max_sequence_length=model.max_sequence_length).frames
        frames = model.autoencoder.decode(x0)
        row = {"prompt": request.prompt, "seed": request.seed}
        stages = {
            "latent": lambda: model.invert(x0, steps),
            "roundtrip": lambda: model.invert(model.autoencoder.encode(frames), steps),
        }
        for name, recover in stages.items():
            z_hat = recover()
            ex = extract(key, z_hat)
            row[name] = {"sign_agreement": _agree(z_hat, z_t), "detected": ex.detected,
                         "payload_exact": ex.payload == payload, "log10_p": ex.log10_p_value}
        path = workdir / f"marked-{i}.mp4"
        media.write_video(path, frames, fps=request.fps)
        start = time.perf_counter()
        ex = recovery.recover_watermark(model, key, media.read_video(path).frames, steps=steps).extraction
        row["file"] = {"detected": ex.detected, "payload_exact": ex.payload == payload,
                       "log10_p": ex.log10_p_value, "seconds": time.perf_counter() - start}
        plain = model.generate(request)
        clean_path = workdir / f"unmarked-{i}.mp4"
        media.write_video(clean_path, plain, fps=request.fps)
        ex = recovery.recover_watermark(model, key, media.read_video(clean_path).frames, steps=steps).extraction
        row["unmarked_file"] = {"detected": ex.detected, "p_value": ex.p_value}
        rows.append(row)
        print(f"\r  {i + 1}/{len(specs)} clips", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--steps", type=int, default=recovery.DEFAULT_INVERSION_STEPS, help="inversion steps")
    add_model_arguments(ap)
    args = ap.parse_args(argv)
    model = load_model(args)
    key = BENCH_KEY
    combos = sorted(world.heldout_combos()) + world.train_combos()[::9]
    specs = [world.SceneSpec(*combos[(i * 7) % len(combos)], background=world.BACKGROUNDS[i % 3])
             for i in range(args.clips)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(model, key, specs, args.steps, Path(tmp))

    summary = {"clips": len(rows), "inversion_steps": args.steps}
    print(f"{'stage':<12}{'sign agreement':>16}{'detected':>10}{'payload exact':>15}")
    for stage in ("latent", "roundtrip", "file"):
        det = statistics.fmean(r[stage]["detected"] for r in rows)
        exact = statistics.fmean(r[stage]["payload_exact"] for r in rows)
        agree = statistics.fmean(r[stage]["sign_agreement"] for r in rows) if stage != "file" else None
        summary[stage] = {"detected": det, "payload_exact": exact, "sign_agreement": agree}
        shown = f"{agree:.4f}" if agree is not None else "-"
        print(f"{stage:<12}{shown:>16}{det:>10.2f}{exact:>15.2f}")
    summary["unmarked_false_positives"] = sum(r["unmarked_file"]["detected"] for r in rows)
    summary["unmarked_p_values"] = [round(r["unmarked_file"]["p_value"], 4) for r in rows]
    summary["extract_seconds_median"] = statistics.median(r["file"]["seconds"] for r in rows)
    print(f"unmarked clips detected: {summary['unmarked_false_positives']} of {len(rows)}")
    print(f"verification time per clip (median, decode+encode+inversion+extract): "
          f"{summary['extract_seconds_median']:.2f} s")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
