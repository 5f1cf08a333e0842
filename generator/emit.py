"""Turning a generation request into a file: the one place where a clip leaves the generator.

Sampling (``VideoModel.sample``) and writing are separate so that provenance plugs in here: the watermark chooses
the initial latents before sampling and the C2PA manifest is signed onto the file after writing. The one order:
check the request, mark the noise, sample, write, sign, record, move into place. The second half (sign, record,
move into place) is :func:`sign_and_record`, which the Python API (``framemark.api``) also runs on a file its
user sampled with their own pipeline: one manifest and one ledger row, whoever ran the sampler.
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
    model: dict  # manifest.describe_model: name, version, family, weights_sha256
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
    if key is not None:
        payload = payload or Payload.random()
        latents = watermarked_latents(model, request, key, payload)
    else:
        latents = model.initial_noise(request)
    frames = model.sample(request, latents)
    identity = manifest.describe_model(model.identity)
    if signer is None:
        media.write_video(path, frames, fps=request.fps)
        signed, recorded = sign_and_record(path, path, frames=frames, request=request, model=identity, key=key,
                                           payload=payload, signer=None, ledger=ledger)
    else:
        unsigned = _temporary(path, "unsigned")
        try:
            media.write_video(unsigned, frames, fps=request.fps)
            signed, recorded = sign_and_record(unsigned, path, frames=frames, request=request, model=identity,
                                               key=key, payload=payload, signer=signer,
                                               prompt_policy=prompt_policy, ledger=ledger)
        finally:
            _unlink(unsigned)
    return EmittedClip(path=str(Path(path)), prompt=request.prompt, seed=request.seed, steps=request.steps,
                       frames=request.frames, height=request.height, width=request.width, fps=request.fps,
                       model=identity, seconds=round(time.perf_counter() - start, 3),
                       watermark=watermark_fields(key, payload), c2pa=signed, ledger=recorded)


def watermark_fields(key: WatermarkKey | None, payload: Payload | None) -> dict | None:
    """``EmittedClip.watermark``: which key marked the clip with which payload (None: unmarked)."""
    if key is None:
        return None
    return {"key_id": key.key_id, "payload": payload.hex, "clip_id": payload.clip_hex}


def sign_and_record(source: str | os.PathLike, path: str | os.PathLike, *, frames, request: GenerationRequest,
                    model: dict, key: WatermarkKey | None, payload: Payload | None, signer: ClaimSigner | None,
                    prompt_policy: str = "hash", ledger: Ledger | None = None) -> tuple[dict | None, dict | None]:
    """The second half of emitting, for a clip already written as MP4 at ``source``: sign it with ``signer``
    (None: not signed) into ``path``, record it in ``ledger`` when it is marked (``key`` and ``payload``), and
    only then give it its final name. ``source`` may be ``path`` itself (the Python API signs the file its user
    wrote); otherwise ``source`` is left for the caller to remove.

    ``frames``: the clip's uint8 frames (the thumbnail is the middle one; the soft binding's time span is their
    duration at ``request.fps``); ``request``: the checked request they were sampled for (its numbers go into the
    generation assertion); ``model``: ``manifest.describe_model`` of the model that sampled them.
    Returns ``(EmittedClip.c2pa, EmittedClip.ledger)``.
    """
    marked = key is not None and payload is not None
    if signer is None:
        recorded = _record(ledger, payload, key, model, None) if ledger is not None and marked else None
        if os.path.abspath(source) != os.path.abspath(path):
            os.replace(source, path)
        return None, recorded
    signed = _temporary(path, "signed")
    try:
        definition = manifest.build_manifest(
            title=os.path.basename(os.path.abspath(os.fspath(path))), model=model, prompt=request.prompt,
            prompt_policy=prompt_policy,
            generation={"seed": request.seed, "steps": request.steps, "frames": request.frames,
                        "height": request.height, "width": request.width, "fps": request.fps,
                        "guidance_scale": request.guidance_scale},
            payload=payload.to_bytes() if marked else None, key_id=key.key_id if marked else None,
            duration_ms=round(1000 * len(frames) / request.fps))
        store = provenance.sign_file(source, signed, definition, signer, media.jpeg(frames[len(frames) // 2]))
        summary = provenance.summarize_store(store) or {}
        label = summary.get("label")
        recorded = _record(ledger, payload, key, model, store, label) if ledger is not None and marked else None
        with open(signed, "rb") as fh:  # on disk before it takes the final name, as media.write_video does
            os.fsync(fh.fileno())
        os.replace(signed, path)
    finally:
        _unlink(signed)
    info = {"manifest_label": label, "alg": signer.alg, "signer": (summary.get("signer") or {}).get("common_name"),
            "prompt_policy": prompt_policy,
            "manifest_store_bytes": len(store)}
    return info, recorded


def _record(ledger: Ledger, payload: Payload, key: WatermarkKey, model: dict, store: bytes | None,
            label: str | None = None) -> dict:
    entry = ledger.record(payload=payload, key_id=key.key_id, model=model, manifest_store=store,
                          manifest_label=label)
    return {"path": str(ledger.path), "row": entry.id}


def _temporary(path: str | os.PathLike, role: str) -> str:
    """A hidden name beside ``path`` (same folder, so the final rename is atomic)."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{base}.{uuid.uuid4().hex[:12]}.{role}.mp4")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
