"""Planning: what is left to do for a list of items, given the rows a results store already holds.

Content decides, not the name: every item is hashed (SHA-256; a file whose path, size and mtime match a stored
row keeps that row's hash without being read again, so resuming a large audit costs a stat per file), a hash the
store already has is resumed, a hash seen earlier in this audit is a duplicate sharing that file's result, and
every other hash becomes one :class:`Task` for a worker.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from framemark.detect.verdict import Verdict
from framemark.media import special_file_kind

from .discovery import Item
from .rows import audit_row


@dataclass(frozen=True)
class Task:
    """One file for a worker: where it is, what its bytes hash to (as planned), its label."""

    path: str
    sha256: str
    size: int
    mtime_ns: int
    hash_s: float = 0.0
    label: str | None = None


@dataclass
class Plan:
    """``tasks`` to run (one per distinct content); ``known`` rows the store already has for these items (resume);
    ``failed`` rows made without a worker (a file that cannot even be read to hash it); ``copies``: items whose
    content equals another item's that is still to be checked (path -> the path whose result they share)."""

    items: list[Item]
    tasks: list[Task]
    known: dict[str, dict]       # sha256 -> stored row (the file's own row when it has one)
    failed: list[dict]
    copies: dict[str, str]
    sha_of: dict[str, str]       # item path -> sha256 (items that could be hashed)
    stored: dict[tuple[str, str], dict] = field(default_factory=dict)  # (path, sha256) -> that path's stored row

    @property
    def resumed(self) -> int:
        """Items whose result the store already had."""
        return sum(1 for sha in self.sha_of.values() if sha in self.known)

    @property
    def duplicates(self) -> int:
        """Items whose content equals an earlier item's in this audit, whether their result is new or resumed
        (``copies`` alone would count only the new ones: a resumed audit would report none)."""
        return len(self.sha_of) - len(set(self.sha_of.values()))


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def plan(items: list[Item], stored_rows: list[dict], *, hash_threads: int = 4) -> Plan:
    """Hash what needs hashing and decide what is left to do.

    Files that cannot be read get a row at once (``failed``) and are retried on the next run; so do FIFOs,
    sockets and devices, refused from ``stat`` before anything opens them.
    """
    by_sha: dict[str, dict] = {}
    for r in stored_rows:  # the row of the file that was checked, not of a copy that shared its result
        if r.get("sha256") and (r["sha256"] not in by_sha or "duplicate_of" in by_sha[r["sha256"]]):
            by_sha[r["sha256"]] = r
    by_path = {(r["file"], r["sha256"]): r for r in stored_rows if r.get("sha256")}
    by_stat = {(r["file"], r.get("size"), r.get("mtime_ns")): r["sha256"] for r in stored_rows
               if r.get("sha256") and r.get("mtime_ns") is not None}

    def hash_one(item: Item) -> tuple[Item, tuple | str]:
        try:
            st = os.stat(item.path)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):  # never opened: reading a FIFO blocks
                return item, f"cannot read video {item.path!r}: {special_file_kind(st.st_mode)}, not a regular file"
            cached = by_stat.get((item.path, st.st_size, st.st_mtime_ns))
            started = time.perf_counter()
            sha = cached or file_sha256(item.path)
            return item, (sha, st.st_size, st.st_mtime_ns, 0.0 if cached else time.perf_counter() - started)
        except FileNotFoundError:
            return item, f"cannot read video {item.path!r}: file not found"
        except IsADirectoryError:
            return item, f"cannot read video {item.path!r}: it is a directory, not a file"
        except OSError as exc:
            return item, f"cannot read video {item.path!r}: {exc.strerror or exc}"

    with ThreadPoolExecutor(max(1, hash_threads)) as pool:
        hashed = list(pool.map(hash_one, items))
    tasks, known, failed, copies, sha_of, first_path = [], {}, [], {}, {}, {}
    for item, info in hashed:
        if isinstance(info, str):
            failed.append(audit_row(Verdict.not_checked(item.path, [info]), label=item.label))
            continue
        sha, size, mtime_ns, hash_s = info
        sha_of[item.path] = sha
        if sha in by_sha:
            known[sha] = by_sha[sha]
        elif sha in first_path:
            copies[item.path] = first_path[sha]
        else:
            first_path[sha] = item.path
            tasks.append(Task(item.path, sha, size, mtime_ns, round(hash_s, 4), item.label))
    return Plan(items, tasks, known, failed, copies, sha_of, stored=by_path)
