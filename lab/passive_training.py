"""Training and measuring the passive classifier, off the runtime path.

``verify`` needs only ``detect/classifier.py`` (the estimator, the features step, loading). What makes and
measures a classifier is here: training from feature matrices (``train``) or from a dataset folder
(``train_dataset``, which also saves the model folder with its held-out features), the metrics (``metrics``,
``ece``, ``tpr_at_fpr``) and the evaluations behind `framemark detect eval` (``evaluate`` on feature matrices,
``evaluate_dataset`` on a dataset folder's clips, ``evaluate_shipped`` on the features stored with a model).

The estimator's ``fit`` itself lives in ``detect/classifier.py`` (scikit-learn's contract puts it on the class the
runtime loads); this module adds what a model card says about a fit: the data, the settings, the out-of-fold
rates at the threshold, the held-out numbers.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from framemark.detect import classifier as passive
from framemark.detect import passive_features as pf
from framemark.errors import ModelError

from . import passive_dataset as pd


# ------------------------------------------------------------------------------------------------ training

def train(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, estimator: str = "hgb", method: str = "isotonic",
          version: str | None = None, seed: int = 0, card: dict | None = None,
          feature_names: list[str] | None = None, autoencoder=None) -> passive.LoadedClassifier:
    """Fit ``PassiveClassifier(estimator, method)`` on (X, y) with calibration folds split by ``groups``, and
    describe the fit in the card's ``training`` part. ``autoencoder``: the one X's ``vae_*`` features were
    measured with, which the returned classifier scores frames with (None: it measures matrices only).
    ``feature_names``: X's columns when they are a subset of the features (for studies)."""
    import sklearn

    X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=int), np.asarray(groups)
    names = list(feature_names) if feature_names is not None else pf.feature_names()
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"expected {len(names)} features, got {X.shape[1] if X.ndim == 2 else X.shape}")
    started = time.perf_counter()
    est = passive.PassiveClassifier(kind=estimator, calibration=method, random_state=seed).fit(X, y, groups)
    seconds = time.perf_counter() - started
    oof = est.oof_proba_
    info = dict(card or {})
    info.setdefault("training", {}).update(
        estimator=estimator, calibration=method, folds=est.folds_, samples=int(len(y)), synthetic=int(y.sum()),
        real=int((y == 0).sum()), groups=int(len(set(groups))), seconds=round(seconds, 2),
        sklearn=sklearn.__version__, python=platform.python_version(),
        oof_fpr_at_threshold=float((oof[y == 0] >= est.threshold_).mean()),
        oof_tpr_at_threshold=float((oof[y == 1] >= est.threshold_).mean()))
    return passive.LoadedClassifier(
        estimator=est, features=pf.PassiveFeatures(autoencoder) if autoencoder is not None else None,
        version=version or f"passive-{pf.FEATURES_VERSION}.{estimator}", feature_names=names, card=info)


def train_dataset(folder: str | os.PathLike, out: str | os.PathLike, *, estimator: str = "hgb",
                  method: str = "isotonic", conditions: tuple[str, ...] | None = None, version: str | None = None,
                  command: str | None = None, progress=None,
                  workers: int = 1) -> tuple[passive.LoadedClassifier, dict]:
    """Train on the ``train`` rows of a dataset folder (every perturbation condition as augmentation), measure
    on its ``test`` rows when it has them, and save the model folder ``out`` (with the test rows' features, so
    ``detect eval`` can re-measure without the clips). Returns the classifier and a report."""
    from framemark.generator.models import load_autoencoder

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
    autoencoder = load_autoencoder()
    feats = pd.load_features(folder, rows, list(conditions), autoencoder, progress=progress, errors=errors,
                             workers=workers)
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
    clf = train(X[ok], y[ok], g[ok], estimator=estimator, method=method, version=version, card=card,
                autoencoder=autoencoder)
    report: dict = {"errors": errors}
    if test_rows:
        te = np.array([index[id(r)] for r in test_rows])
        test_feats = {c: feats[c][te] for c in conditions}
        report["heldout"] = evaluate(clf, np.array([r.y for r in test_rows]), [r.source for r in test_rows],
                                     test_feats)
        clf = replace(clf, card={**clf.card,
                                 "heldout_metrics": {k: v for k, v in report["heldout"].items() if k != "per_source"},
                                 "heldout_per_source": report["heldout"]["per_source"]})
    clf.save(out)
    if test_rows:
        save_heldout(Path(out) / passive.HELDOUT_FILE, test_rows, test_feats)
    report["model_dir"] = str(out)
    report["training"] = clf.card["training"]
    return clf, report


