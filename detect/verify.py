"""Verifying uploaded files: read the C2PA manifest, recover the initial noise and test it for our watermark,
resolve a stripped manifest through the ledger, and decide a verdict.

One file's problems (unreadable, not a video) are reported in that file's result and never stop the others.
The result follows the verdict format of shared/DESIGN.md; docs/provenance.md explains the C2PA and ledger parts
and the verdict precedence, docs/classifier.md the passive classifier's part.
"""

from __future__ import annotations

import os
import time

from framemark import media, provenance
from framemark.errors import FramemarkError
from framemark.ledger import Ledger
from framemark.watermark import WatermarkKey

from . import DEFAULT_FPR, DEFAULT_INVERSION_STEPS
from .recovery import recover_watermark, tamper_summary

# ``verify_file(classifier=DEFAULT_CLASSIFIER)``: the shipped passive classifier, loaded once per process
DEFAULT_CLASSIFIER = "default"


def verify_file(path: str | os.PathLike, *, key: WatermarkKey | None, pipe, fpr: float = DEFAULT_FPR,
                steps: int = DEFAULT_INVERSION_STEPS, max_frames: int = 600,
                trust_anchors: tuple[bytes, ...] | list[bytes] = (), ledger: Ledger | None = None,
                classifier=DEFAULT_CLASSIFIER) -> dict:
    """The verdict object for one file. Never raises for a bad file: problems go to ``errors``.

    ``trust_anchors``: PEM root certificates a C2PA signer must chain to for the manifest to be Trusted.
    ``ledger``: where a decoded payload is looked up when the file's own manifest is absent or Invalid.
    ``classifier``: the passive classifier (``detect.classifier.PassiveClassifier``); ``DEFAULT_CLASSIFIER``
    loads the shipped one (once per process); None skips it (``classifier`` is then null).
    """
    started = time.perf_counter()
    result: dict = {"file": str(path), "c2pa": None, "watermark": None, "ledger": None, "classifier": None,
                    "verdict": "no-evidence", "errors": []}
    lap = _stage_timer(result)
    # C2PA first: it needs no model and still says something about files that do not decode as video
    result["c2pa"], c2pa_error = check_c2pa(path, trust_anchors)
    result["c2pa"]["soft_binding_matches_watermark"] = None
    lap("c2pa_s")
    try:
        video = media.read_video(path, max_frames=max_frames)
    except FramemarkError as exc:
        result["errors"].append(str(exc))
        result["verdict"] = None
        lap("decode_s")
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result
    lap("decode_s")
    if c2pa_error:
        result["errors"].append(c2pa_error)
    if video.truncated:
        # still checked (a partial clip can carry the mark), but the file is damaged and the caller must know
        result["errors"].append(f"file is truncated or damaged: only {video.frames.shape[0]} frame(s) decoded")
    if key is None:
        result["errors"].append("no watermark key: the watermark was not checked")
    else:
        recovery = recover_watermark(pipe, key, video.frames, fpr=fpr, steps=steps)
        ex = recovery.extraction
        mark = ex.to_dict()
        mark["alignment"] = {"generated_frames": recovery.hypothesis.shape.frames,
                             "generated_size": [recovery.hypothesis.shape.height, recovery.hypothesis.shape.width],
                             "crop_undone": recovery.hypothesis.crop,
                             "hypotheses_tried": recovery.hypotheses_tried,
                             "hypotheses_total": recovery.hypotheses_total}
        mark["tamper"] = tamper_summary(ex)
        if ex.detected and not ex.crc_ok:
            # the key's mark is there (the p-value says so) but the 64 bits are too damaged to trust: never hand
            # out a clip id that would resolve to someone else's clip
            mark["payload"], mark["clip_id"] = None, None
            mark["payload_unreadable"] = True
        result["watermark"] = mark
        if ex.detected:
            tampered = mark["tamper"]["foreign_latent_frames"] or mark["tamper"]["reordered"]
            result["verdict"] = "tampered" if tampered else "watermarked-synthetic"
    lap("watermark_s")
    result["c2pa"]["soft_binding_matches_watermark"] = soft_binding_agrees(result["c2pa"], result["watermark"])
    if needs_ledger(result["c2pa"], result["watermark"]):
        result["ledger"] = resolve_through_ledger(ledger, result["watermark"], trust_anchors)
    lap("ledger_s")
    if classifier is not None:
        result["classifier"] = classify(classifier, video, result["errors"])
        lap("classifier_s")
    result["verdict"] = decide_verdict(result["c2pa"], result["verdict"], result["classifier"])
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def classify(classifier, video: media.Video, errors: list[str]) -> dict | None:
    """The ``classifier`` part: ``{p_synthetic, model_version, threshold, above_threshold}`` of the passive
    classifier on the decoded frames, or None with the reason in ``errors`` when it could not run (a broken
    classifier file never costs the rest of the verdict)."""
    try:
        from . import classifier as passive

        model = passive.load_default() if classifier == DEFAULT_CLASSIFIER else classifier
        return model.score_frames(video.frames, video.fps)
    except Exception as exc:  # noqa: BLE001 - any failure of the optional signal becomes an error entry
        errors.append(f"passive classifier failed: {exc}")
        return None


