"""The verdict: one typed result per checked file, its evidence parts, and the rules that name it.

``verify_file`` builds a :class:`Verdict`; the CLI, the audit, the report and the service use it as is, through
``to_dict()``, which is the documented JSON (docs/provenance.md, "Verdicts"). Verdict names, their precedence,
their one-line descriptions and the rule behind each are defined here and nowhere else: a new rule is one more
entry of :data:`RULES`, in its place in the order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# ------------------------------------------------------------------------------------------------ evidence


@dataclass
class C2paEvidence:
    """What the file's own C2PA manifest says: state Trusted / Valid / Invalid / damaged / absent (None: c2pa could
    not parse the file), failure and informational codes, the active manifest's claim summary. ``damaged``
    (``provenance.DAMAGED``): c2pa cannot find or parse a manifest whose remains are in the file (a renamed box, a
    broken JUMBF header); it weighs as Invalid."""

    state: str | None
    codes: list[str] = field(default_factory=list)
    informational: list[str] = field(default_factory=list)
    manifest: dict | None = None
    error: str | None = None
    # whether the manifest's framemark soft binding names the payload the watermark carries (None: not comparable)
    soft_binding_matches_watermark: bool | None = None

    @classmethod
    def from_reading(cls, reading: dict) -> "C2paEvidence":
        """From ``provenance.read_file``'s dict."""
        return cls(state=reading.get("state"), codes=list(reading.get("codes") or []),
                   informational=list(reading.get("informational") or []), manifest=reading.get("manifest"),
                   error=reading.get("error"))

    @classmethod
    def unreadable(cls, message: str) -> "C2paEvidence":
        return cls(state=None, error=message)

    @property
    def valid(self) -> bool:
        return self.state in ("Trusted", "Valid")

    @property
    def broken(self) -> bool:
        """Invalid, or damaged: a manifest was there and does not hold together."""
        return self.state in ("Invalid", "damaged")

    @property
    def declares_synthetic(self) -> bool:
        return bool((self.manifest or {}).get("declares_synthetic"))

    @property
    def soft_binding(self) -> dict:
        return (self.manifest or {}).get("soft_binding") or {}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Alignment:
    """Which hypothesis of the edit search the watermark was read under (``detect.alignment``). ``hypotheses_tried``
    and ``hypotheses_total`` count (model, hypothesis) pairs over every model checked against. ``read_from``: the
    stage of ``detect.recovery.STAGES`` that gave the reading (``encoded``: the VAE latent itself, the first look;
    ``inverted``: the noise the sampler's inversion recovered); ``inversions``: how many pairs were inverted.
    The geometry undone (``detect.alignment``): ``flipped`` (mirrored left-right), ``content_box`` ([top, left,
    height, width] of the picture inside padding bars, in the frames the verifier decoded; null: none), ``strip``
    ([height, width] fractions of the generated frame that box holds), ``crop_undone`` (the share of the generated
    height the upload held: 1.0 when not cropped), ``crop_box`` ([top, left, height, width] in generated pixels of
    the box the upload was restored into, refinement included; null when not cropped) and ``crop_offset`` ([rows,
    columns] of latent cells by which that box sat further off, found by registration; [0, 0] when none)."""

    generated_frames: int
    generated_size: list[int]
    crop_undone: float
    hypotheses_tried: int
    hypotheses_total: int
    read_from: str = "inverted"
    inversions: int = 0
    flipped: bool = False
    content_box: list[int] | None = None
    strip: list[float] | None = None
    crop_offset: list[int] | None = None
    crop_box: list[int] | None = None


