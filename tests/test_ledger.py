"""The ledger: schema, lookups, concurrent writers from several processes, and `framemark ledger lookup`."""

from __future__ import annotations

import json
import select
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from framemark import credentials, manifest, provenance
from framemark.ledger import SCHEMA_VERSION, Ledger, LedgerError
from framemark.watermark import Payload

MODEL = {"name": "framemark-wan-tiny", "version": "2", "family": "wan", "weights_sha256": "ab" * 32}

# A ledger as framemark wrote it before schema version 2 (no model_sha256 column), verbatim.
SCHEMA_V1 = """
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
    manifest_store BLOB
);
CREATE INDEX IF NOT EXISTS clips_by_clip_id ON clips (clip_id, key_id);
CREATE INDEX IF NOT EXISTS clips_by_manifest_label ON clips (manifest_label);
"""


def test_new_ledger_is_wal_with_a_schema_version(tmp_path):
    path = tmp_path / "l.db"
    Ledger(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    db.close()


def test_record_and_lookup_newest_first_filtered_by_key(tmp_path):
    with Ledger(tmp_path / "l.db") as ledger:
        p = Payload(0xABCDEF012345)
        first = ledger.record(payload=p, key_id="k1", model=MODEL, manifest_store=b"one", manifest_label="urn:1")
        second = ledger.record(payload=p, key_id="k1", model=MODEL, manifest_store=b"two")
        ledger.record(payload=p, key_id="k2", model=MODEL)
        ledger.record(payload=Payload(1), key_id="k1", model=MODEL)
        found = ledger.lookup(Payload.from_hex("abcdef012345"), key_id="k1")
        assert [e.id for e in found] == [second.id, first.id]
        assert found[1].manifest_store == b"one" and found[1].manifest_label == "urn:1"
        assert found[0].payload == p.hex and found[0].model_name == "framemark-wan-tiny"
        assert found[0].model_sha256 == "ab" * 32 and found[0].to_dict()["model_sha256"] == "ab" * 32
        assert len(ledger.lookup(p)) == 3
        assert ledger.lookup(Payload(2)) == []
        assert found[0].to_dict()["manifest_store_bytes"] == 3


def test_lookup_keys_are_checked():
    """What `ledger lookup` and the resolution API accept: a payload (its CRC checked) or a clip id."""
    p = Payload(0x0123456789AB)
    assert Payload.from_hex(p.hex) == p and Payload.from_hex(p.hex).clip_hex == "0123456789ab"
    assert Payload.from_hex("0123456789AB") == p
    with pytest.raises(ValueError, match="CRC"):
        Payload.from_hex(p.hex[:-1] + ("0" if p.hex[-1] != "0" else "1"))
    with pytest.raises(ValueError, match="hex digits"):
        Payload.from_hex("hello")


def test_missing_corrupt_and_newer_ledgers_are_clear_errors(tmp_path):
    with pytest.raises(LedgerError, match="no ledger"):
        Ledger(tmp_path / "none.db", create=False)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="not usable"):
        Ledger(junk)
    newer = tmp_path / "newer.db"
    Ledger(newer).close()
    db = sqlite3.connect(newer)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(newer)


