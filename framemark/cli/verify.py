"""`framemark verify`: the verdict of each file, in prose or as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .common import (EXIT_PARTIAL, Progress, check_placement, device_options, echo_notes, runtime_options,
                     user_errors, verification_options)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@verification_options
@click.option("--classifier", "classifier_dir", type=click.Path(path_type=Path),
              help="Passive classifier folder (from `framemark detect train`; default: the shipped one).")
@click.option("--no-classifier", is_flag=True, help="Skip the passive classifier.")
@device_options
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Files whose watermark inversions run together (default: 16 on a CUDA device, else 1).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
def verify(files, fpr, key_file, model_dir, steps, trust_files, ledger_path, classifier_dir, no_classifier, device,
           dtype, save_memory, batch_size, as_json):
    """Check FILES for a C2PA manifest and the watermark, score them with the passive classifier, and report a
    verdict for each.

    Exit 0 when every file was fully checked, 3 when some could not be (the rest are still reported; without a
    watermark key only the C2PA check runs, and every file says so), 2 when nothing could be checked (bad --key,
    --trust or --ledger, no model).
    """
    from framemark import runtime
    from framemark.detect.batch import default_batch_size

    check_placement(device, dtype)
    options = runtime_options(key_file=key_file, model_dir=model_dir, trust_files=trust_files,
                              ledger_path=ledger_path, fpr=fpr, steps=steps, classifier=not no_classifier,
                              classifier_dir=classifier_dir, device=device, dtype=dtype, save_memory=save_memory)
    with user_errors():
        resolved = runtime.resolve(options, "verify")
        echo_notes(resolved)
        rt = resolved.load()
    batch = batch_size or default_batch_size(device)
    results = []
    progress = Progress("verifying")
    with rt:
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            verdicts = [rt.verify(chunk[0])] if batch == 1 else rt.verify_many(chunk, batch_size=batch)
            results.extend(v.to_dict() for v in verdicts)
            progress.update(len(results), len(files))
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            click.echo(verdict_line(r))
    if any(r["errors"] for r in results):
        sys.exit(EXIT_PARTIAL)


def verdict_line(r: dict) -> str:
    if r["verdict"] is None:
        return f"{r['file']}: error: {'; '.join(r['errors'])}"
    parts = [c2pa_phrase(r.get("c2pa") or {})]
    mark = r["watermark"]
    if mark is not None:
        parts.append(f"watermark payload {mark['payload']} (crc {'ok' if mark['crc_ok'] else 'bad'}), "
                     f"p = {mark['p_value']:.3g}" if mark["detected"]
                     else f"no watermark of key {mark['key_id']} (p = {mark['p_value']:.3g})")
    led = r.get("ledger")
    if led is not None:
        if led.get("recovered"):
            parts.append(f"ledger: original manifest recovered (signature {led['signature']['state']}), "
                         f"not bound to these bytes")
        else:
            parts.append(f"ledger: {led['statement']}")
    cls = r.get("classifier")
    if cls is not None:
        parts.append(f"classifier P(synthetic) {cls['p_synthetic']:.2f} (threshold {cls['threshold']:.2f})")
    line = f"{r['file']}: {r['verdict']}: {'; '.join(parts)}"
    return line + (f" [{'; '.join(r['errors'])}]" if r["errors"] else "")


def c2pa_phrase(c2pa: dict) -> str:
    state = c2pa.get("state")
    if state is None:
        return "c2pa unreadable"
    if state == "absent":
        return "no C2PA manifest"
    summary = c2pa.get("manifest") or {}
    agent = summary.get("software_agent") or {}
    agent = " ".join(str(v) for v in agent.values()) if isinstance(agent, dict) else str(agent or "")
    codes = f" ({', '.join(c2pa['codes'])})" if c2pa.get("codes") else ""
    return f"C2PA {state}{codes}" + (f", made by {agent}" if agent else "")


COMMANDS = [verify]
