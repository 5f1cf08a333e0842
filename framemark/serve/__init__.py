"""`framemark serve`: the HTTP API (verify, generate, C2PA soft-binding resolution) and its web page.

``create_app(settings)`` (``framemark.serve.app``) is the ASGI app; :func:`run` serves it with uvicorn, one
runtime (key, model, classifier, signer: ``framemark.runtime``) per worker process. docs/serve.md explains
deployment, the API and the page.
"""

from __future__ import annotations

import os
from pathlib import Path

from framemark.errors import FramemarkError

from .settings import ENV_VAR, Settings, is_loopback


class ServeError(FramemarkError):
    """The service cannot start as configured (said in words by the CLI)."""


def create_app(settings: Settings | None = None):
    from .app import create_app as _create

    return _create(settings)


def app_from_env():
    """uvicorn's factory in each worker process: the settings travel in $FRAMEMARK_SERVE_SETTINGS."""
    from .app import create_app as _create

    return _create(Settings.from_env())


def preflight(settings: Settings) -> list[str]:
    """Check, before any worker starts, what would otherwise make every worker fail: the serve-only rules (tokens,
    --no-auth on loopback only, the keep-uploads folder), then the runtime each worker will load, resolved as it
    will be (``framemark.runtime.resolve``: key, trust anchors, signer, model and ledger paths). Returns notes
    to print; raises FramemarkError in words."""
    from framemark.runtime import resolve

    from . import tokens

    if not settings.auth and not is_loopback(settings.host):
        raise ServeError(f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1, localhost), not "
                         f"{settings.host}: tokens protect a service that others can reach")
    if settings.auth:
        path = settings.tokens_path()
        if not tokens.read_records(path):
            raise ServeError(f"no tokens in {path}: create one with `framemark token add --scope verify` (or serve "
                             f"on loopback with --no-auth)")
    resolved = resolve(settings.runtime_options(), "serve")
    if settings.keep_uploads:
        Path(settings.keep_uploads).mkdir(parents=True, exist_ok=True)
    return list(resolved.notes)


def log_config(level: str = "info") -> dict:
    """uvicorn's logging, plus framemark's: JSON lines from framemark.serve.access on stderr (uvicorn's own
    access log is off: ours has the verdict and never the query string)."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "raw": {"format": "%(message)s"},
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "raw", "stream": "ext://sys.stderr"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "framemark.serve": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "framemark.serve.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def run(settings: Settings, log_level: str = "info") -> None:
    """Serve until interrupted: uvicorn with ``settings.workers`` processes, each loading the model once."""
    import uvicorn

    os.environ[ENV_VAR] = settings.to_env()
    uvicorn.run("framemark.serve:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, access_log=False, log_config=log_config(log_level),
                proxy_headers=True, server_header=False, timeout_graceful_shutdown=30)


__all__ = ["Settings", "ServeError", "create_app", "app_from_env", "preflight", "run", "is_loopback"]
