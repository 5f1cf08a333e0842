"""What an audit covers: a folder, a glob, one file or a CSV/JSONL list -> :class:`Item`\\ s, and labels.

A folder or a glob is filtered by content: a file is audited when its first bytes sniff as a video container
(``framemark.media.sniff_container``) or its name has a video extension, so an upload saved as ``upload.bin`` is
found and a truncated ``clip.mp4`` still gets a row saying what is wrong. A FIFO, socket or device found there is
audited too (its row says what it is; nothing opens it: reading a FIFO blocks). A list is taken as it is: every
listed path is audited. Nothing here reads more than a regular file's first kilobyte.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from framemark.media import SNIFF_BYTES, sniff_container

from .errors import AuditError

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .qt .mkv .webm .avi .wmv .asf .flv .f4v .ts .m2ts .mts .mpg .mpeg .m2v .vob .3gp .3g2 .ogv "
    ".mxf .ivf .y4m .h264 .264 .h265 .265 .hevc .dv".split())
LIST_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

SYNTHETIC_LABELS = frozenset({"synthetic", "ai", "ai-generated", "generated", "fake", "1", "true", "yes", "positive"})
REAL_LABELS = frozenset({"real", "authentic", "camera", "human", "natural", "0", "false", "no", "negative"})


@dataclass(frozen=True)
class Item:
    """One input to audit: an absolute path and its ground-truth label (``synthetic``/``real``) if known."""

    path: str
    label: str | None = None


@dataclass(frozen=True)
class Discovery:
    items: list[Item]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why it is not audited)


def video_like(path: str) -> tuple[bool, str]:
    """Whether ``path`` is audited when found in a folder or by a glob, and why (or why not).

    Video-like = its bytes sniff as a video container, or its name has a video extension (so a truncated or
    corrupt upload named .mp4 still gets a row saying what is wrong with it).
    """
    ext = os.path.splitext(path)[1].lower()
    if _special(path):  # never opened: a FIFO blocks its reader
        return True, "a special file (its row says what it is)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        if ext in VIDEO_EXTENSIONS:
            return True, f"unreadable ({exc.strerror or exc}), but named {ext}"
        return False, f"unreadable: {exc.strerror or exc}"
    container = sniff_container(head)
    if container:
        return True, f"content is {container}"
    if ext in VIDEO_EXTENSIONS:
        return True, f"named {ext}"
    return False, "not a video (by content and by name)"


def discover(source: str | os.PathLike, *, exclude: Iterable[str | os.PathLike] = ()) -> Discovery:
    """The items an audit of ``source`` covers, in a stable order.

    ``source``: a folder (walked recursively, symlinked folders not followed, hidden entries skipped), a glob
    (``uploads/**/*.mp4``), a CSV/JSONL list (:func:`read_list`; every listed path is audited, video-like or not),
    or one file. ``exclude``: folders never to descend into (the audit's own output folder).
    Raises AuditError when ``source`` names nothing usable.
    """
    text = os.fspath(source)
    excluded = {os.path.abspath(os.fspath(e)) for e in exclude}
    if os.path.isdir(text):
        return _scan(_walk(text, excluded))
    if os.path.isfile(text):
        fmt = LIST_FORMATS.get(os.path.splitext(text)[1].lower())
        if fmt is not None:
            return Discovery(read_list(text))
        return Discovery([Item(os.path.abspath(text))])
    if _special(text):  # one FIFO, socket or device: its row says what it is
        return Discovery([Item(os.path.abspath(text))])
    if glob.has_magic(text):
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise AuditError(f"no file matches {text!r}")
        paths: list[str] = []
        for m in matches:
            paths.extend(_walk(m, excluded) if os.path.isdir(m) else [m])
        return _scan(paths)
    if os.path.lexists(text):
        raise AuditError(f"{text} is neither a file nor a folder")
    raise AuditError(f"input not found: {text}")


def _special(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _walk(folder: str, excluded: set[str]) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.abspath(os.path.join(root, d)) not in excluded)
        found.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return found


def _scan(paths: Iterable[str]) -> Discovery:
    """Items and skipped files of ``paths``: regular files by :func:`video_like`; a FIFO, socket or device is an
    item, never opened here (the plan gives it its error row), so nothing found is dropped without a word."""
    items, skipped, seen = [], [], set()
    for p in paths:
        absolute = os.path.abspath(p)
        if absolute in seen:
            continue
        try:
            mode = os.stat(absolute).st_mode
        except OSError:
            continue  # vanished since the walk, or a dangling link
        if stat.S_ISDIR(mode):
            continue
        seen.add(absolute)
        if not stat.S_ISREG(mode):
            items.append(Item(absolute))
            continue
        ok, why = video_like(absolute)
        if ok:
            items.append(Item(absolute))
        else:
            skipped.append((absolute, why))
    return Discovery(items, skipped)


# ------------------------------------------------------------------------------------------------ lists and labels

def normalize_label(text: object, where: str) -> str | None:
    """A ground-truth label as ``synthetic`` or ``real``; empty -> None; anything else -> AuditError."""
    value = str(text if text is not None else "").strip().lower()
    if not value:
        return None
    if value in SYNTHETIC_LABELS:
        return "synthetic"
    if value in REAL_LABELS:
        return "real"
    raise AuditError(f"{where}: label {text!r} is neither synthetic ({', '.join(sorted(SYNTHETIC_LABELS))}) nor "
                     f"real ({', '.join(sorted(REAL_LABELS))})")


def read_list(path: str | os.PathLike) -> list[Item]:
    """A CSV or JSONL list of files -> items (paths relative to the list's folder; labels normalised).

    CSV: a header naming a ``path`` (or ``file``) column and optionally a ``label`` column; without a header, the
    first column is the path and the second, if any, the label. JSONL: one object per line with ``path`` (or
    ``file``) and optionally ``label``, or a bare JSON string. Blank lines and ``#`` lines are ignored.
    """
    path = os.fspath(path)
    fmt = LIST_FORMATS.get(os.path.splitext(path)[1].lower(), "csv")
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read the list {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    entries = _csv_entries(text, path) if fmt == "csv" else _jsonl_entries(text, path)
    base = os.path.dirname(os.path.abspath(path))
    items = [Item(os.path.abspath(os.path.join(base, os.path.expanduser(p))), label) for p, label in entries]
    if not items:
        raise AuditError(f"the list {path} names no file")
    return items


def _csv_entries(text: str, where: str) -> list[tuple[str, str | None]]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)
            and not r[0].lstrip().startswith("#")]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    path_col, label_col, first = 0, 1, 1
    if set(header) & {"path", "file", "filename"}:
        path_col = next(i for i, c in enumerate(header) if c in ("path", "file", "filename"))
        label_col = next((i for i, c in enumerate(header) if c in ("label", "truth", "ground_truth")), None)
        rows, first = rows[1:], 2
    out = []
    for n, row in enumerate(rows, start=first):
        if path_col >= len(row) or not row[path_col].strip():
            raise AuditError(f"{where}, row {n}: no path")
        label = row[label_col] if label_col is not None and label_col < len(row) else None
        out.append((row[path_col].strip(), normalize_label(label, f"{where}, row {n}")))
    return out


def _jsonl_entries(text: str, where: str) -> list[tuple[str, str | None]]:
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AuditError(f"{where}, line {n}: not JSON ({exc.msg})") from None
        if isinstance(obj, str):
            obj = {"path": obj}
        p = obj.get("path", obj.get("file")) if isinstance(obj, dict) else None
        if not isinstance(p, str) or not p.strip():
            raise AuditError(f"{where}, line {n}: expected an object with a \"path\" string (or a JSON string)")
        out.append((p.strip(), normalize_label(obj.get("label"), f"{where}, line {n}")))
    return out


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """A labels CSV (``path,label``, header optional) -> {absolute path: label}; relative paths are taken relative
    to the labels file's folder. Rows without a label are ignored."""
    labels = {item.path: item.label for item in read_list(path) if item.label is not None}
    if not labels:
        raise AuditError(f"the labels file {path} has no labels (columns: path,label; labels synthetic or real)")
    return labels


def apply_labels(items: list[Item], labels: dict[str, str]) -> list[Item]:
    """Attach labels by absolute path, else by file name when that name is unique in ``labels``."""
    by_name: dict[str, list[str]] = {}
    for p, label in labels.items():
        by_name.setdefault(os.path.basename(p), []).append(label)
    out = []
    for item in items:
        label = labels.get(item.path)
        if label is None:
            named = by_name.get(os.path.basename(item.path), [])
            label = named[0] if len(named) == 1 else item.label
        out.append(Item(item.path, label))
    return out