@dataclass
class WatermarkEvidence:
    """The watermark test under the verifier's key: ``Extraction.to_dict()``'s fields, where it was read, and the
    tamper reading of its agreement maps. ``payload_unreadable``: the key's mark is there but its 64 bits are too
    damaged to trust (payload and clip id are then withheld, so no one else's clip is named).

    Which model: the verifier inverts the clip under each model it checks against (every registered one). ``model``
    names the one whose inversion detected the mark (``manifest.describe_model``: name, version, family,
    weights_sha256), None when the mark was not detected (no model claims the clip). ``models_tried``: how many
    models were inverted before the search stopped; ``models_total``: how many it checks against. The p-value is
    corrected for every (model, hypothesis) pair: ``alignment.hypotheses_total`` counts them.

    Where in time (``detect.segments``): ``segment`` gives the stretch of the upload the mark was read on
    (``start_s``, ``end_s``, frames, ``copies`` for a loop, ``inside_other_footage`` for a splice); null when
    nothing was detected.
    """

    detected: bool
    p_value: float
    log10_p_value: float
    fpr: float
    payload: str | None
    clip_id: int | None
    crc_ok: bool
    bit_accuracy: float
    pilot_agreement: float
    key_id: str
    frame_matrix: list
    frame_assignment: list[int]
    frame_agreement: list[float]
    cell_agreement: list
    alignment: Alignment
    tamper: dict
    model: dict | None = None
    models_tried: int = 1
    models_total: int = 1
    payload_unreadable: bool = False
    segment: dict | None = None

    @property
    def tamper_found(self) -> bool:
        return bool(self.tamper.get("foreign_latent_frames") or self.tamper.get("reordered"))

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.payload_unreadable:
            d.pop("payload_unreadable")
        return d


@dataclass
class LedgerEvidence:
    """The original manifest of the clip a payload was issued to, recovered from the ledger. Never bound to the
    checked file's bytes (``bound_to_file`` is always False): it describes the clip as emitted."""

    payload: str
    key_id: str | None
    statement: str
    looked_up: bool = False
    found: bool = False
    recovered: bool = False
    bound_to_file: bool = False
    ledger: str | None = None          # where it was looked up
    matches: int | None = None
    entry: dict | None = None          # the newest matching row (``LedgerEntry.to_dict()``)
    manifest: dict | None = None       # claim summary of the stored manifest
    manifest_json: dict | None = None
    signature: dict | None = None      # {state, codes, hard_binding} of the stored manifest on its own

    def to_dict(self) -> dict:
        head = ("looked_up", "found", "payload", "key_id", "recovered", "bound_to_file")
        optional = ("ledger", "matches", "entry", "manifest", "manifest_json", "signature")
        d = {k: getattr(self, k) for k in head}
        d.update({k: getattr(self, k) for k in optional if getattr(self, k) is not None})
        d["statement"] = self.statement
        return d


@dataclass(frozen=True)
class ClassifierEvidence:
    """The passive classifier's calibrated P(synthetic) and the threshold its model card chose. ``p_synthetic``
    is the upload's first window, the score the threshold was set for and the verdict reads. A longer upload is
    scored on ``windows`` windows spread over it (``passive_features.window_starts``); ``top_window`` says which
    scored highest (``start_s``, ``end_s``, ``p_synthetic``): a pointer for a reviewer, not read by the verdict,
    because the largest of several scores is not calibrated at the card's false-positive rate."""

    p_synthetic: float
    model_version: str
    threshold: float
    above_threshold: bool
    windows: int = 1
    top_window: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ the rules

@dataclass(frozen=True)
class Rule:
    name: str
    label: str          # a short title, for people
    description: str    # what it means and what it does not
    applies: Callable[["C2paEvidence", "WatermarkEvidence | None", "ClassifierEvidence | None"], bool]


def _tampered(c2pa, mark, cls) -> bool:
    return (c2pa.broken or c2pa.soft_binding_matches_watermark is False
            or bool(mark and mark.detected and mark.tamper_found))


def _signed(c2pa, mark, cls) -> bool:
    return c2pa.valid and c2pa.declares_synthetic


def _watermarked(c2pa, mark, cls) -> bool:
    return bool(mark and mark.detected)


def _segment(c2pa, mark, cls) -> bool:
    return _watermarked(c2pa, mark, cls) and bool((mark.segment or {}).get("inside_other_footage"))


def _likely(c2pa, mark, cls) -> bool:
    # a Trusted manifest that does not declare synthetic content (a camera's) outweighs a pixel statistic; a
    # merely Valid one does not: anyone can sign "captured" with an untrusted certificate
    return bool(cls and cls.above_threshold) and c2pa.state != "Trusted"


