"""Batch audits: many files -> ``runtime.verify`` on each -> a resumable results store (``DIR/results.jsonl``).

The audit is a front door, beside the CLI and the service: its workers load through ``framemark.runtime``, and
it sits above ``generator/`` and ``detect/``, which it only calls. Its parts, one module each:

* ``discovery``: a folder (recursive; video files found by content sniffing as well as by extension), a glob,
  one file, or a CSV/JSONL list of paths with optional ground-truth labels -> :class:`Item`\\ s;
* ``config``: :class:`AuditConfig`, the runtime's ``Resolved`` plus the audit's limits, thumbnails and threads,
  and the settings fingerprint a results folder is bound to;
* ``plan``: content hashes (cached by path/size/mtime from earlier rows), what the store already holds,
  duplicates -> the tasks still to run;
* ``rows``: the row, ``Verdict.to_dict()`` plus the audit's bookkeeping, made in one place;
* ``work``: what one worker does with one task (limits, verify, thumbnail, a row when it fails);
* ``engines``: the local engine, N crash-isolated worker processes; ``ray_engine``: Ray actors on a local or
  remote cluster; both yield outcomes as they finish;
* ``store``: :class:`ResultsStore`, each row appended with flush + fsync as it arrives, a torn last line
  tolerated, rows of other settings refused, one audit per folder at a time;
* ``run``: :func:`run_audit`, which ties them together and reports :class:`Progress` to a callback, and the
  summary;
* ``report``: the self-contained HTML report.

A bad file (unreadable, truncated, not a video, over a limit) gets a row with ``errors``; nothing stops the batch,
not even a worker process dying on a file (that file gets a row saying so and a fresh worker takes over).
"""

from __future__ import annotations

from .config import AuditConfig
from .discovery import Discovery, Item, discover
from .engines import local_outcomes
from .errors import AuditError
from .ray_engine import ray_outcomes
from .run import AuditResult, Progress, run_audit
from .store import RESULTS_FILE, ResultsStore

__all__ = ["AuditConfig", "AuditError", "AuditResult", "Discovery", "Item", "Progress", "RESULTS_FILE",
           "ResultsStore", "discover", "local_outcomes", "ray_outcomes", "run_audit"]
