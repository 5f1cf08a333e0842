"""The results store of one audit folder: rows appended durably as they arrive, the settings they were made
with, thumbnails, and a lock so that one audit writes to a folder at a time.

``DIR/results.jsonl`` (one row per line), ``DIR/audit.json`` (the settings fingerprint), ``DIR/thumbs/SHA256.jpg``.
Each row is written with flush + fsync before the next file is started, so a crash or Ctrl-C loses only the
files in flight; a last line torn by a crash is skipped when reading and never swallows the next row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import AuditError
from .rows import utc_now

RESULTS_FILE = "results.jsonl"
SETTINGS_FILE = "audit.json"
THUMBS_DIR = "thumbs"
LOCK_FILE = ".lock"


@dataclass
class StoreContents:
    rows: list[dict]
    bad_lines: int


class ResultsStore:
    """One audit folder. Open as a context manager: it holds an exclusive lock on the folder."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        self.results = self.dir / RESULTS_FILE
        self.thumbs_dir = self.dir / THUMBS_DIR
        self._fh = None
        self._lock = None

    def __enter__(self) -> "ResultsStore":
        import fcntl

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.thumbs_dir.mkdir(exist_ok=True)
            self._lock = open(self.dir / LOCK_FILE, "a")
        except OSError as exc:
            raise AuditError(f"cannot use the output folder {self.dir}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise AuditError(f"another audit is writing to {self.dir}; wait for it or use another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def check_settings(self, fingerprint: dict) -> None:
        """Record ``fingerprint`` for a new folder; refuse a folder whose rows were made with other settings."""
        path = self.dir / SETTINGS_FILE
        if path.exists():
            try:
                stored = json.loads(path.read_text())["settings"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise AuditError(f"{path} is unreadable ({exc}); move it away to start a new audit there") from None
            if stored != fingerprint:
                diff = ", ".join(f"{k}: {stored.get(k)!r} there, {fingerprint.get(k)!r} now"
                                 for k in fingerprint if stored.get(k) != fingerprint.get(k))
                raise AuditError(f"the results in {self.dir} were made with other settings ({diff}); use another "
                                 f"--out, or the same settings to resume")
            return
        atomic_write(path, json.dumps({"settings": fingerprint, "created_at": utc_now()}, indent=2) + "\n")

    def load(self) -> StoreContents:
        """Every complete row; lines that do not parse (a write cut short by a crash) are counted and skipped."""
        rows, bad = [], 0
        try:
            data = self.results.read_bytes()
        except FileNotFoundError:
            return StoreContents([], 0)
        except OSError as exc:
            raise AuditError(f"cannot read {self.results}: {exc.strerror or exc}") from exc
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                bad += 1
                continue
            if isinstance(row, dict) and "file" in row and "verdict" in row:
                rows.append(row)
            else:
                bad += 1
        return StoreContents(rows, bad)

    def append(self, row: dict) -> None:
        """Write one row durably (flush + fsync) before returning."""
        if self._fh is None:
            self._fh = open(self.results, "ab")
            if self._fh.tell() > 0 and not _ends_with_newline(self.results):
                self._fh.write(b"\n")  # a torn last line stays alone (and is skipped) instead of swallowing this row
        self._fh.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def thumbnail_path(self, sha256: str) -> Path:
        return self.thumbs_dir / f"{sha256}.jpg"

    def write_thumbnail(self, sha256: str, data: bytes) -> None:
        atomic_write(self.thumbnail_path(sha256), data)

    def thumbnails(self, rows: Iterable[dict]) -> dict[str, bytes]:
        """{sha256: JPEG bytes} of the rows' thumbnails that exist (for the report)."""
        out = {}
        for row in rows:
            sha = row.get("sha256")
            if sha and sha not in out:
                try:
                    out[sha] = self.thumbnail_path(sha).read_bytes()
                except OSError:
                    pass
        return out


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a whole file or nothing: a reader never sees half a settings file or thumbnail."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
