"""`framemark audit`: verify a folder, glob or list of files into a resumable results store, with a report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .common import (EXIT_FAIL_ON, EXIT_INTERRUPTED, Progress, check_placement, device_options, echo_notes, fail,
                     limit_options, parse_limits, runtime_options, user_errors, verification_options)


@click.command()
@click.argument("source", metavar="INPUT")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for results.jsonl (appended; resumable), thumbnails and settings.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (local, default 1, or one per GPU of --device cuda / --devices) or Ray actors "
                   "(ray, default: the cluster's CPUs, or its GPUs).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Ray cluster to use (e.g. ray://head:10001 or auto); default: "
                                                  "a private local cluster.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per worker (default: cores / workers; Ray: 1).")
@click.option("--report", "report_file", type=click.Path(path_type=Path), help="Write a self-contained HTML report.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path),
              help="CSV of path,label (synthetic or real) for the report's confusion matrix and ROC curve.")
@click.option("--fail-on", "fail_on", default=None, metavar="VERDICT,...",
              help="Exit 4 if any file has one of these verdicts (or 'error': could not be checked).")
@verification_options
@limit_options
@click.option("--max-frames", default=600, show_default=True, type=click.IntRange(min=1),
              help="Frames decoded per file (longer clips are checked on their start).")
@device_options
@click.option("--devices", "devices_list", default=None, metavar="DEV,DEV,...",
              help="Local workers' devices in turn, e.g. cuda:0,cuda:1: one worker per device unless --workers says "
                   "otherwise. (--device cuda alone: every visible GPU.)")
@click.option("--gpus-per-actor", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Ray, on CUDA: GPUs each actor asks for (0.5: two actors share a GPU).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Files a worker checks at once, their inversions batched (default: 16 on CUDA, else 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (last line of stdout).")
def audit(source, out_dir, workers, engine, ray_address, threads, report_file, labels_file, fail_on, fpr, key_file,
          model_dir, steps, trust_files, ledger_path, max_size, max_duration, max_resolution, max_frames, device, dtype,
          save_memory, devices_list, gpus_per_actor, batch_size, as_json):
    """Verify every video in INPUT (a folder, searched recursively by content; a glob; or a CSV/JSONL list of
    paths with optional labels) and append one row per file to OUT/results.jsonl as it is ready.

    Running again with the same --out skips files already done (by content hash). Exit 0 when the audit
    completed (files that could not be checked get rows with errors), 4 with --fail-on when a file has one of
    its verdicts, 2 for unusable arguments. See docs/audit.md.
    """
    from framemark import audit as auditing
    from framemark import runtime
    from framemark.audit import discovery, ray_engine
    from framemark.audit.run import fail_on_hits
    from framemark.detect.batch import default_batch_size
    from framemark.detect.verdict import parse_verdicts, verdict_name

    try:
        fail_set = parse_verdicts(fail_on)
    except ValueError as exc:
        fail(str(exc))
    limits = parse_limits(max_size, max_duration, max_resolution, max_frames)
    if ray_address and engine != "ray":
        fail("--ray-address needs --engine ray")
    devices = local_devices(device, dtype, devices_list, workers, engine=engine, ray_address=ray_address)
    first = device if devices is None else devices[0]  # the runtime's device; each local worker gets its own
    batch = batch_size or default_batch_size(first)
    options = runtime_options(key_file=key_file, model_dir=model_dir, trust_files=trust_files,
                              ledger_path=ledger_path, fpr=fpr, steps=steps, max_frames=max_frames, limits=limits,
                              device=first, dtype=dtype, save_memory=save_memory)
    with user_errors():
        found = auditing.discover(source, exclude=[out_dir])
        items = found.items
        if labels_file is not None:
            items = discovery.apply_labels(items, discovery.read_labels(labels_file))
            click.echo(f"labels: {sum(1 for i in items if i.label)} of {len(items)} file(s) labelled", err=True)
        resolved = runtime.resolve(options, "verify")
        echo_notes(resolved)
        if engine == "ray":
            ray_engine.import_ray()
        if report_file is not None:
            import importlib.util

            if importlib.util.find_spec("matplotlib") is None:  # checked before hours of work, not after
                fail("--report needs matplotlib: pip install 'framemark[report]'")
    config = auditing.AuditConfig(resolved, limits=limits, threads=threads)
    if engine == "ray":
        def run_engine(tasks, cfg):
            return ray_engine.ray_outcomes(tasks, cfg, address=ray_address, workers=workers, threads=threads or 1,
                                           gpus=gpus_per_actor, batch_size=batch)
    else:
        def run_engine(tasks, cfg):
            return auditing.local_outcomes(tasks, cfg, workers=len(devices), devices=devices, batch_size=batch)
    if found.skipped:
        click.echo(f"skipping {len(found.skipped)} file(s) that are not video (e.g. {found.skipped[0][0]}: "
                   f"{found.skipped[0][1]})", err=True)
    if not items:
        click.echo(f"no video file in {source}", err=True)
    try:
        with user_errors():
            result = auditing.run_audit(items, config, out_dir, engine=run_engine, progress=progress_reporter(),
                                        skipped=found.skipped)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: every finished row is in {Path(out_dir) / auditing.RESULTS_FILE}; run the same "
                   f"command again to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    summary = result.summary
    summary.update(engine=engine, workers=len(devices) if engine == "local" else workers)
    if report_file is not None:
        write_report(report_file, result, config, source=source, engine=engine)
        summary["report"] = str(report_file)
    hits = fail_on_hits(result.rows, fail_set)
    summary["fail_on"] = sorted(fail_set)
    summary["fail_on_hits"] = len(hits)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        counts = ", ".join(f"{n} {v}" for v, n in summary["verdicts"].items() if n)
        click.echo(f"audited {summary['files']} file(s) ({summary['checked']} checked now, {summary['resumed']} "
                   f"already done): {counts or 'nothing'}")
        click.echo(f"results: {summary['results']}" + (f"; report: {summary['report']}" if "report" in summary else ""))
        for row in hits[:20]:
            click.echo(f"fail-on: {row['file']}: {verdict_name(row)}")
    if hits:
        sys.exit(EXIT_FAIL_ON)


def local_devices(device: str, dtype: str, devices_list: str | None, workers: int | None, *, engine: str,
                  ray_address: str | None) -> list[str] | None:
    """Each local worker's device (``engines.worker_devices``), every one checked here before anything loads;
    None for Ray, whose actors get their GPUs from Ray (checked here too, unless the cluster is elsewhere: a
    driver without a GPU may send work to GPU nodes)."""
    import torch

    from framemark.audit.engines import worker_devices
    from framemark.audit.errors import AuditError

    listed = [d.strip() for d in devices_list.split(",") if d.strip()] if devices_list is not None else None
    if listed is not None and not listed:
        fail("--devices needs at least one device, e.g. cuda:0,cuda:1")
    if listed is not None and device != "cpu":
        fail("give --device or --devices, not both")
    if engine == "ray":
        if listed is not None:
            fail("--devices is for the local engine; with --engine ray give --device cuda: each actor asks Ray "
                 "for its GPU (--gpus-per-actor)")
        check_placement(device, dtype, here=ray_address is None)
        return None
    for name in listed or [device]:
        check_placement(name, dtype)
    try:
        return worker_devices(device, listed, workers, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    except AuditError as exc:
        fail(str(exc))


def progress_reporter():
    """The audit's progress callback: its first line says how many files are to be checked, then the one
    progress reporter (rate and ETA) from the first file on."""
    bar: Progress | None = None

    def show(p) -> None:
        nonlocal bar
        if p.total == 0:
            return
        if p.done == 0:
            click.echo(f"audit: {p.total} file(s) to check", err=True)
            bar = Progress("audit")
            return
        bar.update(p.done, p.total)
    return show


def write_report(report_file: Path, result, config, *, source: str, engine: str) -> None:
    """Render the HTML report of ``result`` (its thumbnails from the results store) into ``report_file``."""
    from framemark.audit import ResultsStore
    from framemark.audit.report import render_report

    options = config.resolved.options
    with user_errors():
        with ResultsStore(result.summary["out"]) as store:
            thumbs = store.thumbnails(result.rows)
    settings = {"input": str(source), "engine": engine, "key id": config.key_id or "none (C2PA only)",
                "fpr": options.fpr, "inversion steps": options.steps, "model": str(options.model_dir or "embedded")}
    shown = {k: result.summary[k] for k in ("files", "checked", "resumed", "with_errors", "skipped")}
    page = render_report(result.rows, thumbs, title=f"framemark audit: {source}", summary=shown, settings=settings,
                         fpr=options.fpr)
    try:
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text(page, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write the report {report_file}: {exc.strerror or exc}")


COMMANDS = [audit]