def save_heldout(path: Path, rows: list[pd.Row], feats: dict[str, np.ndarray]) -> None:
    """The held-out rows' features per condition, beside a model (``evaluate_shipped`` reads them back)."""
    conds = sorted(feats)
    np.savez_compressed(path, conditions=np.array(conds), X=np.stack([feats[c] for c in conds]).astype(np.float32),
                        y=np.array([r.y for r in rows], dtype=np.int8), source=np.array([r.source for r in rows]),
                        group=np.array([r.group for r in rows]), path=np.array([r.path for r in rows]))


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


def tpr_at_fpr(p: np.ndarray, y: np.ndarray, fpr: float = passive.TARGET_FPR) -> float:
    """The largest true-positive rate of a threshold whose false-positive rate is at most ``fpr``."""
    from sklearn.metrics import roc_curve

    f, t, _ = roc_curve(y, p)
    ok = f <= fpr + 1e-12
    return float(t[ok].max()) if ok.any() else 0.0


def metrics(p: np.ndarray, y: np.ndarray, threshold: float | None = None) -> dict:
    """Counts, AUC, AP, TPR at 1% FPR (when both classes are present), ECE, and the rates at ``threshold``."""
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


# ------------------------------------------------------------------------------------------------ evaluation

def evaluate(clf: passive.LoadedClassifier, labels: np.ndarray, sources: list[str],
             features: dict[str, np.ndarray]) -> dict:
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
        p, yy, ss = clf.estimator.predict_proba(X[ok])[:, 1], y[ok], sources[ok]
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


def evaluate_dataset(clf: passive.LoadedClassifier, folder: str | os.PathLike, split: str = "test",
                     conditions: tuple[str, ...] | None = None, progress=None, workers: int = 1) -> dict:
    """``evaluate`` on a dataset folder's ``split`` rows (``all``: every row; a folder without a test split is
    measured whole, and says so). Features are measured with ``clf``'s autoencoder (the embedded model's when it
    was loaded without one)."""
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
    autoencoder = clf.features.autoencoder if clf.features is not None else None
    feats = pd.load_features(folder, chosen, list(conditions), autoencoder, progress=progress, errors=errors,
                             workers=workers)
    result = evaluate(clf, np.array([r.y for r in chosen]), [r.source for r in chosen], feats)
    result.update(dataset=str(folder), split=split if note is None else "all", errors=errors)
    if note:
        result["note"] = note
    return result


def evaluate_shipped(clf: passive.LoadedClassifier, model_dir: str | os.PathLike | None = None) -> dict:
    """``evaluate`` on the held-out features stored beside a model (the project's held-out split for the
    shipped model), without the clips."""
    folder = Path(model_dir) if model_dir is not None else passive.DEFAULT_DIR
    path = folder / passive.HELDOUT_FILE
    if not path.is_file():
        raise ModelError(f"{folder} has no stored held-out features ({passive.HELDOUT_FILE}): give a DATASET to "
                         f"evaluate on")
    try:
        with np.load(path, allow_pickle=False) as z:
            conds, X, y, source = list(z["conditions"]), z["X"].astype(np.float64), z["y"], list(z["source"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    result = evaluate(clf, y, source, {str(c): X[i] for i, c in enumerate(conds)})
    result.update(dataset=f"{path} (held-out split stored with the model)", split="test", errors=[])
    return result


def evaluate_model(model_dir: str | os.PathLike | None = None, dataset: str | os.PathLike | None = None, *,
                   split: str = "test", progress=None, workers: int = 1) -> dict:
    """What `framemark detect eval` measures: the classifier in ``model_dir`` (default: the shipped one) on
    ``dataset``'s ``split``, or without a dataset on the held-out features stored with it. A bad dataset is
    named before the model loads."""
    if dataset is not None:
        pd.read_manifest(dataset)
    clf = passive.load(model_dir)
    if dataset is None:
        return evaluate_shipped(clf, model_dir)
    return evaluate_dataset(clf, dataset, split=split, progress=progress, workers=workers)
