"""The passive classifier: P(synthetic) from the pixels alone, for clips that carry no mark.

A scikit-learn pipeline (standard scaling, then gradient-boosted trees or a logistic regression) calibrated with
``CalibratedClassifierCV`` over folds split by source, on the features of ``passive_features``. The decision
threshold is chosen for 1% false positives on real clips from out-of-fold predictions of the training data (never
from the test split). Persisted with skops (no pickle) beside a ``model_card.json``; the types the skops file may
contain are pinned in ``TRUSTED_TYPES`` and anything else is refused.

The shipped default lives in ``detect/default_classifier/``; docs/classifier.md has its card, its numbers and the
commands that made them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from framemark.errors import ModelError

from . import passive_features as pf

DEFAULT_DIR = Path(__file__).resolve().parent / "default_classifier"
MODEL_FILE = "passive.skops"
CARD_FILE = "model_card.json"
TARGET_FPR = 0.01
MIN_THRESHOLD = 0.5

# Every non-builtin type a classifier file of ours may hold (what skops.io.get_untrusted_types lists for the
# pipelines ``make_estimator`` builds). A file naming any other type is refused, not loaded.
# (skops trusts the common scikit-learn estimators by itself; these four are the ones it asks about, for skops
# 0.16 and scikit-learn 1.9, over both estimators and both calibration methods.)
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.PredefinedSplit",
)

ESTIMATORS = ("hgb", "logistic")


@dataclass
class PassiveClassifier:
    """A fitted calibrated model with what it needs to be used and described."""

    model: object  # CalibratedClassifierCV
    threshold: float
    version: str
    feature_names: list[str]
    card: dict = field(default_factory=dict)
    folder: Path | None = None  # where it was loaded from
    _vae: object = None

    # ---------------------------------------------------------------------------------------------- scoring

    def vae(self):
        """The default model's VAE, loaded on first use (the ``vae_*`` features need exactly this one)."""
        if self._vae is None:
            self._vae = load_vae()
        return self._vae

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected features (n, {len(self.feature_names)}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("features contain NaN or infinity")
        return self.model.predict_proba(X)[:, 1]

    def features(self, frames: np.ndarray, fps: float = pf.WINDOW_FPS) -> np.ndarray:
        return pf.extract_vector(pf.prepare_clip(frames, fps), self.vae())

    def score_frames(self, frames: np.ndarray, fps: float = pf.WINDOW_FPS) -> dict:
        """uint8 frames (T,H,W,3) of any clip -> ``{p_synthetic, model_version, threshold, above_threshold}``."""
        p = float(self.predict_proba(self.features(frames, fps)[None])[0])
        return {"p_synthetic": round(p, 4), "model_version": self.version, "threshold": round(self.threshold, 4),
                "above_threshold": bool(p >= self.threshold)}

    # ---------------------------------------------------------------------------------------------- saving

    def save(self, folder: str | os.PathLike) -> Path:
        import skops.io as sio

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        import zipfile

        sio.dump(self.model, folder / MODEL_FILE, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
        untrusted = set(sio.get_untrusted_types(file=folder / MODEL_FILE)) - set(TRUSTED_TYPES)
        if untrusted:  # our own bug: a new estimator type that the pinned list does not name yet
            raise RuntimeError(f"the model holds types not in TRUSTED_TYPES: {sorted(untrusted)}")
        card = dict(self.card)
        card.update(version=self.version, threshold=self.threshold, feature_names=self.feature_names,
                    features_version=pf.FEATURES_VERSION, vae_sha256=vae_sha256(), target_fpr=TARGET_FPR,
                    model_file=MODEL_FILE, model_sha256=_sha256(folder / MODEL_FILE))
        (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        self.card = card
        return folder


def load(folder: str | os.PathLike | None = None) -> PassiveClassifier:
    """A classifier folder (``passive.skops`` + ``model_card.json``; default: the shipped one). Anything wrong
    with it (missing, corrupt, untrusted types, other features or another VAE) is a ModelError."""
    import skops.io as sio

    folder = Path(folder) if folder is not None else DEFAULT_DIR
    if folder.is_file() and folder.suffix == ".skops":
        folder = folder.parent
    model_file, card_file = folder / MODEL_FILE, folder / CARD_FILE
    if not folder.is_dir():
        raise ModelError(f"classifier folder not found: {folder}")
    for f in (model_file, card_file):
        if not f.is_file():
            raise ModelError(f"classifier folder {folder} is incomplete: missing {f.name}")
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
        version, threshold, names = str(card["version"]), float(card["threshold"]), list(card["feature_names"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"classifier card {card_file} is not readable: {exc}") from exc
    if card.get("features_version") != pf.FEATURES_VERSION or names != pf.feature_names():
        raise ModelError(f"classifier {folder} was trained on features version {card.get('features_version')}; "
                         f"this framemark computes version {pf.FEATURES_VERSION}: retrain it")
    if card.get("vae_sha256") not in (None, vae_sha256()):
        raise ModelError(f"classifier {folder} was trained with another VAE than the embedded model's: retrain it")
    try:
        untrusted = set(sio.get_untrusted_types(file=model_file))
    except Exception as exc:  # skops raises assorted types for files that are not its format
        raise ModelError(f"classifier file {model_file} is not a readable skops file: {exc}") from exc
    extra = untrusted - set(TRUSTED_TYPES)
    if extra:
        raise ModelError(f"classifier file {model_file} holds types that are not trusted: {', '.join(sorted(extra))}")
    try:
        model = sio.load(model_file, trusted=list(untrusted))
    except Exception as exc:
        raise ModelError(f"classifier file {model_file} could not be loaded: {exc}") from exc
    if not hasattr(model, "predict_proba"):
        raise ModelError(f"classifier file {model_file} does not hold a classifier")
    return PassiveClassifier(model=model, threshold=threshold, version=version, feature_names=names, card=card,
                             folder=folder)


def card_version(folder: str | os.PathLike | None = None) -> str | None:
    """The version a classifier folder's model card names (default: the shipped one), without loading the model;
    None when the card is missing or unreadable (``load`` says why)."""
    try:
        card = json.loads((Path(folder or DEFAULT_DIR) / CARD_FILE).read_text(encoding="utf-8"))
        return str(card["version"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None


@lru_cache(maxsize=1)
def load_default() -> PassiveClassifier:
    """The shipped classifier, loaded once per process."""
    return load(DEFAULT_DIR)


def load_vae():
    """The embedded default model's VAE on the CPU (fp32), without the rest of the pipeline."""
    from framemark.generator.pipeline import DEFAULT_MODEL_DIR

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from diffusers import AutoencoderKLWan
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    try:
        vae = AutoencoderKLWan.from_pretrained(DEFAULT_MODEL_DIR / "vae", local_files_only=True,
                                               torch_dtype=torch.float32)
    except Exception as exc:
        raise ModelError(f"cannot load the default model's VAE from {DEFAULT_MODEL_DIR / 'vae'}: {exc}") from exc
    return vae.eval()


@lru_cache(maxsize=1)
def vae_sha256() -> str:
    from framemark.generator.pipeline import DEFAULT_MODEL_DIR

    files = sorted((DEFAULT_MODEL_DIR / "vae").glob("*.safetensors"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ training

def make_estimator(kind: str = "hgb", seed: int = 0):
    """The uncalibrated pipeline: scaling, then the model."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "hgb":
        model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=15,
                                               min_samples_leaf=20, l2_regularization=1.0, random_state=seed)
    elif kind == "logistic":
        model = LogisticRegression(C=0.3, max_iter=2000)
    else:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {kind!r}")
    return Pipeline([("scale", StandardScaler()), ("model", model)])


def group_folds(y: np.ndarray, groups: np.ndarray, max_folds: int = 5) -> np.ndarray:
    """Calibration fold of each sample, by group: the groups that hold real clips are dealt round-robin over the
    folds, then the others, so that every fold's held-out part has real and synthetic clips and no group is on
    both sides. As many folds as the real groups allow (at most ``max_folds``); fewer than 2 raise ValueError."""
    real_groups = sorted(set(groups[y == 0]))
    other_groups = sorted(set(groups) - set(real_groups))
    syn_groups = set(groups[y == 1])
    k = min(max_folds, len(real_groups), len(syn_groups))
    if k < 2:
        raise ValueError(f"training needs real and synthetic clips from at least 2 separate sources (groups) "
                         f"each, for calibration folds split by source; got {len(real_groups)} real and "
                         f"{len(syn_groups)} synthetic group(s)")
    fold_of = {g: i % k for i, g in enumerate(real_groups)}
    fold_of.update({g: i % k for i, g in enumerate(other_groups)})
    folds = np.array([fold_of[g] for g in groups])
    for f in range(k):
        if len(set(y[folds == f])) < 2 or len(set(y[folds != f])) < 2:
            raise ValueError("a calibration fold lacks one class: add sources (groups) of both classes")
    return folds


def train(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, estimator: str = "hgb", method: str = "isotonic",
          version: str | None = None, seed: int = 0, card: dict | None = None,
          feature_names: list[str] | None = None) -> PassiveClassifier:
    """Fit the calibrated pipeline on (X, y) with calibration folds split by ``groups``, and choose the
    threshold for 1% false positives on the real clips' out-of-fold probabilities."""
    import sklearn
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import PredefinedSplit

    X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=int), np.asarray(groups)
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or infinity")
    folds = group_folds(y, groups)
    k = int(folds.max()) + 1
    cv = PredefinedSplit(folds)
    splits = list(cv.split())
    started = time.perf_counter()
    model = CalibratedClassifierCV(make_estimator(estimator, seed), method=method, cv=cv, ensemble=True)
    model.fit(X, y)
    # out-of-fold probabilities: each calibrated pair on the fold it was not fitted on
    oof = np.full(len(y), np.nan)
    for pair, (_, te) in zip(model.calibrated_classifiers_, splits):
        oof[te] = pair.predict_proba(X[te])[:, 1]
    # at most 1% of the real clips' out-of-fold probabilities reach it, and never below 0.5: "likely" means more
    # likely than not, whatever a too-clean training set would allow
    threshold = max(threshold_for_fpr(oof[y == 0], TARGET_FPR), MIN_THRESHOLD)
    names = list(feature_names) if feature_names is not None else pf.feature_names()  # a subset: for studies
    if X.shape[1] != len(names):
        raise ValueError(f"expected {len(names)} features, got {X.shape[1]}")
    info = dict(card or {})
    info.setdefault("training", {}).update(
        estimator=estimator, calibration=method, folds=k, samples=int(len(y)), synthetic=int(y.sum()),
        real=int((y == 0).sum()), groups=int(len(set(groups))), seconds=round(time.perf_counter() - started, 2),
        sklearn=sklearn.__version__, python=platform.python_version(),
        oof_fpr_at_threshold=float((oof[y == 0] >= threshold).mean()),
        oof_tpr_at_threshold=float((oof[y == 1] >= threshold).mean()))
    return PassiveClassifier(model=model, threshold=float(threshold),
                             version=version or f"passive-{pf.FEATURES_VERSION}.{estimator}", feature_names=names,
                             card=info)


def threshold_for_fpr(real_scores: np.ndarray, fpr: float = TARGET_FPR) -> float:
    """The smallest score that at most ``fpr`` of ``real_scores`` reach (strictly above the rest)."""
    s = np.sort(np.asarray(real_scores, dtype=float))
    if s.size == 0:
        raise ValueError("no real clips to choose a threshold on")
    allowed = int(np.floor(fpr * s.size))  # how many real clips may be at or above the threshold
    cut = s[s.size - allowed - 1]  # the highest score that must stay below it
    return float(min(1.0, np.nextafter(cut, np.inf)))


# ------------------------------------------------------------------------------------------------ metrics

def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |mean label - mean P(synthetic)| per equal-width bin, weighted by its share."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def tpr_at_fpr(p: np.ndarray, y: np.ndarray, fpr: float = TARGET_FPR) -> float:
    """The largest true-positive rate of a threshold whose false-positive rate is at most ``fpr``."""
    from sklearn.metrics import roc_curve

    f, t, _ = roc_curve(y, p)
    ok = f <= fpr + 1e-12
    return float(t[ok].max()) if ok.any() else 0.0


def metrics(p: np.ndarray, y: np.ndarray, threshold: float | None = None) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=int)
    out: dict = {"n": int(len(y)), "synthetic": int(y.sum()), "real": int((y == 0).sum())}
    if 0 < y.sum() < len(y):
        out.update(auc=round(float(roc_auc_score(y, p)), 4), ap=round(float(average_precision_score(y, p)), 4),
                   tpr_at_1pct_fpr=round(tpr_at_fpr(p, y), 4))
    out["ece"] = round(ece(p, y), 4)
    if threshold is not None:
        if (y == 0).any():
            out["fpr_at_threshold"] = round(float((p[y == 0] >= threshold).mean()), 4)
        if (y == 1).any():
            out["tpr_at_threshold"] = round(float((p[y == 1] >= threshold).mean()), 4)
    return out


def evaluate(clf: PassiveClassifier, labels: np.ndarray, sources: list[str], features: dict[str, np.ndarray]) -> dict:
    """Metrics of ``clf`` on labelled feature matrices, one per condition (``clean``, ``h264_crf28``,
    ``resize_0.5``, ...): the headline numbers are the clean condition's; ``per_perturbation``, ``pooled`` (all
    conditions together) and ``per_source`` (each synthetic kind against all real clips; each real source's
    false-positive rate) break them down. Rows whose features are NaN (unreadable clips) are left out and
    counted in ``skipped``."""
    y = np.asarray(labels, dtype=int)
    sources = np.asarray(sources)
    per_condition: dict = {}
    per_source: dict = {}
    pooled_p, pooled_y = [], []
    skipped = 0
    for cond, X in features.items():
        ok = np.isfinite(X).all(axis=1)
        skipped = max(skipped, int((~ok).sum()))
        p, yy, ss = clf.predict_proba(X[ok]), y[ok], sources[ok]
        per_condition[cond] = metrics(p, yy, clf.threshold)
        pooled_p.append(p)
        pooled_y.append(yy)
        real = yy == 0
        for src in sorted(set(ss)):
            m = ss == src
            entry: dict = {"n": int(m.sum()), "mean_p": round(float(p[m].mean()), 4)}
            if yy[m].all():  # a synthetic source: against every real clip of this condition
                if real.any():
                    sel = m | real
                    entry.update(auc=metrics(p[sel], yy[sel])["auc"])
                entry["tpr_at_threshold"] = round(float((p[m] >= clf.threshold).mean()), 4)
            else:
                entry["fpr_at_threshold"] = round(float((p[m] >= clf.threshold).mean()), 4)
            per_source.setdefault(str(src), {})[cond] = entry
    headline = per_condition.get("clean") or next(iter(per_condition.values()))
    out = {"model_version": clf.version, "threshold": round(clf.threshold, 4)}
    out.update({k: headline.get(k) for k in ("auc", "ap", "tpr_at_1pct_fpr", "ece", "fpr_at_threshold",
                                             "tpr_at_threshold", "n", "synthetic", "real")})
    if "clean" in per_condition and "h264_crf28" in per_condition and "auc" in per_condition["clean"]:
        out["auc_drop_crf28"] = round(per_condition["clean"]["auc"] - per_condition["h264_crf28"]["auc"], 4)
    out["per_perturbation"] = per_condition
    out["pooled"] = metrics(np.concatenate(pooled_p), np.concatenate(pooled_y), clf.threshold)
    out["per_source"] = per_source
    out["skipped"] = skipped
    return out


# ------------------------------------------------------------------------------------------------ datasets

HELDOUT_FILE = "heldout_features.npz"


def _dataset_features(folder, rows, conditions, clf_vae, progress, errors, workers=1):
    from . import passive_dataset as pd

    return pd.load_features(folder, rows, conditions, clf_vae, progress=progress, errors=errors, workers=workers)


def train_dataset(folder: str | os.PathLike, out: str | os.PathLike, *, estimator: str = "hgb",
                  method: str = "isotonic", conditions: tuple[str, ...] | None = None, version: str | None = None,
                  command: str | None = None, progress=None, workers: int = 1) -> tuple[PassiveClassifier, dict]:
    """Train on the ``train`` rows of a dataset folder (every perturbation condition as augmentation), measure
    on its ``test`` rows when it has them, and save the model folder ``out`` (with the test rows' features, so
    ``detect eval`` can re-measure without the clips). Returns the classifier and a report."""
    from . import passive_dataset as pd

    folder = Path(folder)
    rows = pd.read_manifest(folder)
    conditions = tuple(conditions or pd.CONDITIONS)
    unknown = [c for c in conditions if c not in pd.CONDITIONS]
    if unknown:
        raise pd.DatasetError(f"unknown condition(s) {', '.join(unknown)}; known: {', '.join(pd.CONDITIONS)}")
    train_rows = [r for r in rows if r.split == "train"]
    test_rows = [r for r in rows if r.split == "test"]
    if not train_rows:
        raise pd.DatasetError(f"dataset {folder} has no train rows")
    errors: list[str] = []
    vae = load_vae()
    feats = _dataset_features(folder, rows, list(conditions), vae, progress, errors, workers)
    index = {id(r): i for i, r in enumerate(rows)}
    tr = np.array([index[id(r)] for r in train_rows])
    X = np.concatenate([feats[c][tr] for c in conditions])
    y = np.concatenate([[r.y for r in train_rows]] * len(conditions))
    g = np.concatenate([[r.group for r in train_rows]] * len(conditions))
    ok = np.isfinite(X).all(axis=1)
    if not ok.any():
        raise pd.DatasetError(f"no clip of {folder} could be read")
    card = {"training": {"dataset": str(folder), "dataset_rows": len(rows), "train_clips": len(train_rows),
                         "test_clips": len(test_rows), "conditions": list(conditions),
                         "counts": pd.counts(rows), "command": command}}
    info = folder / pd.INFO
    if info.is_file():
        try:
            card["training"]["dataset_settings"] = json.loads(info.read_text()).get("settings")
        except (OSError, ValueError):
            pass
    clf = train(X[ok], y[ok], g[ok], estimator=estimator, method=method, version=version, card=card)
    clf._vae = vae
    report: dict = {"errors": errors}
    if test_rows:
        te = np.array([index[id(r)] for r in test_rows])
        test_feats = {c: feats[c][te] for c in conditions}
        report["heldout"] = evaluate(clf, np.array([r.y for r in test_rows]), [r.source for r in test_rows],
                                     test_feats)
        clf.card["heldout_metrics"] = {k: v for k, v in report["heldout"].items() if k != "per_source"}
        clf.card["heldout_per_source"] = report["heldout"]["per_source"]
    clf.save(out)
    if test_rows:
        _save_heldout(Path(out) / HELDOUT_FILE, test_rows, test_feats)
    report["model_dir"] = str(out)
    report["training"] = clf.card["training"]
    return clf, report


def _save_heldout(path: Path, rows, feats: dict[str, np.ndarray]) -> None:
    conds = sorted(feats)
    np.savez_compressed(path, conditions=np.array(conds), X=np.stack([feats[c] for c in conds]).astype(np.float32),
                        y=np.array([r.y for r in rows], dtype=np.int8), source=np.array([r.source for r in rows]),
                        group=np.array([r.group for r in rows]), path=np.array([r.path for r in rows]))


def evaluate_dataset(clf: PassiveClassifier, folder: str | os.PathLike, split: str = "test",
                     conditions: tuple[str, ...] | None = None, progress=None, workers: int = 1) -> dict:
    """``evaluate`` on a dataset folder's ``split`` rows (``all``: every row; a folder without a test split is
    measured whole, and says so)."""
    from . import passive_dataset as pd

    folder = Path(folder)
    rows = pd.read_manifest(folder)
    conditions = tuple(conditions or pd.CONDITIONS)
    chosen = rows if split == "all" else [r for r in rows if r.split == split]
    note = None
    if not chosen:
        if split == "test":
            chosen, note = rows, "the dataset has no test split: measured on all its rows"
        else:
            raise pd.DatasetError(f"dataset {folder} has no {split} rows")
    errors: list[str] = []
    feats = _dataset_features(folder, chosen, list(conditions), clf.vae() if workers <= 1 else None, progress,
                              errors, workers)
    result = evaluate(clf, np.array([r.y for r in chosen]), [r.source for r in chosen], feats)
    result.update(dataset=str(folder), split=split if note is None else "all", errors=errors)
    if note:
        result["note"] = note
    return result


def evaluate_shipped(clf: PassiveClassifier, model_dir: str | os.PathLike | None = None) -> dict:
    """``evaluate`` on the held-out features stored beside a model (the project's held-out split for the
    shipped model), without the clips."""
    folder = Path(model_dir) if model_dir is not None else DEFAULT_DIR
    path = folder / HELDOUT_FILE
    if not path.is_file():
        raise ModelError(f"{folder} has no stored held-out features ({HELDOUT_FILE}): give a DATASET to evaluate on")
    try:
        with np.load(path, allow_pickle=False) as z:
            conds, X, y, source = list(z["conditions"]), z["X"].astype(np.float64), z["y"], list(z["source"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    result = evaluate(clf, y, source, {str(c): X[i] for i, c in enumerate(conds)})
    result.update(dataset=f"{path} (held-out split stored with the model)", split="test", errors=[])
    return result
