"""What one `framemark serve` deployment is configured with, in one frozen value.

The CLI builds it from flags; uvicorn's worker processes get it back through an environment variable
(:data:`ENV_VAR`, JSON), because uvicorn starts several workers from an import string, not from an object.
What it says about loading (key, model, trust, ledger, statistics) becomes the runtime's options in one place,
:meth:`Settings.runtime_options`.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from framemark.detect import DEFAULT_FPR, DEFAULT_INVERSION_STEPS, DEFAULT_MAX_FRAMES

ENV_VAR = "FRAMEMARK_SERVE_SETTINGS"
TOKENS_FILE = "tokens"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1                         # uvicorn worker processes; each loads the model once
    # uploads
    max_upload_bytes: int = 200 * MIB        # enforced while the body streams in (413)
    max_duration_s: float = 120.0            # from the container headers (422)
    max_width: int = 3840                    # longer side (422)
    max_height: int = 2160                   # shorter side (422)
    max_frames: int = DEFAULT_MAX_FRAMES     # frames decoded per upload (longer clips are checked on their start)
    upload_timeout_s: float = 30.0           # longest wait for the next bytes of an upload's body (408 after)
    upload_dir: str | None = None            # where uploads stream to (default: the system temp folder)
    keep_uploads: str | None = None          # keep each upload here, named by its SHA-256, instead of deleting it
    # the bounded model queue of each worker process: jobs running + waiting; one more is answered 503
    queue_limit: int = 4
    # auth
    auth: bool = True
    tokens_file: str | None = None           # default: $FRAMEMARK_HOME/tokens
    # verification, as `framemark verify`
    key_file: str | None = None
    model_dir: str | None = None
    trust_files: tuple[str, ...] = ()
    ledger_path: str | None = None
    fpr: float = DEFAULT_FPR
    steps: int = DEFAULT_INVERSION_STEPS
    # where and how every worker runs the model (`--device`, `--dtype`, `--save-memory`): all workers share it
    device: str = "cpu"
    dtype: str = "fp32"
    save_memory: bool = False
    # generation limits for POST /v1/generate, within the model's own (frames: None = the model's longest)
    max_generate_steps: int = 50
    max_generate_frames: int | None = None
    threads: int | None = None               # torch threads per worker process (default: cores / workers)

    def runtime_options(self):
        """The ``framemark.runtime.Options`` each worker loads its runtime with (and preflight resolves)."""
        from framemark.runtime import Options

        threads = self.threads or max(1, (os.cpu_count() or 1) // max(1, self.workers))
        return Options(key_file=self.key_file, model_dir=self.model_dir, trust_files=tuple(self.trust_files),
                       ledger_path=self.ledger_path, fpr=self.fpr, steps=self.steps, max_frames=self.max_frames,
                       limits=self.upload_limits(), device=self.device, dtype=self.dtype,
                       save_memory=self.save_memory, threads=threads)

    def tokens_path(self) -> Path:
        from framemark.keys import framemark_home

        return Path(self.tokens_file) if self.tokens_file else framemark_home() / TOKENS_FILE

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str | None = None) -> "Settings":
        raw = json.loads(text if text is not None else os.environ[ENV_VAR])
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if "trust_files" in values:
            values["trust_files"] = tuple(values["trust_files"])
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    def upload_limits(self):
        """The ``framemark.limits.Limits`` every upload is checked against (as `framemark audit` checks files)."""
        from framemark.limits import Limits

        return Limits(max_bytes=self.max_upload_bytes, max_duration_s=self.max_duration_s,
                      max_width=self.max_width, max_height=self.max_height, max_frames=self.max_frames)

    def generate_frames(self, frame_counts: tuple[int, ...]) -> tuple[int, ...]:
        """The frame counts POST /v1/generate accepts: the model's (``ModelLimits.frame_counts()``) up to
        ``max_generate_frames``, and at least the model's shortest."""
        cap = self.max_generate_frames
        return tuple(f for f in frame_counts if cap is None or f <= cap) or tuple(frame_counts[:1])

    def limits_dict(self, generate_frames: tuple[int, ...] = ()) -> dict:
        """/v1/info's ``limits``; ``generate_frames``: what :meth:`generate_frames` allows with the loaded model."""
        return {"max_upload_bytes": self.max_upload_bytes, "max_duration_s": self.max_duration_s,
                "max_resolution": f"{self.max_width}x{self.max_height}", "max_frames": self.max_frames,
                "upload_timeout_s": self.upload_timeout_s,
                "queue_limit_per_worker": self.queue_limit, "workers": self.workers,
                "max_generate_steps": self.max_generate_steps,
                "max_generate_frames": generate_frames[-1] if generate_frames else self.max_generate_frames,
                "uploads_kept": bool(self.keep_uploads)}


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
