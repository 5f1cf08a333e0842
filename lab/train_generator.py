"""Train the project's models on the procedural world: ``python -m framemark.lab.train_generator``.

``--family wan`` (default) trains framemark-wan-tiny, the embedded model (architecture: lab/tiny_wan.py);
``--family ltx`` framemark-ltx-tiny (lab/tiny_ltx.py) and ``--family cogvideox`` framemark-cogvideox-tiny
(lab/tiny_cogvideox.py). One loop trains all three; what differs (components, latent normalisation, how the
transformer is called, the objective: rectified flow or v-prediction, see ``objective``) is the family module's.
Two stages, as latent diffusion is usually trained:
1. ``vae``: the video autoencoder, on world clips (training combinations only) and colour pans over real
   photographs, with a reconstruction loss and a small KL term. Then per-channel latent statistics are measured
   and stored where the family's pipeline reads them (Wan: the VAE config; LTX: the VAE's buffers; CogVideoX:
   one scaling_factor).
2. ``dit``: the transformer and the text encoder, jointly, with the objective the family's scheduler samples
   from (``objective``), on captions from the grammar, with 10% empty captions so classifier-free guidance
   works. An EMA of the weights is exported.

Data is rendered on the fly on the training device. Each stage checkpoints to ``--out`` and resumes from there.
Stages stop at a step count or a wall-clock budget, whichever comes first, and end by exporting a diffusers
folder loadable with the family's pipeline (``WanPipeline.from_pretrained`` and so on) and ``--model``.

``--smoke`` runs the whole path at toy size on the CPU in well under a minute; the tests use it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from framemark.generator.models.base import CARD_FILE

from . import tiny_cogvideox, tiny_ltx, tiny_wan, world

FAMILIES = {"wan": tiny_wan, "ltx": tiny_ltx, "cogvideox": tiny_cogvideox}


@dataclass
class StageConfig:
    steps: int
    minutes: float
    batch: int
    lr: float
    warmup: int
    frames: int = world.DEFAULT_FRAMES
    size: int = world.DEFAULT_SIZE
    crop: int | None = None  # train on random square crops of this size (the VAE is fully convolutional)


@dataclass
class RunConfig:
    vae: StageConfig
    dit: StageConfig
    photo_fraction: float = 0.15  # share of VAE batches that are real-photo pans
    kl_weight: float = 1e-6
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    family: str = "wan"
    stats_clips: int = 1024
    latent_cache_clips: int = 20000  # world clips encoded once for the transformer stage
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 100


def default_config() -> RunConfig:
    return RunConfig(
        # Full-length clips (the causal temporal cache must see all five latent frames: a VAE trained on 9 frames
        # falls apart after the third) on 64-px crops, a quarter of the pixels of a 128x128 clip.
        vae=StageConfig(steps=40000, minutes=8.0, batch=64, lr=4e-4, warmup=200, frames=17, crop=64),
        dit=StageConfig(steps=60000, minutes=7.0, batch=256, lr=4e-4, warmup=500),
    )


def smoke_config() -> RunConfig:
    return RunConfig(
        vae=StageConfig(steps=3, minutes=1.0, batch=2, lr=1e-4, warmup=1, frames=5, size=64, crop=32),
        dit=StageConfig(steps=3, minutes=1.0, batch=2, lr=1e-4, warmup=1, frames=9, size=64),
        stats_clips=4, latent_cache_clips=6, checkpoint_every=2, log_every=1,
    )


# ---------------------------------------------------------------------------------------------------- helpers

def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _lr_at(step: int, progress: float, cfg: StageConfig) -> float:
    """Linear warm-up, then cosine decay to 10% over the stage's progress (steps or wall clock)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _world_batch(n: int, rng: random.Random, cfg: StageConfig, seed: int, device: torch.device) -> torch.Tensor:
    specs = world.sample_specs(n, rng, world.train_combos())
    clips = world.render(specs, frames=cfg.frames, height=cfg.size, width=cfg.size, seed=seed, device=device)
    return clips * 2 - 1


def _random_crop(x: torch.Tensor, crop: int | None, rng: random.Random) -> torch.Tensor:
    if crop is None or crop >= x.shape[-1]:
        return x
    out = []
    for clip in x:
        top, left = rng.randrange(x.shape[-2] - crop + 1), rng.randrange(x.shape[-1] - crop + 1)
        out.append(clip[..., top:top + crop, left:left + crop])
    return torch.stack(out)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path, device: torch.device) -> dict | None:
    if path.exists():
        return torch.load(path, map_location=device, weights_only=False)
    return None


