"""Batch audits: many files -> ``verify_file`` on each -> a resumable results store (``DIR/results.jsonl``).

The parts, each a function of data where it can be:

* **discovery** (:func:`discover`): a folder (recursive; video files found by content sniffing as well as by
  extension), a glob, one file, or a CSV/JSONL list of paths with optional ground-truth labels -> ``Item``\\ s;
* **planning** (:func:`plan`): content hashes (SHA-256, cached by path/size/mtime from earlier rows), what the
  store already holds, duplicates -> the ``Task``\\ s still to run;
* **work** (:class:`Auditor`): one process's verifier, the model loaded once; a task -> an ``Outcome`` (the
  row: ``verify --json``'s object plus ``sha256``, ``size``, ``duration_s``, ``elapsed_s`` ... and a thumbnail);
* **engines**: :func:`local_outcomes` (N worker processes on this machine, crash-isolated) and
  ``audit_ray.ray_outcomes`` (Ray actors on a local or remote cluster), both yielding outcomes as they finish;
* **the store** (:class:`ResultsStore`): appends each row with flush + fsync the moment it arrives, tolerates a
  torn last line, refuses to mix results made with other settings, one audit per folder at a time;
* :func:`run_audit` ties them together and reports progress through a callback.

A bad file (unreadable, truncated, not a video, over a limit) gets a row with ``errors``; nothing stops the batch,
not even a worker process dying on a file (that file gets a row saying so and a fresh worker takes over).
"""

from __future__ import annotations

import csv
import datetime as dt
import glob
import hashlib
import io
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait as wait_for
from pathlib import Path

from framemark.errors import FramemarkError

from . import DEFAULT_FPR, DEFAULT_INVERSION_STEPS

RESULTS_FILE = "results.jsonl"
SETTINGS_FILE = "audit.json"
THUMBS_DIR = "thumbs"
LOCK_FILE = ".lock"

# Verdicts verify can give (docs/provenance.md), in order of precedence; "error" stands for verdict null (the file
# could not be checked) wherever verdicts are counted or named (--fail-on, reports).
VERDICTS = ("tampered", "signed-synthetic", "watermarked-synthetic", "likely-synthetic", "no-evidence")
ERROR = "error"
# Verdicts that flag a file as (possibly edited) synthetic, for label metrics.
FLAGGED = frozenset({"tampered", "signed-synthetic", "watermarked-synthetic", "likely-synthetic"})

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .qt .mkv .webm .avi .wmv .asf .flv .f4v .ts .m2ts .mts .mpg .mpeg .m2v .vob .3gp .3g2 .ogv "
    ".mxf .ivf .y4m .h264 .264 .h265 .265 .hevc .dv".split())
LIST_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
SNIFF_BYTES = 1024
# ISO BMFF brands that are still images or audio, not video
_NON_VIDEO_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis",
                               b"M4A ", b"M4B ", b"M4P ", b"jp2 ", b"crx "})
_BMFF_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"uuid"})

SYNTHETIC_LABELS = frozenset({"synthetic", "ai", "ai-generated", "generated", "fake", "1", "true", "yes", "positive"})
REAL_LABELS = frozenset({"real", "authentic", "camera", "human", "natural", "0", "false", "no", "negative"})


class AuditError(FramemarkError):
    """The audit as asked cannot run: unusable input, list or labels, an output folder made with other settings
    or in use, a model that does not load. Never raised for one bad file (that file gets a row)."""


# ------------------------------------------------------------------------------------------------ limits

