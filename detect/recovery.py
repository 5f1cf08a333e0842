"""Recovering the watermark from decoded frames: the search plan (for each stretch of the upload that may hold a
clip, ``detect.segments``, each model it may come from and each edit hypothesis of ``detect.alignment``), the two
readings of each entry (the VAE latent itself, then the noise the sampler's inversion recovers from it, through
the model interface), the refinement of a crop that shows a trace of the key, the keyed test with its
correction over every reading the plan could make (a union bound, weighted between plain and refined readings),
and the temporal tamper reading of the agreement maps.

Pure computation on frames and a :class:`~framemark.generator.models.VideoModel` (no files, no PyAV, no c2pa), so
it runs wherever torch does: in ``verify``, in the audit's workers, and on a GPU machine for benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from framemark.generator.models import ModelIdentity, VideoModel
from framemark.watermark import Extraction, WatermarkKey, extract

from . import DEFAULT_FPR, DEFAULT_INVERSION_STEPS
from .alignment import GenerationShape, Hypothesis, content_box, hypotheses, interior_mask, nudges, prepare
from .segments import Segment, segments


# The readings of one (model, hypothesis) pair, in the order taken: the VAE latent of the clip as it is (the
# "first look": no inversion, so it costs the encode alone) and the initial noise the sampler's inversion recovers
# from that latent. The mark lives in the initial noise, but a trained model carries much of it into the clean
# latent it makes (on the embedded model the first look alone reads -log10 p of 17 to 31 on clean clips): every
# stage is one more test of the Bonferroni total, so trying the first look costs log10(2) of -log10 p and saves
# the inversion of every clip it decides.
STAGES = ("encoded", "inverted")
# On a model whose card says its first look predicts the inversion (``VideoModel.first_look``), a pair whose first
# look has an uncorrected p-value above this is not inverted: an unmarked clip is inverted with probability at most
# this (the test is exact), so it costs the encode alone. Skipping a test can only lower the false-positive rate;
# what it may cost is power, which ``bench/first_look.py`` measures on the attack suite before a card turns it on.
FIRST_LOOK_CONTINUE_P = 1e-2
# A crop at a phase other than its box's own (``alignment.CROP_PHASES``) is inverted when its first look's
# uncorrected p-value is at most this: any trace at all. The first look of a half-area crop is weak even at the
# right phase (bench/phase_gate.py: 4 of 39 clips read p 0.01-0.12 there, three of them inverting to -log10 p 9 to
# 18), while unmarked first looks there read p = 1 (the union bound over registration's offsets clips them): 0 of
# 270 phased first looks of 30 unmarked clips passed it, so an unmarked upload still pays these entries' encodes
# and not their inversions.
PHASE_TRACE_P = 0.5
# A crop hypothesis whose readings show a trace of the key (uncorrected p at most this) is refined
# (:func:`refine_crop`): the restored box is moved and resized a pixel or two at a time (``alignment.nudges``)
# while the reading grows. An unmarked clip is refined with probability at most this per crop hypothesis.
REFINE_TRACE_P = 1e-2
# The share of the false-positive budget the refined readings have between them (a weighted union bound: each
# plain reading is tested at (1 - share) / plain tests, each refined one at share / refinements, every refinement
# of every crop counted whether read or not). 0.2 costs every plain reading log10(1 / 0.8) = 0.1 of -log10 p.
REFINE_SHARE = 0.2
# A refinement stops after this many readings (each one encode and one inversion) or at a detection.
MAX_REFINE_READINGS = 10
# A crop's detection weaker than this (-log10 p, corrected) is refined further for its payload (:func:`polish`).
POLISH_BELOW = 20.0
# The search encodes the plan's entries this many at a time (those of one model and generated shape), the first
# needed and the next ones. On a CPU PyTorch sends a 3D convolution of a batch of one whose batch x channels x
# frames x rows is at most 20480 to its slow native kernel (torch.profiler: half of one embedded-model encode is
# slow_conv3d_forward) and a batch of two to oneDNN, so two clips encode in about the time of one (2 cores:
# 1.2 s against 1.1 s). A clip detected at its first entry pays the difference.
ENCODE_AHEAD = 2
# At most this many latent elements (clips x C x t x h x w) per VAE or sampler call: 51 clips of the embedded
# model's 16x5x16x16, one clip of Wan 2.1 at 480x832x81 (2.1M elements), so grouping clips never multiplies a
# real model's memory (here and in ``detect.batch``).
MAX_BATCH_LATENT = 1 << 20


@dataclass(frozen=True)
class Candidate:
    """One entry of the search plan: a model (its index), an edit hypothesis, and the stretch of the upload it is
    read on (``detect.segments``)."""

    model: int
    hypothesis: Hypothesis
    segment: Segment


@dataclass(frozen=True)
class Reading:
    """One test of the search: which entry of the plan (``pair``, an index of :func:`search_plan`'s list), which
    stage (:data:`STAGES`, or ``refined``: a crop's refinement, :func:`refine_crop`), and its extraction, already
    corrected for the whole search (:func:`check_hypothesis`). ``hypothesis``: a refined reading's geometry (None:
    the entry's own)."""

    pair: int
    stage: str
    extraction: Extraction
    hypothesis: Hypothesis | None = None


@dataclass(frozen=True)
class Recovery:
    """The extraction under the reading that detected the mark (:func:`conclude`; else the strongest one); its
    p-value is already corrected for every test the search could have made (:func:`count_tests`: every (model,
    hypothesis) pair times each stage; :func:`refine_tests` for a crop's refined readings). ``stage``: whether it
    was read from the VAE latent (``encoded``), the inverted noise (``inverted``) or the inverted noise under a
    crop's refined box (``refined``; ``hypothesis`` is then the refined one). ``model``: the identity
    (``ModelIdentity``) of the model whose latent gave that extraction; ``models_tried`` of ``models_total``
    models were encoded before the search stopped; ``inversions``: how many inversions were made, refinements
    and polishing included (the costly part)."""

    extraction: Extraction
    hypothesis: Hypothesis
    hypotheses_tried: int
    hypotheses_total: int
    model: ModelIdentity | None = None
    models_tried: int = 1
    models_total: int = 1
    stage: str = "inverted"
    inversions: int = 0
    segment: Segment | None = None


def as_models(models) -> list:
    """A sequence of ``VideoModel`` as a list; one ``VideoModel`` alone is the list of it (the one-model callers:
    benchmarks and lab code)."""
    return [models] if isinstance(models, VideoModel) else list(models)


def candidates(models, num_frames: int, height: int, width: int,
               box: tuple[int, int, int, int] | None = None) -> list[tuple[int, Hypothesis]]:
    """The search plan for a clip of this shape (and content box, ``alignment.content_box``): (model index,
    hypothesis) pairs, the models in order and each model's hypotheses (``detect.alignment.hypotheses``) in its
    own order. The Bonferroni correction counts every pair at every stage (:func:`count_tests`), so adding a model
    costs one more term per hypothesis and stage. A batched verifier reuses the plan."""
    return [(i, hyp) for i, model in enumerate(as_models(models))
            for hyp in hypotheses(model, num_frames, height, width, box)]


def plan_for(models, frames: np.ndarray) -> list[tuple[int, Hypothesis]]:
    """:func:`candidates` for these frames: their shape, and their content box read from them."""
    return candidates(models, *frames.shape[:3], box=content_box(frames))


def clip_durations(models) -> tuple[float, float, float]:
    """The shortest, the first model's default and the longest clip (seconds) any of ``models`` makes, at its
    default frame rate (``detect.segments.segments``)."""
    models = as_models(models)
    spans = [(m.limits.min_frames / m.defaults.fps, m.limits.max_frames / m.defaults.fps) for m in models]
    usual = models[0].defaults.frames / models[0].defaults.fps
    return min(a for a, _ in spans), usual, max(b for _, b in spans)


def search_plan(models, frames: np.ndarray, fps: float | None = None) -> list[Candidate]:
    """Everything the search may read, in order: for each stretch of the upload worth testing
    (``detect.segments.segments``, from the frames and ``fps``; without ``fps`` the whole upload alone), the
    (model, hypothesis) pairs of :func:`plan_for` on that stretch's frames: all of them on the whole upload, the
    views without a crop or a mirror (the content box and strip are kept) on a stretch of it. A spliced or looped
    clip that was also cropped or mirrored is therefore not searched: each such hypothesis is one encode per
    stretch, and up to ``segments.MAX_SEGMENTS`` stretches multiplied an unmarked upload's cost by as many
    (``bench/uploads.py``, docs/benchmarks.md)."""
    models = as_models(models)
    whole = Segment(0, frames.shape[0], whole=True)
    spans = segments(frames, fps, clip_durations(models)) if fps else [whole]
    return [Candidate(index, hyp, span) for span in spans
            for index, hyp in plan_for(models, frames[span.start:span.stop])
            if span.whole or (hyp.crop >= 1.0 and not hyp.flip)]


def count_tests(plan: list) -> float:
    """What a plain reading's p-value is multiplied by (the inverse of its weight in the union bound): every entry
    at every stage, and where the plan holds crops that may be refined, their refinements' share of the budget
    (:data:`REFINE_SHARE`) set aside."""
    plain = len(plan) * len(STAGES)
    return plain / (1.0 - REFINE_SHARE) if count_refinements(plan) else plain


def count_refinements(plan: list) -> int:
    """How many refined readings a search over ``plan`` may make: every nudge of every crop entry."""
    return sum(len(nudges(entry.hypothesis)) for entry in plan)


def refine_tests(plan: list) -> float:
    """What a refined reading's p-value is multiplied by: the refinements share :data:`REFINE_SHARE` of the
    budget equally."""
    return count_refinements(plan) / REFINE_SHARE


def encode_hypothesis(model, frames: np.ndarray, hyp: Hypothesis) -> torch.Tensor:
    """The clip's VAE latent under ``hyp``: the geometry undone (``alignment.prepare``), encoded."""
    return model.autoencoder.encode(prepare(frames, hyp))


def recover_noise(model, frames: np.ndarray, hyp: Hypothesis, steps: int = DEFAULT_INVERSION_STEPS) -> torch.Tensor:
    """The initial noise z_hat the clip implies under ``hyp``: conform, undo the crop, VAE-encode, invert.
    It does not depend on the key, so one inversion serves every key tested against it."""
    return model.estimate_noise(encode_hypothesis(model, frames, hyp), steps)


def check_hypothesis(model, key: WatermarkKey, z_hat: torch.Tensor, hyp: Hypothesis, total: float,
                     fpr: float = DEFAULT_FPR) -> Extraction:
    """``extract`` under one of ``total`` tests: tested at ``fpr / total``, its p-value multiplied by ``total``
    (Bonferroni), so that a search over all of them keeps the false-positive rate at ``fpr``. ``z_hat``: recovered
    noise, or a VAE latent for the first look (same layout)."""
    return corrected(read_hypothesis(model, key, z_hat, hyp, total, fpr), total, fpr)


def read_hypothesis(model, key: WatermarkKey, z_hat: torch.Tensor, hyp: Hypothesis, total: float,
                    fpr: float = DEFAULT_FPR) -> Extraction:
    """:func:`check_hypothesis` before the correction: its p-value is the test's own (what the search's choices
    look at), its ``detected`` already decided at ``fpr / total``."""
    ae = model.autoencoder
    mask = interior_mask(hyp.crop, hyp.shape.height, hyp.shape.width, ae.spatial_factor, hyp.strip, hyp.placement)
    return extract(key, z_hat, fpr=fpr / total, template_frames=ae.latent_frames(hyp.shape.frames), mask=mask,
                   reach=hyp.reach)


def corrected(raw: Extraction, total: float, fpr: float) -> Extraction:
    log_p = min(0.0, raw.log10_p_value + math.log10(total))
    return replace(raw, p_value=10.0 ** log_p, log10_p_value=log_p, fpr=fpr)


def worth_inverting(model, first: Extraction, hyp: Hypothesis) -> bool:
    """Whether a pair whose first look gave ``first`` (uncorrected, :func:`read_hypothesis`) goes on to its
    inversion.

    When the first look detected the mark, only if its agreement maps suggest tampering (:func:`tamper_suspected`):
    the tamper reading's thresholds are set on inverted noise, and the latent's per-frame agreement is uneven (a
    causal VAE encodes the first frame on its own), so the inversion confirms or clears it. A crop is always
    inverted at its box's own phase, and at the other phases (``alignment.CROP_PHASES``) when ``first`` shows any
    trace of the key (:data:`PHASE_TRACE_P`): an unmarked upload pays their encodes alone. An uncropped view is
    inverted on a trace (:data:`FIRST_LOOK_CONTINUE_P`) on a model whose first look is known to predict the
    inversion (``VideoModel.first_look``), and on any other model if it is a core hypothesis
    (``Hypothesis.core``), so that mirrors cost an encode, never an inversion."""
    if first.detected:
        return tamper_suspected(first)
    if hyp.crop < 1.0:
        # at its own phase whatever the first look read: the first-look bench measured uncropped views, and a
        # crop's refinement starts from its inverted reading (docs/watermark.md)
        return hyp.phase == (0, 0) or first.log10_p_value <= math.log10(PHASE_TRACE_P)
    if not model.first_look:
        return hyp.core
    return first.log10_p_value <= math.log10(FIRST_LOOK_CONTINUE_P)


def conclude(models, plan: list[Candidate], readings: list[Reading], polished: Sequence[Reading] = ()) -> Recovery:
    """The :class:`Recovery` of a search that made ``readings`` over ``plan``, in order (each
    ``check_hypothesis``-ed at :func:`count_tests`), and then ``polished`` (:func:`polish`): the strongest reading,
    which is the detection when the search stopped at one, or a polished reading that detects more strongly."""
    models = as_models(models)
    if not readings:
        raise ValueError("a search makes at least one reading")
    detected = [r for r in readings if r.extraction.detected]
    # the reading the search stopped at (the last detection: a first look's confirmation by the inversion comes
    # after it), else the strongest
    reading = detected[-1] if detected else min(readings, key=lambda r: r.extraction.log10_p_value)
    stronger = [r for r in polished if r.extraction.detected
                and r.extraction.log10_p_value < reading.extraction.log10_p_value]
    if stronger:
        reading = min(stronger, key=lambda r: r.extraction.log10_p_value)
    entry = plan[reading.pair]
    pairs = sorted({r.pair for r in readings})
    return Recovery(extraction=reading.extraction, hypothesis=reading.hypothesis or entry.hypothesis,
                    hypotheses_tried=len(pairs),
                    hypotheses_total=len(plan), model=models[entry.model].identity,
                    models_tried=len({plan[i].model for i in pairs}), models_total=len(models), stage=reading.stage,
                    inversions=sum(r.stage != "encoded" for r in [*readings, *polished]), segment=entry.segment)


@dataclass
class EntryReadings:
    """One entry of the plan read the way every search reads it: the first look (its VAE latent), the inverted
    noise where :func:`worth_inverting` says so, then the refinement of a crop that shows a trace
    (:func:`worth_refining`). :func:`recover_watermark` steps one entry through it at a time; the batched search
    (``detect.batch``) steps several clips' entries through it together, their inversions in one call between
    :meth:`look` and :meth:`take_inversion`."""

    model: VideoModel
    key: WatermarkKey
    pair: int
    hyp: Hypothesis
    total: float  # count_tests of the plan
    fpr: float
    raw: list[Extraction] = field(default_factory=list)  # uncorrected, as the gates read them
    readings: list[Reading] = field(default_factory=list)

    def look(self, latent: torch.Tensor) -> bool:
        """Read the entry's VAE latent; whether its noise should be recovered and read too."""
        self.raw.append(read_hypothesis(self.model, self.key, latent, self.hyp, self.total, self.fpr))
        self.readings.append(Reading(self.pair, "encoded", corrected(self.raw[0], self.total, self.fpr)))
        return worth_inverting(self.model, self.raw[0], self.hyp)

    def take_inversion(self, z_hat: torch.Tensor) -> None:
        """Read the noise recovered from the latent (``VideoModel.estimate_noise``)."""
        self.raw.append(read_hypothesis(self.model, self.key, z_hat, self.hyp, self.total, self.fpr))
        self.readings.append(Reading(self.pair, "inverted", corrected(self.raw[-1], self.total, self.fpr)))

    def refine(self, stretch: np.ndarray, refine_total: float, steps: int) -> list[Reading]:
        """Refine a crop that shows a trace onto its box (``stretch``: the entry's frames); all the readings."""
        if worth_refining(self.hyp, self.raw):
            self.readings += refine_crop(self.model, self.key, stretch, self.pair, self.hyp, self.raw, refine_total,
                                         steps, self.fpr)
        return self.readings


def recover_watermark(models, key: WatermarkKey, frames: np.ndarray, fpr: float = DEFAULT_FPR,
                      steps: int = DEFAULT_INVERSION_STEPS, fps: float | None = None) -> Recovery:
    """uint8 frames (T,H,W,3) of a possibly edited upload -> the watermark extraction under ``key``.

    ``models``: the models the clip may come from (a sequence of ``VideoModel``, or one). ``fps``: the upload's
    frame rate; given, the stretches of a longer upload where a clip may sit are searched too
    (:func:`search_plan`). Tries the entries of the plan in order, each first on its VAE latent, then
    (:func:`worth_inverting`) on its inverted noise, and stops at the first detection. Each test is made at
    ``fpr / N`` and its p-value multiplied by N (N = :func:`count_tests`, every stage of every entry, made or
    not): by the union bound the chance that an unmarked clip, or a clip of a model not among ``models``, is
    detected by any of them stays <= ``fpr``, whenever the search stops.
    """
    models = as_models(models)
    if not models:
        raise ValueError("recover_watermark needs at least one model")
    plan = search_plan(models, frames, fps)
    total = count_tests(plan)
    readings: list[Reading] = []
    ahead: dict[int, torch.Tensor] = {}  # latents encoded with an earlier entry's
    for pair, entry in enumerate(plan):
        model, hyp = models[entry.model], entry.hypothesis
        stretch = frames[entry.segment.start:entry.segment.stop]
        if pair not in ahead:
            ahead.update(encode_entries(models, frames, plan, pair))
        latent = ahead.pop(pair)
        entry_readings = EntryReadings(model, key, pair, hyp, total, fpr)
        if entry_readings.look(latent):
            entry_readings.take_inversion(model.estimate_noise(latent, steps))
        readings += entry_readings.refine(stretch, refine_tests(plan), steps)
        if any(r.extraction.detected for r in readings):
            break
    return conclude(models, plan, readings, polish(models, key, frames, plan, readings, steps, fpr))


def encode_entries(models, frames: np.ndarray, plan: list[Candidate], start: int) -> dict[int, torch.Tensor]:
    """The latents of ``plan[start]`` and of the entries after it that the same call can encode
    (:data:`ENCODE_AHEAD` in all, of one model and one generated shape, :data:`MAX_BATCH_LATENT` elements at
    most), by plan index. Each is what :func:`encode_hypothesis` gives for it, up to the order of floating-point
    sums."""
    first = plan[start]
    model = as_models(models)[first.model]
    shape = first.hypothesis.shape
    room = MAX_BATCH_LATENT // max(1, latent_elements(model, shape))
    picked = [start]
    for index in range(start + 1, min(len(plan), start + min(ENCODE_AHEAD, max(1, room)))):
        if plan[index].model != first.model or plan[index].hypothesis.shape != shape:
            break
        picked.append(index)
    clips = [prepare(frames[plan[i].segment.start:plan[i].segment.stop], plan[i].hypothesis) for i in picked]
    latents = model.autoencoder.encode_many(clips)
    return {i: latents[row:row + 1] for row, i in enumerate(picked)}


def latent_elements(model, shape: GenerationShape) -> int:
    """How many latent elements one clip of generated ``shape`` has under ``model``:
    what :data:`MAX_BATCH_LATENT` counts."""
    return int(np.prod(model.latent_shape(shape.frames, shape.height, shape.width)))


def worth_refining(hyp: Hypothesis, raw: list[Extraction]) -> bool:
    """Whether a crop hypothesis is refined: its readings (uncorrected, :func:`read_hypothesis`) detected nothing
    but show a trace of the key (:data:`REFINE_TRACE_P`)."""
    return bool(nudges(hyp)) and not any(ex.detected for ex in raw) and \
        min(ex.log10_p_value for ex in raw) <= math.log10(REFINE_TRACE_P)


def refine_crop(model, key: WatermarkKey, frames: np.ndarray, pair: int, hyp: Hypothesis, raw: list[Extraction],
                total: float, steps: int = DEFAULT_INVERSION_STEPS, fpr: float = DEFAULT_FPR,
                polish: bool = False) -> list[Reading]:
    """Readings of a crop hypothesis under refined geometry (``alignment.nudges``), each inverted and tested as
    one of ``total`` refined tests (:func:`refine_tests`), until one detects or :data:`MAX_REFINE_READINGS`.

    A coordinate ascent on the reading's own p-value, starting from ``hyp``'s box (its nudge included) and its
    readings ``raw`` (uncorrected): the box's side first (a centred crop between the coarse fractions is off by
    its size), then its rows, then its columns (a crop off the cell grid), each axis stepped while the reading
    grows. ``polish``: ``hyp`` already detected the mark (:func:`polish`), and the ascent goes on through
    detections to the strongest reading. Which nudges are read depends on the clip, but every nudge is counted in
    ``total``, so the union bound holds whichever is reported."""
    grid = set(nudges(hyp))
    start = hyp.nudge
    seen: dict[tuple[int, int, int], float] = {start: min(ex.log10_p_value for ex in raw)}
    readings: list[Reading] = []

    def read(nudge: tuple[int, int, int]) -> float:
        if nudge in seen:
            return seen[nudge]
        if nudge not in grid or len(readings) >= MAX_REFINE_READINGS:
            return 0.0
        nudged = replace(hyp, nudge=nudge)
        z_hat = model.estimate_noise(encode_hypothesis(model, frames, nudged), steps)
        ex = read_hypothesis(model, key, z_hat, nudged, total, fpr)
        readings.append(Reading(pair, "refined", corrected(ex, total, fpr), nudged))
        seen[nudge] = ex.log10_p_value
        return seen[nudge]

    best, step = start, 2 * hyp.unit
    for axis in range(3):
        for direction in (1, -1):
            while True:
                trial = best[:axis] + (best[axis] + direction * step,) + best[axis + 1:]
                if read(trial) < seen[best]:
                    best = trial
                    if not polish and readings[-1].extraction.detected:
                        return readings
                else:
                    break
            if best[axis] != start[axis]:  # moved this way: the other way is behind
                break
        if len(readings) >= MAX_REFINE_READINGS:
            break
    return readings


def polish(models, key: WatermarkKey, frames: np.ndarray, plan: list[Candidate], readings: list[Reading],
           steps: int = DEFAULT_INVERSION_STEPS, fpr: float = DEFAULT_FPR) -> list[Reading]:
    """Refined readings of a weak crop detection, for its payload: the search stops at the first reading that
    detects, but a crop's box restored a pixel or two off still detects while its payload comes out wrong (on
    the platform bench, detections of crops below :data:`POLISH_BELOW` decoded 86-97 % of their bits, those above
    99.8 %). When the reading the search stopped at (``readings``' last detection) is a crop's and weaker than
    that, :func:`refine_crop` goes on from its box to the strongest reading it finds; :func:`conclude` reports
    that one where it is stronger. The detection is already made, and every refined reading is counted in
    :func:`refine_tests`, so the false-positive rate is unchanged; the cost falls on marked crops alone."""
    detected = [r for r in readings if r.extraction.detected]
    if not detected:
        return []
    stop = detected[-1]
    entry = plan[stop.pair]
    hyp = stop.hypothesis or entry.hypothesis
    if not nudges(hyp) or stop.extraction.log10_p_value <= -POLISH_BELOW:
        return []
    own = refine_tests(plan) if stop.stage == "refined" else count_tests(plan)
    raw = replace(stop.extraction, log10_p_value=stop.extraction.log10_p_value - math.log10(own))
    stretch = frames[entry.segment.start:entry.segment.stop]
    return refine_crop(as_models(models)[entry.model], key, stretch, stop.pair, hyp, [raw], refine_tests(plan),
                       steps, fpr, polish=True)


def tamper_suspected(ex: Extraction) -> bool:
    """Whether a detection's agreement maps call frames moved or foreign (:func:`tamper_summary`)."""
    summary = tamper_summary(ex)
    return bool(summary["assessed"] and (summary["reordered"] or summary["foreign_latent_frames"]))


# How many standard errors of a frame's agreement (0.5 / sqrt(elements) under "unmarked") a tamper claim needs:
# a frame is moved only if another template frame beats its own by this margin (of the difference), and foreign
# only if it does not match its template frame by this much. With 4096 elements, 4 sigma is 0.031.
TAMPER_SIGMAS = 4.0


def tamper_summary(ex: Extraction) -> dict:
    """Which latent frames are out of place or foreign, and how many cells look edited, from the agreement maps.

    Decisions rest on ``template_matrix`` (all elements, not only pilots) and prefer the untampered reading: a
    recovered frame stays at its own position unless another template frame matches it significantly better,
    because neighbouring frames of a clip share content and a weak frame can match a neighbour by a hair.
    """
    frame_agreement = [round(float(a), 3) for a in ex.frame_agreement]
    if not ex.detected or ex.template_matrix is None:
        return {"assessed": False, "frame_agreement": frame_agreement}
    m = np.asarray(ex.template_matrix)
    t_rec, t_tpl = m.shape
    sigma = 0.5 / math.sqrt(max(ex.template_elements, 1))
    assignment = []
    for j in range(t_rec):
        best = int(m[j].argmax())
        own = j if j < t_tpl else None
        moved = own is None or m[j, best] - m[j, own] > TAMPER_SIGMAS * math.sqrt(2.0) * sigma
        assignment.append(best if moved else own)
    agreement = [float(m[j, k]) for j, k in enumerate(assignment)]
    foreign = [j for j, a in enumerate(agreement) if a < 0.5 + TAMPER_SIGMAS * sigma]
    placed = [k for j, k in enumerate(assignment) if j not in foreign]
    reordered = placed != sorted(placed) or len(set(placed)) != len(placed)
    # a cell is low when it is closer to chance than to the clip's typical agreement
    typical = float(np.median([a for j, a in enumerate(agreement) if j not in foreign] or [0.5]))
    cells = np.asarray(ex.cell_agreement)
    edited_cells = int(((cells - 0.5) < 0.5 * max(typical - 0.5, 1e-6)).sum())
    return {
        "assessed": True,
        "frame_assignment": assignment,
        "reordered": bool(reordered),
        "foreign_latent_frames": foreign,
        "frame_agreement": [round(a, 3) for a in agreement],
        "low_agreement_cells": edited_cells,
        "cells": int(cells.size),
    }

