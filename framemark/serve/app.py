"""The HTTP front door: a FastAPI app over verify, generate and the ledger, plus one web page.

``create_app(settings)`` loads the worker's runtime on its model thread (``engine.py``), then assembles the app
from parts that each have one job:

* ``service_api.py``: ``GET /`` (the page), ``/static/*``, ``GET /v1/health``, ``GET /v1/info`` (no token);
* ``verify_api.py``: ``POST /v1/verify`` (scope ``verify``: an upload -> `framemark verify --json`'s object plus
  ``sha256``, ``size``, ``elapsed_s`` and the header facts ``video``) and ``POST /v1/generate`` (scope
  ``generate``: JSON -> a signed, watermarked MP4, its ledger row written);
* ``resolution_api.py``: the C2PA Soft Binding Resolution API (scope ``verify``);
* ``auth.py`` the bearer tokens, ``errors.py`` every error code and answer, ``access_log.py`` one JSON line per
  request, ``service.py`` what the routes share (:class:`~.service.Service`, at ``app.state.service``).

Every error is ``{"code", "message"}`` JSON with a stable code; unexpected exceptions are logged with their
traceback server-side and answered 500 ``internal_error`` with the request id, never with the traceback.
docs/serve.md is the reference.
"""

import json
import logging
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from framemark import __version__

from . import errors, resolution_api, service_api, verify_api
from .access_log import AccessLog
from .engine import Engine
from .resolution import LedgerIndex
from .service import Service
from .settings import Settings
from .tokens import TokenStore

log = logging.getLogger("framemark.serve")

DESCRIPTION = ("Verify uploaded videos (C2PA manifest, latent watermark, ledger recovery), generate signed clips, "
               "and resolve framemark watermarks to their manifests with the C2PA Soft Binding Resolution API. "
               "Errors are JSON: {code, message}. Reference: docs/serve.md.")


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The upload folder for the app's life; the runtime's notes and a ready line in the log; everything closed
    at the end."""
    service: Service = app.state.service
    base = Path(service.settings.upload_dir) if service.settings.upload_dir else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory(prefix="framemark-serve-", dir=base)
    service.upload_dir = Path(tmp.name)
    for note in service.engine.runtime.resolved.notes:
        log.warning(note)
    model = service.engine.model
    log.info(json.dumps({"event": "ready", "model": model.identity.to_dict() if model is not None else None,
                         "auth": service.settings.auth, "queue_limit": service.engine.limit}))
    try:
        yield
    finally:
        service.close()
        tmp.cleanup()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app of one worker process. Loads the runtime now (blocking: the generation schema states the model's
    limits); raises FramemarkError, in words, for unusable keys, model or credentials."""
    settings = settings or Settings()
    # the tokens file resolved now, against $FRAMEMARK_HOME as it is when the app is made (as the runtime is)
    settings = settings.with_(tokens_file=str(settings.tokens_path()))
    engine = Engine(settings)
    try:
        runtime = engine.load()
    except BaseException:
        engine.close()
        raise
    service = Service(settings=settings, engine=engine, tokens=TokenStore(settings.tokens_path()),
                      ledger=LedgerIndex(runtime.resolved.ledger_path))

    app = FastAPI(title="framemark", version=__version__, lifespan=lifespan, description=DESCRIPTION,
                  docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None)
    app.state.service = service
    app.add_middleware(AccessLog)
    errors.install(app)
    app.include_router(service_api.router)
    app.include_router(verify_api.router(service))
    app.include_router(resolution_api.router)
    return app
