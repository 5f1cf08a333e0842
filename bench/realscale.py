"""What marking and verification cost at the sizes users generate at, on one GPU, for each family.

    python bench/realscale.py [--families wan,ltx,cogvideox] [--steps 50] [--inversion-steps 10]
                              [--learnt-layers 30,10] [--repeats 3] [--dtype bf16] [--device cuda] [--json]

Each family is built at its published architecture with random weights (they cost what trained ones do):
Wan 2.1 T2V-1.3B at 480x832x81, LTX-Video 2B at 512x768x121, CogVideoX-2B at 480x720x49 (the shapes of
shared/NOTES.md). The text encoder is a two-layer stand-in with the real hidden width (prompt encoding is a
fraction of a percent of either side) and the tokenizer is the embedded model's. The pipeline is saved as a
diffusers folder and loaded through ``framemark.generator.models.load_model``, the path every front door takes.

Per family: seconds to generate (``steps`` sampler steps with classifier-free guidance, then the VAE decode, from
marked noise) and seconds to verify one clip the way ``verify`` does for one (model, hypothesis) pair
(``detect.recovery``): the first look (VAE encode of the frames and the keyed test on that latent), which is all
a clip costs when the first look decides it or, on a model whose card turns ``first_look`` on, shows no trace of
the key; and the first look plus ``k`` unconditional inversion steps and a second keyed test, which an undecided
clip costs. ``--learnt-layers`` also times a learnt inverse of the sampler in place of the inversion (one
forward of a transformer of the model's architecture with that many blocks, at most the model's:
``lab/inverter_training.py``).
The keyed test is timed with the key's layout for the shape already built (a verifier builds it once
per key and shape; the first build is reported as ``extract_cold_s``). Their ratios to generation, and peak GPU
memory. Each verification step is called once to warm up and then ``--repeats`` times, and the median is reported (the
warm-up encode as ``encode_cold_s``): a verifier loads its model once and serves many uploads, and a kernel's
first call pays for its set-up (a CUDA context's, cuDNN's choice of algorithm). Random weights make the mark unreadable, so only costs are reported here; what the first look and ``k``
do to detection is measured on the trained toy models (bench/first_look.py, bench/robustness.py --steps k).
Prints a table; with --json the last line is one object.
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

from framemark.generator.models import DEFAULT_MODEL_DIR, GenerationRequest, load_model, torch_dtype  # noqa: E402
from framemark.watermark import Payload, embed, extract  # noqa: E402

PROMPT = "a red circle moving left on a textured background"


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(DEFAULT_MODEL_DIR / "tokenizer", local_files_only=True)


def text_encoder(kind: str, width: int, vocab: int, smoke: bool = False):
    """A two-layer encoder of the real hidden width: UMT5 for Wan, T5 for LTX and CogVideoX."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    width = 64 if smoke else width
    common = dict(vocab_size=vocab, d_model=width, d_kv=64, d_ff=2 * width, num_layers=2, num_heads=width // 64,
                  relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
                  feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False, pad_token_id=0,
                  eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False)
    if kind == "umt5":
        return UMT5EncoderModel(UMT5Config(**common))
    return T5EncoderModel(T5Config(**common))


def build_wan(smoke: bool = False):
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    tok = tokenizer()
    width = 64 if smoke else 4096
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2 if smoke else 12,
                                        attention_head_dim=32 if smoke else 128, in_channels=16, out_channels=16,
                                        text_dim=width, freq_dim=256, ffn_dim=128 if smoke else 8960,
                                        num_layers=1 if smoke else 30, cross_attn_norm=True,
                                        qk_norm="rms_norm_across_heads", eps=1e-6)
    pipe = WanPipeline(tokenizer=tok, text_encoder=text_encoder("umt5", width, len(tok), smoke),
                       vae=AutoencoderKLWan(base_dim=8 if smoke else 96, z_dim=16), transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    if smoke:
        return pipe, GenerationRequest(PROMPT, frames=9, height=64, width=64, guidance_scale=5.0)
    return pipe, GenerationRequest(PROMPT, frames=81, height=480, width=832, guidance_scale=5.0)


def build_ltx(smoke: bool = False):
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)

    tok = tokenizer()
    width = 64 if smoke else 4096
    transformer = LTXVideoTransformer3DModel(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1,
                                             num_attention_heads=2 if smoke else 32, attention_head_dim=64,
                                             cross_attention_dim=128 if smoke else 2048,
                                             num_layers=1 if smoke else 28, caption_channels=width)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                                base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)
    vae = AutoencoderKLLTXVideo(block_out_channels=(8, 16, 32, 32), decoder_block_out_channels=(8, 16, 32, 32),
                                layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1)) \
        if smoke else AutoencoderKLLTXVideo()
    pipe = LTXPipeline(tokenizer=tok, text_encoder=text_encoder("t5", width, len(tok), smoke), vae=vae,
                       transformer=transformer, scheduler=scheduler)
    if smoke:
        return pipe, GenerationRequest(PROMPT, frames=9, height=64, width=64, guidance_scale=3.0)
    return pipe, GenerationRequest(PROMPT, frames=121, height=512, width=768, guidance_scale=3.0)


