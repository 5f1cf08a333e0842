"""The passive classifier: P(synthetic) from the pixels alone, for clips that carry no mark.

Three parts, as scikit-learn composes them:

* the **features step**, ``passive_features.PassiveFeatures``: clips -> a (n_samples, 29) matrix, measured with
  the autoencoder the model was trained with;
* the **estimator**, :class:`PassiveClassifier`, a scikit-learn classifier over that matrix: standard scaling,
  then gradient-boosted trees or a logistic regression, calibrated with ``CalibratedClassifierCV`` over folds
  split by source; ``fit(X, y, groups)`` also chooses the decision threshold for 1% false positives on the real
  clips' out-of-fold probabilities (never on a test split, never below 0.5);
* the **artefact**, :class:`LoadedClassifier`: estimator + features step + model card, what :func:`load` returns
  and ``verify`` calls ``score_frames`` on. On disk it is a folder: ``passive.skops`` (the fitted
  ``CalibratedClassifierCV``, skops, no pickle; the types it may contain are pinned in ``TRUSTED_TYPES`` and
  anything else is refused) beside ``model_card.json`` (version, threshold, feature names, the autoencoder's
  weights hash, how it was trained and measured).

``fit`` and the three helpers it needs (``make_estimator``, ``group_folds``, ``threshold_for_fpr``) live here and
not with the rest of training in ``framemark.lab.passive_training``: scikit-learn's contract puts ``fit`` on the
estimator's own class, the runtime loads that class, and nothing under ``detect/`` may import ``lab/``. Building
datasets, training from a dataset folder, the metrics and the evaluations are in ``lab/``.

The shipped default lives in ``detect/default_classifier/``; docs/classifier.md has its card, its numbers and the
commands that made them.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from framemark.errors import ModelError

from . import passive_features as pf
from .verdict import ClassifierEvidence

DEFAULT_DIR = Path(__file__).resolve().parent / "default_classifier"
MODEL_FILE = "passive.skops"
CARD_FILE = "model_card.json"
# The held-out split's features, stored beside a model so that it can be re-measured without the clips.
HELDOUT_FILE = "heldout_features.npz"
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
CALIBRATIONS = ("isotonic", "sigmoid")


# ------------------------------------------------------------------------------------------------ the estimator

class PassiveClassifier(ClassifierMixin, BaseEstimator):
    """P(synthetic) from a feature matrix: a scikit-learn classifier with a decision threshold of its own.

    ``kind``: the base model, ``"hgb"`` (gradient-boosted trees) or ``"logistic"``, after standard scaling.
    ``calibration``: ``"isotonic"`` or ``"sigmoid"`` (``CalibratedClassifierCV``, one calibrated pair per fold).
    ``target_fpr``, ``min_threshold``: the threshold is the lowest probability that at most ``target_fpr`` of the
    training real clips reach out of fold, and never below ``min_threshold`` ("likely" means more likely than
    not, whatever a too-clean training set would allow).

    ``fit(X, y, groups)`` needs ``groups`` (the source of each sample): calibration folds are split by it, so a
    pair is calibrated on sources it was not fitted on. Labels are 0 (real) and 1 (synthetic).

    Fitted attributes: ``calibrated_`` (the ``CalibratedClassifierCV``), ``threshold_``, ``classes_``,
    ``n_features_in_``, ``folds_``; after ``fit`` also ``oof_proba_`` (each training sample's out-of-fold
    P(synthetic)), which a loaded model does not have.
    """

    def __init__(self, kind: str = "hgb", calibration: str = "isotonic", target_fpr: float = TARGET_FPR,
                 min_threshold: float = MIN_THRESHOLD, max_folds: int = 5, random_state: int = 0):
        self.kind = kind
        self.calibration = calibration
        self.target_fpr = target_fpr
        self.min_threshold = min_threshold
        self.max_folds = max_folds
        self.random_state = random_state

    def fit(self, X, y, groups) -> "PassiveClassifier":
        """Fit the calibrated pipeline on (X, y) with calibration folds split by ``groups``, and choose the
        threshold on the real clips' out-of-fold probabilities. ValueError for data it cannot be fitted on."""
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.model_selection import PredefinedSplit

        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=int), np.asarray(groups)
        if X.ndim != 2 or len(y) != len(X) or len(groups) != len(X):
            raise ValueError(f"expected features (n, features) with n labels and n groups, got {X.shape}, "
                             f"{len(y)} labels, {len(groups)} groups")
        if not np.isfinite(X).all():
            raise ValueError("features contain NaN or infinity")
        folds = group_folds(y, groups, self.max_folds)
        cv = PredefinedSplit(folds)
        splits = list(cv.split())
        calibrated = CalibratedClassifierCV(make_estimator(self.kind, self.random_state), method=self.calibration,
                                            cv=cv, ensemble=True)
        calibrated.fit(X, y)
        # out-of-fold probabilities: each calibrated pair on the fold it was not fitted on
        oof = np.full(len(y), np.nan)
        for pair, (_, held_out) in zip(calibrated.calibrated_classifiers_, splits):
            oof[held_out] = pair.predict_proba(X[held_out])[:, 1]
        self.calibrated_ = calibrated
        self.threshold_ = float(max(threshold_for_fpr(oof[y == 0], self.target_fpr), self.min_threshold))
        self.classes_ = calibrated.classes_
        self.n_features_in_ = X.shape[1]
        self.folds_ = int(folds.max()) + 1
        self.oof_proba_ = oof
        return self

    @classmethod
    def from_calibrated(cls, calibrated, threshold: float) -> "PassiveClassifier":
        """The fitted estimator around a stored ``CalibratedClassifierCV`` (what ``passive.skops`` holds) and the
        threshold its model card chose. ``kind`` and ``calibration`` are read off the stored model."""
        from sklearn.linear_model import LogisticRegression

        base = calibrated.estimator.named_steps["model"] if hasattr(calibrated.estimator, "named_steps") else None
        est = cls(kind="logistic" if isinstance(base, LogisticRegression) else "hgb",
                  calibration=str(calibrated.method))
        est.calibrated_ = calibrated
        est.threshold_ = float(threshold)
        est.classes_ = calibrated.classes_
        est.n_features_in_ = int(calibrated.n_features_in_)
        est.folds_ = len(calibrated.calibrated_classifiers_)
        return est

    def predict_proba(self, X) -> np.ndarray:
        """(n_samples, 2): P(real), P(synthetic) of each row of features."""
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected features (n, {self.n_features_in_}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("features contain NaN or infinity")
        return self.calibrated_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """1 (synthetic) where P(synthetic) reaches ``threshold_``, else 0: the ``likely-synthetic`` rule."""
        check_is_fitted(self)
        return self.classes_[(self.predict_proba(X)[:, 1] >= self.threshold_).astype(int)]


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


def threshold_for_fpr(real_scores: np.ndarray, fpr: float = TARGET_FPR) -> float:
    """The smallest score that at most ``fpr`` of ``real_scores`` reach (strictly above the rest)."""
    s = np.sort(np.asarray(real_scores, dtype=float))
    if s.size == 0:
        raise ValueError("no real clips to choose a threshold on")
    allowed = int(np.floor(fpr * s.size))  # how many real clips may be at or above the threshold
    cut = s[s.size - allowed - 1]  # the highest score that must stay below it
    return float(min(1.0, np.nextafter(cut, np.inf)))


# ------------------------------------------------------------------------------------------------ the artefact

@dataclass
class LoadedClassifier:
    """A classifier ready to score clips: the fitted estimator, the features step it was trained on, and its
    model card. What :func:`load` returns, and what training hands back before saving it.

    ``features`` is None when it was loaded without an autoencoder: it then measures stored feature matrices
    (``estimator.predict_proba``) but cannot score frames. ``feature_names`` are the estimator's columns (all of
    ``passive_features.feature_names()`` for any model that is saved or loaded; a subset only in studies).
    """

    estimator: PassiveClassifier
    features: pf.PassiveFeatures | None
    version: str
    feature_names: list[str] = field(default_factory=pf.feature_names)
    card: dict = field(default_factory=dict)
    folder: Path | None = None  # where it was loaded from

    @property
    def threshold(self) -> float:
        return float(self.estimator.threshold_)

    def score_frames(self, frames: np.ndarray, fps: float = pf.WINDOW_FPS) -> ClassifierEvidence:
        """uint8 frames (T,H,W,3) of any clip -> the verdict's ``classifier`` part."""
        if self.features is None:
            raise ModelError(f"classifier {self.version} was loaded without an autoencoder: it cannot score frames")
        starts = pf.window_starts(frames.shape[0], fps)
        rows = np.stack([self.features.clip(frames[start:], fps) for start in starts])
        probs = self.estimator.predict_proba(rows)[:, 1]
        p = float(probs[0])
        top = int(np.argmax(probs))
        span = (pf.WINDOW_FRAMES - 1) * pf.window_stride(fps) + 1
        window = {"start_s": round(starts[top] / fps, 3),
                  "end_s": round(min(frames.shape[0], starts[top] + span) / fps, 3),
                  "p_synthetic": round(float(probs[top]), 4)}
        return ClassifierEvidence(p_synthetic=round(p, 4), model_version=self.version,
                                  threshold=round(self.threshold, 4), above_threshold=bool(p >= self.threshold),
                                  windows=len(starts), top_window=window)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``passive.skops`` and ``model_card.json`` into ``folder``; ``card`` becomes what was written."""
        import skops.io as sio

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sio.dump(self.estimator.calibrated_, folder / MODEL_FILE, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
        untrusted = set(sio.get_untrusted_types(file=folder / MODEL_FILE)) - set(TRUSTED_TYPES)
        if untrusted:  # our own bug: a new estimator type that the pinned list does not name yet
            raise RuntimeError(f"the model holds types not in TRUSTED_TYPES: {sorted(untrusted)}")
        autoencoder_sha = self.features.autoencoder.weights_sha256 if self.features is not None else vae_sha256()
        card = dict(self.card)
        card.update(version=self.version, threshold=self.threshold, feature_names=list(self.feature_names),
                    features_version=pf.FEATURES_VERSION, vae_sha256=autoencoder_sha,
                    target_fpr=self.estimator.target_fpr, model_file=MODEL_FILE,
                    model_sha256=_sha256(folder / MODEL_FILE))
        (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        self.card = card
        return folder


# ------------------------------------------------------------------------------------------------ loading

def _model_folder(folder: str | os.PathLike | None) -> Path:
    """A classifier folder (default: the shipped one); a path to its ``.skops`` file means its folder."""
    folder = Path(folder) if folder is not None else DEFAULT_DIR
    return folder.parent if folder.is_file() and folder.suffix == ".skops" else folder


def read_card(folder: str | os.PathLike | None = None) -> dict:
    """A classifier folder's model card (default: the shipped one's), {} when missing or unreadable."""
    try:
        card = json.loads((_model_folder(folder) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def card_version(folder: str | os.PathLike | None = None) -> str | None:
    """The version a classifier folder's model card names (default: the shipped one), without loading the model;
    None when the card is missing or unreadable (``load`` says why)."""
    version = read_card(folder).get("version")
    return None if version is None else str(version)


def check_folder(folder: str | os.PathLike | None) -> None:
    """ModelError unless ``folder`` has a classifier's two files (cheap: nothing is loaded)."""
    folder = _model_folder(folder)
    if not folder.is_dir():
        raise ModelError(f"classifier folder not found: {folder}")
    for name in (MODEL_FILE, CARD_FILE):
        if not (folder / name).is_file():
            raise ModelError(f"classifier folder {folder} is incomplete: missing {name}")


