"""Fine-tune the VAE *encoder* so that encoding a generated clip gives back the latent it was decoded from.

    python -m framemark.lab.encoder_tuning --model generator/default_model --out runs/encoder --minutes 6

The verifier reads the watermark from E(D(z0)) inverted through the sampler. The encoder was trained for
reconstruction of world clips, not to invert the decoder on what the transformer samples, and every bit of z0
it gets wrong is noise in the recovered z_T. The decoder stays frozen, so generated clips do not change (the
script checks that its weights come out bit-identical); only ``encoder`` and ``quant_conv`` train.

Data: latents the model itself samples (20 steps, guidance 5, grammar captions, seeded noise), decoded by the
frozen decoder, then degraded the way files are: 4:2:0 chroma, 8x8 DCT quantisation (an H.264 stand-in that
runs on the GPU), rescaling, blur, brightness, centre crops undone the way the verifier undoes them; always
8-bit. Loss: MSE to z0 in the normalised latent space, over the latent cells the degraded frames still show.
Before and after, it reports sign agreement of the inverted z_T with the true z_T on held-out captions.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from framemark.detect import DEFAULT_INVERSION_STEPS
from framemark.detect.alignment import centre_box, interior_mask
from framemark.generator.models import DEFAULT_MODEL_DIR, VideoAutoencoder, VideoModel, load_model

from . import world
from .fitting import fit


# ------------------------------------------------------------------------------------------- sampled latents

@torch.no_grad()
def sample_latents(model: VideoModel, n: int, batch: int, seed: int, combos, steps: int = 20,
                   guidance: float = 5.0, frames: int = world.DEFAULT_FRAMES, size: int = world.DEFAULT_SIZE) -> dict:
    """``n`` (z_T, z0) pairs: seeded Gaussian noise and the normalised latent the sampler makes from it."""
    rng = random.Random(seed)
    gen = torch.Generator("cpu").manual_seed(seed)
    shape = model.latent_shape(frames, size, size)[1:]
    z_ts, z0s = [], []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        prompts = [world.caption(spec, rng) for spec in world.sample_specs(b, rng, combos)]
        z_t = torch.randn((b, *shape), generator=gen)
        z0 = _sample_batch(model, prompts, z_t, frames, size, steps, guidance)
        z_ts.append(z_t.to(torch.bfloat16))
        z0s.append(z0.float().cpu())
    return {"z_t": torch.cat(z_ts), "z0": torch.cat(z0s)}


def held_out_and_training_latents(model: VideoModel, eval_clips: int, train_clips: int, seed: int, smoke: bool,
                                  train_batch: int = 64) -> tuple[dict, dict]:
    """(z_T, z0) pairs on held-out captions and on every caption, at the world's clip size (a small one for a
    smoke run), sampled the way the card's defaults sample (20 steps; 2 for a smoke run)."""
    size, frames = (64, model.limits.frame_counts()[0]) if smoke else (world.DEFAULT_SIZE, world.DEFAULT_FRAMES)
    steps = 2 if smoke else 20
    started = time.time()
    held_out = sample_latents(model, eval_clips, 32, seed + 1, sorted(world.heldout_combos()), steps=steps,
                              frames=frames, size=size)
    train = sample_latents(model, train_clips, train_batch, seed + 2, world.all_combos(), steps=steps,
                           frames=frames, size=size)
    print(f"sampled {train_clips} + {eval_clips} latents in {time.time() - started:.0f} s", flush=True)
    return held_out, train


def _sample_batch(model: VideoModel, prompts: list[str], z_t: torch.Tensor, frames: int, size: int, steps: int,
                  guidance: float) -> torch.Tensor:
    """The sampler's clean normalised latents for a batch of prompts (the model interface samples one request at
    a time; training data is drawn in batches through the family's own pipeline)."""
    pipe, b = model.pipeline, len(prompts)
    common = dict(prompt=prompts, negative_prompt=[""] * b, height=size, width=size, num_frames=frames,
                  num_inference_steps=steps, guidance_scale=guidance, output_type="latent",
                  max_sequence_length=model.max_sequence_length)
    if model.identity.family == "ltx":
        tokens = pipe(latents=model.pack(z_t.to(model.device)), frame_rate=model.defaults.fps,
                      decode_noise_scale=0.0, **common).frames
        t, h, w = z_t.shape[2:]
        return model.unpack(tokens, t, h, w)
    if model.identity.family == "cogvideox":  # the pipeline's (B, F, C, h, w) layout; 1.0 only (no padding frames)
        if model.patch_size_t:
            raise NotImplementedError("encoder tuning samples CogVideoX 1.0 models only")
        frames_first = pipe(latents=model.pipeline_latents(z_t), use_dynamic_cfg=False, **common).frames
        return frames_first.permute(0, 2, 1, 3, 4)
    return pipe(latents=z_t.to(model.device), **common).frames


