"""Verifying one uploaded file: read its C2PA manifest, recover the initial noise and test it for our watermark,
resolve a stripped manifest through the ledger, score it with the passive classifier, and name the verdict.

A file's problems (unreadable, not a video) are reported in that file's :class:`~.verdict.Verdict` and never
raised. The verdict's parts and rules are in ``detect/verdict.py``; docs/provenance.md explains the C2PA and
ledger parts, docs/classifier.md the classifier's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from framemark import media, provenance
from framemark.errors import FramemarkError, MediaError
from framemark.ledger import Ledger
from framemark.manifest import describe_model
from framemark.soft_binding import SOFT_BINDING_ALG
from framemark.watermark import Payload, WatermarkKey

from . import DEFAULT_FPR, DEFAULT_INVERSION_STEPS, DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_FRAMES
from .recovery import Recovery, recover_watermark, tamper_summary
from .verdict import (Alignment, C2paEvidence, ClassifierEvidence, LedgerEvidence, Verdict, WatermarkEvidence,
                      decide)

if TYPE_CHECKING:  # a value the runtime hands in; detect/ does not depend on the front doors' policy module
    from framemark.limits import Limits


@dataclass(frozen=True)
class VerifySettings:
    """How a file is checked: the false-positive rate of the watermark test, inversion steps, and how much of it
    is decoded: at most ``max_frames`` frames and ``max_decoded_bytes`` of them (longer or larger clips are
    checked on their start), each scaled while it is decoded to fit ``fit`` = (max_width, max_height), the
    working size (None: as they are). ``limits`` (a ``framemark.limits.Limits``; None: none): what refuses a file
    from its size and headers before any decoding, and from each decoded frame."""

    fpr: float = DEFAULT_FPR
    steps: int = DEFAULT_INVERSION_STEPS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    fit: tuple[int, int] | None = None
    limits: Limits | None = None


def verify_file(path: str | os.PathLike, *, key: WatermarkKey | None, models=(), trust_anchors=(),
                ledger: Ledger | None = None, classifier=None, settings: VerifySettings = VerifySettings()) -> Verdict:
    """The verdict of one file. Never raises for a bad file: problems go to ``errors``.

    ``key`` and ``models``: the watermark key and the models (``VideoModel`` objects, in the order tried) whose
    inversion reads it, the p-value corrected for every one of them; without a key only C2PA (and the
    classifier) run, and no model is needed. ``trust_anchors``: PEM root certificates a C2PA signer must chain to
    for the manifest to be Trusted. ``ledger``: where a decoded payload is looked up when the file's own manifest
    is absent or Invalid. ``classifier``: the passive classifier (``detect.classifier.LoadedClassifier``), or None.
    """
    opened = open_file(path, key, trust_anchors, settings)
    if opened.video is None:
        return opened.verdict
    started, recovery = time.perf_counter(), None
    if key is not None:
        recovery = recover_watermark(models, key, opened.video.frames, fpr=settings.fpr, steps=settings.steps,
                                     fps=opened.video.fps)
    return finish(opened, recovery, round(time.perf_counter() - started, 4), ledger=ledger, classifier=classifier,
                  trust_anchors=trust_anchors)


@dataclass
class OpenedFile:
    """A file read up to the watermark recovery: its verdict so far (the ``c2pa`` part, errors), its decoded video
    (None: it did not decode, and the verdict is final) and when its check began. ``verify_file`` is
    :func:`open_file`, the recovery, :func:`finish`; a batched verifier (``detect.batch``) runs the recoveries of
    many opened files together between the two."""

    verdict: Verdict
    video: media.Video | None
    started: float


def open_file(path: str | os.PathLike, key: WatermarkKey | None, trust_anchors=(),
              settings: VerifySettings = VerifySettings()) -> OpenedFile:
    """The first half of :func:`verify_file`: the checks that refuse a file up front (:func:`refusal`), the
    C2PA check and the bounded decoding. Never raises for a bad file."""
    started = time.perf_counter()
    verdict = Verdict(file=str(path))
    lap = _stage_timer(verdict.timing)
    refused = refusal(path, settings.limits)
    lap("inspect_s")
    if refused is not None:
        verdict.errors.append(refused)
        verdict.seconds = round(time.perf_counter() - started, 3)
        return OpenedFile(verdict, None, started)
    # C2PA first: it needs no model and still says something about files that do not decode as video
    verdict.c2pa, c2pa_error = check_c2pa(path, trust_anchors)
    lap("c2pa_s")
    try:
        video = decode(path, settings)
    except FramemarkError as exc:
        verdict.errors.append(str(exc))
        lap("decode_s")
        verdict.seconds = round(time.perf_counter() - started, 3)
        return OpenedFile(verdict, None, started)
    lap("decode_s")
    if c2pa_error:
        verdict.errors.append(c2pa_error)
    if video.truncated:
        # still checked (a partial clip can carry the mark), but the file is damaged and the caller must know
        verdict.errors.append(f"file is truncated or damaged: only {video.frames.shape[0]} frame(s) decoded")
    if key is None:
        verdict.errors.append("no watermark key: the watermark was not checked")
    return OpenedFile(verdict, video, started)


def refusal(path: str | os.PathLike, limits: Limits | None) -> str | None:
    """Why a file is not checked at all (None: check it), before anything reads its content: not a regular file
    (a FIFO would hang the C2PA read), empty, not a video by its first bytes (``media.check_input``), or over
    ``limits`` by its size or its headers (``media.probe_video``; a file whose headers do not read is left to
    the decoder, after the C2PA check, which may still say something about it)."""
    try:
        media.check_input(path)
    except MediaError as exc:
        return str(exc)
    if limits is None:
        return None
    try:
        problem = limits.size_problem(os.stat(path).st_size)
    except OSError as exc:
        return f"cannot read video {os.fspath(path)!r}: {exc.strerror or exc}"
    if problem is None:
        try:
            problem = limits.header_problem(media.probe_video(path))
        except MediaError:
            return None
    return f"not checked: {problem}" if problem is not None else None


def decode(path: str | os.PathLike, settings: VerifySettings) -> media.Video:
    """The frames a check looks at: bounded in count and bytes, scaled to the working size while decoded, every
    frame held to the limits (a file whose headers lied stops there). Raises MediaError."""
    limit = settings.limits.frame_problem if settings.limits is not None else None
    return media.read_video(path, max_frames=settings.max_frames, fit=settings.fit,
                            max_bytes=settings.max_decoded_bytes, limit=limit)


def finish(opened: OpenedFile, recovery: Recovery | None, watermark_s: float, *, ledger: Ledger | None = None,
           classifier=None, trust_anchors=()) -> Verdict:
    """The second half of :func:`verify_file`, for a decoded file: the watermark part from ``recovery`` (None: not
    checked, no key), the ledger, the classifier and the verdict's name. ``watermark_s``: the recovery's seconds
    (in a batch, this file's share)."""
    verdict = opened.verdict
    if recovery is not None:
        verdict.watermark = watermark_evidence(recovery, opened.video)
    verdict.timing["watermark_s"] = watermark_s
    lap = _stage_timer(verdict.timing)
    verdict.c2pa.soft_binding_matches_watermark = soft_binding_agrees(verdict.c2pa, verdict.watermark)
    if needs_ledger(verdict.c2pa, verdict.watermark):
        verdict.ledger = resolve_through_ledger(ledger, verdict.watermark, trust_anchors)
    lap("ledger_s")
    if classifier is not None:
        verdict.classifier = classify(classifier, opened.video, verdict.errors)
        lap("classifier_s")
    verdict.verdict = decide(verdict.c2pa, verdict.watermark, verdict.classifier)
    verdict.seconds = round(time.perf_counter() - opened.started, 3)
    return verdict


def watermark_evidence(recovery: Recovery, video: media.Video | None = None) -> WatermarkEvidence:
    """The ``watermark`` part from a recovery: the extraction, where (in space and, given the ``video`` it was read
    from, in time) and under which model it was read, and the tamper reading."""
    ex, hyp = recovery.extraction, recovery.hypothesis
    mark = ex.to_dict()
    geometry = hyp.describe()
    alignment = Alignment(generated_frames=hyp.shape.frames, generated_size=[hyp.shape.height, hyp.shape.width],
                          crop_undone=geometry["crop_undone"], hypotheses_tried=recovery.hypotheses_tried,
                          hypotheses_total=recovery.hypotheses_total, read_from=recovery.stage,
                          inversions=recovery.inversions, flipped=geometry["flipped"],
                          content_box=geometry["content_box"], strip=geometry["strip"],
                          crop_offset=[int(ex.shift[0]), int(ex.shift[1])], crop_box=geometry["crop_box"])
    segment = None
    if ex.detected and recovery.segment is not None and video is not None:
        segment = recovery.segment.describe(video.fps, video.num_frames)
    unreadable = bool(ex.detected and not ex.crc_ok)
    if unreadable:
        # the key's mark is there (the p-value says so) but the 64 bits are too damaged to trust: never hand out
        # a clip id that would resolve to someone else's clip
        mark["payload"], mark["clip_id"] = None, None
    model = describe_model(recovery.model) if ex.detected and recovery.model is not None else None
    return WatermarkEvidence(**mark, alignment=alignment, tamper=tamper_summary(ex), model=model,
                             models_tried=recovery.models_tried, models_total=recovery.models_total,
                             payload_unreadable=unreadable, segment=segment)


def classify(classifier, video: media.Video, errors: list[str]) -> ClassifierEvidence | None:
    """The ``classifier`` part, or None with the reason in ``errors`` when it could not run (a broken classifier
    never costs the rest of the verdict)."""
    try:
        return classifier.score_frames(video.frames, video.fps)
    except Exception as exc:  # noqa: BLE001 - any failure of the optional signal becomes an error entry
        errors.append(f"passive classifier failed: {exc}")
        return None


def _stage_timer(timing: dict):
    """Informational only: ``timing`` gets the seconds each stage took (``inspect_s``: the checks of
    :func:`refusal`, ``c2pa_s``, ``decode_s``, ``watermark_s``
    = VAE encode + inversion + extraction, ``ledger_s``, ``classifier_s``), for audits and benchmarks. A stage
    that did not run is absent. Nothing reads it to decide anything."""
    last = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        timing[stage] = round(now - last[0], 4)
        last[0] = now
    return lap


# ------------------------------------------------------------------------------------------------ provenance

def check_c2pa(path: str | os.PathLike, trust_anchors) -> tuple[C2paEvidence, str | None]:
    """The ``c2pa`` part of a verdict, and an error message when c2pa could not parse the file at all. A manifest
    whose structure was broken (a renamed box, a damaged JUMBF header) is state ``damaged``, evidence like an
    Invalid one, not an error (``provenance.read_file``). Call it on a file :func:`refusal` let through: c2pa
    opens what it is given, a FIFO included."""
    try:
        return C2paEvidence.from_reading(provenance.read_file(path, tuple(trust_anchors))), None
    except provenance.ProvenanceError as exc:
        return C2paEvidence.unreadable(str(exc)), str(exc)


def soft_binding_agrees(c2pa: C2paEvidence, mark: WatermarkEvidence | None) -> bool | None:
    """Whether a manifest's framemark soft binding names the payload the watermark carries; None when either
    is missing (no manifest, another algorithm, watermark not detected or not readable)."""
    binding = c2pa.soft_binding
    if binding.get("alg") != SOFT_BINDING_ALG or mark is None or not mark.payload:
        return None
    return binding.get("value") == mark.payload


def needs_ledger(c2pa: C2paEvidence, mark: WatermarkEvidence | None) -> bool:
    """Look the payload up only when the file's own manifest cannot speak for it: absent, Invalid or unreadable,
    and the watermark was detected with a payload that passed its CRC."""
    return not c2pa.valid and mark is not None and mark.detected and bool(mark.payload)


RECOVERED_STATEMENT = ("manifest recovered through the watermark from the ledger, not bound to these bytes: it "
                       "describes the clip this watermark payload was issued to, whose bytes these may no longer be")


def resolve_through_ledger(ledger: Ledger | None, mark: WatermarkEvidence, trust_anchors) -> LedgerEvidence:
    """The ``ledger`` part of a verdict: the original manifest of the clip the payload was issued to.

    The stored manifest store is validated on its own (``provenance.read_manifest_store``): claim signature,
    signing credential against ``trust_anchors``, assertion hashes; its hard binding cannot be checked because
    the bytes it was made for are not these. ``bound_to_file`` is therefore always False.
    """
    part = LedgerEvidence(payload=mark.payload, key_id=mark.key_id, statement="")
    if ledger is None:
        part.statement = "no ledger to look the payload up in"
        return part
    part.looked_up, part.ledger = True, str(ledger.path)
    try:
        entries = ledger.lookup(Payload.from_hex(mark.payload), key_id=mark.key_id)
    except FramemarkError as exc:
        part.statement = f"ledger lookup failed: {exc}"
        return part
    if not entries:
        part.statement = f"payload {mark.payload} of key {mark.key_id} is not in the ledger"
        return part
    entry = entries[0]
    part.found, part.matches, part.entry = True, len(entries), entry.to_dict()
    if entry.manifest_store is None:
        part.statement = "the ledger knows this clip, but it was emitted without a C2PA manifest"
        return part
    stored = provenance.stored_manifest(entry.manifest_store, tuple(trust_anchors))
    part.recovered, part.manifest, part.manifest_json = True, stored["manifest"], stored["manifest_json"]
    part.signature, part.statement = stored["signature"], RECOVERED_STATEMENT
    return part
