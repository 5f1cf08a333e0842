"""One place that turns options and ``$FRAMEMARK_HOME`` into what a job runs with: the watermark key, the model,
the trust anchors, the ledger, the passive classifier and the C2PA signer.

Every front door (the CLI's commands, the audit's worker processes and Ray actors, each service worker) loads
through here, in two steps:

* :func:`resolve` is cheap and runs where the command starts: it reads the key, the trust anchors and the signer
  settings, checks the model, classifier and ledger paths, and fails in words before any work. Its result, a
  :class:`Resolved`, is picklable: it travels to worker processes and Ray actors. Its ``repr`` never shows a
  secret.
* :meth:`Resolved.load` is the heavy step (model, classifier, ledger connection), run once per process, and
  gives a :class:`Runtime` with ``verify(path)`` and ``emit(request, path)``.

What each front door needs is its :data:`Purpose`: verification loads the key when there is one (without one
only C2PA is checked), generation creates the key and the local signer on first use, the service takes what is
there and opens the ledger when it first needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from framemark import credentials
from framemark import keys as keystore
from framemark import ledger as ledgers
from framemark.detect import DEFAULT_FPR, DEFAULT_INVERSION_STEPS, DEFAULT_MAX_FRAMES
from framemark.errors import FramemarkError
from framemark.limits import Limits
from framemark.watermark import WatermarkKey

Purpose = Literal["verify", "generate", "serve"]


@dataclass(frozen=True)
class Options:
    """What a user can say about the runtime (CLI flags, service settings, API arguments); None = the default."""

    key_file: str | None = None
    watermark: bool = True             # generate --no-watermark: no key at all
    sign: bool = True                  # generate --no-sign: no signer
    tsa_url: str | None = None
    model_dir: str | None = None       # None: verification tries every registered model, else the embedded one
    device: str = "cpu"
    dtype: str = "fp32"                # fp32, bf16 or fp16 (generator.models.DTYPES)
    save_memory: bool = False          # model CPU offload and VAE tiling, for models larger than the GPU
    trust_files: tuple[str, ...] = ()
    ledger_path: str | None = None     # None: $FRAMEMARK_HOME/ledger.db
    classifier: bool = True
    classifier_dir: str | None = None  # None: the shipped classifier
    fpr: float = DEFAULT_FPR
    steps: int = DEFAULT_INVERSION_STEPS
    max_frames: int = DEFAULT_MAX_FRAMES
    # what verification refuses (size, resolution, duration: from the headers and from every decoded frame)
    limits: Limits = Limits()
    threads: int | None = None         # torch threads of the process that loads (None: torch's default)


@dataclass(frozen=True)
class Resolved:
    """The checked, cheap part of a runtime (picklable). ``notes``: what the user should know (what is off and
    why). For generation on a fresh machine, ``create_key`` / ``create_signer`` say that :meth:`load` makes
    them (after the model has loaded and the first request has been checked, so a refused request creates
    nothing)."""

    options: Options
    purpose: str
    key: WatermarkKey | None
    # the model folders this runtime loads; the first generates, all of them are tried by verification
    model_dirs: tuple[str, ...]
    trust_anchors: tuple[bytes, ...] = field(repr=False)
    ledger_path: Path
    ledger_exists: bool
    signer_ready: bool
    notes: tuple[str, ...] = ()
    create_key: bool = False
    create_signer: bool = False

    @property
    def key_id(self) -> str | None:
        return self.key.key_id if self.key is not None else None

    @property
    def needs_model(self) -> bool:
        """Verification inverts the model only to read a watermark; generation always runs it."""
        return self.key is not None or self.purpose == "generate"

    def load(self, check=None, models=None) -> "Runtime":
        """Load the model (when there is a key to check or mark with), the classifier and the signer.
        ``check``: a ``GenerationRequest`` the model must accept before a key or local CA is created.
        ``models``: ``VideoModel`` objects already loaded, used instead of loading ``model_dirs`` (the Python API's
        user holds their own pipeline)."""
        if self.options.threads is not None:
            import torch

            torch.set_num_threads(self.options.threads)
        if models is not None:
            models = list(models)
        elif not self.needs_model:
            models = []
        else:
            from framemark.generator.models import load_model

            models = [load_model(folder, device=self.options.device, dtype=self.options.dtype)
                      for folder in self.model_dirs]
            if self.options.save_memory:
                for model in models:
                    model.save_memory()
        model = models[0] if models else None
        if check is not None:
            model.check_inputs(check)
        key, created = self.key, []
        if self.create_key:
            key, made = keystore.load_or_create_watermark_key()
            if made:
                created.append(f"created a watermark key (id {key.key_id}) at {keystore.watermark_key_path()}; "
                               f"keep it: verification needs it")
        signer = None
        if self.create_signer:
            signer, made = credentials.load_or_create_signer(tsa_url=self.options.tsa_url)
            if made:
                paths = credentials.CredentialPaths.of()
                created.append(f"created a local C2PA root CA ({paths.ca_cert}) and signing certificate "
                               f"({paths.signer_chain}); verifiers trust clips from here when given the CA")
        elif self.signer_ready:
            signer = credentials.load_signer(tsa_url=self.options.tsa_url)
        classifier = None
        if self.options.classifier and self.purpose != "generate":
            classifier = _load_classifier(self.options.classifier_dir, model)
        return Runtime(self, key=key, models=models, signer=signer, classifier=classifier, created=created)


def resolve(options: Options, purpose: Purpose = "verify") -> Resolved:
    """Check ``options`` against ``$FRAMEMARK_HOME`` for ``purpose``; FramemarkError in words when unusable."""
    notes: list[str] = []
    key = _resolve_key(options, purpose, notes)
    anchors = tuple(credentials.trust_anchors() + [credentials.read_trust_file(Path(p)) for p in options.trust_files])
    ledger_path = Path(options.ledger_path) if options.ledger_path else ledgers.default_path()
    ledger_exists = ledger_path.exists()
    if purpose == "verify" and options.ledger_path is not None and not ledger_exists:
        raise ledgers.LedgerError(f"no ledger at {ledger_path}")
    if purpose == "verify" and ledger_exists:
        ledgers.Ledger(ledger_path, create=False).close()  # fails here, in words, if it is not usable
    if purpose == "serve" and options.ledger_path is not None and not ledger_exists:
        notes.append(f"no ledger at {ledger_path} yet: stripped manifests cannot be recovered until clips are "
                     f"generated into it")
    signer_ready = _resolve_signer(options, purpose, key, notes)
    fresh = purpose == "generate"
    create_key = fresh and options.watermark and key is None
    create_signer = fresh and options.sign and not signer_ready
    model_dirs = _model_dirs(options, purpose)
    if key is not None or purpose == "generate":
        from framemark.generator.models import check_device, torch_dtype

        # a bad --device or --dtype (fp16 on the CPU) is named before anything loads; whether this machine has the
        # device is load_model's check (a Ray driver without a GPU hands "cuda" to actors on GPU nodes)
        check_device(options.device, torch_dtype(options.dtype), here=False)
        for folder in model_dirs:
            if not Path(folder).is_dir():
                raise FramemarkError(f"model folder not found: {folder}")
    if options.classifier and options.classifier_dir is not None and purpose != "generate":
        from framemark.detect import classifier as passive

        passive.check_folder(options.classifier_dir)
    return Resolved(options=options, purpose=purpose, key=key, model_dirs=model_dirs, trust_anchors=anchors,
                    ledger_path=ledger_path,
                    ledger_exists=ledger_exists, signer_ready=signer_ready, notes=tuple(notes),
                    create_key=create_key, create_signer=create_signer)


def open_runtime(options: Options, purpose: Purpose = "verify") -> "Runtime":
    """``resolve(options, purpose).load()``."""
    return resolve(options, purpose).load()


def _model_dirs(options: Options, purpose: str) -> tuple[str, ...]:
    """``--model`` alone when given; else, for verification, every registered model (none registered: the
    embedded one); generation uses the embedded model unless told otherwise."""
    from framemark.generator.models import DEFAULT_MODEL_DIR, registry

    if options.model_dir is not None:
        return (str(options.model_dir),)
    if purpose != "generate":
        found = tuple(m.folder for m in registry.registered())
        if found:
            return found
    return (str(DEFAULT_MODEL_DIR),)


def _resolve_key(options: Options, purpose: str, notes: list[str]) -> WatermarkKey | None:
    """The key there is (None: none yet, or none wanted); generation creates a missing one in ``load``."""
    if not options.watermark:
        return None
    if options.key_file is not None:
        return keystore.load_watermark_key(Path(options.key_file))
    if keystore.watermark_key_path().exists():
        return keystore.load_watermark_key()
    if purpose == "generate":
        return None
    if purpose == "serve":
        notes.append(f"no watermark key at {keystore.watermark_key_path()}: uploads are checked for C2PA manifests "
                     f"only and /v1/generate is off (run `framemark keys init`)")
    else:
        notes.append(f"no watermark key at {keystore.watermark_key_path()}: checking C2PA manifests only (run "
                     f"`framemark keys init` or pass --key FILE to check the watermark)")
    return None


def _resolve_signer(options: Options, purpose: str, key, notes: list[str]) -> bool:
    """Whether a usable signer is there (generation creates a missing one in ``load``)."""
    if purpose == "verify" or not options.sign:
        return False
    paths = credentials.CredentialPaths.of()
    if paths.signer_chain.exists() and paths.signer_key.exists():
        credentials.load_signer(tsa_url=options.tsa_url)  # fails here, in words, if it is not usable
        return True
    if key is not None and purpose == "serve":
        notes.append("no C2PA signing credentials: /v1/generate is off (run `framemark keys init`)")
    return False


def _load_classifier(folder: str | None, model):
    """The passive classifier, with the autoencoder its features were computed with: the loaded model's own
    when it is that one (no second copy), else loaded from the embedded model."""
    from framemark.detect import classifier as passive
    from framemark.generator.models import load_autoencoder

    card = passive.read_card(folder)
    wanted = card.get("vae_sha256")
    if model is not None and wanted in (None, model.autoencoder.weights_sha256):
        autoencoder = model.autoencoder
    else:
        autoencoder = load_autoencoder(None)
    return passive.load(folder, autoencoder=autoencoder)


class Runtime:
    """The loaded parts of one process. Use one per thread (the model and the ledger connection are not
    thread-safe); close it, or use it as a context manager."""

    def __init__(self, resolved: Resolved, *, key: WatermarkKey | None = None, models=(), signer=None,
                 classifier=None, created: list[str] | None = None):
        self.resolved = resolved
        self.options = resolved.options
        self.key = key
        self.created = list(created or [])  # what loading made on first use (a key, a local CA)
        self.trust_anchors = resolved.trust_anchors
        self.models = list(models)  # verification tries each; the first one generates
        self.model = self.models[0] if self.models else None
        self.signer = signer
        self.classifier = classifier
        self._ledger = None

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        model = self.model.identity.name if self.model is not None else None
        key_id = self.key.key_id if self.key is not None else None
        return f"Runtime(purpose={self.resolved.purpose!r}, key_id={key_id!r}, model={model!r})"

    # ---------------------------------------------------------------------------------------------- the ledger
    def reading_ledger(self):
        """The ledger to resolve payloads in, when there is one (opened on first need: another process may create
        it after this one started)."""
        if self._ledger is None and self.resolved.ledger_path.exists():
            self._ledger = ledgers.Ledger(self.resolved.ledger_path, create=False)
        return self._ledger

    def writing_ledger(self):
        if self._ledger is None:
            self._ledger = ledgers.Ledger(self.resolved.ledger_path)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # ---------------------------------------------------------------------------------------------- the jobs
    def verify(self, path: str | os.PathLike, *, ledger: bool = True, classifier: bool = True):
        """The :class:`~framemark.detect.verdict.Verdict` of one file (never raises for a bad file): the watermark
        is read under each of :attr:`models`, its p-value corrected for all of them."""
        from framemark.detect.verify import verify_file

        return verify_file(path, key=self.key, models=self.models, trust_anchors=self.trust_anchors,
                           ledger=self.reading_ledger() if ledger else None,
                           classifier=self.classifier if classifier else None, settings=self.verify_settings())

    def verify_many(self, paths, *, batch_size: int | None = None, ledger: bool = True, classifier: bool = True):
        """The :class:`~framemark.detect.verdict.Verdict` of each of ``paths``, in order: what :meth:`verify`
        gives for each, with the watermark inversions of clips of one shape run together (``detect.batch``; it
        pays on a GPU). ``batch_size``: clips per inversion call (default ``detect.batch.DEFAULT_BATCH_SIZE``)."""
        from framemark.detect.batch import DEFAULT_BATCH_SIZE, verify_files

        return verify_files(list(paths), key=self.key, models=self.models, trust_anchors=self.trust_anchors,
                            ledger=self.reading_ledger() if ledger else None,
                            classifier=self.classifier if classifier else None, settings=self.verify_settings(),
                            batch_size=batch_size or DEFAULT_BATCH_SIZE)

    def verify_settings(self):
        """How this runtime checks a file (``detect.verify.VerifySettings`` from its options)."""
        from framemark.detect.alignment import working_size
        from framemark.detect.verify import VerifySettings

        o = self.options
        return VerifySettings(fpr=o.fpr, steps=o.steps, max_frames=o.max_frames, limits=o.limits,
                              fit=working_size(self.models if self.key is not None else ()))

    def emit(self, request, path: str | os.PathLike, *, payload=None, prompt_policy: str = "hash"):
        """Generate one clip to ``path``: marked, signed and recorded as this runtime is set up to."""
        from framemark.generator.emit import emit_clip

        ledger = self.writing_ledger() if self.key is not None else None
        return emit_clip(self.model, request, path, key=self.key, payload=payload, signer=self.signer,
                         prompt_policy=prompt_policy, ledger=ledger)
