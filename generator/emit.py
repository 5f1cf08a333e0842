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

    def to_dict(self) -> dict:
        return asdict(self)


def emit_clip(pipe, request: pipeline.GenerationRequest, path: str | os.PathLike) -> EmittedClip:
    """Generate one clip and write it as H.264 MP4 at ``path``."""
    pipeline.validate(request)
    start = time.perf_counter()
    frames = pipeline.generate_frames(pipe, request)
    media.write_video(path, frames, fps=request.fps)
    return EmittedClip(path=str(Path(path)), prompt=request.prompt, seed=request.seed, steps=request.steps,
                       frames=request.frames, height=request.height, width=request.width, fps=request.fps,
                       model=pipeline.model_identity(pipe), seconds=round(time.perf_counter() - start, 3))