class _Budget:
    """Progress through a stage as the larger of step fraction and wall-clock fraction."""

    def __init__(self, cfg: StageConfig, already_seconds: float):
        self.cfg, self.start, self.already = cfg, time.time(), already_seconds

    def seconds(self) -> float:
        return self.already + time.time() - self.start

    def progress(self, step: int) -> float:
        return max(step / self.cfg.steps, self.seconds() / (60 * self.cfg.minutes))


# ---------------------------------------------------------------------------------------------------- stage 1

def family_of(run: RunConfig):
    return FAMILIES[run.family]


def train_vae(run: RunConfig, out: Path, device: torch.device, init: Path | None = None) -> dict:
    """Train the autoencoder; ``init`` (a diffusers VAE folder) continues from earlier weights, which lets one
    training run span several short sessions on a lent GPU."""
    cfg = run.vae
    arch = family_of(run)
    vae = arch.build_vae().to(device)
    if init is not None:
        vae.load_state_dict(arch.VAE_CLASS.from_pretrained(init).float().state_dict())
        _log(f"vae: initialised from {init}")
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ckpt_path = out / "vae.ckpt"
    state = _load_checkpoint(ckpt_path, device)
    step, seconds, history = 0, 0.0, []
    if state is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, seconds, history = state["step"], state["seconds"], state["history"]
        _log(f"vae: resumed at step {step}")
    if state is not None and state.get("done"):
        return {"model": vae, "history": history, "steps": step, "seconds": seconds}
    rng = random.Random(run.seed * 7919 + step)
    budget = _Budget(cfg, seconds)
    vae.train()
    running = {"mse": 0.0, "kl": 0.0, "n": 0}
    while step < cfg.steps and budget.progress(step) < 1.0:
        lr = _lr_at(step, budget.progress(step), cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        n_photo = int(round(cfg.batch * run.photo_fraction))
        x = _world_batch(cfg.batch - n_photo, rng, cfg, seed=rng.randrange(2**31), device=device)
        if n_photo:
            photos = world.render_photo_pans(n_photo, cfg.frames, cfg.size, cfg.size, seed=rng.randrange(2**31),
                                             device=device)
            x = torch.cat([x, photos * 2 - 1])
        x = _random_crop(x, cfg.crop, rng)
        with _autocast(device):
            posterior = vae.encode(x).latent_dist
            z = posterior.sample()
            recon = vae.decode(z).sample
        recon = recon.float()
        mse = F.mse_loss(recon, x)
        loss = mse + 0.5 * F.l1_loss(recon, x) + run.kl_weight * posterior.kl().float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        running["mse"] += mse.item()
        running["kl"] += posterior.kl().float().mean().item()
        running["n"] += 1
        if step % run.log_every == 0:
            m = running["mse"] / running["n"]
            psnr = 10 * math.log10(4.0 / max(m, 1e-12))  # signal range is 2 ([-1, 1])
            history.append({"step": step, "seconds": round(budget.seconds(), 1), "mse": m, "psnr_db": psnr,
                            "kl": running["kl"] / running["n"], "lr": lr})
            _log(f"vae step {step} mse {m:.5f} psnr {psnr:.2f} dB kl {running['kl'] / running['n']:.1f} lr {lr:.2e}")
            running = {"mse": 0.0, "kl": 0.0, "n": 0}
        if step % run.checkpoint_every == 0:
            _save_checkpoint(ckpt_path, {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step,
                                         "seconds": budget.seconds(), "history": history})
    vae.eval()
    mean, std = latent_statistics(vae, run, device)
    arch.set_latent_statistics(vae, mean, std)
    _save_checkpoint(ckpt_path, {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step,
                                 "seconds": budget.seconds(), "history": history, "done": True,
                                 "latents_mean": mean, "latents_std": std})
    return {"model": vae, "history": history, "steps": step, "seconds": budget.seconds()}


@torch.no_grad()
def latent_statistics(vae, run: RunConfig, device: torch.device) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of posterior means over world clips: the pipeline's latent normalisation."""
    rng = random.Random(run.seed + 99)
    total, total_sq, count = 0.0, 0.0, 0
    cfg = run.dit
    for start in range(0, run.stats_clips, max(cfg.batch // 2, 1)):
        n = min(max(cfg.batch // 2, 1), run.stats_clips - start)
        x = _world_batch(n, rng, cfg, seed=rng.randrange(2**31), device=device)
        with _autocast(device):
            z = vae.encode(x).latent_dist.mode().float()
        total = total + z.sum(dim=(0, 2, 3, 4))
        total_sq = total_sq + (z * z).sum(dim=(0, 2, 3, 4))
        count += z.numel() // z.shape[1]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-8).sqrt()
    return [round(v, 5) for v in mean.tolist()], [round(v, 5) for v in std.tolist()]


# ---------------------------------------------------------------------------------------------------- stage 2

@torch.no_grad()
def build_latent_cache(vae, run: RunConfig, out: Path, device: torch.device) -> dict:
    """Encode world clips once: the transformer then trains on normalised latents, not on the VAE's forward.

    Only the scene specs are kept beside the latents; captions are drawn afresh from the grammar at every
    step, so wording still varies.
    """
    path = out / "latents.pt"
    if path.exists():
        return torch.load(path, map_location=device, weights_only=False)
    cfg, rng = run.dit, random.Random(run.seed * 31337)
    latents, specs = [], []
    chunk = max(min(cfg.batch, 64), 1)
    for start in range(0, run.latent_cache_clips, chunk):
        n = min(chunk, run.latent_cache_clips - start)
        batch_specs = world.sample_specs(n, rng, world.train_combos())
        x = world.render(batch_specs, frames=cfg.frames, height=cfg.size, width=cfg.size,
                         seed=rng.randrange(2**31), device=device) * 2 - 1
        with _autocast(device):
            z = vae.encode(x).latent_dist.mode().float()
        latents.append(family_of(run).normalise(vae, z).to(torch.bfloat16))
        specs.extend(batch_specs)
        if (start // chunk) % 50 == 0:
            _log(f"latent cache: {start + n}/{run.latent_cache_clips} clips")
    cache = {"latents": torch.cat(latents), "specs": specs}
    torch.save(cache, path)
    return cache


def objective(arch, device: torch.device):
    """The family's training pairs: ``noised(z0, eps) -> (x_t, timestep, target)``, the timestep in the units the
    family's ``predict`` hands the transformer.

    ``flow`` (Wan, LTX): rectified flow, x_t = (1-s) x0 + s eps, target eps - x0, at logit-normal times shifted
    as the sampler shifts them (training matches where sampling spends steps). ``v_prediction`` (CogVideoX): the
    DDPM forward process on the scheduler's own alphas_cumprod (zero terminal SNR included), x_t = sqrt(a) x0 +
    sqrt(1-a) eps, target v = sqrt(a) eps - sqrt(1-a) x0, at uniform integer timesteps; MSE on v is CogVideoX's
    own x0 loss weighted by 1/(1-a).
    """
    if arch.OBJECTIVE == "flow":
        def flow(z0: torch.Tensor, noise: torch.Tensor):
            u = torch.sigmoid(torch.randn(z0.shape[0], device=device))
            sigma = arch.TIME_SHIFT * u / (1 + (arch.TIME_SHIFT - 1) * u)
            s = sigma.view(-1, 1, 1, 1, 1)
            return (1 - s) * z0 + s * noise, sigma * 1000, noise - z0
        return flow
    if arch.OBJECTIVE == "v_prediction":
        scheduler = arch.build_scheduler()
        alphas = scheduler.alphas_cumprod.to(device, torch.float32)

        def v_prediction(z0: torch.Tensor, noise: torch.Tensor):
            t = torch.randint(0, scheduler.config.num_train_timesteps, (z0.shape[0],), device=device)
            a = alphas[t].view(-1, 1, 1, 1, 1)
            return a.sqrt() * z0 + (1 - a).sqrt() * noise, t, a.sqrt() * noise - (1 - a).sqrt() * z0
        return v_prediction
    raise ValueError(f"unknown training objective {arch.OBJECTIVE!r}")


def train_dit(run: RunConfig, out: Path, device: torch.device, vae, init: Path | None = None) -> dict:
    """Train transformer and text encoder together on cached latents; ``init`` (an exported model folder)
    continues from its transformer and text encoder."""
    cfg = run.dit
    arch = family_of(run)
    tokenizer = arch.build_tokenizer()
    transformer = arch.build_transformer().to(device)
    text_encoder = arch.build_text_encoder(len(tokenizer)).to(device)
    if init is not None:
        transformer.load_state_dict(arch.TRANSFORMER_CLASS.from_pretrained(init / "transformer").float().state_dict())
        text_encoder.load_state_dict(arch.TEXT_ENCODER_CLASS.from_pretrained(init / "text_encoder").float()
                                     .state_dict())
        _log(f"dit: initialised from {init}")
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.01)
    ema_t, ema_e = copy.deepcopy(transformer).eval(), copy.deepcopy(text_encoder).eval()
    for p in list(ema_t.parameters()) + list(ema_e.parameters()):
        p.requires_grad_(False)
    ckpt_path = out / "dit.ckpt"
    state = _load_checkpoint(ckpt_path, device)
    step, seconds, history = 0, 0.0, []
    if state is not None:
        transformer.load_state_dict(state["transformer"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_t.load_state_dict(state["ema_transformer"])
        ema_e.load_state_dict(state["ema_text_encoder"])
        opt.load_state_dict(state["opt"])
        step, seconds, history = state["step"], state["seconds"], state["history"]
        _log(f"dit: resumed at step {step}")

    def checkpoint(done: bool = False) -> None:
        _save_checkpoint(ckpt_path, {"transformer": transformer.state_dict(), "text_encoder": text_encoder.state_dict(),
                                     "ema_transformer": ema_t.state_dict(), "ema_text_encoder": ema_e.state_dict(),
                                     "opt": opt.state_dict(), "step": step, "seconds": budget.seconds(),
                                     "history": history, "done": done})

    vae.eval().requires_grad_(False)
    noised = objective(arch, device)
    cache = build_latent_cache(vae, run, out, device)
    n_cached = cache["latents"].shape[0]
    rng = random.Random(run.seed * 104729 + step)
    budget = _Budget(cfg, seconds)
    transformer.train()
    text_encoder.train()
    running, count = 0.0, 0
    done = state is not None and state.get("done")
    while not done and step < cfg.steps and budget.progress(step) < 1.0:
        lr = _lr_at(step, budget.progress(step), cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = [rng.randrange(n_cached) for _ in range(cfg.batch)]
        z0 = cache["latents"][torch.tensor(idx, device=cache["latents"].device)].float()
        captions = ["" if rng.random() < run.caption_dropout else world.caption(cache["specs"][i], rng) for i in idx]
        xt, timestep, target = noised(z0, torch.randn_like(z0))
        with _autocast(device):
            pred = arch.predict(transformer, tokenizer, text_encoder, xt, timestep, captions)
        loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(run.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in ((ema_t, transformer), (ema_e, text_encoder)):
                for pe, pl in zip(ema.parameters(), live.parameters()):
                    pe.lerp_(pl.detach(), 1 - decay)
        running += loss.item()
        count += 1
        if step % run.log_every == 0:
            history.append({"step": step, "seconds": round(budget.seconds(), 1), "loss": running / count, "lr": lr})
            _log(f"dit step {step} loss {running / count:.4f} lr {lr:.2e}")
            running, count = 0.0, 0
        if step % run.checkpoint_every == 0:
            checkpoint()
    if not done:
        checkpoint(done=True)
    return {"transformer": ema_t, "text_encoder": ema_e, "history": history, "steps": step,
            "seconds": budget.seconds()}


# ---------------------------------------------------------------------------------------------------- export

def export(vae, transformer, text_encoder, folder: Path, report: dict, arch=tiny_wan) -> None:
    """Write the diffusers folder and the training record beside the weights.

    Weights are stored in fp16 (the shipped format: half the size in git, and every version stays in history);
    the model interface computes in fp32. Training itself keeps fp32 master weights.
    """
    def stored(module):  # a half-precision copy on the CPU; the caller's module is left as it was
        return copy.deepcopy(module).half().cpu()

    pipe = arch.build_pipeline(vae=stored(vae), transformer=stored(transformer), text_encoder=stored(text_encoder))
    pipe.save_pretrained(folder, safe_serialization=True)
    (folder / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / CARD_FILE).write_text(json.dumps(arch.CARD, indent=2) + "\n")


def _load_vae_stage(out: Path, device: torch.device, pretrained: Path | None = None, arch=tiny_wan):
    """The finished VAE: from a diffusers folder when given (stages may run on different machines), else from
    this run's checkpoint."""
    if pretrained is not None:
        vae = arch.VAE_CLASS.from_pretrained(pretrained).float().to(device)
        record = json.loads((pretrained / "training.json").read_text()) if (pretrained / "training.json").exists() else {}
        return vae, {"step": record.get("steps", 0), "seconds": record.get("seconds", 0.0),
                     "history": record.get("history", [])}
    state = _load_checkpoint(out / "vae.ckpt", device)
    if state is None or not state.get("done"):
        raise SystemExit(f"no finished VAE stage in {out}: run --stage vae first")
    vae = arch.build_vae().to(device)
    vae.load_state_dict(state["model"])
    arch.set_latent_statistics(vae, state["latents_mean"], state["latents_std"])
    return vae, state


def _previous_record(folder: Path | None) -> dict | None:
    """The training record of the weights a continued run started from, so the full history stays traceable."""
    if folder is None:
        return None
    path = folder / "training.json"
    return json.loads(path.read_text()) if path.exists() else {"folder": str(folder)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m framemark.lab.train_generator", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoint folder (resumed if present)")
    ap.add_argument("--export", type=Path, default=None, help="diffusers folder to write (default OUT/model)")
    ap.add_argument("--stage", choices=("vae", "dit", "all"), default="all")
    ap.add_argument("--vae", type=Path, default=None,
                    help="for --stage dit: a trained VAE folder (written by --stage vae as OUT/vae)")
    ap.add_argument("--init-vae", type=Path, default=None,
                    help="for --stage vae: start from this VAE folder's weights instead of from scratch")
    ap.add_argument("--init-dit", type=Path, default=None,
                    help="for --stage dit: start from this model folder's transformer and text encoder")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--vae-minutes", type=float)
    ap.add_argument("--dit-minutes", type=float)
    ap.add_argument("--vae-steps", type=int)
    ap.add_argument("--dit-steps", type=int)
    ap.add_argument("--vae-lr", type=float)
    ap.add_argument("--dit-lr", type=float)
    ap.add_argument("--vae-batch", type=int)
    ap.add_argument("--dit-batch", type=int)
    ap.add_argument("--latent-clips", type=int, help="world clips encoded once for the transformer stage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", choices=sorted(FAMILIES), default="wan",
                    help="wan: framemark-wan-tiny (lab/tiny_wan.py); ltx: framemark-ltx-tiny (lab/tiny_ltx.py); "
                         "cogvideox: framemark-cogvideox-tiny (lab/tiny_cogvideox.py)")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on CPU in well under a minute (tests)")
    args = ap.parse_args(argv)

    run = smoke_config() if args.smoke else default_config()
    run.seed = args.seed
    run.family = args.family
    if args.smoke and args.family in ("ltx", "cogvideox"):
        run.vae.frames = 9  # LTX's VAE takes 1 + 8k frames; CogVideoX's gives 5 back only from 1 + 8k
    if args.latent_clips is not None:
        run.latent_cache_clips = args.latent_clips
    for stage, name in ((run.vae, "vae"), (run.dit, "dit")):
        for field in ("minutes", "steps", "batch", "lr"):
            value = getattr(args, f"{name}_{field}")
            if value is not None:
                setattr(stage, field, value)
    device = torch.device(args.device)
    torch.manual_seed(run.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    if args.stage in ("vae", "all"):
        res = train_vae(run, args.out, device, args.init_vae)
        _log(f"vae stage done: {res['steps']} steps in {res['seconds'] / 60:.1f} min")
        if args.stage == "vae":
            folder = args.out / "vae"
            res["model"].half().cpu().save_pretrained(folder, safe_serialization=True)
            (folder / "training.json").write_text(json.dumps(
                {"steps": res["steps"], "seconds": res["seconds"], "history": res["history"],
                 "config": asdict(run.vae), "initialised_from": _previous_record(args.init_vae)},
                indent=2) + "\n")
            _log(f"exported {folder}")
            return 0
    vae, vae_state = _load_vae_stage(args.out, device, args.vae, family_of(run))
    res = train_dit(run, args.out, device, vae, args.init_dit)
    _log(f"dit stage done: {res['steps']} steps in {res['seconds'] / 60:.1f} min")

    report = {
        "command": "python -m framemark.lab.train_generator " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": asdict(run),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "vae": {"steps": vae_state["step"], "minutes": round(vae_state["seconds"] / 60, 2),
                "final": vae_state["history"][-1] if vae_state["history"] else None},
        "dit": {"steps": res["steps"], "minutes": round(res["seconds"] / 60, 2),
                "final": res["history"][-1] if res["history"] else None},
        "wall_minutes_this_invocation": round((time.time() - started) / 60, 2),
        "dit_initialised_from": _previous_record(args.init_dit),
    }
    folder = args.export or args.out / "model"
    export(vae, res["transformer"], res["text_encoder"], folder, report, family_of(run))
    _log(f"exported {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
