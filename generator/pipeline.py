"""Loading a text-to-video model and generating frames from a prompt.

Generation is split into seams so that provenance can plug in without touching the model code:
``initial_latents`` makes z_T (the watermark replaces it with keyed noise), ``generate_frames`` runs the sampler
from given latents, and writing/signing the file is the caller's separate step.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from framemark.errors import GenerationError, ModelError

from . import architecture, world

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
_REQUIRED = ("model_index.json", "transformer", "vae", "text_encoder", "tokenizer", "scheduler")

# What the model can be asked for. It was trained at 17x128x128; other sizes in range run but follow prompts
# less well (see docs/model-card.md).
FRAMES_RANGE = (5, 33)
SIZE_RANGE = (64, 256)
SIZE_MULTIPLE = 16  # VAE x8 times the transformer's 2x2 patches


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    seed: int = 0
    steps: int = 20
    frames: int = world.DEFAULT_FRAMES
    height: int = world.DEFAULT_SIZE
    width: int = world.DEFAULT_SIZE
    guidance_scale: float = 5.0
    fps: float = world.DEFAULT_FPS


def model_dir_or_default(model_dir: str | os.PathLike | None) -> Path:
    return Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR


def load_pipeline(model_dir: str | os.PathLike | None = None, device: str = "cpu"):
    """A WanPipeline from a diffusers folder, offline; any problem with the folder is a ModelError."""
    folder = model_dir_or_default(model_dir)
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    missing = [name for name in _REQUIRED if not (folder / name).exists()]
    if missing:
        raise ModelError(f"model folder {folder} is incomplete: missing {', '.join(missing)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import WanPipeline
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    for lib in (dlogging, tlogging):  # loading bars and notices would clutter a CLI's stderr
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        # weights are stored in fp16 (half the repository size); computation is fp32 on every device
        pipe = WanPipeline.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        pipe.to(device)
    except Exception as exc:  # diffusers raises many types for bad folders; all mean "not loadable"
        raise ModelError(f"cannot load model from {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def model_identity(pipe) -> dict:
    """Name and version of a loaded model, for manifests and verdicts."""
    name_or_path = getattr(pipe.config, "_name_or_path", "") or ""
    is_default = Path(name_or_path).resolve() == DEFAULT_MODEL_DIR if name_or_path else False
    return {"name": architecture.MODEL_NAME if is_default else Path(name_or_path).name or "wan",
            "version": _model_version(Path(name_or_path)) if name_or_path else "unknown"}


def _model_version(folder: Path) -> str:
    record = folder / "training.json"
    if record.exists():
        import json

        return str(json.loads(record.read_text()).get("version", "1"))
    return "unknown"


def latent_shape(pipe, request: GenerationRequest) -> tuple[int, int, int, int, int]:
    t = (request.frames - 1) // pipe.vae_scale_factor_temporal + 1
    s = pipe.vae_scale_factor_spatial
    return (1, pipe.transformer.config.in_channels, t, request.height // s, request.width // s)


def validate(request: GenerationRequest) -> GenerationRequest:
    """Refuse what the model cannot make, with the reason, instead of silently adjusting it."""
    prompt = " ".join(request.prompt.split())
    if not prompt:
        raise GenerationError("the prompt is empty")
    words = len(re.findall(r"\w+", prompt))
    if words > architecture.MAX_PROMPT_WORDS:
        raise GenerationError(f"the prompt has {words} words; at most {architecture.MAX_PROMPT_WORDS} are allowed")
    lo, hi = FRAMES_RANGE
    if not (lo <= request.frames <= hi) or (request.frames - 1) % 4:
        raise GenerationError(f"frames must be 4k+1 between {lo} and {hi} (got {request.frames})")
    lo, hi = SIZE_RANGE
    for name, value in (("height", request.height), ("width", request.width)):
        if not (lo <= value <= hi) or value % SIZE_MULTIPLE:
            raise GenerationError(f"{name} must be a multiple of {SIZE_MULTIPLE} between {lo} and {hi} (got {value})")
    if not 1 <= request.steps <= 200:
        raise GenerationError(f"steps must be between 1 and 200 (got {request.steps})")
    if request.seed < 0:
        raise GenerationError(f"seed must be non-negative (got {request.seed})")
    return request


def initial_latents(pipe, request: GenerationRequest) -> torch.Tensor:
    """Plain Gaussian z_T from the seed, on the CPU so a seed means the same noise on every device."""
    gen = torch.Generator("cpu").manual_seed(request.seed)
    return torch.randn(latent_shape(pipe, request), generator=gen, dtype=torch.float32)


@torch.no_grad()
def generate_frames(pipe, request: GenerationRequest, latents: torch.Tensor | None = None) -> np.ndarray:
    """Run the sampler from ``latents`` (seeded noise when None); uint8 frames (T,H,W,3)."""
    validate(request)
    if latents is None:
        latents = initial_latents(pipe, request)
    out = pipe(
        prompt=request.prompt,
        negative_prompt="",
        height=request.height,
        width=request.width,
        num_frames=request.frames,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        latents=latents.to(pipe.device),
        output_type="np",
        max_sequence_length=architecture.MAX_SEQUENCE_LENGTH,
    )
    frames = np.asarray(out.frames[0])
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
