"""The model interface: everything model-specific that generation and verification need, behind two classes.

A diffusers family (Wan today; LTX-Video and CogVideoX are the next) implements :class:`VideoModel` and its
:class:`VideoAutoencoder`. Nothing outside ``generator/models/`` knows a family's classes, config keys, latent
normalisation or sampler: the generator asks the model for a latent shape, checks a request against its limits
and samples from given initial noise; the verifier asks it for limits, encodes frames to latents and inverts the
sampler. The watermark codec only ever sees a latent shape and a tensor.

Adding a family: subclass both classes in a module of this package, and name the pipeline class it serves in
``generator/models/__init__.py``'s ``FAMILIES``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from framemark.errors import GenerationError, ModelError

# Beside the diffusers files of a model folder: framemark's own description of the model (name, version, the
# limits and defaults it was trained for). Optional; without it they come from the diffusers config.
CARD_FILE = "framemark.json"
# The subfolder of a model folder that holds a learnt inverse of its sampler (diffusers layout).
INVERTER_FOLDER = "inverter"
# The timestep a learnt inverse is called at: the clean end of the schedule, where its input sits. It starts from
# the generator's own weights, which at t = 0 read a clean latent as the sampler's last step does.
INVERTER_TIMESTEP = 0
MAX_STEPS = 200


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. Fields left None take the model's defaults (:meth:`VideoModel.check_inputs`)."""

    prompt: str
    seed: int = 0
    steps: int | None = None
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    guidance_scale: float | None = None
    fps: float | None = None


@dataclass(frozen=True)
class ModelDefaults:
    """The request a model is made for: what an unspecified field of a request becomes."""

    steps: int
    frames: int
    height: int
    width: int
    guidance_scale: float
    fps: float


@dataclass(frozen=True)
class ModelLimits:
    """What a model can be asked for. Frames are ``1 + k * frame_step`` (the VAE's temporal factor); sides are
    multiples of ``size_multiple`` (the VAE's spatial factor times the transformer's patch)."""

    min_frames: int
    max_frames: int
    frame_step: int
    min_size: int
    max_size: int
    size_multiple: int
    max_prompt_tokens: int
    max_steps: int = MAX_STEPS

    def frames_ok(self, frames: int) -> bool:
        return self.min_frames <= frames <= self.max_frames and (frames - 1) % self.frame_step == 0

    def size_ok(self, side: int) -> bool:
        return self.min_size <= side <= self.max_size and side % self.size_multiple == 0

    def shape_ok(self, frames: int, height: int, width: int) -> bool:
        return self.frames_ok(frames) and self.size_ok(height) and self.size_ok(width)

    def frame_counts(self) -> tuple[int, ...]:
        """Every frame count the model makes, shortest first."""
        first = self.min_frames + (-(self.min_frames - 1)) % self.frame_step
        return tuple(range(first, self.max_frames + 1, self.frame_step))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made (or is checked against) a clip. ``to_dict`` is the short ``{name, version}``;
    ``framemark.manifest.describe_model`` is the full form manifests, ledger rows and verdicts carry (with the
    family and the weights hash, computed on first use: it reads every weight file)."""

    name: str
    version: str
    family: str
    folder: Path = field(compare=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version}

    @cached_property
    def weights_sha256(self) -> str:
        """SHA-256 over the generator's weight files (``*.safetensors`` and ``*.bin``, by relative path). A learnt
        inverse (``inverter/``) is left out: it verifies and never generates, so adding one to a folder later leaves
        the model's identity, and every manifest and ledger row that names it, unchanged."""
        h = hashlib.sha256()
        files = sorted(p for p in self.folder.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file()
                       and p.relative_to(self.folder).parts[0] != INVERTER_FOLDER)
        for path in files:
            h.update(str(path.relative_to(self.folder)).encode() + b"\0")
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        return h.hexdigest()


