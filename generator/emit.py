"""Turning a generation request into a file: the one place where a clip leaves the generator.

Sampling (``VideoModel.sample``) and writing are separate so that provenance plugs in here: the watermark chooses
the initial latents before sampling and the C2PA manifest is signed onto the file after writing. The one order:
check the request, mark the noise, sample, write, sign, record, move into place.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from framemark import manifest, media, provenance
from framemark.ledger import Ledger
from framemark.signer import ClaimSigner
from framemark.watermark import Payload, WatermarkKey, embed

from .models import GenerationRequest, VideoModel


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
    c2pa: dict | None = None  # {"manifest_label", "alg", "signer", "prompt_policy", "manifest_store_bytes"}
    ledger: dict | None = None  # {"path", "row"} when recorded

    def to_dict(self) -> dict:
        return asdict(self)


def watermarked_latents(model: VideoModel, request: GenerationRequest, key: WatermarkKey, payload: Payload):
    """z_T carrying ``payload`` under ``key`` for a checked request; the seed still picks the noise magnitudes."""
    return embed(key, payload, model.latent_shape(request.frames, request.height, request.width), seed=request.seed)


def emit_clip(model: VideoModel, request: GenerationRequest, path: str | os.PathLike, key: WatermarkKey | None = None,
              payload: Payload | None = None, signer: ClaimSigner | None = None, prompt_policy: str = "hash",
              ledger: Ledger | None = None) -> EmittedClip:
    """Generate one clip and write it as H.264 MP4 at ``path``.

    Marked with ``key`` unless it is None; signed with a C2PA manifest by ``signer`` unless it is None (the
    prompt goes into the manifest according to ``prompt_policy``: full, hash or omit); recorded in ``ledger``
    when marked and a ledger is given. ``path`` only ever holds a complete clip: the video is written and
    signed under temporary names in the same folder, recorded, then moved into place.
    """
    request = model.check_inputs(request)
    manifest.prompt_fields(request.prompt, prompt_policy)  # a bad policy fails before the model runs
    start = time.perf_counter()
    mark = None
    if key is not None:
        payload = payload or Payload.random()
        latents = watermarked_latents(model, request, key, payload)
        mark = {"key_id": key.key_id, "payload": payload.hex, "clip_id": payload.clip_hex}
    else:
        latents = model.initial_noise(request)
    frames = model.sample(request, latents)
    identity = model.identity.to_dict()
    signed, recorded = None, None
    if signer is None:
        media.write_video(path, frames, fps=request.fps)
        if ledger is not None and key is not None:
            recorded = _record(ledger, payload, key, identity, None)
    else:
        signed, recorded = _write_signed(path, frames, request, identity, key, payload, signer, prompt_policy,
                                         ledger)
    return EmittedClip(path=str(Path(path)), prompt=request.prompt, seed=request.seed, steps=request.steps,
                       frames=request.frames, height=request.height, width=request.width, fps=request.fps,
                       model=identity, seconds=round(time.perf_counter() - start, 3), watermark=mark, c2pa=signed,
                       ledger=recorded)


def _record(ledger: Ledger, payload: Payload, key: WatermarkKey, model: dict, store: bytes | None,
            label: str | None = None) -> dict:
    entry = ledger.record(payload=payload, key_id=key.key_id, model=model, manifest_store=store,
                          manifest_label=label)
    return {"path": str(ledger.path), "row": entry.id}


def _write_signed(path, frames, request, model, key, payload, signer, prompt_policy, ledger):
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    tag = uuid.uuid4().hex[:12]
    unsigned = os.path.join(folder, f".{base}.{tag}.unsigned.mp4")
    signed = os.path.join(folder, f".{base}.{tag}.signed.mp4")
    try:
        media.write_video(unsigned, frames, fps=request.fps)
        definition = manifest.build_manifest(
            title=base, model=model, prompt=request.prompt, prompt_policy=prompt_policy,
            generation={"seed": request.seed, "steps": request.steps, "frames": request.frames,
                        "height": request.height, "width": request.width, "fps": request.fps,
                        "guidance_scale": request.guidance_scale},
            payload=payload.to_bytes() if key is not None else None, key_id=key.key_id if key else None,
            duration_ms=round(1000 * len(frames) / request.fps))
        store = provenance.sign_file(unsigned, signed, definition, signer, media.jpeg(frames[len(frames) // 2]))
        summary = provenance.summarize_store(store) or {}
        label = summary.get("label")
        recorded = _record(ledger, payload, key, model, store, label) if ledger is not None and key else None
        with open(signed, "rb") as fh:  # on disk before it takes the final name, as media.write_video does
            os.fsync(fh.fileno())
        os.replace(signed, path)
    finally:
        for leftover in (unsigned, signed):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
    info = {"manifest_label": label, "alg": signer.alg, "signer": (summary.get("signer") or {}).get("common_name"),
            "prompt_policy": prompt_policy,
            "manifest_store_bytes": len(store)}
    return info, recorded