@dataclass(frozen=True)
class Limits:
    """What an audit refuses to decode (such a file gets a row whose ``errors`` names the limit).

    ``max_frames`` is not a refusal: longer clips are checked on their first ``max_frames`` frames (verify's own
    bound). ``max_width``/``max_height`` apply to the longer/shorter side, so portrait video is not penalised.
    """

    max_bytes: int = 2 * 1024 ** 3
    max_duration_s: float = 600.0
    max_width: int = 3840
    max_height: int = 2160
    max_frames: int = 600

    def size_problem(self, size: int) -> str | None:
        if size > self.max_bytes:
            return f"over the size limit: {format_bytes(size)} > {format_bytes(self.max_bytes)} (--max-size)"
        return None

    def video_problem(self, width: int, height: int, duration_s: float) -> str | None:
        long_side, short_side = max(width, height), min(width, height)
        lim_long, lim_short = max(self.max_width, self.max_height), min(self.max_width, self.max_height)
        if long_side > lim_long or short_side > lim_short:
            return (f"over the resolution limit: {width}x{height} > {self.max_width}x{self.max_height} "
                    f"(--max-resolution)")
        if duration_s > self.max_duration_s:
            return f"over the duration limit: {duration_s:.1f} s > {self.max_duration_s:g} s (--max-duration)"
        return None


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
               "mib": 1024 ** 2, "g": 1024 ** 3, "gb": 1024 ** 3, "gib": 1024 ** 3, "t": 1024 ** 4, "tb": 1024 ** 4,
               "tib": 1024 ** 4}


def parse_size(text: str) -> int:
    """'500MB', '2G', '1.5GiB', '1048576' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 500MB, 2G, 1048576)")
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if value < 1:
        raise ValueError(f"size must be at least 1 byte, got {text!r}")
    return int(value)


def parse_resolution(text: str) -> tuple[int, int]:
    """'3840x2160' -> (3840, 2160)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"not a resolution: {text!r} (example: 3840x2160)")
    return int(m.group(1)), int(m.group(2))


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# ------------------------------------------------------------------------------------------------ discovery

@dataclass(frozen=True)
class Item:
    """One input to audit: an absolute path and its ground-truth label (``synthetic``/``real``) if known."""

    path: str
    label: str | None = None


@dataclass(frozen=True)
class Discovery:
    items: list[Item]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why it is not audited)


def sniff_container(head: bytes) -> str | None:
    """The video container the first bytes of a file announce, or None. Content, not the name, decides."""
    if len(head) >= 12 and head[4:8] in _BMFF_BOXES:
        if head[4:8] == b"ftyp" and head[8:12] in _NON_VIDEO_BRANDS:
            return None
        return "mp4/mov"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "matroska/webm"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"0&\xb2u\x8ef\xcf\x11"):
        return "asf/wmv"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "mpeg-ps"
    for start, step in ((0, 188), (4, 192)):  # MPEG-TS, M2TS
        if len(head) > start + 2 * step and all(head[start + k * step] == 0x47 for k in range(3)):
            return "mpeg-ts"
    if head.startswith(b"OggS") and (b"\x80theora" in head or b"OVP80" in head or b"\x01video" in head):
        return "ogg-video"
    if head.startswith(b"DKIF"):
        return "ivf"
    if head.startswith(b"YUV4MPEG2"):
        return "y4m"
    if head.startswith(b"\x00\x00\x00\x01") and len(head) > 4 and (head[4] & 0x1F) in (7, 9):
        return "h264-annexb"
    return None


def video_like(path: str) -> tuple[bool, str]:
    """Whether ``path`` is audited when found in a folder or by a glob, and why (or why not).

    Video-like = its bytes sniff as a video container, or its name has a video extension (so a truncated or
    corrupt upload named .mp4 still gets a row saying what is wrong with it).
    """
    ext = os.path.splitext(path)[1].lower()
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


def _walk(folder: str, excluded: set[str]) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.abspath(os.path.join(root, d)) not in excluded)
        found.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return found


def _scan(paths: Iterable[str]) -> Discovery:
    items, skipped, seen = [], [], set()
    for p in paths:
        absolute = os.path.abspath(p)
        if absolute in seen or not os.path.isfile(absolute):
            continue
        seen.add(absolute)
        ok, why = video_like(absolute)
        if ok:
            items.append(Item(absolute))
        else:
            skipped.append((absolute, why))
    return Discovery(items, skipped)


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


# ------------------------------------------------------------------------------------------------ settings