# Strongest claim first; the first rule that applies names the verdict. A manifest recovered through the ledger
# never raises the verdict on its own: the watermark already did, and that manifest is not bound to these bytes.
RULES: tuple[Rule, ...] = (
    Rule("tampered", "Tampered",
         "The evidence does not hold together: the manifest is invalid or damaged, names another watermark, or "
         "frames were moved or replaced.", _tampered),
    Rule("signed-synthetic", "AI-generated · signed",
         "A valid C2PA manifest in the file declares this video AI-generated.", _signed),
    Rule("watermarked-segment", "Contains AI-generated footage · watermarked",
         "framemark's invisible watermark was found in part of this video (watermark.segment says where); the "
         "rest is other footage, which the mark says nothing about.", _segment),
    Rule("watermarked-synthetic", "AI-generated · watermarked",
         "framemark's invisible watermark was found: this video came from a framemark generator.", _watermarked),
    Rule("likely-synthetic", "Likely AI-generated",
         "No manifest or watermark, but the classifier finds this video likely synthetic.", _likely),
    Rule("no-evidence", "No evidence found",
         "No manifest, watermark or classifier signal says this video is synthetic. That is not proof that it is "
         "authentic.", lambda c2pa, mark, cls: True),
)
VERDICTS: tuple[str, ...] = tuple(r.name for r in RULES)
# Where verdicts are counted or named (--fail-on, reports), a file that could not be checked (verdict null).
ERROR = "error"
# Verdicts that flag a file as (possibly edited) synthetic, for label metrics.
FLAGGED = frozenset(VERDICTS[:-1])


def decide(c2pa: C2paEvidence, watermark: WatermarkEvidence | None, classifier: ClassifierEvidence | None) -> str:
    """The name of the first rule of :data:`RULES` that the evidence satisfies."""
    return next(r.name for r in RULES if r.applies(c2pa, watermark, classifier))


def verdict_name(row: dict) -> str:
    """A verdict's name in a JSON row; ``error`` when the file could not be checked."""
    return row.get("verdict") or ERROR


def described() -> list[dict]:
    """Names, titles and descriptions in precedence order (the service publishes them for its page)."""
    return [{"name": r.name, "label": r.label, "description": r.description} for r in RULES]


def parse_verdicts(text: str | None) -> frozenset[str]:
    """'tampered,watermarked-synthetic' -> the set; 'error' means a file that could not be checked."""
    if not text:
        return frozenset()
    names = {t.strip().lower() for t in text.split(",") if t.strip()}
    unknown = sorted(names - {*VERDICTS, ERROR})
    if unknown:
        raise ValueError(f"unknown verdict(s) {', '.join(unknown)}; choose from {', '.join((*VERDICTS, ERROR))}")
    return frozenset(names)


# ------------------------------------------------------------------------------------------------ the verdict

@dataclass
class Verdict:
    """One file's result. ``verdict`` is None when the file could not be checked at all (``errors`` says why);
    a part is None when its check did not run (no key: no watermark; no ledger lookup needed; no classifier).
    ``timing`` is informational (seconds per stage), nothing decides on it."""

    file: str
    c2pa: C2paEvidence | None = None
    watermark: WatermarkEvidence | None = None
    ledger: LedgerEvidence | None = None
    classifier: ClassifierEvidence | None = None
    verdict: str | None = None
    errors: list[str] = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def not_checked(cls, file: str, errors: list[str]) -> "Verdict":
        """A file that was refused before any check (over a limit, unreadable to hash)."""
        return cls(file=file, errors=list(errors))

    @property
    def checked(self) -> bool:
        return self.verdict is not None

    def to_dict(self) -> dict:
        def part(p):
            return p.to_dict() if p is not None else None

        return {"file": self.file, "c2pa": part(self.c2pa), "watermark": part(self.watermark),
                "ledger": part(self.ledger), "classifier": part(self.classifier), "verdict": self.verdict,
                "errors": list(self.errors), "timing": dict(self.timing), "seconds": self.seconds}
