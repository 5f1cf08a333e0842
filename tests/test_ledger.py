"""The ledger: schema, lookups, concurrent writers from several processes, and `framemark ledger lookup`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from framemark import credentials, provenance
from framemark.cli import main
from framemark.ledger import SCHEMA_VERSION, Ledger, LedgerError, parse_lookup_key
from framemark.watermark import Payload

MODEL = {"name": "framemark-wan-tiny", "version": "2"}


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


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
        found = ledger.lookup("abcdef012345", key_id="k1")
        assert [e.id for e in found] == [second.id, first.id]
        assert found[1].manifest_store == b"one" and found[1].manifest_label == "urn:1"
        assert found[0].payload == p.hex and found[0].model_name == "framemark-wan-tiny"
        assert len(ledger.lookup("abcdef012345")) == 3
        assert ledger.lookup("000000000002") == []
        assert found[0].to_dict()["manifest_store_bytes"] == 3


def test_lookup_keys_are_checked():
    p = Payload(0x0123456789AB)
    assert parse_lookup_key(p.hex) == ("0123456789ab", p.hex)
    assert parse_lookup_key("0123456789AB") == ("0123456789ab", None)
    with pytest.raises(LedgerError, match="CRC"):
        parse_lookup_key(p.hex[:-1] + ("0" if p.hex[-1] != "0" else "1"))
    with pytest.raises(LedgerError, match="hex digits"):
        parse_lookup_key("hello")


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


WRITER = textwrap.dedent("""
    import pathlib, sys, time
    from framemark.ledger import Ledger
    from framemark.watermark import Payload
    path, worker, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    store = bytes(range(256)) * 60  # about the size of a real manifest store
    barrier = pathlib.Path(path).parent  # start together, after every process has finished importing
    (barrier / f"ready-{worker}").touch()
    while len(list(barrier.glob("ready-*"))) < workers:
        time.sleep(0.01)
    with Ledger(path) as ledger:  # every process also creates the schema, racing the others
        for i in range(n):
            ledger.record(payload=Payload(worker << 32 | i), key_id=f"w{worker}", model={"name": "m", "version": "1"},
                          manifest_store=store)
""")


def test_concurrent_writers_from_several_processes(tmp_path):
    path, workers, per_worker = tmp_path / "shared.db", 6, 40
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(per_worker), str(workers)],
                              stderr=subprocess.PIPE, text=True) for w in range(workers)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    with Ledger(path, create=False) as ledger:
        assert ledger.count() == workers * per_worker
        for w in range(workers):
            for i in (0, per_worker - 1):
                (entry,) = ledger.lookup(f"{w << 32 | i:012x}")
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
    manifest = provenance.build_manifest(title="dst.mp4", model=MODEL, generation={"seed": 1}, prompt="x",
                                         payload=bytes.fromhex(Payload(0x42).hex), key_id="k1", thumbnail=False)
    return provenance.sign_file(src, dst, manifest, credentials.load_signer(home))


def test_ledger_lookup_command(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FRAMEMARK_HOME", str(home))
    assert run("ledger", "lookup", Payload(0x42).hex).exit_code == 2  # no ledger yet
    with Ledger() as ledger:
        ledger.record(payload=Payload(0x42), key_id="k1", model=MODEL, manifest_store=_signed_store(home),
                      manifest_label="urn:x")
        ledger.record(payload=Payload(0x43), key_id="k1", model=MODEL)
    found = run("ledger", "lookup", Payload(0x42).hex, "--json")
    assert found.exit_code == 0, found.output
    (row,) = json.loads(found.output)
    assert row["clip_id"] == "000000000042" and row["signature"]["state"] == "Trusted"
    assert row["manifest"]["soft_binding"]["value"] == Payload(0x42).hex
    assert "manifest_store" not in row and row["manifest_store_bytes"] > 1000
    prose = run("ledger", "lookup", "000000000043")
    assert prose.exit_code == 0 and "no manifest" in prose.output
    assert run("ledger", "lookup", "000000000044").exit_code == 1
    assert run("ledger", "lookup", "xyz").exit_code == 2
    other = tmp_path / "other.db"
    Ledger(other).close()
    assert run("ledger", "lookup", Payload(0x42).hex, "--ledger", other).exit_code == 1