# ------------------------------------------------------------------------------------------------ degradations
# Each takes and returns video in [-1, 1], shaped (B, 3, T, H, W).

def _frames(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), (b, c, t, h, w)


def _video(f: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    b, c, t, h, w = shape
    return f.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def quantise_8bit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1


_RGB_TO_YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def chroma_420(x: torch.Tensor) -> torch.Tensor:
    """Half-resolution chroma, as the yuv420p files we write and read carry."""
    f, shape = _frames(x)
    m = _RGB_TO_YUV.to(f)
    yuv = torch.einsum("ij,bjhw->bihw", m, f)
    uv = F.interpolate(F.avg_pool2d(yuv[:, 1:], 2), scale_factor=2, mode="bilinear", align_corners=False)
    out = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), torch.cat([yuv[:, :1], uv], 1))
    return _video(out, shape)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float32)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


def dct_quantise(x: torch.Tensor, step: float) -> torch.Tensor:
    """Round 8x8 DCT coefficients to multiples of ``step`` (larger for higher frequencies), as intra coding
    does; ``step`` is on the [0, 255] scale for the DC coefficient."""
    f, shape = _frames(x)
    n, c, h, w = f.shape
    d = _dct_matrix().to(f)
    blocks = ((f + 1) * 127.5).reshape(n, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)
    coef = d @ blocks @ d.T
    freq = torch.arange(8, device=f.device, dtype=f.dtype)
    q = step * (1 + 0.25 * (freq[:, None] + freq[None, :]))
    coef = (coef / q).round() * q
    out = (d.T @ coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w) / 127.5 - 1
    return _video(out.clamp(-1, 1), shape)


