"""The audit report: its numbers (ROC, confusion, metrics), escaping of what uploaders control, the classifier
column, and the page as a real browser (Debian's chromium, headless) draws it."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from framemark.audit import report


def row(name, verdict, *, p=None, label=None, classifier=None, sha=None, tamper=None, cells=None, errors=()):
    mark = None
    if p is not None:
        mark = {"detected": verdict in ("watermarked-synthetic", "signed-synthetic", "tampered"), "p_value": p,
                "log10_p_value": float(np.log10(p)) if p > 0 else -300.0, "payload": "00000000a0004f2c",
                "bit_accuracy": 0.9, "tamper": tamper or {"assessed": False}, "cell_agreement": cells}
    r = {"file": f"/uploads/{name}", "c2pa": {"state": "absent", "codes": [], "manifest": None}, "watermark": mark,
         "ledger": None, "verdict": verdict, "errors": list(errors), "sha256": sha, "size": 1000, "duration_s": 2.1,
         "elapsed_s": 1.5, "label": label}
    if classifier is not None:
        r["classifier"] = {"p_synthetic": classifier, "model_version": "passive-0.1"}
    return r


def test_roc_curve_and_auc():
    fpr, tpr, auc = report.roc_curve([0.9, 0.8, 0.3, 0.1], [True, True, False, False])
    assert auc == pytest.approx(1.0) and fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert report.roc_curve([0.1, 0.2, 0.8, 0.9], [True, True, False, False])[2] == pytest.approx(0.0)
    assert report.roc_curve([0.5, 0.5, 0.5, 0.5], [True, False, True, False])[2] == pytest.approx(0.5)
    # one positive ranked below one negative of three: AUC = 1 - 1/(2*3)
    assert report.roc_curve([5, 4, 3, 2, 1], [True, False, True, False, False])[2] == pytest.approx(5 / 6)


def test_confusion_and_metrics_count_labelled_rows():
    rows = [row("a", "watermarked-synthetic", p=1e-30, label="synthetic"),
            row("b", "no-evidence", p=0.7, label="synthetic"),
            row("c", "no-evidence", p=0.4, label="real"),
            row("d", "tampered", p=1e-9, label="real"),
            row("e", None, label="real", errors=["cannot read video"])]
    truths, columns, m = report.confusion(rows)
    assert truths == ["synthetic", "real"] and "likely-synthetic" not in columns
    assert m[0, columns.index("watermarked-synthetic")] == 1 and m[0, columns.index("no-evidence")] == 1
    assert m[1, columns.index("tampered")] == 1 and m[1, columns.index("error")] == 1 and m.sum() == 5
    metrics = report.label_metrics(rows)
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (1, 1, 1, 1)
    assert metrics["labelled"] == 4 and metrics["precision"] == 0.5


def test_scores():
    assert report.watermark_score(row("a", "no-evidence", p=1e-7)) == pytest.approx(7)
    assert report.watermark_score(row("a", "no-evidence", p=1e-300)) == report.SCORE_CAP
    assert report.watermark_score(row("a", None)) is None
    assert report.classifier_score(row("a", "likely-synthetic", classifier=0.93)) == 0.93
    assert report.classifier_score(row("a", "no-evidence")) is None


def test_what_uploaders_control_is_escaped():
    evil = '<img src=x onerror="alert(1)">.mp4'
    page = report.render_report([row(evil, None, errors=["<script>alert(2)</script>"])])
    assert "<img src=x" not in page and "<script>" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.mp4" in page


def test_classifier_column_only_when_a_score_exists():
    plain = report.render_report([row("a.mp4", "no-evidence", p=0.3)])
    assert "<th>classifier</th>" not in plain
    scored = report.render_report([row("a.mp4", "likely-synthetic", p=0.3, classifier=0.91, label="synthetic"),
                                   row("b.mp4", "no-evidence", p=0.6, classifier=0.12, label="real")])
    assert "<th>classifier</th>" in scored and "0.910" in scored and "passive-0.1" in scored
    assert 'alt="histogram of classifier scores"' in scored and 'alt="ROC curve"' in scored


def sample_rows(rng) -> tuple[list[dict], dict[str, bytes]]:
    """Rows of every kind, with real JPEG thumbnails and a tamper map, as an audit would store them."""
    rows, thumbs = [], {}
    tampered = {"assessed": True, "reordered": True, "foreign_latent_frames": [3], "low_agreement_cells": 12,
                "cells": 80}
    cells = np.clip(rng.normal(0.72, 0.03, (5, 4, 4)), 0, 1)
    cells[3] = 0.5
    kinds = [("signed-synthetic", 1e-40, "synthetic"), ("watermarked-synthetic", 1e-25, "synthetic"),
             ("tampered", 1e-12, "synthetic"), ("no-evidence", 0.4, "real"), ("no-evidence", 0.9, "real"),
             ("no-evidence", 0.02, "synthetic"), (None, None, "real")]
    for i, (verdict, p, label) in enumerate(kinds):
        sha = f"{i:064x}"
        img = np.zeros((72, 96, 3), np.uint8)
        img[:] = (40 * i % 255, 120, 200 - 20 * i)
        cv2.circle(img, (30 + 6 * i, 36), 14, (255, 255, 255), -1)
        thumbs[sha] = cv2.imencode(".jpg", img)[1].tobytes()
        r = row(f"clip{i}.mp4", verdict, p=p, label=label, sha=sha if verdict else None,
                tamper=tampered if verdict == "tampered" else None, cells=cells.tolist(),
                errors=["cannot read video: not a readable video"] if verdict is None else ())
        if verdict in ("signed-synthetic", "tampered"):
            r["c2pa"] = {"state": "Trusted" if verdict != "tampered" else "Invalid",
                         "codes": [] if verdict != "tampered" else ["assertion.bmffHash.mismatch"],
                         "manifest": {"signer": {"common_name": "framemark signer"}, "declares_synthetic": True}}
        rows.append(r)
    return rows, thumbs


def screenshot(chromium: str, html_file: Path, png: Path, tmp: Path, width: int = 1280,
               height: int = 1600) -> np.ndarray:
    """Render ``html_file`` in headless chromium and return the screenshot as an RGB array."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={width},{height}",
           f"--screenshot={png}", html_file.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.exists(), done.stderr[-2000:]
    image = cv2.imread(str(png))
    assert image is not None
    return image[:, :, ::-1]