def autoencoder_sha256(folder: Path) -> str:
    """The weights hash of a diffusers folder's VAE (``vae/*.safetensors``, concatenated in name order), read
    from the files: a classifier trained on one autoencoder's traces names it, and is checked against it, without
    loading it."""
    h = hashlib.sha256()
    for f in sorted((Path(folder) / "vae").glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


# what every family's pipeline folder holds (a family may ask for more)
REQUIRED_COMPONENTS = ("model_index.json", "transformer", "vae", "text_encoder", "tokenizer", "scheduler")


def quiet_diffusers() -> None:
    """Offline, and without loading bars or notices on a CLI's stderr."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    for lib in (dlogging, tlogging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def load_pipeline(folder: Path, class_name: str, device: str, dtype: torch.dtype):
    """A model folder as the diffusers pipeline ``class_name``, offline, on ``device``, progress bars off: what
    each family's ``from_pretrained`` loads. Weights may be stored in half precision (the project's models are);
    computation is in ``dtype``. Any problem with the folder is a ModelError."""
    check_folder(folder)
    quiet_diffusers()
    import diffusers

    try:
        pipe = getattr(diffusers, class_name).from_pretrained(folder, local_files_only=True, dtype=dtype)
        pipe.to(device)
    except Exception as exc:  # diffusers raises many types for bad folders; all mean "not loadable"
        raise ModelError(f"cannot load model from {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


class TokenCounter:
    """How many tokens a prompt takes, counted on a private copy of a pipeline's tokenizer behind a lock: a
    service checks requests on its event loop while the model thread samples, and a Rust fast tokenizer refuses
    to be used from two threads at once. The copy is made on first use."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._copy = None
        self._lock = threading.Lock()

    def __call__(self, prompt: str) -> int:
        with self._lock:
            if self._copy is None:
                self._copy = copy.deepcopy(self._tokenizer)
            return len(self._copy(prompt, add_special_tokens=True).input_ids)


def load_component(folder: Path, name: str, class_name: str, device: str, dtype: torch.dtype):
    """``FOLDER/name`` as the diffusers class ``class_name``, offline, in eval mode on ``device``: a part of a
    model folder wanted without the whole pipeline (the VAE alone, a learnt inverse). Any problem is a
    ModelError."""
    check_folder(folder, (name,))
    quiet_diffusers()
    import diffusers

    try:
        part = getattr(diffusers, class_name).from_pretrained(folder / name, local_files_only=True, torch_dtype=dtype)
    except Exception as exc:  # diffusers raises many types for bad folders; all mean "not loadable"
        raise ModelError(f"cannot load {name} from {folder / name}: {exc}") from exc
    return part.to(device).eval()


def load_vae(folder: Path, class_name: str, device: str, dtype: torch.dtype):
    """``FOLDER/vae``: what each family's autoencoder loads when it is wanted without the sampler."""
    return load_component(folder, "vae", class_name, device, dtype)


def check_folder(folder: Path, required=REQUIRED_COMPONENTS) -> None:
    """ModelError in words unless ``folder`` has what a diffusers pipeline folder needs."""
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    missing = [name for name in required if not (folder / name).exists()]
    if missing:
        raise ModelError(f"model folder {folder} is incomplete: missing {', '.join(missing)}")


