"""Every error the service answers, in one place: the stable codes and their HTTP statuses, and how each exception
a route can raise becomes a ``{"code", "message"}`` JSON answer.

Routes, uploads and the resolution lookups raise :class:`ApiError` with a code from :data:`CODES` (its status
comes from there, so a code always means the same status); the engine's :class:`~.engine.Busy` and
:class:`~.engine.Unavailable`, the model's GenerationError, any other FramemarkError (ours, on the server's
side: logged, not echoed), FastAPI's validation errors and Starlette's HTTP errors are translated by
:func:`install`'s handlers. What escapes all of them is our bug: the access log middleware answers it 500
``internal_error`` (``access_log.py``). docs/serve.md's "Errors" table lists the same codes.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from framemark.errors import FramemarkError, GenerationError

from .engine import Busy, Unavailable

log = logging.getLogger("framemark.serve")

# code -> HTTP status, for every code a route or an upload check answers with
CODES: dict[str, int] = {
    "bad_request": 400, "empty_upload": 400, "missing_file": 400, "bad_multipart": 400, "incomplete_upload": 400,
    "bad_value": 400, "missing_alg": 400, "unsupported_alg": 400,
    "missing_token": 401, "invalid_token": 401,
    "insufficient_scope": 403,
    "not_found": 404, "manifest_not_found": 404,
    "upload_timeout": 408,
    "upload_too_large": 413,
    "not_a_video": 415, "not_multipart": 415,
    "unreadable_video": 422, "duration_over_limit": 422, "resolution_over_limit": 422, "invalid_request": 422,
    "internal_error": 500, "job_failed": 500, "ledger_unavailable": 500,
    "queue_full": 503, "not_configured": 503,
}
# HTTP status -> code, for the errors the framework itself raises (no route, wrong method, ...); also what the
# OpenAPI document says each status means
STATUS_CODES: dict[int, str] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 408: "upload_timeout", 413: "upload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
    429: "too_many_requests", 503: "unavailable"}


class ApiError(Exception):
    """A request the service refuses: a stable code (its status from :data:`CODES`), a message for a person,
    optional headers and extra fields of the JSON body."""

    def __init__(self, code: str, message: str, *, headers: dict | None = None, extra: dict | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.status = status if status is not None else CODES[code]
        self.code, self.message = code, message
        self.headers, self.extra = dict(headers or {}), dict(extra or {})


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable error code")
    message: str = Field(description="what went wrong, for a person")


def responses(*statuses: int) -> dict:
    """The error answers of an operation, for its OpenAPI description."""
    return {s: {"model": ErrorBody, "description": STATUS_CODES.get(s, "error").replace("_", " ")}
            for s in statuses}


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def as_api_error(request: Request, exc: Exception) -> ApiError:
    """The answer to an exception a route raised."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Busy):
        return ApiError("queue_full", str(exc), headers={"Retry-After": str(exc.retry_after)},
                        extra={"retry_after_s": exc.retry_after})
    if isinstance(exc, Unavailable):
        return ApiError("not_configured", str(exc))
    if isinstance(exc, GenerationError):  # a request the model cannot serve
        return ApiError("invalid_request", str(exc))
    if isinstance(exc, RequestValidationError):
        return ApiError("invalid_request", validation_message(exc))
    if isinstance(exc, StarletteHTTPException):
        code = STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404:
            message = f"no such endpoint: {request.url.path} (the API is described at /openapi.json)"
        return ApiError(code, message, headers=getattr(exc, "headers", None), status=exc.status_code)
    if isinstance(exc, FramemarkError):  # ours, on the server's side (signing, ledger): logged, not echoed
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return ApiError("job_failed", "the server could not complete this request; its log says why")
    raise exc


def internal_error(request_id: str) -> JSONResponse:
    """The answer to our own bug (an exception no handler knows): the request id, never the traceback."""
    return error_response(CODES["internal_error"], "internal_error",
                          f"internal error; the server log has the details (request {request_id})")


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    error = as_api_error(request, exc)
    request.state.code = error.code
    headers = dict(error.headers)
    if error.status in (408, 413):
        headers.setdefault("Connection", "close")  # the rest of the body is not read
    return error_response(error.status, error.code, error.message, headers or None, **error.extra)


def install(app: FastAPI) -> None:
    """Answer every exception class above with :func:`as_api_error`'s JSON."""
    for cls in (ApiError, Busy, Unavailable, FramemarkError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(cls, _answer)
