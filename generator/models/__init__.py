"""Models behind one interface (:class:`VideoModel`, :class:`VideoAutoencoder`), loaded from diffusers folders.

``load_model(folder)`` reads ``model_index.json``'s ``_class_name`` and hands the folder to the family that
serves that pipeline class; ``load_autoencoder(folder)`` loads only the VAE. Without a folder both load the
embedded default model (``framemark-wan-tiny``, shipped in ``generator/default_model``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from framemark.errors import ModelError

from .base import (GenerationRequest, ModelDefaults, ModelIdentity, ModelLimits, VideoAutoencoder, VideoModel,
                   autoencoder_sha256, check_device, execution_device)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "default_model"
# The project's second trained model, framemark-cogvideox-tiny (lab/tiny_cogvideox.py): shipped beside the
# embedded Wan one for `--model` and the registry, never loaded unless asked for.
COGVIDEOX_MODEL_DIR = DEFAULT_MODEL_DIR.parent / "cogvideox_model"

# Precisions a front door may ask for (--dtype): weights are cast at load, latents stay fp32 between steps.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# model_index.json's _class_name -> (module of this package, its VideoModel class)
FAMILIES: dict[str, tuple[str, str]] = {
    "WanPipeline": ("wan", "WanVideoModel"),
    "LTXPipeline": ("ltx", "LTXVideoModel"),
    "CogVideoXPipeline": ("cogvideox", "CogVideoXVideoModel"),
}


def model_dir_or_default(folder: str | os.PathLike | None) -> Path:
    return Path(folder) if folder is not None else DEFAULT_MODEL_DIR


def pipeline_class(folder: Path) -> str:
    """The diffusers pipeline class a model folder declares."""
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelError(f"{folder} is not a diffusers model folder: it has no model_index.json")
    try:
        declared = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"cannot read {index}: {exc}") from exc
    if not isinstance(declared, dict) or not isinstance(declared.get("_class_name"), str):
        raise ModelError(f"model folder {folder} is incomplete: its model_index.json names no pipeline class")
    return declared["_class_name"]


def family_class(folder: Path):
    name = pipeline_class(folder)
    if name not in FAMILIES:
        raise ModelError(f"{folder} holds a {name}; framemark supports {', '.join(sorted(FAMILIES))}")
    module, cls = FAMILIES[name]
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"bf16"`` -> ``torch.bfloat16`` (a torch dtype passes through); ModelError naming the choices."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def load_model(folder: str | os.PathLike | None = None, device: str = "cpu",
               dtype: str | torch.dtype = torch.float32) -> VideoModel:
    """The model in a diffusers folder (default: the embedded one); any problem with it is a ModelError."""
    path = model_dir_or_default(folder)
    precision = torch_dtype(dtype)
    check_device(device, precision)  # no such device here, fp16 on the CPU: said in words before the weights load
    return family_class(path).from_pretrained(path, device=device, dtype=precision)


def load_autoencoder(folder: str | os.PathLike | None = None, device: str = "cpu",
                     dtype: str | torch.dtype = torch.float32) -> VideoAutoencoder:
    """Only the VAE of a model folder (default: the embedded model's)."""
    path = model_dir_or_default(folder)
    precision = torch_dtype(dtype)
    check_device(device, precision)
    family = family_class(path)
    return family.autoencoder_class.from_pretrained(path, device=device, dtype=precision)


__all__ = ["COGVIDEOX_MODEL_DIR", "DEFAULT_MODEL_DIR", "DTYPES", "autoencoder_sha256", "check_device", "execution_device", "torch_dtype", "FAMILIES", "GenerationRequest", "ModelDefaults", "ModelIdentity", "ModelLimits",
           "VideoAutoencoder", "VideoModel", "load_autoencoder", "load_model", "model_dir_or_default"]