def build_cogvideox(smoke: bool = False):
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)

    tok = tokenizer()
    width = 64 if smoke else 4096
    transformer = CogVideoXTransformer3DModel(num_attention_heads=2 if smoke else 30, attention_head_dim=64,
                                              in_channels=16, out_channels=16, time_embed_dim=512,
                                              text_embed_dim=width, num_layers=1 if smoke else 30,
                                              sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
                                              temporal_compression_ratio=4, max_text_seq_length=226)
    scheduler = CogVideoXDDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                       set_alpha_to_one=True, timestep_spacing="trailing", clip_sample=False,
                                       num_train_timesteps=1000, snr_shift_scale=3.0)
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 16, 32, 32), norm_num_groups=4) if smoke \
        else AutoencoderKLCogVideoX()
    pipe = CogVideoXPipeline(tokenizer=tok, text_encoder=text_encoder("t5", width, len(tok), smoke), vae=vae,
                             transformer=transformer, scheduler=scheduler)
    if smoke:
        return pipe, GenerationRequest(PROMPT, frames=9, height=64, width=64, guidance_scale=6.0)
    return pipe, GenerationRequest(PROMPT, frames=49, height=480, width=720, guidance_scale=6.0)


FAMILIES = {"wan": ("Wan 2.1 T2V-1.3B", build_wan), "ltx": ("LTX-Video 2B", build_ltx),
            "cogvideox": ("CogVideoX-2B", build_cogvideox)}


