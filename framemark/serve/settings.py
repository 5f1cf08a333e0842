"""What one `framemark serve` deployment is configured with, in one frozen value.

The CLI builds it from flags; uvicorn's worker processes get it back through an environment variable
(:data:`ENV_VAR`, JSON), because uvicorn starts several workers from an import string, not from an object.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from framemark.detect import DEFAULT_FPR, DEFAULT_INVERSION_STEPS

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
    max_frames: int = 600                    # frames decoded per upload (longer clips are checked on their start)
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
    # generation limits for POST /v1/generate
    max_generate_steps: int = 50
    max_generate_frames: int = 33
    threads: int | None = None               # torch threads per worker process (default: cores / workers)

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

    def limits_dict(self) -> dict:
        return {"max_upload_bytes": self.max_upload_bytes, "max_duration_s": self.max_duration_s,
                "max_resolution": f"{self.max_width}x{self.max_height}", "max_frames": self.max_frames,
                "queue_limit_per_worker": self.queue_limit, "workers": self.workers,
                "max_generate_steps": self.max_generate_steps, "max_generate_frames": self.max_generate_frames,
                "uploads_kept": bool(self.keep_uploads)}


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
