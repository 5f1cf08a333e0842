"""The routes over clips: ``POST /v1/verify`` (an upload -> its verdict) and ``POST /v1/generate`` (a prompt -> a
signed, watermarked MP4).

Both are thin: the upload checks are :meth:`~.service.Service.accept_upload`, the work is a job on the engine's
model thread (``engine.verify_job`` / ``engine.generate_job``, over the worker's runtime), and the JSON is the
verdict's own ``to_dict()`` plus the upload's facts (:func:`verification_answer`). The generation body's schema
states the loaded model's limits (frame counts, prompt tokens) and this server's, so the OpenAPI document and the
validation say the same thing; the router is therefore made per app, once its model is loaded. (No
``from __future__ import annotations`` here: FastAPI reads the body's type, a local of :func:`router`, from the
route's signature.)
"""

import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool

from framemark.manifest import PROMPT_POLICIES

from . import auth, engine as engines
from . import service as services
from . import uploads
from .errors import ApiError, responses
from .service import Service

UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": uploads.MULTIPART_FORM}}
PROMPT_POLICY = Literal[PROMPT_POLICIES]  # type: ignore[valid-type]


def verification_answer(verdict, upload: uploads.Upload, video: dict, first_frame: str | None,
                        elapsed_s: float) -> dict:
    """`framemark verify --json`'s object for the upload, named by the client's file name (no server path in
    it), plus ``first_frame`` when asked for and what the service knows of the upload."""
    answer = uploads.scrub(verdict.to_dict(), upload)
    if first_frame is not None:
        answer["first_frame"] = first_frame
    answer["file"] = upload.filename
    if (answer.get("ledger") or {}).get("ledger"):
        answer["ledger"]["ledger"] = Path(answer["ledger"]["ledger"]).name
    answer.update(sha256=upload.sha256, size=upload.size, video=video, elapsed_s=elapsed_s)
    return answer


def generate_body_model(service: Service) -> type[BaseModel]:
    """The JSON body of POST /v1/generate, with the model's and this server's limits in its schema (so the OpenAPI
    document states them and clients, fuzzers included, see the real bounds)."""
    settings, model = service.settings, service.engine.model
    policy = (PROMPT_POLICY, Field("hash", description="how the prompt appears in the manifest: verbatim, as its "
                                                       "SHA-256, or not at all"))
    seed = (int, Field(0, ge=0, le=2**32 - 1, description="noise seed"))
    if model is None:  # no key, so no model: generation is off and every request is answered 503
        prompt = (str, Field(min_length=1, max_length=400, description="the prompt"))
        steps = (int | None, Field(None, ge=1, le=settings.max_generate_steps, description="sampler steps"))
        frames = (int | None, Field(None, ge=1, description="frame count (generation is off on this server)"))
    else:
        allowed, defaults, limits = service.generate_frames, model.defaults, model.limits
        prompt = (str, Field(min_length=1, max_length=400,
                             description=f"the prompt (at most {limits.max_prompt_tokens} tokens of the model's "
                                         f"tokenizer, end of text included; the embedded model's vocabulary: "
                                         f"docs/model-card.md)"))
        steps = (int, Field(min(defaults.steps, settings.max_generate_steps), ge=1, le=settings.max_generate_steps,
                            description="sampler steps"))
        frames = (Literal[allowed], Field(defaults.frames if defaults.frames in allowed else allowed[-1],
                                          description=f"frame count ({limits.frame_step}k+1)"))
    return create_model("GenerateBody", __config__=ConfigDict(extra="forbid"), prompt=prompt, seed=seed,
                        steps=steps, frames=frames, prompt_policy=policy)


def router(service: Service) -> APIRouter:
    """The verify and generate routes of ``service``'s app."""
    api = APIRouter()
    GenerateBody = generate_body_model(service)

    @api.post("/v1/verify", tags=["verify"], summary="Verify one uploaded video",
              openapi_extra={"requestBody": UPLOAD_BODY},
              responses=responses(400, 401, 403, 408, 413, 415, 422, 503), dependencies=[auth.VERIFY])
    async def verify(request: Request, first_frame: bool = Query(
            False, description="also return the first frame as a JPEG data URL (`first_frame`), for the page"),
            service: Service = Depends(services.of)):
        """`framemark verify --json`'s object for one file (C2PA state and claim summary, watermark evidence,
        ledger recovery, verdict, errors), plus `sha256`, `size`, `elapsed_s` and `video` (header facts).
        A file that sniffs as video but cannot be decoded at all is answered 422 `unreadable_video`."""
        started = time.perf_counter()
        upload, video = await service.accept_upload(request, allow_raw=True)
        try:
            verdict, frame = await service.engine.run(engines.verify_job, str(upload.path), first_frame)
        finally:
            service.dispose(upload)
        answer = verification_answer(verdict, upload, video, frame, round(time.perf_counter() - started, 3))
        request.state.verdict = verdict.verdict
        if not verdict.checked:
            raise ApiError("unreadable_video", "; ".join(answer["errors"] or ["the video cannot be read"]),
                           extra={"result": answer})
        return answer

    @api.post("/v1/generate", tags=["generate"], summary="Generate a signed, watermarked clip",
              response_class=Response, dependencies=[auth.GENERATE],
              responses={200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                               "description": "the MP4; X-Framemark-* headers name its payload, key and manifest"},
                         **responses(401, 403, 422, 503)})
    async def generate(request: Request, body: GenerateBody, service: Service = Depends(services.of)):
        """A clip from the embedded model (or the server's `--model`), watermarked with the server's key, signed
        with its C2PA credentials and recorded in its ledger: the MP4 comes back as the body."""
        # what the model cannot make is refused before it takes a place in the queue
        wanted = service.generation_request(prompt=body.prompt, seed=body.seed, steps=body.steps, frames=body.frames)
        out_dir = Path(tempfile.mkdtemp(prefix="generate-", dir=service.upload_dir))
        out = out_dir / "clip.mp4"
        try:
            clip = await service.engine.run(engines.generate_job, wanted, str(out), body.prompt_policy)
            data = await run_in_threadpool(out.read_bytes)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        request.state.verdict = "generated"
        return Response(data, media_type="video/mp4", headers=clip_headers(clip))

    return api


def clip_headers(clip) -> dict:
    """The X-Framemark-* headers that name a generated clip (an ``EmittedClip``) and its file name."""
    mark, c2pa, row = clip.watermark or {}, clip.c2pa or {}, clip.ledger or {}
    return {"X-Framemark-Payload": mark.get("payload", ""), "X-Framemark-Clip-Id": mark.get("clip_id", ""),
            "X-Framemark-Key-Id": mark.get("key_id", ""), "X-Framemark-Manifest": c2pa.get("manifest_label") or "",
            "X-Framemark-Ledger-Row": str(row.get("row", "")), "X-Framemark-Seconds": str(clip.seconds),
            "Content-Disposition": f'attachment; filename="framemark-{mark.get("clip_id", "clip")}.mp4"'}