@dataclass(frozen=True)
class AuditConfig:
    """Everything a worker needs to check a file. Picklable: it travels to worker processes and Ray actors.

    ``key_secret`` is the watermark key's secret (None: C2PA only, like verify without a key). ``threads``:
    torch threads per worker (None: this machine's cores divided by the workers).
    """

    key_secret: bytes | None = None
    model_dir: str | None = None
    fpr: float = DEFAULT_FPR
    steps: int = DEFAULT_INVERSION_STEPS
    trust_anchors: tuple[bytes, ...] = ()
    ledger_path: str | None = None
    limits: Limits = Limits()
    threads: int | None = None
    thumbnails: bool = True

    @property
    def key_id(self) -> str | None:
        if self.key_secret is None:
            return None
        from framemark.watermark import WatermarkKey

        return WatermarkKey(self.key_secret).key_id

    def fingerprint(self) -> dict:
        """What makes two audits' rows comparable; an output folder only accepts rows made with the same one."""
        from . import classifier

        anchors = hashlib.sha256(b"".join(sorted(self.trust_anchors))).hexdigest()[:16]
        return {"key_id": self.key_id, "model": os.path.abspath(self.model_dir) if self.model_dir else "embedded",
                "fpr": self.fpr, "steps": self.steps, "trust_anchors_sha256": anchors, "limits": asdict(self.limits),
                "classifier": classifier.card_version()}  # verdicts depend on it


# ------------------------------------------------------------------------------------------------ the store

@dataclass
class StoreContents:
    rows: list[dict]
    bad_lines: int


class ResultsStore:
    """``DIR/results.jsonl`` (one row per line, appended), ``DIR/audit.json`` (the settings fingerprint),
    ``DIR/thumbs/SHA256.jpg``. Open as a context manager: it holds an exclusive lock on the folder."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        self.results = self.dir / RESULTS_FILE
        self._fh = None
        self._lock = None

    def __enter__(self) -> "ResultsStore":
        import fcntl

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / THUMBS_DIR).mkdir(exist_ok=True)
            self._lock = open(self.dir / LOCK_FILE, "a")
        except OSError as exc:
            raise AuditError(f"cannot use the output folder {self.dir}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise AuditError(f"another audit is writing to {self.dir}; wait for it or use another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def check_settings(self, fingerprint: dict) -> None:
        """Record ``fingerprint`` for a new folder; refuse a folder whose rows were made with other settings."""
        path = self.dir / SETTINGS_FILE
        if path.exists():
            try:
                stored = json.loads(path.read_text())["settings"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise AuditError(f"{path} is unreadable ({exc}); move it away to start a new audit there") from None
            if stored != fingerprint:
                diff = ", ".join(f"{k}: {stored.get(k)!r} there, {fingerprint.get(k)!r} now"
                                 for k in fingerprint if stored.get(k) != fingerprint.get(k))
                raise AuditError(f"the results in {self.dir} were made with other settings ({diff}); use another "
                                 f"--out, or the same settings to resume")
            return
        _atomic_write(path, json.dumps({"settings": fingerprint, "created_at": _now()}, indent=2) + "\n")

    def load(self) -> StoreContents:
        """Every complete row; lines that do not parse (a write cut short by a crash) are counted and skipped."""
        rows, bad = [], 0
        try:
            data = self.results.read_bytes()
        except FileNotFoundError:
            return StoreContents([], 0)
        except OSError as exc:
            raise AuditError(f"cannot read {self.results}: {exc.strerror or exc}") from exc
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                bad += 1
                continue
            if isinstance(row, dict) and "file" in row and "verdict" in row:
                rows.append(row)
            else:
                bad += 1
        return StoreContents(rows, bad)

    def append(self, row: dict) -> None:
        """Write one row durably (flush + fsync) before returning."""
        if self._fh is None:
            self._fh = open(self.results, "ab")
            if self._fh.tell() > 0 and not _ends_with_newline(self.results):
                self._fh.write(b"\n")  # a torn last line stays alone (and is skipped) instead of swallowing this row
        self._fh.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def thumbnail_path(self, sha256: str) -> Path:
        return self.dir / THUMBS_DIR / f"{sha256}.jpg"

    def write_thumbnail(self, sha256: str, data: bytes) -> None:
        _atomic_write(self.thumbnail_path(sha256), data)

    def thumbnails(self, rows: Iterable[dict]) -> dict[str, bytes]:
        out = {}
        for row in rows:
            sha = row.get("sha256")
            if sha and sha not in out:
                try:
                    out[sha] = self.thumbnail_path(sha).read_bytes()
                except OSError:
                    pass
        return out


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _atomic_write(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------ planning

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
    content equals another item's (path -> the path whose result they share)."""

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


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def plan(items: list[Item], stored_rows: list[dict], *, hash_threads: int = 4) -> Plan:
    """Hash what needs hashing and decide what is left to do.

    A file whose path, size and mtime match a stored row is not re-read: the stored hash stands (resuming a large
    audit costs a stat per file). Files that cannot be read get a row at once and are never retried as done.
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
            failed.append(error_row(item.path, [info], label=item.label))
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


def error_row(path: str, errors: list[str], **extra) -> dict:
    """A row for a file that was not verified, shaped like verify's object for an unreadable file."""
    return {"file": path, "c2pa": None, "watermark": None, "ledger": None, "verdict": None, "errors": list(errors),
            "seconds": 0.0, "sha256": None, "size": None, "duration_s": None, "elapsed_s": 0.0, **extra}