def test_report_renders_in_a_real_browser(tmp_path, chromium_path):
    rows, thumbs = sample_rows(np.random.default_rng(0))
    page = report.render_report(rows, thumbs, title="browser check", summary={"files": len(rows)}, fpr=1e-6)
    html_file = tmp_path / "report.html"
    html_file.write_text(page)
    image = screenshot(chromium_path, html_file, tmp_path / "report.png", tmp_path)
    assert image.shape[:2] == (1600, 1280)
    assert image.std() > 30 and len(np.unique(image.reshape(-1, 3) // 16, axis=0)) > 50  # not blank
    # the verdict cards are drawn in their colours (the page's own CSS, so the browser really laid it out)
    for hex_colour in (report.COLOURS["signed-synthetic"], report.COLOURS["watermarked-synthetic"],
                       report.COLOURS["tampered"]):
        rgb = np.array([int(hex_colour[k:k + 2], 16) for k in (1, 3, 5)])
        assert (np.abs(image.astype(int) - rgb).sum(axis=2) < 12).sum() > 2000, hex_colour
    # every embedded image decoded: the page holds thumbnails, charts and the tamper map as data URIs
    assert page.count("data:image/jpeg;base64,") == 6 and page.count("data:image/png;base64,") >= 5
    for b64 in [s.split('"')[0] for s in page.split("data:image/png;base64,")[1:]]:
        assert cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR) is not None
