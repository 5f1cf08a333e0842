"""The HTML report of an audit: one self-contained file (no script, no external resource; images inline).

:func:`render_report` is a function of data: audit rows (``results.jsonl``'s objects) and thumbnails in, an HTML
string out. It shows verdict counts, score histograms, with labels a confusion matrix, metrics and ROC curves,
and a table with one line per file: thumbnail, verdict and the evidence behind it (C2PA state, watermark p-value,
classifier score when the classifier has produced one, ledger recovery, tamper map where the watermark found one).
Everything a file or manifest says is HTML-escaped: file names and manifests come from uploaders.

Charts are matplotlib PNGs (Agg backend) embedded as base64; tamper maps are drawn straight from the agreement
arrays (cv2 PNG), so even a large audit renders in seconds.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from collections.abc import Mapping

import numpy as np

from framemark.detect.verdict import ERROR, FLAGGED, VERDICTS, verdict_name

COLOURS = {"tampered": "#c0392b", "signed-synthetic": "#6c3483", "watermarked-segment": "#1a5276",
           "watermarked-synthetic": "#2471a3",
           "likely-synthetic": "#d68910", "no-evidence": "#7f8c8d", ERROR: "#212f3c"}
LABEL_COLOURS = {"synthetic": "#2471a3", "real": "#27ae60", "unlabelled": "#95a5a6"}
SCORE_CAP = 50.0      # -log10 p-values above this are drawn at the cap
MAX_TAMPER_MAPS = 500  # per report; beyond, the table says so in words


# ------------------------------------------------------------------------------------------------ scores

def watermark_score(row: dict) -> float | None:
    """-log10 of the watermark p-value (higher = stronger evidence of our mark); None when not checked."""
    mark = row.get("watermark")
    if not mark:
        return None
    log_p = mark.get("log10_p_value")
    if log_p is None and mark.get("p_value") is not None:
        p = float(mark["p_value"])
        log_p = math.log10(p) if p > 0 else -SCORE_CAP
    return None if log_p is None else min(SCORE_CAP, max(0.0, -float(log_p)))


def classifier_score(row: dict) -> float | None:
    """The passive classifier's P(synthetic), when verify produced one."""
    part = row.get("classifier")
    if not isinstance(part, dict) or part.get("p_synthetic") is None:
        return None
    return float(part["p_synthetic"])