# ------------------------------------------------------------------------------------------------ work

@dataclass
class Outcome:
    """A worker's answer for one task: the row, and a small JPEG thumbnail when the file decoded."""

    row: dict
    thumbnail: bytes | None = None


THUMBNAIL_SIZE = 112  # longest side, pixels


class Auditor:
    """The verifier of one worker process or Ray actor: loads the model (and opens the ledger) once."""

    def __init__(self, config: AuditConfig):
        import torch

        from framemark.ledger import Ledger
        from framemark.watermark import WatermarkKey

        from .verify import verify_file

        self.config = config
        threads = config.threads or max(1, (os.cpu_count() or 1))
        torch.set_num_threads(threads)
        self._verify = verify_file
        self.key = WatermarkKey(config.key_secret) if config.key_secret is not None else None
        self.pipe = None
        if self.key is not None:
            from framemark.generator import pipeline

            self.pipe = pipeline.load_pipeline(config.model_dir)
        self.ledger = Ledger(config.ledger_path, create=False) if config.ledger_path else None

    def audit(self, task: Task) -> Outcome:
        return audit_file(task, self.config, key=self.key, pipe=self.pipe, ledger=self.ledger,
                          verify=self._verify)

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()


def audit_file(task: Task, config: AuditConfig, *, key, pipe, ledger, verify) -> Outcome:
    """Check one file: limits first (size, then resolution and duration from the headers), then ``verify``."""
    from framemark import media

    started, cpu_started = time.perf_counter(), time.process_time()
    limits = config.limits
    extra: dict = {"video": None}
    problem = limits.size_problem(task.size)
    duration_s = None
    probe_s = 0.0
    if problem is None:
        t = time.perf_counter()
        try:
            info = media.probe_video(task.path)
        except FramemarkError:
            info = None  # verify reports why the file does not read
        probe_s = time.perf_counter() - t
        if info is not None:
            duration_s = round(info.duration_s, 3)
            extra["video"] = {"width": info.width, "height": info.height, "fps": round(info.fps, 3),
                              "frames": info.num_frames, "codec": info.codec}
            problem = limits.video_problem(info.width, info.height, info.duration_s)
    if problem is not None:
        row = error_row(task.path, [f"not checked: {problem}"])
        row.pop("sha256"), row.pop("size"), row.pop("duration_s"), row.pop("elapsed_s")
    else:
        row = verify(task.path, key=key, pipe=pipe, fpr=config.fpr, steps=config.steps, max_frames=limits.max_frames,
                     trust_anchors=config.trust_anchors, ledger=ledger)
    thumb, thumb_s = None, 0.0
    if config.thumbnails and row.get("verdict") is not None:
        t = time.perf_counter()
        thumb = thumbnail(task.path)
        thumb_s = time.perf_counter() - t
    timing = dict(row.get("timing") or {})
    timing.update(hash_s=task.hash_s, probe_s=round(probe_s, 4), thumbnail_s=round(thumb_s, 4),
                  cpu_s=round(time.process_time() - cpu_started, 3))  # CPU time of the worker, all its threads
    row.update(sha256=task.sha256, size=task.size, duration_s=duration_s,
               elapsed_s=round(time.perf_counter() - started, 3), mtime_ns=task.mtime_ns, label=task.label,
               audited_at=_now(), timing=timing, **extra)
    return Outcome(row, thumb)