def timed(fn, device: torch.device):
    """(result, seconds, peak GiB) of ``fn()`` on ``device``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = None
    return out, time.perf_counter() - start, peak


def timed_warm(fn, device: torch.device, repeats: int):
    """(result, median seconds, largest peak GiB, seconds of the first call) of ``fn()`` called once to warm up
    and then ``repeats`` times: a verifier serves many uploads with one loaded model, and the first call of a
    kernel pays for its set-up."""
    runs = [timed(fn, device) for _ in range(1 + repeats)]
    peaks = [r[2] for r in runs if r[2] is not None]
    return (runs[-1][0], statistics.median(r[1] for r in runs[1:]), max(peaks) if peaks else None, runs[0][1])


def gib(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def measure(name: str, args, workdir: Path) -> dict:
    title, build = FAMILIES[name]
    torch.manual_seed(0)
    pipe, request = build(args.smoke)
    folder = workdir / name
    pipe.to(torch_dtype(args.dtype))  # stored at the precision it runs at
    pipe.save_pretrained(folder, safe_serialization=True)
    del pipe
    device = torch.device(args.device)
    (model, load_s, _) = timed(lambda: load_model(folder, device=args.device, dtype=args.dtype), device)
    request = model.check_inputs(GenerationRequest(request.prompt, steps=args.steps, frames=request.frames,
                                                   height=request.height, width=request.width,
                                                   guidance_scale=request.guidance_scale))
    shape = model.latent_shape(request.frames, request.height, request.width)
    latents = embed(BENCH_KEY, Payload(0x5EED), shape, seed=0)
    frames, gen_s, gen_peak = timed(lambda: model.sample(request, latents), device)
    row = {"family": name, "model": title, "frames": request.frames, "size": [request.height, request.width],
           "latent": list(shape), "dtype": args.dtype, "steps": request.steps,
           "guidance": request.guidance_scale, "load_s": round(load_s, 1), "generate_s": round(gen_s, 2),
           "generate_peak_gib": gib(gen_peak), "verify": {}}
    z0, enc_s, enc_peak, enc_cold_s = timed_warm(lambda: model.autoencoder.encode(frames), device, args.repeats)
    row["encode_cold_s"], row["encode_s"], row["encode_peak_gib"] = round(enc_cold_s, 2), round(enc_s, 2), gib(enc_peak)
    _, cold_s, _ = timed(lambda: extract(BENCH_KEY, z0.float().cpu()), device)
    _, look_s, _ = timed(lambda: extract(BENCH_KEY, z0.float().cpu()), device)
    first_s = enc_s + look_s
    row["first_look"] = {"extract_cold_s": round(cold_s, 3), "extract_s": round(look_s, 3),
                         "verify_s": round(first_s, 2), "ratio": round(first_s / gen_s, 4)}
    for k in args.inversion_steps:
        z_hat, inv_s, inv_peak, _ = timed_warm(lambda: model.invert(z0, k), device, args.repeats)
        _, ext_s, _ = timed(lambda: extract(BENCH_KEY, z_hat.float().cpu()), device)
        verify_s = first_s + inv_s + ext_s
        row["verify"][str(k)] = {"invert_s": round(inv_s, 2), "extract_s": round(ext_s, 3),
                                 "verify_s": round(verify_s, 2), "ratio": round(verify_s / gen_s, 4),
                                 "peak_gib": gib(max(enc_peak, inv_peak)) if inv_peak is not None else None}
    if args.learnt_layers:
        row["learnt"] = {}
        source = model.pipeline.transformer
        for wanted in args.learnt_layers:  # a learnt inverse of this depth, random weights (they cost what trained do)
            layers = min(wanted, int(source.config.num_layers))
            model.inverter = type(source).from_config({**source.config, "num_layers": layers}).to(
                device, source.dtype).eval()
            with torch.no_grad():
                z_hat, inv_s, inv_peak, _ = timed_warm(lambda: model.learnt_inversion(z0), device, args.repeats)
            _, ext_s, _ = timed(lambda: extract(BENCH_KEY, z_hat.float().cpu()), device)
            verify_s = first_s + inv_s + ext_s
            row["learnt"][str(layers)] = {"of_layers": int(source.config.num_layers), "invert_s": round(inv_s, 3),
                                          "extract_s": round(ext_s, 3), "verify_s": round(verify_s, 2),
                                          "ratio": round(verify_s / gen_s, 4),
                                          "peak_gib": gib(max(enc_peak, inv_peak)) if inv_peak is not None else None}
            model.inverter = None
    return row  # the model goes with this frame; the next family's load reuses its memory


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--steps", type=int, default=50, help="sampler steps of generation")
    ap.add_argument("--inversion-steps", default="10", help="inversion steps to time, comma-separated")
    ap.add_argument("--learnt-layers", default="",
                    help="depths of a learnt inverse to time (transformer blocks, comma-separated; at most the model's)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed calls of each verification step after a warm-up call; the median is reported")
    ap.add_argument("--dtype", default="bf16", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny architectures at 9x64x64 (a CPU check of the bench)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    args.inversion_steps = [int(k) for k in args.inversion_steps.split(",") if k]
    args.learnt_layers = [int(k) for k in args.learnt_layers.split(",") if k]
    names = [f for f in args.families.split(",") if f]
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="framemark-realscale-") as tmp:
        for name in names:
            rows.append(measure(name, args, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\nreal-scale cost, {args.dtype}, {args.steps} steps with guidance, on "
          f"{torch.cuda.get_device_name() if args.device.startswith('cuda') else platform.processor() or 'cpu'}")
    head = f"{'model':22} {'clip':>14} {'generate s':>11} {'peak GiB':>9} {'1st look s':>11} {'ratio':>7}"
    head += "".join(f" {'+inv@' + str(k) + ' s':>12} {'ratio':>7}" for k in args.inversion_steps)
    print(head)
    for r in rows:
        peak = r["generate_peak_gib"]
        line = f"{r['model']:22} {r['frames']:>4}x{r['size'][0]}x{r['size'][1]:<5} {r['generate_s']:>11.1f} " \
               f"{peak if peak is not None else '-':>9} {r['first_look']['verify_s']:>11.2f} " \
               f"{100 * r['first_look']['ratio']:>6.1f}%"
        line += "".join(f" {r['verify'][str(k)]['verify_s']:>12.2f} {100 * r['verify'][str(k)]['ratio']:>6.1f}%"
                        for k in args.inversion_steps)
        print(line)
    learnt = [(r, layers, v) for r in rows for layers, v in r.get("learnt", {}).items()]
    if learnt:
        print(f"\nlearnt inverse (one forward, random weights) instead of the sampler inversion")
        print(f"{'model':22} {'blocks':>9} {'invert s':>9} {'verify s':>9} {'ratio':>7}")
        for r, layers, v in learnt:
            print(f"{r['model']:22} {layers + ' of ' + str(v['of_layers']):>9} {v['invert_s']:>9.3f} "
                  f"{v['verify_s']:>9.2f} {100 * v['ratio']:>6.1f}%")
    if args.json:
        print(json.dumps({"rows": rows, "dtype": args.dtype, "steps": args.steps,
                          "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                          "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