def roc_curve(scores, positives) -> tuple[np.ndarray, np.ndarray, float]:
    """False- and true-positive rates over every threshold (ties handled together) and the area under them."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(positives, dtype=bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(1, y.sum())]
    fpr = np.r_[0.0, fps / max(1, (~y).sum())]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def confusion(rows: list[dict]) -> tuple[list[str], list[str], np.ndarray]:
    """Labelled rows -> (truth classes, verdict columns, counts[truth, verdict]); verdicts that never occur and
    are not the usual ones are left out."""
    truths = ["synthetic", "real"]
    columns = [v for v in (*VERDICTS, ERROR) if v != "likely-synthetic"
               or any(verdict_name(r) == v for r in rows)]
    m = np.zeros((len(truths), len(columns)), dtype=int)
    for r in rows:
        if r.get("label") in truths:
            m[truths.index(r["label"]), columns.index(verdict_name(r))] += 1
    return truths, columns, m


def label_metrics(rows: list[dict]) -> dict:
    """Treating a flagging verdict (tampered, *-synthetic) as "synthetic": precision, recall, false-positive rate
    and accuracy over labelled rows that could be checked."""
    checked = [r for r in rows if r.get("label") in ("synthetic", "real") and r.get("verdict") is not None]
    tp = sum(1 for r in checked if r["label"] == "synthetic" and r["verdict"] in FLAGGED)
    fp = sum(1 for r in checked if r["label"] == "real" and r["verdict"] in FLAGGED)
    fn = sum(1 for r in checked if r["label"] == "synthetic" and r["verdict"] not in FLAGGED)
    tn = sum(1 for r in checked if r["label"] == "real" and r["verdict"] not in FLAGGED)

    def ratio(a, b):
        return a / b if b else None
    return {"labelled": len(checked), "tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn), "false_positive_rate": ratio(fp, fp + tn),
            "accuracy": ratio(tp + tn, len(checked))}


# ------------------------------------------------------------------------------------------------ images

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure(w: float = 4.6, h: float = 3.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def verdict_chart(counts: Mapping[str, int]) -> str:
    fig, ax = _figure(4.6, 2.6)
    names = [v for v in (*VERDICTS, ERROR) if counts.get(v)]
    ax.barh(names[::-1], [counts[v] for v in names[::-1]], color=[COLOURS[v] for v in names[::-1]])
    for i, v in enumerate(names[::-1]):
        ax.text(counts[v], i, f" {counts[v]}", va="center", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("files")
    ax.set_title("verdicts", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def histogram(values_by_group: Mapping, *, title: str, xlabel: str, colours: Mapping, bins, threshold=None,
              threshold_label: str = "") -> str:
    fig, ax = _figure()
    for group, values in values_by_group.items():
        if values:
            ax.hist(values, bins=bins, alpha=0.65, color=colours.get(group, "#555"), label=f"{group} ({len(values)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=threshold_label)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("files")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def confusion_chart(truths: list[str], columns: list[str], m: np.ndarray) -> str:
    fig, ax = _figure(1.0 + 0.95 * len(columns), 2.4)
    ax.imshow(m, cmap="Blues", aspect="auto", vmin=0, vmax=max(1, int(m.max())))
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(truths)), [f"truth: {t}" for t in truths], fontsize=8)
    for (i, j), value in np.ndenumerate(m):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=10,
                color="white" if value > m.max() / 2 else "black")
    ax.set_title("confusion matrix (label x verdict)", fontsize=10)
    return _png(fig)


def roc_chart(curves: Mapping[str, tuple]) -> str:
    fig, ax = _figure(3.6, 3.4)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="#bbb", linestyle=":", linewidth=1)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC (label synthetic = positive)", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return _png(fig)


def tamper_map_png(cell_agreement) -> str | None:
    """(T, H, W) agreement per latent frame and cell -> one PNG strip, one tile per latent frame: red = chance
    (0.5), blue = as marked as the clip's typical cell (its median), so the scale suits weak and strong marks."""
    import cv2
    from matplotlib import colormaps

    a = np.asarray(cell_agreement, dtype=float)
    if a.ndim != 3 or a.size == 0:
        return None
    t, h, w = a.shape
    scale = max(2, 48 // max(h, w))
    typical = max(float(np.median(a)) - 0.5, 0.02)
    norm = np.clip((a - 0.5) / typical, 0.0, 1.0)
    rgb = (colormaps["RdYlBu"](norm)[..., :3] * 255).astype(np.uint8)
    gap = np.full((h * scale, 2, 3), 255, np.uint8)
    tiles = []
    for k in range(t):
        tiles.append(np.kron(rgb[k], np.ones((scale, scale, 1), np.uint8)))
        tiles.append(gap)
    strip = np.concatenate(tiles[:-1], axis=1)
    ok, buf = cv2.imencode(".png", strip[:, :, ::-1].copy())
    return base64.b64encode(buf.tobytes()).decode() if ok else None


# ------------------------------------------------------------------------------------------------ HTML

CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1c2833;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.muted{color:#707b7c;font-size:12px} .cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border-radius:6px;padding:8px 14px;color:#fff;min-width:120px} .card b{font-size:22px;display:block}
.charts{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start} .charts img{border:1px solid #eee}
table{border-collapse:collapse;font-size:12.5px;max-width:100%} th,td{border-bottom:1px solid #e5e8e8;padding:5px 7px;
vertical-align:top;text-align:left} th{background:#f4f6f6;position:sticky;top:0}
td.thumb{width:118px} td.thumb img{max-width:112px;max-height:112px;display:block}
.badge{border-radius:4px;padding:2px 6px;color:#fff;white-space:nowrap;font-weight:600;font-size:12px}
.err{color:#a93226;overflow-wrap:anywhere} td.err{max-width:300px} .kv td{border:none;padding:1px 10px 1px 0} code{font-size:11.5px;word-break:break-all}
.file{min-width:190px;max-width:360px;word-break:break-all}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _badge(verdict: str) -> str:
    return f'<span class="badge" style="background:{COLOURS.get(verdict, "#555")}">{_e(verdict)}</span>'


def _img(b64: str, alt: str, mime: str = "image/png") -> str:
    return f'<img alt="{_e(alt)}" src="data:{mime};base64,{b64}">'


def _fmt_p(p) -> str:
    return "—" if p is None else (f"{p:.3g}" if p >= 1e-3 else f"{p:.2e}")


def _c2pa_cell(c2pa: dict | None) -> str:
    if not c2pa:
        return "—"
    state = c2pa.get("state")
    if state is None:
        return '<span class="err">unreadable</span>'
    parts = [f"<b>{_e(state)}</b>"]
    if c2pa.get("codes"):
        parts.append(f'<span class="err">{_e(", ".join(c2pa["codes"]))}</span>')
    manifest = c2pa.get("manifest") or {}
    signer = (manifest.get("signer") or {}).get("common_name") if isinstance(manifest.get("signer"), dict) else None
    if signer:
        parts.append(f"signer {_e(signer)}")
    if manifest.get("declares_synthetic"):
        parts.append("declares AI-generated")
    if c2pa.get("soft_binding_matches_watermark") is False:
        parts.append('<span class="err">soft binding ≠ watermark</span>')
    return "<br>".join(parts)


def _watermark_cell(mark: dict | None) -> str:
    if not mark:
        return "not checked"
    head = "<b>detected</b>" if mark.get("detected") else "not detected"
    parts = [head, f"p = {_fmt_p(mark.get('p_value'))}"]
    if mark.get("detected"):
        if mark.get("payload"):
            parts.append(f"payload <code>{_e(mark['payload'])}</code>")
        elif mark.get("payload_unreadable"):
            parts.append('<span class="err">payload unreadable</span>')
    if mark.get("bit_accuracy") is not None:
        parts.append(f"bits {float(mark['bit_accuracy']):.3f}")
    return "<br>".join(parts)


def _classifier_cell(row: dict) -> str:
    score = classifier_score(row)
    if score is None:
        return "—"
    version = row["classifier"].get("model_version")
    return f"{score:.3f}" + (f"<br><span class=muted>{_e(version)}</span>" if version else "")


def _tamper_cell(mark: dict | None, allow_map: bool) -> tuple[str, bool]:
    """Text about tampering and, where the watermark found some, the cell-agreement map. Returns (html, drew)."""
    tamper = (mark or {}).get("tamper") or {}
    if not tamper.get("assessed"):
        return "—", False
    parts = []
    if tamper.get("reordered"):
        parts.append('<span class="err">frames reordered</span>')
    if tamper.get("foreign_latent_frames"):
        parts.append(f'<span class="err">foreign latent frames {_e(tamper["foreign_latent_frames"])}</span>')
    low, cells = tamper.get("low_agreement_cells", 0), tamper.get("cells", 0)
    if cells:
        parts.append(f"{low}/{cells} cells at chance")
    # cells at chance alone are common in clean clips (weak spots of the inversion): the map is drawn where frames
    # are out of place or foreign, i.e. where the watermark itself says the clip was edited
    found = bool(tamper.get("reordered") or tamper.get("foreign_latent_frames"))
    drew = False
    if found and allow_map and mark.get("cell_agreement") is not None:
        png = tamper_map_png(mark["cell_agreement"])
        if png:
            parts.append(_img(png, "tamper map: agreement per latent frame and cell (red = chance)"))
            drew = True
    return ("<br>".join(parts) or "intact"), drew


def _ledger_cell(led: dict | None) -> str:
    if not led:
        return "—"
    if led.get("recovered"):
        sig = (led.get("signature") or {}).get("state")
        return f"manifest recovered (signature {_e(sig)}), not bound to these bytes"
    return _e(led.get("statement") or ("found" if led.get("found") else "not found"))


def render_report(rows: list[dict], thumbnails: Mapping[str, bytes] | None = None, *, title: str = "framemark audit",
                  summary: Mapping | None = None, settings: Mapping | None = None, fpr: float | None = None,
                  generated_at: str | None = None) -> str:
    """The report for ``rows`` as one HTML string. ``thumbnails``: sha256 -> JPEG bytes."""
    thumbnails = thumbnails or {}
    counts = {v: 0 for v in (*VERDICTS, ERROR)}
    for r in rows:
        counts[verdict_name(r)] = counts.get(verdict_name(r), 0) + 1
    generated_at = generated_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    labelled = [r for r in rows if r.get("label") in ("synthetic", "real")]
    has_classifier = any(classifier_score(r) is not None for r in rows)

    out = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
           '<meta name="viewport" content="width=device-width,initial-scale=1">',
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(title)}</h1>",
           f'<div class="muted">{len(rows)} files · generated {_e(generated_at)}</div>',
           '<div class="cards">']
    for v in (*VERDICTS, ERROR):
        if counts.get(v) or v not in ("likely-synthetic", ERROR):
            out.append(f'<div class="card" style="background:{COLOURS[v]}"><b>{counts.get(v, 0)}</b>{_e(v)}</div>')
    out.append("</div>")
    if summary or settings:
        out.append('<table class="kv">')
        for k, v in {**(settings or {}), **(summary or {})}.items():
            if isinstance(v, (dict, list)):
                v = ", ".join(f"{a}: {b}" for a, b in v.items()) if isinstance(v, dict) else "; ".join(map(str, v))
            out.append(f"<tr><td class=muted>{_e(k)}</td><td>{_e(v)}</td></tr>")
        out.append("</table>")

    # ---- charts
    out.append("<h2>Scores</h2><div class=charts>")
    if rows:
        out.append(_img(verdict_chart(counts), "verdict counts"))
    group_by_label = bool(labelled)
    scores: dict = {}
    for r in rows:
        s = watermark_score(r)
        if s is not None:
            scores.setdefault((r.get("label") or "unlabelled") if group_by_label else verdict_name(r), []).append(s)
    if scores:
        top = max(max(v) for v in scores.values())
        threshold = -math.log10(fpr) if fpr else None
        out.append(_img(histogram(scores, title="watermark evidence", xlabel="-log10 p-value (capped at 50)",
                                  colours=LABEL_COLOURS if group_by_label else COLOURS,
                                  bins=np.linspace(0, max(top, threshold or 0, 1) * 1.05, 31),
                                  threshold=threshold, threshold_label=f"FPR {fpr:g}" if fpr else ""),
                        "histogram of watermark scores"))
    if has_classifier:
        cls: dict = {}
        for r in rows:
            s = classifier_score(r)
            if s is not None:
                cls.setdefault((r.get("label") or "unlabelled") if group_by_label else verdict_name(r), []).append(s)
        out.append(_img(histogram(cls, title="passive classifier", xlabel="P(synthetic)",
                                  colours=LABEL_COLOURS if group_by_label else COLOURS, bins=np.linspace(0, 1, 21)),
                        "histogram of classifier scores"))
    elapsed = [float(r["elapsed_s"]) for r in rows if r.get("elapsed_s")]
    if elapsed:
        out.append(_img(histogram({"files": elapsed}, title="time per file", xlabel="seconds",
                                  colours={"files": "#5d6d7e"}, bins=20), "histogram of time per file"))
    out.append("</div>")

    # ---- labels
    if labelled:
        unchecked = sum(1 for r in labelled if r.get("verdict") is None)
        note = f", {unchecked} of them could not be checked" if unchecked else ""
        out.append(f"<h2>Against the labels ({len(labelled)} labelled files{note})</h2><div class=charts>")
        truths, columns, m = confusion(labelled)
        out.append(_img(confusion_chart(truths, columns, m), "confusion matrix"))
        curves = {}
        for name, score in (("watermark -log10 p", watermark_score), ("classifier P(synthetic)", classifier_score)):
            pairs = [(score(r), r["label"] == "synthetic") for r in labelled if score(r) is not None]
            ys = {y for _, y in pairs}
            if len(ys) == 2:
                curves[name] = roc_curve([s for s, _ in pairs], [y for _, y in pairs])
        if curves:
            out.append(_img(roc_chart(curves), "ROC curve"))
        out.append("</div>")
        if not curves:
            out.append('<p class="muted">ROC: needs scored files of both labels.</p>')
        metrics = label_metrics(labelled)
        out.append('<table class="kv">' + "".join(
            f"<tr><td class=muted>{_e(k)}</td><td>{'—' if v is None else (f'{v:.3f}' if isinstance(v, float) else v)}"
            f"</td></tr>" for k, v in metrics.items()) + "</table>")
        flagged = [v for v in VERDICTS if v in FLAGGED]
        out.append(f'<p class="muted">flagged = {", ".join(flagged[:-1])} or {flagged[-1]}; '
                   'files that could not be checked are left out of the metrics.</p>')
        out.append("<table><tr><th></th>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>" + "".join(
            f"<tr><th>{_e(t)}</th>" + "".join(f"<td>{int(v)}</td>" for v in m[i]) + "</tr>"
            for i, t in enumerate(truths)) + "</table>")

    # ---- files
    out.append("<h2>Files</h2><table><tr><th>thumbnail</th><th>file</th><th>verdict</th><th>C2PA</th>"
               "<th>watermark</th>" + ("<th>classifier</th>" if has_classifier else "") +
               "<th>tamper</th><th>ledger</th><th>errors</th></tr>")
    maps_drawn = 0
    for r in rows:
        thumb = thumbnails.get(r.get("sha256") or "")
        thumb_html = _img(base64.b64encode(thumb).decode(), "thumbnail", "image/jpeg") if thumb else "—"
        tamper_html, drew = _tamper_cell(r.get("watermark"), maps_drawn < MAX_TAMPER_MAPS)
        maps_drawn += drew
        video = r.get("video") or {}
        facts = [f"{video['width']}×{video['height']}, {video.get('frames')} frames" if video.get("width") else "",
                 f"{r['duration_s']:.1f} s" if r.get("duration_s") else "",
                 f"label {r['label']}" if r.get("label") else "",
                 f"same bytes as {r['duplicate_of']}" if r.get("duplicate_of") else ""]
        classifier_html = f"<td>{_classifier_cell(r)}</td>" if has_classifier else ""
        out.append(
            f'<tr><td class="thumb">{thumb_html}</td>'
            f'<td class="file">{_e(r.get("file"))}<br><span class="muted">{_e(" · ".join(f for f in facts if f))}'
            f'</span></td><td>{_badge(verdict_name(r))}</td><td>{_c2pa_cell(r.get("c2pa"))}</td>'
            f'<td>{_watermark_cell(r.get("watermark"))}</td>{classifier_html}<td>{tamper_html}</td>'
            f'<td>{_ledger_cell(r.get("ledger"))}</td>'
            f'<td class="err">{"<br>".join(_e(e) for e in r.get("errors") or [])}</td></tr>')
    out.append("</table>")
    if maps_drawn >= MAX_TAMPER_MAPS:
        out.append(f'<p class="muted">tamper maps drawn for the first {MAX_TAMPER_MAPS} files only.</p>')
    out.append('<p class="muted">Verdicts and evidence: docs/provenance.md and docs/audit.md of framemark.</p>')
    out.append("</body></html>")
    return "\n".join(out)