def thumbnail(path: str) -> bytes | None:
    """A JPEG of the middle of the first frames, longest side THUMBNAIL_SIZE; None if the file does not decode."""
    import cv2

    from framemark import media

    try:
        frames = media.read_video(path, max_frames=9).frames
    except FramemarkError:
        return None
    frame = frames[len(frames) // 2]
    h, w = frame.shape[:2]
    scale = THUMBNAIL_SIZE / max(h, w)
    if scale < 1:
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else None


def crash_outcome(task: Task, message: str) -> Outcome:
    """The row for a file whose worker died or raised: the batch goes on, the row says what happened."""
    row = error_row(task.path, [message], sha256=task.sha256, size=task.size, mtime_ns=task.mtime_ns,
                    label=task.label, audited_at=_now())
    return Outcome(row)


# ------------------------------------------------------------------------------------------------ local engine

def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))


def local_outcomes(tasks: list[Task], config: AuditConfig, workers: int = 1) -> Iterator[Outcome]:
    """Run ``tasks`` on ``workers`` processes of this machine; yield each outcome as it finishes.

    Each process loads the model once. The driver hands a process its next file only when it reports the last
    one done, so it always knows which file a process is on: if the process dies (a decoder crash, the OOM
    killer), that file gets a row saying so and a fresh process takes over. ``workers=0`` runs in this process
    (no isolation; for library use and profiling).
    """
    if not tasks:
        return
    if workers == 0:
        auditor = Auditor(config)
        try:
            for task in tasks:
                yield _safe(auditor, task)
        finally:
            auditor.close()
        return
    if config.threads is None:
        config = _with_threads(config, threads_per_worker(workers))
    ctx = multiprocessing.get_context("spawn")
    pending = list(reversed(tasks))
    pool: list[_Worker] = []
    startup_failures = 0
    try:
        pool = [_Worker(ctx, config) for _ in range(min(workers, len(tasks)))]
        while pending or any(w.task is not None for w in pool):
            ready = set(wait_for([w.conn for w in pool] + [w.proc.sentinel for w in pool], timeout=5.0))
            for i, w in enumerate(pool):
                message = None
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        message = w.conn.recv() if w.conn.poll() else None
                    except (EOFError, OSError):
                        message = None
                if message is None and w.proc.is_alive():
                    continue
                if message is None:  # the process is gone
                    if w.task is not None and w.started:
                        yield crash_outcome(w.task, f"the worker process died while checking this file (exit code "
                                                    f"{w.proc.exitcode}); the file may crash the decoder")
                    else:  # died starting up or idle: whatever it was handed goes to another worker
                        if w.task is not None:
                            pending.append(w.task)
                        startup_failures += 1
                        if startup_failures > 2 * workers:
                            raise AuditError(f"worker processes keep dying at start (exit code {w.proc.exitcode})")
                    w.close()
                    pool[i] = w = _Worker(ctx, config)
                    continue
                kind, payload = message
                if kind == "init-failed":
                    raise AuditError(f"a worker could not start: {payload}")
                if kind == "started":
                    w.started = True
                    continue
                if kind == "done":
                    w.task, w.started = None, False
                    yield payload
                if pending and w.task is None:
                    w.task, w.started = pending.pop(), False
                    try:
                        w.conn.send(w.task)
                    except OSError:  # it just died: the next round finds out and hands the task on
                        pass
    finally:
        for w in pool:
            w.close()


