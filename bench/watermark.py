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
from framemark.detect import inversion, recovery
from framemark.generator import emit, pipeline, world
from framemark.generator.architecture import MAX_SEQUENCE_LENGTH
from framemark.watermark import Payload, WatermarkKey, extract

from common import BENCH_KEY, add_model_arguments, load_model


def _agree(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.sign() == b.sign()).float().mean())


def measure(pipe, key: WatermarkKey, specs, steps: int, workdir: Path) -> list[dict]:
    rows = []
    vae = pipe.vae
    mean, std = inversion.latent_normalisation(vae)
    for i, spec in enumerate(specs):
        request = pipeline.GenerationRequest(prompt=world.canonical_prompt(spec), seed=9000 + i)
        payload = Payload.random()
        z_t = emit.watermarked_latents(pipe, request, key, payload)
        with torch.no_grad():
            x0 = pipe(prompt=request.prompt, negative_prompt="", height=request.height, width=request.width,
                      num_frames=request.frames, num_inference_steps=request.steps,
                      guidance_scale=request.guidance_scale, latents=z_t.clone(), output_type="latent",
                      max_sequence_length=MAX_SEQUENCE_LENGTH).frames
            video = vae.decode(x0 * std + mean).sample.clamp(-1, 1)
        frames = ((video[0].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        row = {"prompt": request.prompt, "seed": request.seed}
        stages = {
            "latent": lambda: inversion.invert_flow(pipe, x0, steps),
            "roundtrip": lambda: inversion.invert_flow(pipe, inversion.encode_latents(pipe, frames), steps),
        }
        for name, recover in stages.items():
            z_hat = recover()
            ex = extract(key, z_hat)
            row[name] = {"sign_agreement": _agree(z_hat, z_t), "detected": ex.detected,
                         "payload_exact": ex.payload == payload, "log10_p": ex.log10_p_value}
        path = workdir / f"marked-{i}.mp4"
        media.write_video(path, frames, fps=request.fps)
        start = time.perf_counter()
        ex = recovery.recover_watermark(pipe, key, media.read_video(path).frames, steps=steps).extraction
        row["file"] = {"detected": ex.detected, "payload_exact": ex.payload == payload,
                       "log10_p": ex.log10_p_value, "seconds": time.perf_counter() - start}
        plain = pipeline.generate_frames(pipe, request)
        clean_path = workdir / f"unmarked-{i}.mp4"
        media.write_video(clean_path, plain, fps=request.fps)
        ex = recovery.recover_watermark(pipe, key, media.read_video(clean_path).frames, steps=steps).extraction
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
    pipe = load_model(args)
    key = BENCH_KEY
    combos = sorted(world.heldout_combos()) + world.train_combos()[::9]
    specs = [world.SceneSpec(*combos[(i * 7) % len(combos)], background=world.BACKGROUNDS[i % 3])
             for i in range(args.clips)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(pipe, key, specs, args.steps, Path(tmp))

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
