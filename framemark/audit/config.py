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
        fingerprint = {"key_id": self.key_id, "model": self.models_checked(),
                       "fpr": options.fpr, "steps": options.steps, "trust_anchors_sha256": anchors,
                       "limits": asdict(self.limits),
                       # verdicts depend on it
                       "classifier": classifier.card_version(options.classifier_dir) if options.classifier else None}
        # bf16/fp16 weights move every p-value a little: such rows are not mixed with fp32 ones (fp32 folders of
        # earlier releases still resume). The device is not in it: CPU and GPU give the same verdicts.
        if options.dtype != "fp32":
            fingerprint["dtype"] = options.dtype
        return fingerprint

    def models_checked(self) -> str | list[str]:
        """The fingerprint's ``model``: "embedded" when only the embedded model is checked against (as every
        release before the registry wrote it), one folder's absolute path for one model, the list of folders in
        the order tried for several (registered models: adding or removing one changes what a verdict means)."""
        from framemark.generator.models import DEFAULT_MODEL_DIR

        folders = [os.path.abspath(folder) for folder in self.resolved.model_dirs]
        if self.resolved.options.model_dir is None and folders == [os.path.abspath(DEFAULT_MODEL_DIR)]:
            return "embedded"
        return folders[0] if len(folders) == 1 else folders
