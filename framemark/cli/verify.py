"""`framemark verify`: the verdict of each file, in prose or as JSON, written as each file is done."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import click

from .common import (EXIT_PARTIAL, Progress, check_placement, device_options, echo_notes, fail, limit_options,
                     parse_limits, runtime_options, user_errors, verification_options)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@verification_options
@click.option("--classifier", "classifier_dir", type=click.Path(path_type=Path),
              help="Passive classifier folder (from `framemark detect train`; default: the shipped one).")
@click.option("--no-classifier", is_flag=True, help="Skip the passive classifier.")
@limit_options
@device_options
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Files whose watermark inversions run together (default: 16 on a CUDA device, else 1).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array, one object per file (written as each file is done; closed even when a "
                   "later file fails).")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print one JSON object per line, each as its file is done.")
def verify(files, fpr, key_file, model_dir, steps, trust_files, ledger_path, classifier_dir, no_classifier,
           max_size, max_duration, max_resolution, device, dtype, save_memory, batch_size, as_json, as_jsonl):
    """Check FILES for a C2PA manifest and the watermark, score them with the passive classifier, and report a
    verdict for each, as soon as it is known.

    Exit 0 when every file was fully checked, 3 when some could not be (the rest are still reported; without a
    watermark key only the C2PA check runs, and every file says so), 2 when nothing could be checked (bad --key,
    --trust or --ledger, no model).
    """
    from framemark import runtime
    from framemark.detect.batch import default_batch_size

    if as_json and as_jsonl:
        fail("give --json or --jsonl, not both")
    limits = parse_limits(max_size, max_duration, max_resolution)
    check_placement(device, dtype)
    options = runtime_options(key_file=key_file, model_dir=model_dir, trust_files=trust_files,
                              ledger_path=ledger_path, fpr=fpr, steps=steps, classifier=not no_classifier,
                              classifier_dir=classifier_dir, limits=limits, device=device, dtype=dtype,
                              save_memory=save_memory)
    with user_errors():
        resolved = runtime.resolve(options, "verify")
        echo_notes(resolved)
        rt = resolved.load()
    batch = batch_size or default_batch_size(device)
    out = Output("json" if as_json else "jsonl" if as_jsonl else "text")
    progress = Progress("verifying")
    done = 0
    with rt, out:
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            for result in checked(rt, chunk, batch):
                out.write(result)
            done += len(chunk)
            progress.update(done, len(files))
    if out.partial:
        sys.exit(EXIT_PARTIAL)


def checked(rt, chunk, batch: int) -> list[dict]:
    """The verdicts of ``chunk`` as JSON objects. A bug of ours on an odd file costs that file an error entry,
    never the results of the others (the batch is then checked again file by file, so only the file to blame
    gets it)."""
    try:
        verdicts = [rt.verify(chunk[0])] if batch == 1 else rt.verify_many(chunk, batch_size=batch)
        return [v.to_dict() for v in verdicts]
    except Exception as exc:  # noqa: BLE001 - reported in the file's entry
        if len(chunk) > 1:
            return [r for path in chunk for r in checked(rt, [path], 1)]
        from framemark.detect.verdict import Verdict

        message = f"internal error while checking this file: {type(exc).__name__}: {exc}"
        return [Verdict.not_checked(str(chunk[0]), [message]).to_dict()]


class Output:
    """Where verdicts go as they are made: prose lines, JSON lines, or a JSON array written element by element
    (its ``]`` written however the loop ends, so what was printed stays valid JSON unless the process is
    killed; --jsonl loses nothing even then). Every write is flushed."""

    def __init__(self, form: str):
        self.form = form
        self.count = 0
        self.partial = False

    def __enter__(self) -> "Output":
        if self.form == "json":
            click.echo("[", nl=False)
        return self

    def write(self, result: dict) -> None:
        self.partial = self.partial or bool(result["errors"])
        if self.form == "json":
            # the layout json.dumps(results, indent=2) gives the whole array
            click.echo(("," if self.count else "") + "\n" + textwrap.indent(json.dumps(result, indent=2), "  "),
                       nl=False)
        elif self.form == "jsonl":
            click.echo(json.dumps(result))
        else:
            click.echo(verdict_line(result))
        self.count += 1

    def __exit__(self, *exc) -> None:
        if self.form == "json":
            click.echo("\n]" if self.count else "]")


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
