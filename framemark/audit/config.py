"""What every worker of one audit checks files with, and the fingerprint that makes two audits' rows comparable.

The runtime part is the runtime's own :class:`~framemark.runtime.Resolved` (key, model folder, trust anchors,
ledger, classifier, ``fpr``/``steps``/``max_frames``), made once by the driver: it fails in words before any
work, travels to worker processes and Ray actors by pickle, and its ``repr`` shows no secret. The audit adds
only what is its own: the limits, thumbnails and torch threads per worker.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass

from framemark.limits import Limits
from framemark.runtime import Resolved


@dataclass(frozen=True)
class AuditConfig:
    """Everything a worker needs to check a file. Picklable.

    ``resolved``: ``runtime.resolve(options, "verify")``; its ``options.max_frames`` must be ``limits.max_frames``
    (one bound, recorded once in the fingerprint). ``threads``: torch threads per worker (None: this machine's
    cores divided by the workers).
    """

    resolved: Resolved
    limits: Limits = Limits()
    threads: int | None = None
    thumbnails: bool = True

    def __post_init__(self):
        if self.resolved.options.max_frames != self.limits.max_frames:
            raise ValueError(f"the runtime decodes {self.resolved.options.max_frames} frames but the limits say "
                             f"{self.limits.max_frames}: give both the same max_frames")

    @property
    def key_id(self) -> str | None:
        return self.resolved.key_id

    def fingerprint(self) -> dict:
        """What makes two audits' rows comparable; an output folder only accepts rows made with the same one.
        (The fields and values of every earlier release: an existing results folder still resumes.)"""
        from framemark.detect import classifier

        options = self.resolved.options
        anchors = hashlib.sha256(b"".join(sorted(self.resolved.trust_anchors))).hexdigest()[:16]
        return {"key_id": self.key_id, "model": os.path.abspath(options.model_dir) if options.model_dir else "embedded",
                "fpr": options.fpr, "steps": options.steps, "trust_anchors_sha256": anchors,
                "limits": asdict(self.limits),
                # verdicts depend on it
                "classifier": classifier.card_version(options.classifier_dir) if options.classifier else None}
