"""What one app (one worker process) serves with, in one object the routes reach through ``request.app.state``.

:class:`Service` holds the settings, the engine (the model thread and its loaded runtime), the token store, the
ledger index of the resolution API and the upload folder, and answers what several routes share: taking an
upload in (:meth:`Service.accept_upload`), the generation limits of the loaded model, and /v1/info.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from framemark import __version__
from framemark.detect.verdict import described
from framemark.soft_binding import SOFT_BINDING_ALG

from . import uploads
from .engine import GENERATION_OFF, Engine, Unavailable
from .resolution import LedgerIndex
from .settings import Settings
from .tokens import TokenStore


@dataclass
class Service:
    settings: Settings
    engine: Engine
    tokens: TokenStore
    ledger: LedgerIndex
    started_at: float = field(default_factory=time.time)
    upload_dir: Path | None = None  # made by the app's lifespan, removed with it

    @cached_property
    def limits(self):
        return self.settings.upload_limits()

    # -------------------------------------------------------------------------------------------- uploads
    async def accept_upload(self, request: Request, *, allow_raw: bool) -> tuple[uploads.Upload, dict]:
        """Room in the queue first (a full queue answers before the body is read), then the streamed upload,
        then sniffing, probing and limits: the upload and its header facts (``video``)."""
        self.engine.check_room()
        upload = await uploads.receive(request, self.upload_dir, self.settings.max_upload_bytes, allow_raw=allow_raw,
                                       timeout_s=self.settings.upload_timeout_s)
        try:
            video = await run_in_threadpool(uploads.inspect, upload, self.limits)
        except BaseException:
            uploads.dispose(upload, None)
            raise
        return upload, video

    def dispose(self, upload: uploads.Upload) -> None:
        uploads.dispose(upload, self.settings.keep_uploads)

    # -------------------------------------------------------------------------------------------- generation
    @property
    def generation_enabled(self) -> bool:
        r = self.engine.runtime
        return bool(r is not None and r.model is not None and r.key is not None and r.signer is not None)

    def generation_request(self, *, prompt: str, seed: int, steps: int | None, frames: int | None):
        """The ``GenerationRequest`` of a POST /v1/generate body, checked by the loaded model's ``check_inputs``
        (GenerationError, answered 422, before the request takes a place in the queue); Unavailable without a
        model."""
        from framemark.generator.models import GenerationRequest

        model = self.engine.model
        if model is None:
            raise Unavailable(GENERATION_OFF)
        request = GenerationRequest(prompt=prompt, seed=seed, steps=steps, frames=frames)
        model.check_inputs(request)
        return request

    @cached_property
    def generate_frames(self) -> tuple[int, ...]:
        """The frame counts POST /v1/generate accepts (none without a model)."""
        model = self.engine.model
        return self.settings.generate_frames(model.limits.frame_counts()) if model is not None else ()

    # -------------------------------------------------------------------------------------------- /v1/info
    @cached_property
    def info(self) -> dict:
        """GET /v1/info: what a client may know about this service (never a secret)."""
        runtime = self.engine.runtime
        model = self.engine.model
        return {
            "service": "framemark", "version": __version__, "api": "v1",
            "model": model.identity.to_dict() if model is not None else None,
            "watermark_key_ids": [runtime.key.key_id] if runtime is not None and runtime.key is not None else [],
            "soft_binding_alg": SOFT_BINDING_ALG,
            "signer": _signer_facts(runtime.signer if runtime is not None else None),
            "trust_anchors": _anchor_facts(runtime.trust_anchors if runtime is not None else ()),
            "limits": self.settings.limits_dict(self.generate_frames),
            "generate": {"enabled": self.generation_enabled, "max_steps": self.settings.max_generate_steps,
                         "frames": list(self.generate_frames)},
            "auth": {"required": self.settings.auth, "scopes": ["verify", "generate"]},
            "verification": {"fpr": self.settings.fpr, "inversion_steps": self.settings.steps},
            "verdicts": described(),
        }

    def health(self) -> dict:
        return {"status": "ok", "version": __version__, "model_loaded": self.engine.model is not None,
                "queue": {"pending": self.engine.pending, "limit": self.engine.limit},
                "jobs_done": self.engine.jobs_done, "uptime_s": round(time.time() - self.started_at, 1)}

    def close(self) -> None:
        self.engine.close()
        self.ledger.close()


def of(request: Request) -> Service:
    """The app's Service (a FastAPI dependency)."""
    return request.app.state.service


def _anchor_facts(anchors) -> list[dict]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    facts = []
    for pem in anchors:
        try:
            for cert in x509.load_pem_x509_certificates(pem):
                facts.append({"subject": cert.subject.rfc4514_string(),
                              "sha256": cert.fingerprint(hashes.SHA256()).hex()})
        except ValueError:
            continue
    return facts


def _signer_facts(signer) -> dict | None:
    if signer is None:
        return None
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        leaf = x509.load_pem_x509_certificates(signer.certificate_chain_pem)[0]
    except (ValueError, AttributeError, IndexError):
        return None
    return {"subject": leaf.subject.rfc4514_string(), "sha256": leaf.fingerprint(hashes.SHA256()).hex(),
            "alg": signer.alg}