def read_card(folder: Path) -> dict:
    """``framemark.json`` of a model folder, or {} when there is none."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}


def identity_of(folder: Path, family: str) -> ModelIdentity:
    """Name from the card (else the folder's name), version from the card or the training record."""
    folder = Path(folder).resolve()
    card = read_card(folder)
    version = card.get("version")
    record = folder / "training.json"
    if version is None and record.is_file():
        try:
            version = json.loads(record.read_text()).get("version", "1")
        except (OSError, ValueError):
            version = None
    return ModelIdentity(name=str(card.get("name") or folder.name or family), version=str(version or "unknown"),
                         family=family, folder=folder)


def first_look_of(card: dict) -> bool:
    """The card's ``verification.first_look``: True only when it says so (``bench/first_look.py`` measures it)."""
    return (card.get("verification") or {}).get("first_look") is True


INVERSIONS = ("sampler", "learnt")


def inversion_of(card: dict, folder: Path) -> str:
    """The card's ``verification.inversion``: "learnt" where the folder ships a learnt inverse of its sampler
    (``inverter/``, trained by ``lab/inverter_training.py``), else "sampler" (the sampler run backwards). A card
    that names a learnt inverse the folder lacks, or a kind not known, is a ModelError, not a silent fallback: the
    two recover the noise differently, and the card's measurement is of the one it names."""
    kind = (card.get("verification") or {}).get("inversion", "sampler")
    if kind not in INVERSIONS:
        raise ModelError(f"{folder / CARD_FILE}: verification.inversion must be one of {', '.join(INVERSIONS)}, "
                         f"got {kind!r}")
    if kind == "learnt" and not (Path(folder) / INVERTER_FOLDER).is_dir():
        raise ModelError(f"{folder / CARD_FILE} names a learnt inverse, but {Path(folder) / INVERTER_FOLDER} is "
                         f"missing")
    return kind


def learnt_inverse_of(card: dict, folder: Path, transformer) -> tuple[str, object | None]:
    """The card's inversion (:func:`inversion_of`) and, where it is "learnt", the folder's ``inverter/`` loaded as
    the class of the model's ``transformer``, at its device and precision."""
    kind = inversion_of(card, folder)
    if kind != "learnt":
        return kind, None
    return kind, load_component(Path(folder), INVERTER_FOLDER, type(transformer).__name__, transformer.device,
                                transformer.dtype)


def overridden(value, card: dict, key: str):
    """A dataclass of limits or defaults with the fields the card's ``key`` object names replaced."""
    given = card.get(key) or {}
    known = {k: v for k, v in given.items() if k in value.__dataclass_fields__}
    return replace(value, **known) if known else value


# ------------------------------------------------------------------------------------------------ devices

DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(device: str | torch.device, dtype: torch.dtype = torch.float32, *, here: bool = True) -> torch.device:
    """The torch device named by ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``), or ModelError in words.

    Checked before anything loads, so that a wrong flag is one line of text, not a traceback from deep inside
    torch after the model has half loaded. ``dtype`` must suit the device: fp16 is refused on the CPU (torch's
    half-precision 3D convolutions there are ~35x slower than fp32: one small VAE encode took 12.5 s against
    0.35 s), bf16 on a GPU older than Ampere. ``here=False`` checks only the name and the dtype (a Ray driver
    without a GPU hands ``cuda`` to actors on GPU nodes); ``here=True`` also that this machine has the device.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise ModelError(f"device must be cpu, cuda, cuda:N or mps (got {str(device)!r})")
    if dev.type == "cpu" and dtype == torch.float16:
        raise ModelError("fp16 is for GPUs: on the CPU torch's half-precision 3D convolutions are ~35x slower than "
                         "fp32; use --dtype bf16 (fast on the CPU) or fp32")
    if not here:
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise ModelError(f"device {dev} asked for, but torch sees no CUDA GPU on this machine (torch "
                             f"{torch.__version__}, {built}); use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ModelError(f"device {dev} asked for, but this machine has {count} visible CUDA GPU(s): "
                             f"cuda:0 to cuda:{count - 1}")
        if dtype == torch.bfloat16 and torch.cuda.get_device_capability(dev.index or 0) < (8, 0):
            raise ModelError(f"bf16 needs a GPU of compute capability 8.0 or later (Ampere); "
                             f"{torch.cuda.get_device_name(dev.index or 0)} is "
                             f"{'.'.join(map(str, torch.cuda.get_device_capability(dev.index or 0)))}: use fp16")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError("device mps asked for, but torch sees no Apple GPU on this machine; use --device cpu")
    return dev


def execution_device(module: torch.nn.Module) -> torch.device:
    """Where ``module`` computes: its weights' device, or, under model CPU offload (:meth:`VideoModel.save_memory`),
    the accelerator its offload hook moves it to when called (its weights wait on the CPU until then). Inputs go
    here: a family that sent them to ``module.device`` would send them to the CPU under offload."""
    hook = getattr(module, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
    return next(module.parameters()).device


# ------------------------------------------------------------------------------------------------ the interface

class VideoAutoencoder(ABC):
    """A model's VAE: frames to the normalised latents the sampler works in, and back."""

    @property
    @abstractmethod
    def spatial_factor(self) -> int:
        """Pixels per latent cell along each side."""

    @property
    @abstractmethod
    def temporal_factor(self) -> int:
        """Frames per latent frame (after the first)."""

    # the model folder the VAE was loaded from; None for one built in memory (it then has no file hash)
    folder: Path | None = None

    @cached_property
    def weights_sha256(self) -> str:
        """A hash of the autoencoder's weights (a classifier trained on one autoencoder's traces names it)."""
        if self.folder is None:
            raise ModelError("this autoencoder was not loaded from a folder: its weights have no file hash")
        return autoencoder_sha256(self.folder)

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.temporal_factor + 1

    @abstractmethod
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (T,H,W,3) -> normalised latents (1,C,t,h,w), float32 (the posterior mean)."""

    def encode_many(self, clips: list[np.ndarray]) -> torch.Tensor:
        """Several clips of one shape -> latents (B,C,t,h,w): what :meth:`encode` gives for each, up to the
        order of floating-point sums. Batched verification calls this; a family overrides it with one VAE call
        (this default encodes one clip at a time, which is always right and saves no time)."""
        return torch.cat([self.encode(frames) for frames in clips])

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents (1,C,t,h,w) -> uint8 frames (T,H,W,3)."""

    @abstractmethod
    def reconstruct_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N,H,W,3), each encoded and decoded on its own -> float32 (N,H,W,3) in [0, 1]."""


class VideoModel(ABC):
    """A loaded text-to-video latent diffusion model: generation from given initial noise, and its inverse."""

    identity: ModelIdentity
    limits: ModelLimits
    defaults: ModelDefaults
    pipeline: object  # the family's diffusers pipeline (for lab code and memory settings; not for front doors)
    # Whether the family's code sends every input to ``execution_device`` of the component it feeds (never to
    # ``component.device``), so that :meth:`save_memory` may offload the components to the CPU between calls.
    supports_offload: bool = False
    # Whether the VAE latent of this model's clips is known to predict what the inversion finds (the card's
    # ``verification.first_look``, set from a measurement: ``bench/first_look.py``). The verifier then skips the
    # inversion of a clip whose latent shows no trace of the key (``detect.recovery``). Off unless measured.
    first_look: bool = False
    # How the verifier recovers a clip's initial noise (the card's ``verification.inversion``): "sampler", the
    # sampler run backwards for the verifier's steps (:meth:`invert`), or "learnt", one forward of the folder's
    # learnt inverse (:meth:`learnt_inversion`). :meth:`estimate_noise` is the one place that chooses.
    inversion: str = "sampler"
    inverter: torch.nn.Module | None = None  # the folder's learnt inverse, loaded where the card names it

    @property
    @abstractmethod
    def autoencoder(self) -> VideoAutoencoder: ...

    @property
    @abstractmethod
    def latent_channels(self) -> int: ...

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the model computes: :func:`execution_device` of its denoiser (under model CPU offload the
        weights are on the CPU between calls, so never ``transformer.device``)."""

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """(1, C, t, h, w) of the initial noise for a clip of this shape."""
        s = self.autoencoder.spatial_factor
        return (1, self.latent_channels, self.autoencoder.latent_frames(frames), height // s, width // s)

    @abstractmethod
    def prompt_tokens(self, prompt: str) -> int:
        """How many tokens the model's tokenizer makes of ``prompt``."""

    def check_inputs(self, request: GenerationRequest) -> GenerationRequest:
        """The request with the model's defaults filled in, or GenerationError saying what the model cannot make
        (refused, never silently adjusted)."""
        d, lim = self.defaults, self.limits
        prompt = " ".join(str(request.prompt).split())
        if not prompt:
            raise GenerationError("the prompt is empty")
        tokens = self.prompt_tokens(prompt)
        if tokens > lim.max_prompt_tokens:
            raise GenerationError(f"the prompt is {tokens} tokens long; this model reads at most "
                                  f"{lim.max_prompt_tokens} (longer prompts are refused, not truncated)")
        full = replace(request,
                       steps=d.steps if request.steps is None else request.steps,
                       frames=d.frames if request.frames is None else request.frames,
                       height=d.height if request.height is None else request.height,
                       width=d.width if request.width is None else request.width,
                       guidance_scale=d.guidance_scale if request.guidance_scale is None else request.guidance_scale,
                       fps=d.fps if request.fps is None else request.fps)
        if not lim.frames_ok(full.frames):
            raise GenerationError(f"frames must be {lim.frame_step}k+1 between {lim.min_frames} and "
                                  f"{lim.max_frames} (got {full.frames})")
        for name, value in (("height", full.height), ("width", full.width)):
            if not lim.size_ok(value):
                raise GenerationError(f"{name} must be a multiple of {lim.size_multiple} between {lim.min_size} and "
                                      f"{lim.max_size} (got {value})")
        if not 1 <= full.steps <= lim.max_steps:
            raise GenerationError(f"steps must be between 1 and {lim.max_steps} (got {full.steps})")
        if full.seed < 0:
            raise GenerationError(f"seed must be non-negative (got {full.seed})")
        if not full.fps > 0:
            raise GenerationError(f"fps must be positive (got {full.fps})")
        return full

    def initial_noise(self, request: GenerationRequest) -> torch.Tensor:
        """Plain Gaussian z_T from the seed, drawn on the CPU so a seed means the same noise on every device."""
        gen = torch.Generator("cpu").manual_seed(request.seed)
        return torch.randn(self.latent_shape(request.frames, request.height, request.width), generator=gen,
                           dtype=torch.float32)

    @abstractmethod
    def sample(self, request: GenerationRequest, latents: torch.Tensor) -> np.ndarray:
        """Run the sampler from initial noise ``latents`` for a checked request; uint8 frames (T,H,W,3)."""

    @abstractmethod
    def sample_latents(self, request: GenerationRequest, latents: torch.Tensor) -> torch.Tensor:
        """The sampler's clean output before the VAE decodes it: normalised latents (1,C,t,h,w), the space
        :meth:`invert` starts from (tests and benchmarks read the mark here, bypassing the VAE)."""

    def generate(self, request: GenerationRequest, latents: torch.Tensor | None = None) -> np.ndarray:
        """``sample`` after ``check_inputs``, from seeded noise when ``latents`` is None."""
        request = self.check_inputs(request)
        return self.sample(request, self.initial_noise(request) if latents is None else latents)

    def pipeline_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Initial noise (1,C,t,h,w) in the layout the family's pipeline takes as ``latents=``, on the model's
        device (what ``sample`` hands the pipeline; the Python API gives it to users who call their pipeline
        themselves). Families whose pipelines take another layout (LTX: tokens; CogVideoX: frames first)
        override it."""
        return latents.to(self.device)

    def save_memory(self) -> None:
        """For models larger than the accelerator's memory: the VAE encodes and decodes in tiles and, for a batch,
        one clip at a time; on a CUDA device the components also move to the GPU one at a time as they are called
        (diffusers' model CPU offload), their weights waiting in CPU memory in between. Slower (each call moves a
        component's weights over PCIe), and tiles are blended where they overlap, so a clip larger than one tile
        encodes close to, not bit for bit as, without tiling (clips within a tile are unchanged: the embedded
        model's 128-pixel clips are).

        Safe for every family: a model without a ``pipeline`` is left alone, a pipeline or VAE without one of
        these keeps that part as it is, and a family that does not declare ``supports_offload`` is tiled but not
        offloaded. Calling it again changes nothing."""
        pipe = getattr(self, "pipeline", None)
        if pipe is None:
            return
        vae = getattr(pipe, "vae", None)
        for name in ("enable_tiling", "enable_slicing"):
            if callable(getattr(vae, name, None)):
                getattr(vae, name)()
        device = self.device
        offload = getattr(pipe, "enable_model_cpu_offload", None)
        if self.supports_offload and device.type == "cuda" and callable(offload):
            offload(device=device)

    def estimate_noise(self, latents: torch.Tensor, steps: int) -> torch.Tensor:
        """The initial noise the verifier reads from clean normalised latents (B,C,t,h,w): the learnt inverse
        where the model's card names one (``steps`` then does not apply), else the sampler inverted at ``steps``."""
        if self.inversion == "learnt":
            return self.learnt_inversion(latents)
        return self.invert(latents, steps)

    def learnt_inversion(self, latents: torch.Tensor, inverter=None) -> torch.Tensor:
        """Clean normalised latents (B,C,t,h,w) -> the initial noise, in one forward of a learnt inverse of the
        sampler: a transformer of this model's architecture trained to map what the sampler makes back to the noise
        it started from (``lab/inverter_training.py``), called at timestep 0 on the empty prompt the way the
        family's inversion calls its transformer. ``inverter`` defaults to the folder's own; the graph is kept when
        gradients are enabled (training). Each family says what the forward's output means."""
        raise ModelError(f"the {self.identity.family} family has no learnt inverse")

    def _inverter(self, inverter=None):
        """``inverter``, else the folder's, else a ModelError saying there is none."""
        inverter = self.inverter if inverter is None else inverter
        if inverter is None:
            raise ModelError(f"{self.identity.folder} has no learnt inverse (no {INVERTER_FOLDER}/ folder)")
        return inverter

    @abstractmethod
    def invert(self, latents: torch.Tensor, steps: int, *, differentiable: bool = False) -> torch.Tensor:
        """The sampler run backwards, unconditionally (the prompt of an upload is unknown): clean normalised
        latents (B,C,t,h,w) -> the initial noise that would have produced them. ``differentiable`` keeps the
        graph (the encoder is tuned through the inversion)."""
