"""The ledger: one row per emitted marked clip, so a watermark payload resolves to the clip's original manifest.

This is the soft-binding resolution of C2PA done locally: the manifest travels inside the file until a platform
strips or re-encodes it; the watermark survives, and its payload (the clip id) finds the manifest store here.

SQLite at ``$FRAMEMARK_HOME/ledger.db`` by default (any path with ``--ledger``). Several generators may write at
once: the database is in WAL mode (readers never block the writer), every write is one short ``BEGIN IMMEDIATE``
transaction, and a busy timeout makes a writer wait for another instead of failing. Schema (version 2):

    schema_version(version INTEGER)                  -- one row; a newer ledger is refused, not misread
    clips(id INTEGER PRIMARY KEY AUTOINCREMENT,
          clip_id TEXT,          -- 12 hex digits, the 48-bit id in the watermark payload (indexed with key_id)
          payload TEXT,          -- 16 hex digits: clip id + CRC-16, as `framemark verify` prints it
          key_id TEXT,           -- the watermark key that marked the clip (8 hex digits)
          model_name TEXT, model_version TEXT,
          model_sha256 TEXT,     -- SHA-256 of the model's weight files (v2; NULL for rows written by version 1)
          created_at TEXT,       -- ISO 8601, UTC
          manifest_label TEXT,   -- urn:c2pa:... of the active manifest, NULL for --no-sign clips
          manifest_store BLOB)   -- the JUMBF manifest store embedded in the file, NULL for --no-sign clips

Opening a version-1 ledger migrates it in place (one ``BEGIN IMMEDIATE`` transaction: the column is added and
the version raised together, so a crash leaves version 1 or version 2, and concurrent openers migrate it once);
a ledger of a newer version is refused, not misread.

A clip id is not unique by construction: `generate --clip-id` reproduces a clip (and its id) on purpose, so
lookups return every row for an id, newest first, and callers filter by key id.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from framemark.errors import FramemarkError
from framemark.keys import framemark_home
from framemark.watermark import Payload

SCHEMA_VERSION = 2
LEDGER_FILE = "ledger.db"
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS clips (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    clip_id TEXT NOT NULL CHECK (length(clip_id) = 12),
    payload TEXT NOT NULL CHECK (length(payload) = 16),
    key_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    manifest_label TEXT,
    manifest_store BLOB,
    model_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS clips_by_clip_id ON clips (clip_id, key_id);
CREATE INDEX IF NOT EXISTS clips_by_manifest_label ON clips (manifest_label);
"""
_COLUMNS = ("id", "clip_id", "payload", "key_id", "model_name", "model_version", "model_sha256", "created_at",
            "manifest_label", "manifest_store")


class LedgerError(FramemarkError):
    """The ledger is missing, unreadable, from a newer framemark, or a lookup key is malformed."""


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    clip_id: str
    payload: str
    key_id: str
    model_name: str
    model_version: str
    model_sha256: str | None  # None for rows written before schema version 2
    created_at: str
    manifest_label: str | None
    manifest_store: bytes | None

    def to_dict(self) -> dict:
        """JSON-friendly: the store's size, not its bytes."""
        d = asdict(self)
        store = d.pop("manifest_store")
        d["manifest_store_bytes"] = len(store) if store is not None else None
        return d


def default_path(home: Path | None = None) -> Path:
    return (Path(home) if home is not None else framemark_home()) / LEDGER_FILE


class Ledger:
    """An open ledger. Use as a context manager; one instance per process or thread."""

    def __init__(self, path: str | os.PathLike | None = None, create: bool = True):
        self.path = Path(path) if path is not None else default_path()
        if not create and not self.path.exists():
            raise LedgerError(f"no ledger at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {exc}") from exc
        try:
            self._initialise()
        except sqlite3.Error as exc:
            self._db.close()
            raise LedgerError(f"the ledger {self.path} is not usable: {exc}") from exc

    def _initialise(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:  # switching to WAL takes a lock that the busy handler does not always wait for
            try:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch to WAL mode (journal mode is {mode})")
        # FULL: a committed row survives a power cut (NORMAL in WAL could lose the last ones); one fsync per clip
        # is nothing next to generating it
        self._db.execute("PRAGMA synchronous = FULL")
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is None:
                self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise LedgerError(f"the ledger {self.path} has schema version {row[0]}, newer than this framemark "
                                  f"understands ({SCHEMA_VERSION}): upgrade framemark")
            elif row[0] < SCHEMA_VERSION:
                self._migrate(row[0])

    def _migrate(self, version: int) -> None:
        """Bring an older ledger to :data:`SCHEMA_VERSION`, inside the caller's transaction. Each step checks
        what is already there, so a step that is already done (or a ledger a newer step created) is left as is."""
        if version < 2:
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(clips)")}
            if "model_sha256" not in columns:
                self._db.execute("ALTER TABLE clips ADD COLUMN model_sha256 TEXT")
        self._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def _transaction(self):
        return _Immediate(self._db)

    def record(self, *, payload: Payload, key_id: str, model: dict, manifest_store: bytes | None = None,
               manifest_label: str | None = None, created_at: str | None = None) -> LedgerEntry:
        """Add the row for one emitted clip and return it. ``model``: ``manifest.describe_model``'s dict (name,
        version, weights_sha256; a model without a weights hash is recorded with NULL)."""
        created_at = created_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        values = (payload.clip_hex, payload.hex, key_id, str(model.get("name")), str(model.get("version")),
                  model.get("weights_sha256"), created_at, manifest_label, manifest_store)
        try:
            with self._transaction():
                cur = self._db.execute(
                    f"INSERT INTO clips ({', '.join(_COLUMNS[1:])}) VALUES ({', '.join('?' * len(values))})",
                    values)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write to the ledger {self.path}: {exc}") from exc
        return LedgerEntry(cur.lastrowid, *values)

    def lookup(self, payload: Payload, key_id: str | None = None) -> list[LedgerEntry]:
        """Every row for ``payload``'s clip id, newest first; only ``key_id``'s when given."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM clips WHERE clip_id = ?"
        args: tuple = (payload.clip_hex,)
        if key_id is not None:
            query += " AND key_id = ?"
            args += (key_id,)
        try:
            rows = self._db.execute(query + " ORDER BY id DESC", args).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc
        return [LedgerEntry(*row) for row in rows]

    def by_manifest_label(self, label: str) -> LedgerEntry | None:
        """The newest row whose stored manifest has this label (``urn:c2pa:...``, the C2PA manifest id), if any."""
        query = (f"SELECT {', '.join(_COLUMNS)} FROM clips WHERE manifest_label = ? AND manifest_store IS NOT NULL "
                 "ORDER BY id DESC LIMIT 1")
        try:
            row = self._db.execute(query, (label,)).fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc
        return LedgerEntry(*row) if row else None

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM clips").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Immediate:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): takes the write lock up front, so two writers
    queue on the busy timeout instead of one failing with a deadlock on lock upgrade."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb):
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