def _with_threads(config: AuditConfig, threads: int) -> AuditConfig:
    from dataclasses import replace

    return replace(config, threads=threads)


def _safe(auditor: "Auditor", task: Task) -> Outcome:
    try:
        return auditor.audit(task)
    except Exception as exc:  # a bug of ours on an odd file must not stop the batch: the row carries it
        return crash_outcome(task, f"internal error while checking this file: {type(exc).__name__}: {exc}")


class _Worker:
    def __init__(self, ctx, config: AuditConfig):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(config, child), daemon=True)
        self.proc.start()
        child.close()
        self.task: Task | None = None
        self.started = False  # the worker acknowledged self.task: if it dies now, the file is to blame

    def close(self) -> None:
        try:
            if self.proc.is_alive():
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        self.conn.close()


def _worker_main(config: AuditConfig, conn) -> None:
    try:
        auditor = Auditor(config)
    except BaseException as exc:  # noqa: BLE001 - reported to the driver in words
        conn.send(("init-failed", str(exc) if isinstance(exc, FramemarkError) else f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    try:
        while True:
            try:
                task = conn.recv()
            except (EOFError, KeyboardInterrupt):
                break
            if task is None:
                break
            conn.send(("started", None))
            conn.send(("done", _safe(auditor, task)))
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        auditor.close()


# ------------------------------------------------------------------------------------------------ the audit

@dataclass
class Progress:
    """What a progress callback is told after every row: counts so far and the rate of this run."""

    done: int
    total: int
    elapsed_s: float
    row: dict | None = None

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


def format_progress(p: Progress) -> str:
    """'37/120 files, 2.41 files/s, ETA 0:34' (ETA unknown before the first file)."""
    eta = format_duration(p.eta_s) if p.eta_s is not None else "?"
    return f"{p.done}/{p.total} files, {p.rate:.2f} files/s, ETA {eta}"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


Engine = Callable[[list[Task], AuditConfig], Iterator[Outcome]]


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
        rows = _rows_for(the_plan, new)
        thumbs_dir = store.dir / THUMBS_DIR
        summary = summarize(rows, plan_=the_plan, checked=total, bad_lines=contents.bad_lines,
                            elapsed_s=time.perf_counter() - started, work_s=time.perf_counter() - work_started,
                            skipped=list(skipped))
        summary.update(out=str(store.dir), results=str(store.results), thumbnails=str(thumbs_dir))
    return AuditResult(rows, summary)


def _rows_for(p: Plan, new: dict[str, dict]) -> list[dict]:
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


def verdict_name(row: dict) -> str:
    return row.get("verdict") or ERROR


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
        "duplicates": len(plan_.copies) if plan_ else 0,
        "unreadable": len(plan_.failed) if plan_ else 0,
        "with_errors": sum(1 for r in rows if r.get("errors")),
        "verdicts": verdicts,
        "skipped": len(skipped),
        "skipped_examples": [f"{p}: {why}" for p, why in list(skipped)[:5]],
        "corrupt_lines_ignored": bad_lines,
        "elapsed_s": round(elapsed_s, 2),
        "files_per_s": round(checked / work_s, 3) if checked and work_s > 0 else None,
    }


def parse_fail_on(text: str | None) -> frozenset[str]:
    """'tampered,watermarked-synthetic' -> the set; 'error' means a file that could not be checked."""
    if not text:
        return frozenset()
    names = {t.strip().lower() for t in text.split(",") if t.strip()}
    unknown = sorted(names - {*VERDICTS, ERROR})
    if unknown:
        raise ValueError(f"unknown verdict(s) {', '.join(unknown)}; choose from {', '.join((*VERDICTS, ERROR))}")
    return frozenset(names)


def fail_on_hits(rows: list[dict], verdicts: frozenset[str]) -> list[dict]:
    return [r for r in rows if verdict_name(r) in verdicts]
