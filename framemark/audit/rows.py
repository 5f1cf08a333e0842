"""The row: what ``results.jsonl`` holds for one file, made in one place.

A row is the file's verdict exactly as ``verify --json`` gives it (``Verdict.to_dict()``) followed by the
audit's bookkeeping (docs/audit.md, "The results store"): the content hash and size that are the resume key, the
seconds spent, and, where known, ``mtime_ns``, ``label``, ``audited_at``, ``timing`` (verify's stages plus the
audit's), ``video`` (what the container headers say). A file refused before any check (over a limit, unreadable
to hash, its worker died) starts from ``Verdict.not_checked``: the same fields, ``verdict`` null, ``errors``
saying why.
"""

from __future__ import annotations

import datetime as dt

from framemark.detect.verdict import Verdict


def audit_row(verdict: Verdict, *, sha256: str | None = None, size: int | None = None,
              duration_s: float | None = None, elapsed_s: float = 0.0, timing: dict | None = None,
              **bookkeeping) -> dict:
    """``verdict.to_dict()`` plus the bookkeeping every row has (``sha256``, ``size``, ``duration_s``,
    ``elapsed_s``) and what the caller knows besides (``mtime_ns``, ``label``, ``audited_at``, ``video``, ...).
    ``timing``: stages the audit timed, added to verify's own."""
    row = verdict.to_dict()
    if timing is not None:
        row["timing"] = {**row["timing"], **timing}
    row.update(sha256=sha256, size=size, duration_s=duration_s, elapsed_s=elapsed_s, **bookkeeping)
    return row


def utc_now() -> str:
    """When a row or a results folder was made (UTC, to the second)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