def load(folder: str | os.PathLike | None = None, autoencoder=None) -> LoadedClassifier:
    """A classifier folder (``passive.skops`` + ``model_card.json``; default: the shipped one), scoring frames
    with ``autoencoder`` (a ``VideoAutoencoder`` whose weights are the ones the card names; None: the classifier
    only measures stored features, and the card must name the embedded model's VAE). Anything wrong with the
    folder (missing, corrupt, untrusted types, other features or another VAE) is a ModelError."""
    import skops.io as sio

    folder = _model_folder(folder)
    check_folder(folder)
    model_file, card_file = folder / MODEL_FILE, folder / CARD_FILE
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
        version, threshold, names = str(card["version"]), float(card["threshold"]), list(card["feature_names"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"classifier card {card_file} is not readable: {exc}") from exc
    if card.get("features_version") != pf.FEATURES_VERSION or names != pf.feature_names():
        raise ModelError(f"classifier {folder} was trained on features version {card.get('features_version')}; "
                         f"this framemark computes version {pf.FEATURES_VERSION}: retrain it")
    if autoencoder is None:
        if card.get("vae_sha256") not in (None, vae_sha256()):
            raise ModelError(f"classifier {folder} was trained with another VAE than the embedded model's: "
                             f"retrain it")
    elif card.get("vae_sha256") not in (None, autoencoder.weights_sha256):
        raise ModelError(f"classifier {folder} was trained with another VAE than the one given to score with")
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
    if not hasattr(model, "predict_proba") or not hasattr(model, "calibrated_classifiers_"):
        raise ModelError(f"classifier file {model_file} does not hold a calibrated classifier")
    if getattr(model, "n_features_in_", len(names)) != len(names):
        raise ModelError(f"classifier file {model_file} takes {model.n_features_in_} features; its card names "
                         f"{len(names)}")
    return LoadedClassifier(estimator=PassiveClassifier.from_calibrated(model, threshold),
                            features=pf.PassiveFeatures(autoencoder) if autoencoder is not None else None,
                            version=version, feature_names=names, card=card, folder=folder)


@lru_cache(maxsize=1)
def load_default() -> LoadedClassifier:
    """The shipped classifier with the embedded model's autoencoder, loaded once per process (for scripts; the
    front doors load through ``framemark.runtime``)."""
    from framemark.generator.models import load_autoencoder

    return load(DEFAULT_DIR, autoencoder=load_autoencoder())


@lru_cache(maxsize=1)
def vae_sha256() -> str:
    """The weights hash of the embedded model's VAE, which the shipped features use (computed from its files,
    as ``VideoAutoencoder.weights_sha256`` is, without loading it)."""
    from framemark.generator.models import DEFAULT_MODEL_DIR, autoencoder_sha256

    return autoencoder_sha256(DEFAULT_MODEL_DIR)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
