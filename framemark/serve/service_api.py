"""The routes about the service itself, none of which needs a token: the web page and its two assets (from the
package's ``static/``, under a strict Content-Security-Policy), ``GET /v1/health`` and ``GET /v1/info``."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from . import service as services
from .errors import ApiError
from .service import Service

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache"}
ASSET_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}

router = APIRouter()


def _static(name: str) -> bytes:
    return resources.files("framemark.serve").joinpath("static", name).read_bytes()


@router.get("/", include_in_schema=False)
async def page():
    return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str):
    if name not in ASSET_TYPES:
        raise ApiError("not_found", f"no such file: /static/{name}")
    return Response(_static(name), media_type=ASSET_TYPES[name], headers=PAGE_HEADERS)


@router.get("/v1/health", tags=["service"], summary="Liveness and queue state (no token needed)")
async def health(service: Service = Depends(services.of)):
    return service.health()


@router.get("/v1/info", tags=["service"], summary="Model, keys, trust anchors and limits (no token needed)")
async def info(service: Service = Depends(services.of)):
    return service.info
