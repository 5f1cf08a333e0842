"""The audit as one call: :func:`run_audit` ties the parts together, tells a callback after every row, and
sums the rows up.

The store's settings are checked first (an audit with other settings never writes into a folder), then the plan
is made from what the store holds, files that cannot even be hashed get their rows, and the engine's outcomes are
stored as they arrive, each one's duplicates with it. The result has one row per item, in discovery order: new,
resumed, or shared with a copy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from framemark.detect.verdict import ERROR, VERDICTS, verdict_name

from .config import AuditConfig
from .discovery import Item
from .engines import Engine
from .plan import Plan, plan
from .store import ResultsStore


@dataclass
class Progress:
    """What a progress callback is told: before the first file (``done`` 0) and after every row."""

    done: int
    total: int
    elapsed_s: float
    row: dict | None = None


@dataclass
class AuditResult:
    rows: list[dict]              # one per item of this audit, in discovery order (stored, new or shared)
    summary: dict


def run_audit(items: list[Item], config: AuditConfig, out_dir: str | os.PathLike, *, engine: Engine,
              progress: Callable[[Progress], None] | None = None, skipped: list[tuple[str, str]] = ()) -> AuditResult:
    """Audit ``items`` into ``out_dir`` with ``engine``; rows are stored as they arrive. Returns every item's row.

    Raises AuditError before any work when the folder holds results of other settings or is in use.
    """
    started = time.perf_counter()
    with ResultsStore(out_dir) as store:
        store.check_settings(config.fingerprint())
        contents = store.load()
        the_plan = plan(items, contents.rows)
        for row in the_plan.failed:
            store.append(row)
        new: dict[str, dict] = {}
        total = len(the_plan.tasks)
        work_started = time.perf_counter()
        if progress is not None:
            progress(Progress(0, total, 0.0))
        label_of = {item.path: item.label for item in items}
        shared_paths: dict[str, list[str]] = {}
        for path, first in the_plan.copies.items():
            shared_paths.setdefault(first, []).append(path)
        for done, outcome in enumerate(engine(the_plan.tasks, config), start=1):
            row = outcome.row
            if outcome.thumbnail and row.get("sha256"):
                store.write_thumbnail(row["sha256"], outcome.thumbnail)
            store.append(row)
            new[row["file"]] = row
            for copy in shared_paths.get(row["file"], []):
                twin = {**row, "file": copy, "duplicate_of": row["file"], "elapsed_s": 0.0, "label": label_of.get(copy)}
                store.append(twin)
                new[copy] = twin
            if progress is not None:
                progress(Progress(done, total, time.perf_counter() - work_started, row))
        rows = rows_for(the_plan, new)
        summary = summarize(rows, plan_=the_plan, checked=total, bad_lines=contents.bad_lines,
                            elapsed_s=time.perf_counter() - started, work_s=time.perf_counter() - work_started,
                            skipped=list(skipped))
        summary.update(out=str(store.dir), results=str(store.results), thumbnails=str(store.thumbs_dir))
    return AuditResult(rows, summary)


def rows_for(p: Plan, new: dict[str, dict]) -> list[dict]:
    """One row per item in item order; a stored row found by content is shown under the item's current path and
    label (the file may have been renamed or relabelled since)."""
    failed = {r["file"]: r for r in p.failed}
    rows = []
    for item in p.items:
        if item.path in new:
            row = new[item.path]
        elif item.path in failed:
            row = failed[item.path]
        else:
            sha = p.sha_of.get(item.path)
            row = p.stored.get((item.path, sha))
            if row is None:
                stored = p.known.get(sha)
                if stored is None:  # a copy whose twin's row went missing (interrupted run): nothing to show
                    continue
                row = {k: v for k, v in stored.items() if k != "duplicate_of"}
                row.update(file=item.path, stored_as=stored["file"])
        if row.get("label") != item.label:
            row = {**row, "label": item.label}
        rows.append(row)
    return rows


def summarize(rows: list[dict], *, plan_: Plan | None = None, checked: int = 0, bad_lines: int = 0,
              elapsed_s: float = 0.0, work_s: float = 0.0, skipped: list[tuple[str, str]] = ()) -> dict:
    """Counts for the end of an audit (the CLI's last line with --json)."""
    verdicts = {v: 0 for v in (*VERDICTS, ERROR)}
    for row in rows:
        verdicts[verdict_name(row)] = verdicts.get(verdict_name(row), 0) + 1
    return {
        "files": len(rows),
        "checked": checked,
        "resumed": plan_.resumed if plan_ else 0,
        "duplicates": plan_.duplicates if plan_ else 0,
        "unreadable": len(plan_.failed) if plan_ else 0,
        "with_errors": sum(1 for r in rows if r.get("errors")),
        "verdicts": verdicts,
        "skipped": len(skipped),
        "skipped_examples": [f"{p}: {why}" for p, why in list(skipped)[:5]],
        "corrupt_lines_ignored": bad_lines,
        "elapsed_s": round(elapsed_s, 2),
        "files_per_s": round(checked / work_s, 3) if checked and work_s > 0 else None,
    }


def fail_on_hits(rows: list[dict], verdicts: frozenset[str]) -> list[dict]:
    """The rows whose verdict (``error``: could not be checked) is one of ``verdicts`` (``--fail-on``)."""
    return [r for r in rows if verdict_name(r) in verdicts]