def version_1_ledger(path) -> None:
    """A real version-1 ledger file with two rows, written with the old schema by plain sqlite3."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V1)
    db.execute("INSERT INTO schema_version (version) VALUES (1)")
    for clip, store in ((Payload(0x111), b"store-1"), (Payload(0x222), None)):
        db.execute("INSERT INTO clips (clip_id, payload, key_id, model_name, model_version, created_at, "
                   "manifest_label, manifest_store) VALUES (?, ?, 'k1', 'framemark-wan-tiny', '2', "
                   "'2025-01-01T00:00:00.000+00:00', ?, ?)",
                   (clip.clip_hex, clip.hex, "urn:old" if store else None, store))
    db.commit()
    db.close()


def schema_of(path) -> tuple[list, list[str]]:
    db = sqlite3.connect(path)
    try:
        versions = db.execute("SELECT version FROM schema_version").fetchall()
        columns = [r[1] for r in db.execute("PRAGMA table_info(clips)")]
    finally:
        db.close()
    return versions, columns


def test_a_version_1_ledger_is_migrated_in_place_on_open(tmp_path):
    path = tmp_path / "v1.db"
    version_1_ledger(path)
    assert schema_of(path) == ([(1,)], ["id", "clip_id", "payload", "key_id", "model_name", "model_version",
                                        "created_at", "manifest_label", "manifest_store"])
    with Ledger(path, create=False) as ledger:  # reading opens migrate too
        old = ledger.lookup(Payload(0x111))
        assert [(e.model_name, e.model_sha256, e.manifest_store) for e in old] == [
            ("framemark-wan-tiny", None, b"store-1")]
        assert ledger.by_manifest_label("urn:old").id == old[0].id
        new = ledger.record(payload=Payload(0x333), key_id="k1", model=MODEL)
    versions, columns = schema_of(path)
    assert versions == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 2 and columns[-1] == "model_sha256"
    with Ledger(path) as ledger:  # idempotent: opening a migrated ledger changes nothing
        assert ledger.count() == 3
        assert ledger.lookup(Payload(0x333))[0].model_sha256 == "ab" * 32 == new.model_sha256
        assert ledger.lookup(Payload(0x222))[0].model_sha256 is None
    assert schema_of(path) == (versions, columns)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_a_half_migrated_ledger_is_finished(tmp_path):
    """The column and the version change in one transaction; a ledger that has the column but still says 1
    (written by hand, or by a build that crashed between two transactions) is finished, not broken."""
    path = tmp_path / "half.db"
    version_1_ledger(path)
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE clips ADD COLUMN model_sha256 TEXT")
    db.commit()
    db.close()
    with Ledger(path) as ledger:
        assert ledger.count() == 2
    assert schema_of(path)[0] == [(SCHEMA_VERSION,)]


def test_concurrent_openers_migrate_a_version_1_ledger_once(tmp_path):
    path, workers = tmp_path / "shared-v1.db", 4
    version_1_ledger(path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), "5"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(workers)]
    try:
        start_together(procs)
    finally:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert schema_of(path)[0] == [(SCHEMA_VERSION,)]
    with Ledger(path, create=False) as ledger:
        assert ledger.count() == 2 + workers * 5


WRITER = textwrap.dedent("""
    import sys
    from framemark.ledger import Ledger
    from framemark.watermark import Payload
    path, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = bytes(range(256)) * 60  # about the size of a real manifest store
    print("ready", flush=True)  # imports done; wait for the test to start every writer at once
    if sys.stdin.readline() != "go\\n":
        sys.exit(f"writer {worker}: not started")
    with Ledger(path) as ledger:  # every process also creates the schema, racing the others
        for i in range(n):
            ledger.record(payload=Payload(worker << 32 | i), key_id=f"w{worker}", model={"name": "m", "version": "1"},
                          manifest_store=store)
""")


def start_together(procs, timeout: float = 60.0) -> None:
    """Wait (up to ``timeout``) until every writer has said it is ready, then let them all go at once."""
    deadline = time.monotonic() + timeout
    for p in procs:
        ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = p.stdout.readline() if ready else ""
        assert line == "ready\n", f"a writer did not start within {timeout:.0f} s: {line!r}"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()


def test_concurrent_writers_from_several_processes(tmp_path):
    path, workers, per_worker = tmp_path / "shared.db", 6, 40
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(per_worker)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(workers)]
    try:
        start_together(procs)
    finally:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    with Ledger(path, create=False) as ledger:
        assert ledger.count() == workers * per_worker
        for w in range(workers):
            for i in (0, per_worker - 1):
                (entry,) = ledger.lookup(Payload(w << 32 | i))
                assert entry.key_id == f"w{w}" and len(entry.manifest_store) == 256 * 60
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
    db.close()


def _signed_store(home) -> bytes:
    from framemark import media
    import numpy as np

    credentials.create_local(home)
    src, dst = home / "src.mp4", home / "dst.mp4"
    media.write_video(src, np.zeros((5, 64, 64, 3), np.uint8), fps=8)
    definition = manifest.build_manifest(title="dst.mp4", model=MODEL, generation={"seed": 1}, prompt="x",
                                         payload=bytes.fromhex(Payload(0x42).hex), key_id="k1", thumbnail=False)
    return provenance.sign_file(src, dst, definition, credentials.load_signer(home))


def test_ledger_lookup_command(tmp_path, monkeypatch, cli):
    home = tmp_path / "home"
    monkeypatch.setenv("FRAMEMARK_HOME", str(home))
    assert cli("ledger", "lookup", Payload(0x42).hex).exit_code == 2  # no ledger yet
    with Ledger() as ledger:
        ledger.record(payload=Payload(0x42), key_id="k1", model=MODEL, manifest_store=_signed_store(home),
                      manifest_label="urn:x")
        ledger.record(payload=Payload(0x43), key_id="k1", model=MODEL)
    found = cli("ledger", "lookup", Payload(0x42).hex, "--json")
    assert found.exit_code == 0, found.output
    (row,) = json.loads(found.output)
    assert row["clip_id"] == "000000000042" and row["signature"]["state"] == "Trusted"
    assert row["manifest"]["soft_binding"]["value"] == Payload(0x42).hex
    assert "manifest_store" not in row and row["manifest_store_bytes"] > 1000
    prose = cli("ledger", "lookup", "000000000043")
    assert prose.exit_code == 0 and "no manifest" in prose.output
    assert cli("ledger", "lookup", "000000000044").exit_code == 1
    assert cli("ledger", "lookup", "xyz").exit_code == 2
    other = tmp_path / "other.db"
    Ledger(other).close()
    assert cli("ledger", "lookup", Payload(0x42).hex, "--ledger", other).exit_code == 1
