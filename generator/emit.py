"""Turning a generation request into a file: the one place where a clip leaves the generator.

Sampling (``pipeline.generate_frames``) and writing are separate so that provenance plugs in here: the watermark
chooses the initial latents before sampling and the C2PA manifest is signed onto the file after writing.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from framemark import media
from framemark.watermark import Payload, WatermarkKey, embed

from . import pipeline


@dataclass(frozen=True)
class EmittedClip:
    path: str
    prompt: str
    seed: int
    steps: int
    frames: int
    height: int
    width: int
    fps: float
    model: dict
    seconds: float
    watermark: dict | None = None  # {"key_id", "payload", "clip_id"} when marked

    def to_dict(self) -> dict:
        return asdict(self)


def watermarked_latents(pipe, request: pipeline.GenerationRequest, key: WatermarkKey, payload: Payload):
    """z_T carrying ``payload`` under ``key``; the seed still picks the noise magnitudes."""
    return embed(key, payload, pipeline.latent_shape(pipe, request), seed=request.seed)


def emit_clip(pipe, request: pipeline.GenerationRequest, path: str | os.PathLike, key: WatermarkKey | None = None,
              payload: Payload | None = None) -> EmittedClip:
    """Generate one clip and write it as H.264 MP4 at ``path``; marked with ``key`` unless it is None."""
    pipeline.validate(request)
    start = time.perf_counter()
    latents, mark = None, None
    if key is not None:
        payload = payload or Payload.random()
        latents = watermarked_latents(pipe, request, key, payload)
        mark = {"key_id": key.key_id, "payload": payload.hex, "clip_id": f"{payload.clip_id:012x}"}
    frames = pipeline.generate_frames(pipe, request, latents=latents)
    media.write_video(path, frames, fps=request.fps)
    return EmittedClip(path=str(Path(path)), prompt=request.prompt, seed=request.seed, steps=request.steps,
                       frames=request.frames, height=request.height, width=request.width, fps=request.fps,
                       model=pipeline.model_identity(pipe), seconds=round(time.perf_counter() - start, 3),
                       watermark=mark)
