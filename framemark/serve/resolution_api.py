"""The routes of the C2PA Soft Binding Resolution API (scope ``verify``): ``GET``/``POST /matches/byBinding``,
``POST /matches/byContent``, ``GET /manifests/{manifestId}``, ``GET /services/supportedAlgorithms``.

Lookups answer from a thread pool through the app's :class:`~.resolution.LedgerIndex`; byContent reads the
upload's watermark as a job on the model thread (``engine.watermark_job``). docs/serve.md says where the shapes
come from and where they differ from the specification.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from framemark.soft_binding import SOFT_BINDING_ALG
from framemark.watermark import Payload

from . import auth, engine as engines
from . import service as services
from . import uploads
from .errors import ApiError, responses
from .resolution import EXACT_SCORE, binding_payload, check_alg, content_score, matches
from .service import Service

TAG = "C2PA soft binding resolution"
CONTENT_BODY = {"required": True, "description": "The asset to match, as the raw request body (or multipart, "
                                                 "field file).",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                            "multipart/form-data": uploads.MULTIPART_FORM}}


class BindingQuery(BaseModel):
    alg: str = Field(description=f"soft-binding algorithm: {SOFT_BINDING_ALG}")
    value: str = Field(description="base64 of the 8 watermark payload bytes, as the soft-binding assertion holds "
                                   "them")


class Match(BaseModel):
    manifestId: str
    similarityScore: int = Field(ge=0, le=100)


class QueryResult(BaseModel):
    matches: list[Match]


router = APIRouter()
max_results_q = Query(10, ge=1, le=100, alias="maxResults",
                      description="the maximum number of manifest identifiers to return")


async def resolve_binding(service: Service, alg: str, value: str, max_results: int) -> dict:
    check_alg(alg, required=True)
    entries = await run_in_threadpool(service.ledger.by_payload, binding_payload(value))
    return matches(entries, EXACT_SCORE, max_results)


@router.get("/matches/byBinding", tags=[TAG], response_model=QueryResult,
            summary="Manifest ids for a soft binding value", dependencies=[auth.VERIFY],
            responses=responses(400, 401, 403))
async def by_binding(alg: str = Query(description=f"soft-binding algorithm ({SOFT_BINDING_ALG})"),
                     value: str = Query(description="base64 of the 8 payload bytes (as the assertion holds them)"),
                     max_results: int = max_results_q, service: Service = Depends(services.of)):
    return await resolve_binding(service, alg, value, max_results)


@router.post("/matches/byBinding", tags=[TAG], response_model=QueryResult,
             summary="Manifest ids for a soft binding value (JSON body)", dependencies=[auth.VERIFY],
             responses=responses(400, 401, 403))
async def by_large_binding(query: BindingQuery, max_results: int = max_results_q,
                           service: Service = Depends(services.of)):
    return await resolve_binding(service, query.alg, query.value, max_results)


@router.post("/matches/byContent", tags=[TAG], response_model=QueryResult,
             summary="Manifest ids that a clip's watermark resolves to", dependencies=[auth.VERIFY],
             openapi_extra={"requestBody": CONTENT_BODY}, responses=responses(400, 401, 403, 408, 413, 415, 422, 503))
async def by_content(request: Request, alg: str | None = Query(None, description="soft-binding algorithm"),
                     max_results: int = max_results_q,
                     hint_alg: str | None = Query(None, alias="hintAlg", description="ignored"),
                     hint_value: str | None = Query(None, alias="hintValue", description="ignored"),
                     service: Service = Depends(services.of)):
    """Reads the watermark of the uploaded clip with the server's key and returns the manifests the ledger
    holds for its payload. `similarityScore` is 10 per decade of the detection p-value, capped at 100."""
    check_alg(alg, required=False)
    upload, _ = await service.accept_upload(request, allow_raw=True)
    try:
        verdict = await service.engine.run(engines.watermark_job, str(upload.path))
    finally:
        service.dispose(upload)
    if not verdict.checked:
        raise ApiError("unreadable_video", uploads.scrub_text("; ".join(verdict.errors), upload)
                       or "the video cannot be read")
    mark = verdict.watermark
    if mark is None or not (mark.detected and mark.payload):
        request.state.verdict = "no-match"
        return {"matches": []}
    entries = await run_in_threadpool(service.ledger.by_payload, Payload.from_hex(mark.payload), mark.key_id)
    request.state.verdict = "match" if entries else "no-match"
    return matches(entries, content_score(mark.p_value), max_results)


@router.get("/manifests/{manifestId}", tags=[TAG], dependencies=[auth.VERIFY],
            summary="The C2PA manifest store of a manifest id", response_class=Response,
            responses={200: {"content": {"application/c2pa": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the manifest store (JUMBF) as signed at generation"},
                       **responses(400, 401, 403, 404)})
async def manifest(manifestId: str, return_active: bool = Query(False, alias="returnActiveManifest"),
                   service: Service = Depends(services.of)):
    """The manifest store the clip was signed with. framemark's stores hold one manifest, the active one, so
    `returnActiveManifest=true` returns the same bytes."""
    entry = await run_in_threadpool(service.ledger.by_manifest_id, manifestId)
    if entry is None:
        raise ApiError("manifest_not_found", "no manifest with this id in the ledger")
    return Response(entry.manifest_store, media_type="application/c2pa",
                    headers={"Content-Disposition": 'attachment; filename="manifest.c2pa"'})


@router.get("/services/supportedAlgorithms", tags=[TAG], summary="Soft-binding algorithms this service resolves")
async def supported():
    return {"watermarks": [{"alg": SOFT_BINDING_ALG}], "fingerprints": []}