def rescale(x: torch.Tensor, scale: float) -> torch.Tensor:
    f, shape = _frames(x)
    h, w = f.shape[-2:]
    small = F.interpolate(f, size=(max(8, round(h * scale)), max(8, round(w * scale))), mode="bilinear",
                          antialias=True, align_corners=False)
    return _video(F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1), shape)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    f, shape = _frames(x)
    radius = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, device=f.device, dtype=f.dtype) / sigma) ** 2)
    k = k / k.sum()
    c = f.shape[1]
    f = F.pad(f, (radius, radius, radius, radius), mode="reflect")
    f = F.conv2d(f, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    f = F.conv2d(f, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return _video(f, shape)


def brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    return (((x + 1) / 2 * factor) * 2 - 1).clamp(-1, 1)


def crop_and_uncrop(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """A centre crop scaled back to full size, then undone as ``alignment.uncrop`` undoes it (shrunk into the
    centre, the border filled by repeating the edge). Only the interior matches the original."""
    f, shape = _frames(x)
    h, w = f.shape[-2:]
    top, left, ch, cw = centre_box(h, w, fraction)
    cropped = F.interpolate(f[..., top:top + ch, left:left + cw], size=(h, w), mode="bicubic", align_corners=False)
    small = F.interpolate(cropped.clamp(-1, 1), size=(ch, cw), mode="area")
    restored = F.pad(small, (left, w - cw - left, top, h - ch - top), mode="replicate")
    return _video(restored, shape)


def degrade(x: torch.Tensor, rng: random.Random) -> tuple[torch.Tensor, float]:
    """One random file-like degradation of a whole batch; returns it and the crop fraction (1.0: none)."""
    crop = 1.0
    if rng.random() < 0.8:
        x = chroma_420(x)
    kind = rng.choice(("none", "dct", "dct", "rescale", "blur", "brightness", "crop"))
    if kind == "dct":
        x = dct_quantise(x, rng.uniform(2.0, 10.0))
    elif kind == "rescale":
        x = rescale(x, rng.uniform(0.6, 0.95))
    elif kind == "blur":
        x = gaussian_blur(x, rng.uniform(0.4, 1.4))
    elif kind == "brightness":
        x = brightness(x, rng.uniform(0.88, 1.12))
    elif kind == "crop":
        crop = rng.uniform(0.75, 0.95)
        x = crop_and_uncrop(x, crop)
    return quantise_8bit(x), crop


# Conditions of the before/after report: the ones the robustness bench uses, on tensors.
EVAL_CONDITIONS = {
    "clean (8-bit 4:2:0)": lambda x: (quantise_8bit(chroma_420(x)), 1.0),
    "DCT step 6 (H.264 stand-in)": lambda x: (quantise_8bit(dct_quantise(chroma_420(x), 6.0)), 1.0),
    "resize 0.75": lambda x: (quantise_8bit(rescale(chroma_420(x), 0.75)), 1.0),
    "blur 1.0": lambda x: (quantise_8bit(gaussian_blur(chroma_420(x), 1.0)), 1.0),
    "centre crop 0.8": lambda x: (quantise_8bit(crop_and_uncrop(chroma_420(x), 0.8)), 0.8),
}


# ------------------------------------------------------------------------------------------------- the model

def decode(ae: VideoAutoencoder, z0: torch.Tensor) -> torch.Tensor:
    """Normalised latents -> video in [-1, 1] (a tensor: the degradations run on the GPU)."""
    with torch.no_grad():
        return ae.vae.decode(ae.denormalise(z0)).sample.clamp(-1, 1)


def encode(ae: VideoAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """Video in [-1, 1] -> normalised latents, differentiably (the encoder is what trains)."""
    return ae.normalise(ae.vae.encode(x).latent_dist.mean.float())


def cell_mask(crop: float, z: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = z.shape[-2:]
    inside = interior_mask(crop, h * scale, w * scale, scale)
    if inside is None:
        return torch.ones_like(z, dtype=torch.bool)
    return torch.from_numpy(inside).to(z.device).view(1, 1, 1, h, w).expand_as(z)


@torch.no_grad()
def evaluate(model: VideoModel, held_out: dict, batch: int, steps: int = DEFAULT_INVERSION_STEPS,
             invert=None) -> dict:
    """Per condition: latent MSE of E(degrade(D(z0))) against z0, and sign agreement of its inversion with z_T
    (over the cells the condition leaves), on held-out captions. ``invert`` (clean latents -> noise) defaults to
    the model's sampler inversion at ``steps``."""
    ae, device = model.autoencoder, model.device
    if invert is None:
        def invert(z):
            return model.invert(z, steps)
    scale = ae.spatial_factor
    agree, count = 0.0, 0
    for start in range(0, held_out["z0"].shape[0], batch):  # the ceiling: the sampler's latent, no VAE at all
        z0 = held_out["z0"][start:start + batch].to(device)
        z_inv = invert(z0)
        agree += float((z_inv.sign() == held_out["z_t"][start:start + batch].to(device).sign()).sum())
        count += z0.numel()
    report = {"latent, no VAE (ceiling)": {"latent_mse": 0.0, "sign_agreement": round(agree / count, 4)}}
    for name, condition in EVAL_CONDITIONS.items():
        se, agree, count = 0.0, 0.0, 0
        for start in range(0, held_out["z0"].shape[0], batch):
            z0 = held_out["z0"][start:start + batch].to(device)
            z_t = held_out["z_t"][start:start + batch].to(device).float()
            x, crop = condition(decode(ae, z0))
            z_hat = encode(ae, x)
            z_inv = invert(z_hat)
            mask = cell_mask(crop, z0, scale)
            se += float(((z_hat - z0) ** 2)[mask].sum())
            agree += float((z_inv.sign() == z_t.sign())[mask].sum())
            count += int(mask.sum())
        # a crop on a grid too coarse to keep any whole cell (LTX at 64 px) leaves nothing to measure
        report[name] = {"latent_mse": round(se / count, 4) if count else None,
                        "sign_agreement": round(agree / count, 4) if count else None}
    return report


def _decoder_state(vae) -> dict:
    return {k: v.detach().clone() for k, v in vae.state_dict().items() if not k.startswith(("encoder.", "quant_conv."))}


def sign_loss(z_inv: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    """Logistic loss on agreeing with the signs of z_T: the watermark reads signs only, not magnitudes."""
    return F.softplus(-2.0 * z_inv * z_t.sign())


def tune(model: VideoModel, train: dict, minutes: float, max_steps: int, batch: int, lr: float, seed: int,
         inversion_weight: float = 0.0, inversion_steps: int = DEFAULT_INVERSION_STEPS,
         log_every: int = 50) -> list[dict]:
    """Train encoder + quant_conv on ``train`` latents; returns the loss history.

    The loss is the latent MSE to z0, plus, with ``inversion_weight`` > 0, a sign loss on the z_T that the
    sampler inversion (kept differentiable) recovers from the encoder's latent: the objective the verifier has.
    """
    ae, device = model.autoencoder, model.device
    vae, scale = ae.vae, ae.spatial_factor
    vae.requires_grad_(False)
    model.pipeline.transformer.requires_grad_(False)
    # the encoder and, where the family has one (Wan), the quant conv after it; never the decoder
    quant_conv = getattr(vae, "quant_conv", None)  # Wan has one; CogVideoX's is None unless configured
    params = list(vae.encoder.parameters()) + (list(quant_conv.parameters()) if quant_conv is not None else [])
    for p in params:
        p.requires_grad_(True)
    rng = random.Random(seed)
    n = train["z0"].shape[0]

    def batch_loss():
        idx = torch.tensor([rng.randrange(n) for _ in range(batch)])
        z0 = train["z0"][idx].to(device)
        x, crop = degrade(decode(ae, z0), rng)
        z_hat = encode(ae, x)
        mask = cell_mask(crop, z0, scale)
        if not mask.any():  # a crop that leaves no whole latent cell (a coarse grid): nothing to learn from
            return None
        loss = ((z_hat - z0) ** 2)[mask].mean()
        if inversion_weight > 0:
            z_inv = model.invert(z_hat, inversion_steps, differentiable=True)
            z_t = train["z_t"][idx].to(device).float()
            loss = loss + inversion_weight * sign_loss(z_inv, z_t)[mask].mean()
        return loss

    vae.train()
    history = fit(params, batch_loss, minutes=minutes, max_steps=max_steps, lr=lr, warmup=50, label="encoder",
                  log_every=log_every)
    vae.eval().requires_grad_(False)
    return history


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m framemark.lab.encoder_tuning", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="diffusers folder (default: the embedded model)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the tuned VAE and the report")
    ap.add_argument("--init-vae", type=Path, default=None, help="start from this tuned VAE folder")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--train-clips", type=int, default=3072)
    ap.add_argument("--eval-clips", type=int, default=64)
    ap.add_argument("--inversion-weight", type=float, default=0.0,
                    help="weight of the sign loss through the sampler inversion (0: latent MSE only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="toy sizes on the CPU (tests)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.train_clips, args.eval_clips, args.batch, args.steps = 2, 2, 1, 2
    torch.manual_seed(args.seed)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = load_model(args.model or DEFAULT_MODEL_DIR, device=args.device)
    if args.init_vae is not None:  # continue an earlier tuning (one lent-GPU call is at most 10 minutes)
        vae = type(model.autoencoder.vae).from_pretrained(args.init_vae, dtype=torch.float32).to(args.device)
        model.pipeline.vae = model.autoencoder.vae = vae
    started = time.time()
    held_out, train = held_out_and_training_latents(model, args.eval_clips, args.train_clips, args.seed, args.smoke)
    inv_steps = 2 if args.smoke else DEFAULT_INVERSION_STEPS
    before = evaluate(model, held_out, 16, inv_steps)
    print(json.dumps({"before": before}), flush=True)
    frozen = _decoder_state(model.autoencoder.vae)
    history = tune(model, train, args.minutes, args.steps, args.batch, args.lr, args.seed,
                   inversion_weight=args.inversion_weight, inversion_steps=inv_steps, log_every=1 if args.smoke else 50)
    after = evaluate(model, held_out, 16, inv_steps)
    print(json.dumps({"after": after}), flush=True)
    unchanged = all(torch.equal(v, model.autoencoder.vae.state_dict()[k]) for k, v in frozen.items())
    if not unchanged:
        raise SystemExit("decoder weights changed: refusing to export")
    folder = args.out / "vae"
    model.autoencoder.vae.half().cpu().save_pretrained(folder, safe_serialization=True)
    report = {"command": "python -m framemark.lab.encoder_tuning " + " ".join(argv if argv is not None else sys.argv[1:]),
              "train_clips": args.train_clips, "eval_clips": args.eval_clips, "batch": args.batch, "lr": args.lr,
              "inversion_weight": args.inversion_weight,
              "initialised_from": str(args.init_vae) if args.init_vae else None,
              "steps": history[-1]["step"] if history else 0, "minutes": round((time.time() - started) / 60, 2),
              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "before": before, "after": after, "history": history, "decoder_unchanged": unchanged}
    (args.out / "encoder_tuning.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"exported {folder}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
