"""The HTTP front door: a FastAPI app over verify, generate and the ledger, plus one web page.

``create_app(settings)`` builds the app; the model loads in its lifespan (once per worker process). Routes:

* ``POST /v1/verify`` (scope ``verify``): a multipart upload (field ``file``) -> `framemark verify --json`'s object
  for that file, plus ``sha256``, ``size``, ``elapsed_s`` and the header facts (``video``);
* ``POST /v1/generate`` (scope ``generate``): JSON -> a signed, watermarked MP4, its ledger row written;
* the C2PA Soft Binding Resolution API (scope ``verify``): ``GET``/``POST /matches/byBinding``,
  ``POST /matches/byContent``, ``GET /manifests/{manifestId}``, ``GET /services/supportedAlgorithms``;
* ``GET /v1/health``, ``GET /v1/info``, ``GET /openapi.json``, ``GET /`` (the page) without a token.

Every error is ``{"code", "message"}`` JSON with a stable code; unexpected exceptions are logged with their
traceback server-side and answered 500 ``internal_error`` with the request id, never with the traceback.
docs/serve.md is the reference.
"""

import asyncio
import json
import logging
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from framemark import __version__
from framemark.detect import audit
from framemark.errors import FramemarkError, GenerationError
from framemark.generator import pipeline as gen_pipeline

from . import engine as engines
from . import resolution, uploads
from .settings import Settings
from .tokens import TokenStore

log = logging.getLogger("framemark.serve")
access_log = logging.getLogger("framemark.serve.access")

GENERATE_FRAMES = (5, 9, 13, 17, 21, 25, 29, 33)  # 4k+1 in the generator's range (pipeline.FRAMES_RANGE)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


# ------------------------------------------------------------------------------------------------ errors

class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.extra = headers or {}, extra or {}


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable error code")
    message: str = Field(description="what went wrong, for a person")


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status, headers=headers)


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 413: "upload_too_large",
                 415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests",
                 503: "unavailable"}


def _responses(*statuses: int) -> dict:
    return {s: {"model": ErrorBody, "description": _STATUS_CODES.get(s, "error").replace("_", " ")}
            for s in statuses}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


# ------------------------------------------------------------------------------------------------ access log

