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

import fcntl
import json
import logging
import os
import shutil
import stat
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


UPLOAD_DIR_PREFIX = "framemark-serve-"


def remove_leftover_upload_dirs(base: Path) -> list[Path]:
    """Remove the upload folders that earlier processes left in ``base`` (killed before their clean-up: their
    uploads would stay on disk forever). A worker holds an exclusive lock (``flock``) on its folder for its life
    and the kernel drops it when the process dies, so a folder whose lock can be taken is nobody's; the other
    workers of this service, starting alongside, keep theirs. Only this user's folders are touched."""
    removed = []
    for folder in sorted(base.glob(UPLOAD_DIR_PREFIX + "*")):
        try:
            st = folder.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live worker's
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def own_upload_dir(base: Path | None) -> tuple[Path, int]:
    """A new upload folder in ``base`` (None: the system temp folder) and the descriptor that holds its lock:
    keep it open for as long as the folder is in use. The folder is made under a hidden name the clean-up does
    not look at and renamed once locked, so no other worker ever sees it unlocked."""
    making = Path(tempfile.mkdtemp(prefix="." + UPLOAD_DIR_PREFIX, dir=base))
    fd = os.open(making, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    folder = making.with_name(making.name[1:])
    os.rename(making, folder)
    return folder, fd


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The upload folder for the app's life (uploads that earlier, killed processes left behind removed first);
    the runtime's notes and a ready line in the log; everything closed at the end."""
    service: Service = app.state.service
    base = Path(service.settings.upload_dir) if service.settings.upload_dir else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    for folder in remove_leftover_upload_dirs(base or Path(tempfile.gettempdir())):
        log.warning(json.dumps({"event": "removed_leftover_uploads", "folder": str(folder)}))
    upload_dir, owner_lock = own_upload_dir(base)
    service.upload_dir = upload_dir
    for note in service.engine.runtime.resolved.notes:
        log.warning(note)
    model = service.engine.model
    log.info(json.dumps({"event": "ready", "model": model.identity.to_dict() if model is not None else None,
                         "auth": service.settings.auth, "queue_limit": service.engine.limit}))
    try:
        yield
    finally:
        service.close()
        shutil.rmtree(upload_dir, ignore_errors=True)
        os.close(owner_lock)


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
