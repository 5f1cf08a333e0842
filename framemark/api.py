"""The Python API: framemark around a diffusers pipeline its user already holds (docs/api.md).

Four verbs, for people who call ``pipe(...)`` themselves instead of `framemark generate`:

* :func:`model_from_pipeline` — the pipeline object behind framemark's model interface (a ``VideoModel``);
* :func:`marked_latents` — initial latents that carry a watermark payload, for ``pipe(..., latents=...)``;
* :func:`sign_and_record` — the file the user wrote from those latents, signed with a C2PA manifest and recorded
  in the ledger, by the same code `framemark generate` uses (``generator.emit.sign_and_record``);
* :func:`verify` — a file's :class:`~framemark.detect.verdict.Verdict`, through the runtime as `framemark verify`.

Keys, signer and ledger are this machine's (``$FRAMEMARK_HOME``, created on first use as `generate` does), loaded
through :mod:`framemark.runtime`, the one loader. Every error is a :class:`~framemark.errors.FramemarkError` in
words.
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import replace
from pathlib import Path

from framemark import manifest, media, runtime
from framemark.errors import FramemarkError, ModelError
from framemark.detect.verdict import Verdict
from framemark.generator.emit import EmittedClip, watermark_fields, watermarked_latents
from framemark.generator.emit import sign_and_record as _sign_and_record
from framemark.generator.models import FAMILIES, GenerationRequest, VideoModel
from framemark.limits import Limits
from framemark.watermark import Payload, WatermarkKey

__all__ = ["GenerationRequest", "Limits", "Payload", "WatermarkKey", "model_from_pipeline", "marked_latents",
           "sign_and_record", "verify"]

# A written clip may differ from its request by this much in frame rate (containers store rates as fractions).
_FPS_TOLERANCE = 0.01


def model_from_pipeline(pipe, folder: str | os.PathLike | None = None) -> VideoModel:
    """A diffusers pipeline object as a :class:`VideoModel` (a ``VideoModel`` is returned as it is).

    The family is chosen by the pipeline's class (``WanPipeline``, ``LTXPipeline``, ``CogVideoXPipeline``, or a
    subclass of one). The model's identity (name, version, weights hash) comes from the folder its weights are
    in: ``folder``, else the folder the pipeline was loaded from (``pipe.config._name_or_path``). A pipeline
    loaded from the Hugging Face hub by name, or built in memory, has none: save it (``pipe.save_pretrained``)
    or pass the folder of its files.
    """
    if isinstance(pipe, VideoModel):
        return pipe
    served = next((c.__name__ for c in type(pipe).__mro__ if c.__name__ in FAMILIES), None)
    if served is None:
        raise ModelError(f"a {type(pipe).__name__} is not a pipeline framemark supports "
                         f"({', '.join(sorted(FAMILIES))})")
    if folder is None:
        folder = getattr(getattr(pipe, "config", None), "_name_or_path", None)
    if not folder or not Path(folder).is_dir():
        raise ModelError(f"framemark names a model by the files of its weights, and this {served} was not loaded "
                         f"from a folder ({folder!r}): pass folder= (where its files are), or save it with "
                         f"pipe.save_pretrained(folder) and load it from there")
    module, cls = FAMILIES[served]
    family = getattr(importlib.import_module(f"framemark.generator.models.{module}"), cls)
    return family(pipe, Path(folder))


def marked_latents(model_or_pipe, request: GenerationRequest, *, payload: Payload,
                   key: WatermarkKey | str | os.PathLike | None = None):
    """The initial latents z_T for ``request`` that carry ``payload`` under ``key``, on the model's device, in the
    layout the family's pipeline takes for ``pipe(..., num_frames=request.frames, height=request.height,
    width=request.width, latents=latents)``; the request's seed picks the noise as in `framemark generate` (same request and payload:
    the same latents). ``key``: a ``WatermarkKey``, a key file, or None for this machine's key (created on first
    use). Raises GenerationError when the model cannot make the request (fill its defaults first with
    ``model.check_inputs(request)`` to know the numbers to call the pipeline with)."""
    model = model_from_pipeline(model_or_pipe)
    checked = model.check_inputs(request)
    with _runtime("generate", key=key, models=[model], sign=False) as rt:
        marking: WatermarkKey = rt.key
    return model.pipeline_latents(watermarked_latents(model, checked, marking, _payload(payload)))


def sign_and_record(path: str | os.PathLike, model_or_pipe, request: GenerationRequest, *, payload: Payload,
                    key: WatermarkKey | str | os.PathLike | None = None, prompt_policy: str = "hash",
                    ledger: str | os.PathLike | None = None) -> EmittedClip:
    """Sign the MP4 at ``path`` (written by the user from :func:`marked_latents`' latents for ``request`` and
    ``payload``) with a C2PA manifest naming the model, the request and the watermark, record it in the ledger
    (``ledger``, else ``$FRAMEMARK_HOME/ledger.db``), and replace the file with the signed one; the same manifest
    and ledger row as `framemark generate` makes. The file must have the request's frames and size.
    Returns what `generate --json` prints for a clip."""
    model = model_from_pipeline(model_or_pipe)
    request = model.check_inputs(request)
    payload = _payload(payload)
    manifest.prompt_fields(request.prompt, prompt_policy)  # a bad policy fails before anything is written
    started = time.perf_counter()
    video = media.read_video(path)
    _check_clip(video, request, path)
    identity = manifest.describe_model(model.identity)
    with _runtime("generate", key=key, models=[model], ledger=ledger) as rt:
        signed, recorded = _sign_and_record(path, path, frames=video.frames, request=request, model=identity,
                                            key=rt.key, payload=payload, signer=rt.signer,
                                            prompt_policy=prompt_policy, ledger=rt.writing_ledger())
        marking: WatermarkKey = rt.key
    return EmittedClip(path=str(Path(path)), prompt=request.prompt, seed=request.seed, steps=request.steps,
                       frames=request.frames, height=request.height, width=request.width, fps=request.fps,
                       model=identity, seconds=round(time.perf_counter() - started, 3),
                       watermark=watermark_fields(marking, payload), c2pa=signed, ledger=recorded)


def verify(path: str | os.PathLike, models=None, *, key: WatermarkKey | str | os.PathLike | None = None,
           ledger: str | os.PathLike | None = None, trust: tuple = (), classifier: bool = True,
           limits: Limits | None = None) -> Verdict:
    """The :class:`Verdict` of one file, as `framemark verify` gives it (``.to_dict()``: its JSON). A file that
    cannot be checked (not a regular file, not a video, over a limit, undecodable) is a verdict too, with
    ``verdict`` None and ``errors`` saying why: nothing is raised for it.

    ``models``: a pipeline or ``VideoModel``, or a list of them, to check the watermark against (the p-value
    corrected for each); None: the registered models (`framemark models add`), else the embedded one. ``key``:
    as for :func:`marked_latents` (None: this machine's; without one only C2PA is checked). ``ledger``: where a
    stripped manifest is recovered from (default ``$FRAMEMARK_HOME/ledger.db`` when present). ``trust``: PEM
    files of extra C2PA trust anchors. ``limits``: the size, resolution and duration a file is refused beyond
    (``framemark.limits.Limits``; None: `framemark verify`'s defaults), from its headers before any decoding and
    from what is decoded. For many files, keep one runtime instead (``framemark.runtime.open_runtime(options)``,
    then ``.verify(path)`` per file)."""
    loaded = None
    if models is not None:
        loaded = [model_from_pipeline(m) for m in (models if isinstance(models, (list, tuple)) else [models])]
    with _runtime("verify", key=key, models=loaded, ledger=ledger, trust=trust, classifier=classifier,
                  limits=limits) as rt:
        return rt.verify(path)


# ------------------------------------------------------------------------------------------------ helpers

def _runtime(purpose: runtime.Purpose, *, key, models, ledger=None, trust=(), sign: bool = True, classifier: bool = False,
             limits: Limits | None = None):
    """A runtime through the one loader, with the caller's models (None: the runtime's own choice) and key."""
    options = runtime.Options(key_file=None if key is None or isinstance(key, WatermarkKey) else os.fspath(key),
                              sign=sign, ledger_path=os.fspath(ledger) if ledger is not None else None,
                              trust_files=tuple(os.fspath(t) for t in trust), classifier=classifier,
                              limits=limits if limits is not None else Limits())
    resolved = runtime.resolve(options, purpose)
    if isinstance(key, WatermarkKey):
        resolved = replace(resolved, key=key, create_key=False)
    return resolved.load(models=models)


def _payload(payload) -> Payload:
    if not isinstance(payload, Payload):
        raise FramemarkError(f"payload must be a framemark.watermark.Payload (Payload.random(), Payload(clip_id) or "
                             f"Payload.from_hex(text)), got {type(payload).__name__}")
    return payload


def _check_clip(video: media.Video, request: GenerationRequest, path) -> None:
    """The file must be the clip of the request: the manifest states the request's numbers."""
    shape = (video.num_frames, video.height, video.width)
    wanted = (request.frames, request.height, request.width)
    if shape != wanted:
        raise FramemarkError(f"{path} has {shape[0]} frames of {shape[2]}x{shape[1]}, but the request is for "
                             f"{wanted[0]} frames of {wanted[2]}x{wanted[1]}: sign the clip sampled from the "
                             f"request's latents, with that request")
    if abs(video.fps - request.fps) > _FPS_TOLERANCE * request.fps:
        raise FramemarkError(f"{path} plays at {video.fps:g} fps, but the request says {request.fps:g}: write the "
                             f"file at the request's fps (or set fps in the request)")