def _stage_timer(result: dict):
    """Informational only: ``result["timing"]`` gets the seconds each stage took (``c2pa_s``, ``decode_s``,
    ``watermark_s`` = VAE encode + inversion + extraction, ``ledger_s``, ``classifier_s``), for audits and
    benchmarks. A stage that
    did not run is absent. Nothing reads it to decide anything."""
    timing: dict = {}
    result["timing"] = timing
    last = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        timing[stage] = round(now - last[0], 4)
        last[0] = now
    return lap


# ------------------------------------------------------------------------------------------------ provenance

def check_c2pa(path: str | os.PathLike, trust_anchors) -> tuple[dict, str | None]:
    """The ``c2pa`` part of a verdict, and an error message when c2pa could not parse the file at all."""
    try:
        return provenance.read_file(path, tuple(trust_anchors)), None
    except provenance.ProvenanceError as exc:
        return {"state": None, "codes": [], "informational": [], "manifest": None, "error": str(exc)}, str(exc)


def soft_binding_agrees(c2pa_part: dict, mark: dict | None) -> bool | None:
    """Whether a manifest's framemark soft binding names the payload the watermark carries; None when either
    is missing (no manifest, another algorithm, watermark not detected or not readable)."""
    binding = (c2pa_part.get("manifest") or {}).get("soft_binding") or {}
    if binding.get("alg") != provenance.SOFT_BINDING_ALG or not mark or not mark.get("payload"):
        return None
    return binding.get("value") == mark["payload"]


def needs_ledger(c2pa_part: dict, mark: dict | None) -> bool:
    """Look the payload up only when the file's own manifest cannot speak for it: absent, Invalid or unreadable,
    and the watermark was detected with a payload that passed its CRC."""
    return (c2pa_part.get("state") not in ("Trusted", "Valid") and bool(mark) and bool(mark.get("detected"))
            and bool(mark.get("payload")))


RECOVERED_STATEMENT = ("manifest recovered through the watermark from the ledger, not bound to these bytes: it "
                       "describes the clip this watermark payload was issued to, whose bytes these may no longer be")


def resolve_through_ledger(ledger: Ledger | None, mark: dict, trust_anchors) -> dict:
    """The ``ledger`` part of a verdict: the original manifest of the clip the payload was issued to.

    The stored manifest store is validated on its own (``provenance.read_manifest_store``): claim signature,
    signing credential against ``trust_anchors``, assertion hashes; its hard binding cannot be checked because
    the bytes it was made for are not these. ``bound_to_file`` is therefore always False.
    """
    base = {"looked_up": False, "found": False, "payload": mark["payload"], "key_id": mark.get("key_id"),
            "recovered": False, "bound_to_file": False}
    if ledger is None:
        return {**base, "statement": "no ledger to look the payload up in"}
    base["looked_up"] = True
    base["ledger"] = str(ledger.path)
    try:
        entries = ledger.lookup(mark["payload"][:12], key_id=mark.get("key_id"))
    except FramemarkError as exc:
        return {**base, "statement": f"ledger lookup failed: {exc}"}
    if not entries:
        return {**base, "statement": f"payload {mark['payload']} of key {mark.get('key_id')} is not in the ledger"}
    entry = entries[0]
    base.update(found=True, matches=len(entries), entry=entry.to_dict())
    if entry.manifest_store is None:
        return {**base, "statement": "the ledger knows this clip, but it was emitted without a C2PA manifest"}
    checked = provenance.read_manifest_store(entry.manifest_store, tuple(trust_anchors))
    return {**base, "recovered": True, "manifest": checked["manifest"], "manifest_json": checked["manifest_json"],
            "signature": {"state": checked["state"], "codes": checked["codes"],
                          "hard_binding": checked["hard_binding"]},
            "statement": RECOVERED_STATEMENT}


def decide_verdict(c2pa_part: dict, watermark_verdict: str | None, classifier_part: dict | None = None) -> str | None:
    """Combine the evidence, strongest claim first (docs/provenance.md, "Verdicts"):

    1. ``tampered``: the file's manifest is Invalid (its signature, assertions or hard binding fail), its
       framemark soft binding names another payload than the watermark carries, or the watermark shows frames
       reordered or foreign;
    2. ``signed-synthetic``: a Trusted or Valid manifest declares a synthetic digitalSourceType;
    3. ``watermarked-synthetic``: our watermark was detected;
    4. ``likely-synthetic``: no stronger evidence (and no Trusted manifest), and the passive classifier's
       P(synthetic) is at or above the threshold its model chose for 1% false positives on real clips
       (docs/classifier.md);
    5. ``no-evidence``: none of the above. A manifest recovered through the ledger never raises the verdict on
       its own: the watermark already did, and the recovered manifest is not bound to these bytes.
    """
    if watermark_verdict is None:
        return None
    state = c2pa_part.get("state")
    if (state == "Invalid" or c2pa_part.get("soft_binding_matches_watermark") is False
            or watermark_verdict == "tampered"):
        return "tampered"
    if state in ("Trusted", "Valid") and (c2pa_part.get("manifest") or {}).get("declares_synthetic"):
        return "signed-synthetic"
    if watermark_verdict == "watermarked-synthetic":
        return "watermarked-synthetic"
    if classifier_part and classifier_part.get("above_threshold") and state != "Trusted":
        # a Trusted manifest that does not declare synthetic content (a camera's) outweighs a pixel statistic;
        # a merely Valid one does not: anyone can sign "captured" with an untrusted certificate
        return "likely-synthetic"
    return "no-evidence"