class AccessLog:
    """Pure ASGI middleware: one JSON line per request (method, path, status, bytes in/out, elapsed, verdict,
    error code, request id), never a query string, header, token or file content. It also turns any exception
    that escapes a route into the 500 JSON answer, so the traceback goes to the log only."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        info = {"status": None, "bytes_in": 0, "bytes_out": 0}

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                info["bytes_in"] += len(message.get("body", b""))
            return message

        async def tagging_send(message):
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
                message = {**message, "headers": list(message.get("headers", [])) + [
                    (b"x-request-id", request_id.encode())]}
            elif message["type"] == "http.response.body":
                info["bytes_out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, tagging_send)
        except Exception:  # noqa: BLE001 - our bug: logged with its traceback, answered without it
            log.exception("unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"),
                          request_id)
            state["code"] = "internal_error"
            if info["status"] is None:
                response = error_response(500, "internal_error",
                                          f"internal error; the server log has the details (request {request_id})")
                await response(scope, receive, tagging_send)
            else:
                info["status"] = info["status"] or 500
        finally:
            line = {"event": "request", "request_id": request_id, "method": scope.get("method"),
                    "path": scope.get("path"), "status": info["status"], "bytes_in": info["bytes_in"],
                    "bytes_out": info["bytes_out"], "elapsed_s": round(time.perf_counter() - started, 4),
                    "verdict": state.get("verdict"), "code": state.get("code")}
            access_log.info(json.dumps(line))


# ------------------------------------------------------------------------------------------------ models

class BindingQuery(BaseModel):
    alg: str = Field(description=f"soft-binding algorithm: {resolution.SOFT_BINDING_ALG}")
    value: str = Field(description="base64 of the 8 watermark payload bytes, as the soft-binding assertion holds "
                                   "them")


class Match(BaseModel):
    manifestId: str
    similarityScore: int = Field(ge=0, le=100)


class QueryResult(BaseModel):
    matches: list[Match]


_UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "the video"}}}}}}
_CONTENT_BODY = {"required": True, "description": "The asset to match, as the raw request body (or multipart, "
                                                   "field file).",
                 "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                             "multipart/form-data": _UPLOAD_BODY["content"]["multipart/form-data"]}}


def generate_body_model(settings: Settings):
    """The JSON body of POST /v1/generate, with this server's limits in its schema (so the OpenAPI document
    states them and clients, fuzzers included, see the real bounds)."""
    allowed = tuple(f for f in GENERATE_FRAMES if f <= settings.max_generate_frames) or (GENERATE_FRAMES[0],)
    default_frames = 17 if 17 in allowed else allowed[-1]
    default_steps = min(20, settings.max_generate_steps)

    class GenerateBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        prompt: str = Field(min_length=1, max_length=400,
                            description="the prompt (at most 40 words; the model's vocabulary: docs/model-card.md)")
        seed: int = Field(0, ge=0, le=2**32 - 1, description="noise seed")
        steps: int = Field(default_steps, ge=1, le=settings.max_generate_steps, description="sampler steps")
        frames: Literal[allowed] = Field(default_frames, description="frame count (4k+1)")  # type: ignore[valid-type]
        prompt_policy: Literal["full", "hash", "omit"] = Field(
            "hash", description="how the prompt appears in the manifest: verbatim, as its SHA-256, or not at all")

    return GenerateBody


# ------------------------------------------------------------------------------------------------ the app

def create_app(settings: Settings | None = None) -> FastAPI:
    from framemark import ledger as ledgers

    settings = settings or Settings()
    # every path resolved now, against $FRAMEMARK_HOME as it is when the app is made
    settings = settings.with_(tokens_file=str(settings.tokens_path()),
                              ledger_path=settings.ledger_path or str(ledgers.default_path()))
    engine = engines.Engine(settings)
    tokens = TokenStore(settings.tokens_path())
    index = resolution.LedgerIndex(settings.ledger_path)
    limits = audit.Limits(max_bytes=settings.max_upload_bytes, max_duration_s=settings.max_duration_s,
                          max_width=settings.max_width, max_height=settings.max_height,
                          max_frames=settings.max_frames)
    started_at = time.time()
    upload_root: dict = {}
    GenerateBody = generate_body_model(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        base = Path(settings.upload_dir) if settings.upload_dir else None
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.TemporaryDirectory(prefix="framemark-serve-", dir=base)
        upload_root["dir"] = app.state.upload_dir = Path(tmp.name)
        state = await asyncio.get_running_loop().run_in_executor(None, engine.load)
        for note in state.notes:
            log.warning(note)
        app.state.info = _info(settings, state, tokens)
        log.info(json.dumps({"event": "ready", "model": state.model, "auth": settings.auth,
                             "queue_limit": engine.limit}))
        try:
            yield
        finally:
            engine.close()
            index.close()
            tmp.cleanup()

    app = FastAPI(
        title="framemark", version=__version__, lifespan=lifespan,
        description="Verify uploaded videos (C2PA manifest, latent watermark, ledger recovery), generate signed "
                    "clips, and resolve framemark watermarks to their manifests with the C2PA Soft Binding "
                    "Resolution API. Errors are JSON: {code, message}. Reference: docs/serve.md.",
        docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None)
    app.state.engine, app.state.settings, app.state.tokens = engine, settings, tokens
    app.add_middleware(AccessLog)

    # -------------------------------------------------------------------------------------------- errors
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        request.state.code = exc.code
        return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(uploads.UploadRejected)
    async def _rejected(request: Request, exc: uploads.UploadRejected):
        request.state.code = exc.code
        headers = dict(exc.headers)
        if exc.status == 413:
            headers.setdefault("Connection", "close")  # the rest of the body is not read
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        request.state.code = code
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404:
            message = f"no such endpoint: {request.url.path} (the API is described at /openapi.json)"
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        request.state.code = "invalid_request"
        return error_response(422, "invalid_request", _validation_message(exc))

    # -------------------------------------------------------------------------------------------- auth
    bearer = HTTPBearer(auto_error=False, description="a token from `framemark token add`")

    def require(scope: str):
        async def check(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)):
            if not settings.auth:
                return None
            if cred is None or cred.scheme.lower() != "bearer":
                raise ApiError(401, "missing_token", "this endpoint needs a bearer token (Authorization: Bearer "
                                                     "fmk_...)", headers={"WWW-Authenticate": "Bearer"})
            record = await run_in_threadpool(tokens.authenticate, cred.credentials)
            if record is None:
                raise ApiError(401, "invalid_token", "the token is not valid (unknown or revoked)",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            if scope not in record.scopes:
                raise ApiError(403, "insufficient_scope", f"the token lacks the {scope!r} scope",
                               headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})
            request.state.token_id = record.id
            return record
        return check

    verify_scope, generate_scope = Depends(require("verify")), Depends(require("generate"))

    # -------------------------------------------------------------------------------------------- helpers
    def busy(exc: engines.Busy) -> ApiError:
        return ApiError(503, "queue_full", str(exc), headers={"Retry-After": str(exc.retry_after)},
                        extra={"retry_after_s": exc.retry_after})

    async def accept_upload(request: Request, *, allow_raw: bool) -> tuple[uploads.Upload, dict]:
        """Room in the queue first (a full queue answers before the body is read), then the streamed upload,
        then sniffing, probing and limits."""
        try:
            engine.check_room()
        except engines.Busy as exc:
            raise busy(exc) from None
        upload = await uploads.receive(request, upload_root["dir"], settings.max_upload_bytes, allow_raw=allow_raw)
        try:
            video = await run_in_threadpool(uploads.inspect, upload, limits)
        except BaseException:
            uploads.dispose(upload, None)
            raise
        return upload, video

    async def run_job(job, *args):
        try:
            return await engine.run(job, *args)
        except engines.Busy as exc:
            raise busy(exc) from None
        except engines.Unavailable as exc:
            raise ApiError(503, "not_configured", str(exc)) from None
        except GenerationError as exc:  # a request the model cannot serve
            raise ApiError(422, "invalid_request", str(exc)) from None
        except FramemarkError as exc:  # ours, on the server's side (signing, ledger): logged, not echoed
            log.error("%s failed: %s", getattr(job, "__name__", "job"), exc)
            raise ApiError(500, "job_failed", "the server could not complete this request; its log says why") \
                from None

    # -------------------------------------------------------------------------------------------- page
    @app.get("/", include_in_schema=False)
    async def page():
        return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=_page_headers())

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        types = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
        if name not in types:
            raise ApiError(404, "not_found", f"no such file: /static/{name}")
        return Response(_static(name), media_type=types[name], headers=_page_headers())

    # -------------------------------------------------------------------------------------------- service
    @app.get("/v1/health", tags=["service"], summary="Liveness and queue state (no token needed)")
    async def health():
        return {"status": "ok", "version": __version__, "model_loaded": engine.state is not None
                and engine.state.pipe is not None, "queue": {"pending": engine.pending, "limit": engine.limit},
                "jobs_done": engine.jobs_done, "uptime_s": round(time.time() - started_at, 1)}

    @app.get("/v1/info", tags=["service"], summary="Model, keys, trust anchors and limits (no token needed)")
    async def info(request: Request):
        return getattr(request.app.state, "info", None) or _info(settings, engine.state, tokens)

    # -------------------------------------------------------------------------------------------- verify
    @app.post("/v1/verify", tags=["verify"], summary="Verify one uploaded video",
              openapi_extra={"requestBody": _UPLOAD_BODY},
              responses=_responses(400, 401, 403, 413, 415, 422, 503), dependencies=[verify_scope])
    async def verify(request: Request, first_frame: bool = Query(
            False, description="also return the first frame as a JPEG data URL (`first_frame`), for the page")):
        """`framemark verify --json`'s object for one file (C2PA state and claim summary, watermark evidence,
        ledger recovery, verdict, errors), plus `sha256`, `size`, `elapsed_s` and `video` (header facts).
        A file that sniffs as video but cannot be decoded at all is answered 422 `unreadable_video`."""
        started = time.perf_counter()
        upload, video = await accept_upload(request, allow_raw=True)
        try:
            result = await run_job(engines.verify_job, str(upload.path), first_frame)
        finally:
            uploads.dispose(upload, settings.keep_uploads)
        result = uploads.scrub(result, upload)
        result["file"] = upload.filename
        if (result.get("ledger") or {}).get("ledger"):
            result["ledger"]["ledger"] = Path(result["ledger"]["ledger"]).name
        result.update(sha256=upload.sha256, size=upload.size, video=video,
                      elapsed_s=round(time.perf_counter() - started, 3))
        request.state.verdict = result.get("verdict")
        if result.get("verdict") is None:
            raise ApiError(422, "unreadable_video", "; ".join(result.get("errors") or ["the video cannot be read"]),
                           extra={"result": result})
        return result

    # -------------------------------------------------------------------------------------------- generate
    @app.post("/v1/generate", tags=["generate"], summary="Generate a signed, watermarked clip",
              response_class=Response, dependencies=[generate_scope],
              responses={200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                               "description": "the MP4; X-Framemark-* headers name its payload, key and manifest"},
                         **_responses(401, 403, 422, 503)})
    async def generate(request: Request, body: GenerateBody):
        """A clip from the embedded model (or the server's `--model`), watermarked with the server's key, signed
        with its C2PA credentials and recorded in its ledger: the MP4 comes back as the body."""
        try:  # what the model cannot make is refused before it takes a place in the queue
            gen_pipeline.validate(gen_pipeline.GenerationRequest(prompt=body.prompt, seed=body.seed,
                                                                 steps=body.steps, frames=body.frames))
        except GenerationError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        out_dir = Path(tempfile.mkdtemp(prefix="generate-", dir=upload_root["dir"]))
        out = out_dir / "clip.mp4"
        try:
            clip = await run_job(engines.generate_job, body.model_dump(), str(out))
        except BaseException:
            _remove_tree(out_dir)
            raise
        data = await run_in_threadpool(out.read_bytes)
        _remove_tree(out_dir)
        request.state.verdict = "generated"
        mark, c2pa, row = clip.get("watermark") or {}, clip.get("c2pa") or {}, clip.get("ledger") or {}
        headers = {"X-Framemark-Payload": mark.get("payload", ""), "X-Framemark-Clip-Id": mark.get("clip_id", ""),
                   "X-Framemark-Key-Id": mark.get("key_id", ""),
                   "X-Framemark-Manifest": c2pa.get("manifest_label") or "",
                   "X-Framemark-Ledger-Row": str(row.get("row", "")), "X-Framemark-Seconds": str(clip["seconds"]),
                   "Content-Disposition": f'attachment; filename="framemark-{mark.get("clip_id", "clip")}.mp4"'}
        return Response(data, media_type="video/mp4", headers=headers)

    # -------------------------------------------------------------------------------------------- resolution
    max_results_q = Query(10, ge=1, le=100, alias="maxResults",
                          description="the maximum number of manifest identifiers to return")

    @app.get("/matches/byBinding", tags=["C2PA soft binding resolution"], response_model=QueryResult,
             summary="Manifest ids for a soft binding value", dependencies=[verify_scope],
             responses=_responses(400, 401, 403))
    async def by_binding(alg: str = Query(description=f"soft-binding algorithm ({resolution.SOFT_BINDING_ALG})"),
                         value: str = Query(description="base64 of the 8 payload bytes (as the assertion holds them)"),
                         max_results: int = max_results_q):
        return await _resolve_binding(alg, value, max_results)

    @app.post("/matches/byBinding", tags=["C2PA soft binding resolution"], response_model=QueryResult,
              summary="Manifest ids for a soft binding value (JSON body)", dependencies=[verify_scope],
              responses=_responses(400, 401, 403))
    async def by_large_binding(query: BindingQuery, max_results: int = max_results_q):
        return await _resolve_binding(query.alg, query.value, max_results)

    async def _resolve_binding(alg: str, value: str, max_results: int) -> dict:
        try:
            resolution.check_alg(alg, required=True)
            payload = resolution.decode_value(value)
            entries = await run_in_threadpool(index.by_payload, payload)
        except resolution.ResolutionError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        return resolution.matches(entries, resolution.EXACT_SCORE, max_results)

    @app.post("/matches/byContent", tags=["C2PA soft binding resolution"], response_model=QueryResult,
              summary="Manifest ids that a clip's watermark resolves to", dependencies=[verify_scope],
              openapi_extra={"requestBody": _CONTENT_BODY}, responses=_responses(400, 401, 403, 413, 415, 422, 503))
    async def by_content(request: Request, alg: str | None = Query(None, description="soft-binding algorithm"),
                         max_results: int = max_results_q,
                         hint_alg: str | None = Query(None, alias="hintAlg", description="ignored"),
                         hint_value: str | None = Query(None, alias="hintValue", description="ignored")):
        """Reads the watermark of the uploaded clip with the server's key and returns the manifests the ledger
        holds for its payload. `similarityScore` is 10 per decade of the detection p-value, capped at 100."""
        try:
            resolution.check_alg(alg, required=False)
        except resolution.ResolutionError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        upload, _ = await accept_upload(request, allow_raw=True)
        try:
            found = await run_job(engines.watermark_job, str(upload.path))
        finally:
            uploads.dispose(upload, settings.keep_uploads)
        mark = found.get("watermark") or {}
        if found.get("verdict") is None:
            raise ApiError(422, "unreadable_video", uploads.scrub_text("; ".join(found.get("errors") or []), upload)
                           or "the video cannot be read")
        if not (mark.get("detected") and mark.get("payload")):
            request.state.verdict = "no-match"
            return {"matches": []}
        try:
            entries = await run_in_threadpool(index.by_payload, mark["payload"], mark.get("key_id"))
        except resolution.ResolutionError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        request.state.verdict = "match" if entries else "no-match"
        return resolution.matches(entries, resolution.content_score(mark.get("p_value")), max_results)

    @app.get("/manifests/{manifestId}", tags=["C2PA soft binding resolution"], dependencies=[verify_scope],
             summary="The C2PA manifest store of a manifest id", response_class=Response,
             responses={200: {"content": {"application/c2pa": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "the manifest store (JUMBF) as signed at generation"},
                        **_responses(400, 401, 403, 404)})
    async def manifest(manifestId: str, return_active: bool = Query(False, alias="returnActiveManifest")):
        """The manifest store the clip was signed with. framemark's stores hold one manifest, the active one, so
        `returnActiveManifest=true` returns the same bytes."""
        try:
            entry = await run_in_threadpool(index.by_manifest_id, manifestId)
        except resolution.ResolutionError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        if entry is None:
            raise ApiError(404, "manifest_not_found", "no manifest with this id in the ledger")
        return Response(entry.manifest_store, media_type="application/c2pa",
                        headers={"Content-Disposition": 'attachment; filename="manifest.c2pa"'})

    @app.get("/services/supportedAlgorithms", tags=["C2PA soft binding resolution"],
             summary="Soft-binding algorithms this service resolves")
    async def supported():
        return {"watermarks": [{"alg": resolution.SOFT_BINDING_ALG}], "fingerprints": []}

    return app


# ------------------------------------------------------------------------------------------------ helpers

def _static(name: str) -> bytes:
    return resources.files("framemark.serve").joinpath("static", name).read_bytes()


def _page_headers() -> dict:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _info(settings: Settings, state, tokens: TokenStore) -> dict:
    """GET /v1/info: what a client may know about this service (never a secret)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    anchors = []
    for pem in (state.anchors if state else ()):
        try:
            for cert in x509.load_pem_x509_certificates(pem):
                anchors.append({"subject": cert.subject.rfc4514_string(),
                                "sha256": cert.fingerprint(hashes.SHA256()).hex()})
        except ValueError:
            continue
    signer = None
    if state is not None and state.signer is not None:
        try:
            leaf = x509.load_pem_x509_certificates(state.signer.certificate_chain_pem)[0]
            signer = {"subject": leaf.subject.rfc4514_string(), "sha256": leaf.fingerprint(hashes.SHA256()).hex(),
                      "alg": state.signer.alg}
        except (ValueError, AttributeError, IndexError):
            signer = None
    return {
        "service": "framemark", "version": __version__, "api": "v1",
        "model": state.model if state else None,
        "watermark_key_ids": [state.key.key_id] if state is not None and state.key is not None else [],
        "soft_binding_alg": resolution.SOFT_BINDING_ALG,
        "signer": signer,
        "trust_anchors": anchors,
        "limits": settings.limits_dict(),
        "generate": {"enabled": bool(state and state.key is not None and state.signer is not None),
                     "max_steps": settings.max_generate_steps,
                     "frames": [f for f in GENERATE_FRAMES if f <= settings.max_generate_frames]},
        "auth": {"required": settings.auth, "scopes": ["verify", "generate"]},
        "verification": {"fpr": settings.fpr, "inversion_steps": settings.steps},
    }
