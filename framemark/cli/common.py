"""What every command shares: the exit codes, failing in words, the one progress reporter, the options that
say how a file is checked, and turning flags into runtime options.

Exit codes are the contract with scripts: 0 success, 1 `ledger lookup` found nothing, 2 bad input (arguments,
files, model folder, credentials), 3 a batch finished but some items failed (each failure is reported and the
rest are kept), 4 `audit --fail-on` matched. No traceback reaches the user for anything that is their input
rather than our bug.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from framemark.detect import DEFAULT_FPR, DEFAULT_INVERSION_STEPS
from framemark.errors import FramemarkError

EXIT_OK, EXIT_NOT_FOUND, EXIT_BAD_INPUT, EXIT_PARTIAL, EXIT_FAIL_ON = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_BAD_INPUT):
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors that are the user's input (FramemarkError, and OSError from their paths) end the command with exit
    2 and their message; anything else is our bug and keeps its traceback."""
    try:
        yield
    except (FramemarkError, OSError) as exc:
        fail(str(exc))


def echo_notes(resolved, loaded=None) -> None:
    """What loading the runtime made (a key, a local CA) and what is switched off (no key: C2PA only), on
    stderr."""
    for line in (*(loaded.created if loaded is not None else ()), *resolved.notes):
        click.echo(line, err=True)


def set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


class Progress:
    """Progress of a long loop on stderr: a bar with rate and ETA on a terminal, otherwise a line every ~5% or
    30 s (logs stay readable). Silent for a single item. Call ``update(done, total)`` after each item."""

    def __init__(self, label: str, stream=None, unit: str = "files"):
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = self.last_line = time.perf_counter()

    def __call__(self, done: int, total: int, what: str = "") -> None:
        self.update(done, total)

    def line(self, done: int, total: int) -> str:
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = format_duration((total - done) / rate) if rate > 0 else "?"
        return f"{self.label}: {done}/{total} {self.unit}, {rate:.2f} {self.unit}/s, ETA {eta}"

    def update(self, done: int, total: int) -> None:
        if total <= 1:
            return
        now = time.perf_counter()
        if self.tty:
            filled = int(30 * done / total)
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.line(done, total)}  ")
            if done == total:
                self.stream.write("\n")
        elif done == total or done % max(1, total // 20) == 0 or now - self.last_line >= 30:
            self.last_line = now
            self.stream.write(self.line(done, total) + "\n")
        self.stream.flush()


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def verification_options(command):
    """The options `verify`, `audit` and `serve` share: how a file is checked (key, model, trust, ledger,
    statistics)."""
    options = [
        click.option("--fpr", default=DEFAULT_FPR, show_default=True,
                     type=click.FloatRange(min=0, max=1, min_open=True),
                     help="False-positive rate: detected when the p-value is at most this."),
        click.option("--key", "key_file", type=click.Path(path_type=Path),
                     help="Watermark key file (default: $FRAMEMARK_HOME/watermark-key.json)."),
        click.option("--model", "model_dir", type=click.Path(path_type=Path),
                     help="Diffusers model folder the clips came from (default: every registered model, "
                          "`framemark models list`, else the embedded model)."),
        click.option("--steps", default=DEFAULT_INVERSION_STEPS, show_default=True, type=click.IntRange(1, 200),
                     help="Inversion steps."),
        click.option("--trust", "trust_files", multiple=True, type=click.Path(path_type=Path),
                     help="PEM file of C2PA trust anchors (root certificates), in addition to this machine's local "
                          "CA. Repeatable."),
        click.option("--ledger", "ledger_path", type=click.Path(path_type=Path),
                     help="Ledger to resolve watermark payloads in (default: $FRAMEMARK_HOME/ledger.db, if "
                          "present)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def limit_options(command):
    """The limits `verify` and `audit` share (``framemark.limits.Limits``): a file over one is refused with an error
    entry (an audit row) that says which, from its size and headers before any decoding, and from what is
    decoded. Parsed by :func:`parse_limits`."""
    options = [
        click.option("--max-size", default="2GiB", show_default=True,
                     help="Refuse larger files (an error entry saying so)."),
        click.option("--max-duration", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Seconds; refuse longer videos (by their headers, or by what they decode to)."),
        click.option("--max-resolution", default="3840x2160", show_default=True,
                     help="WxH; refuse larger videos (either orientation)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def parse_limits(max_size: str, max_duration: float, max_resolution: str, max_frames: int | None = None):
    """:func:`limit_options`' values as ``framemark.limits.Limits``, or exit 2 in words."""
    from dataclasses import replace

    from framemark.limits import Limits, parse_resolution, parse_size

    try:
        width, height = parse_resolution(max_resolution)
        limits = Limits(max_bytes=parse_size(max_size), max_duration_s=max_duration, max_width=width,
                        max_height=height)
    except ValueError as exc:
        fail(str(exc))
    return replace(limits, max_frames=max_frames) if max_frames is not None else limits


def device_options(command):
    """The options every command that runs the model shares: where it runs (``--device``), in which precision
    (``--dtype``) and whether to trade speed for memory (``--save-memory``). Checked, before anything loads,
    by :func:`check_placement`."""
    options = [
        click.option("--device", default="cpu", show_default=True,
                     help="torch device the model runs on: cpu, cuda, cuda:N or mps (audit: cuda = one worker "
                          "per visible GPU)."),
        click.option("--dtype", default="fp32", show_default=True, metavar="fp32|bf16|fp16",
                     help="Precision of the model's weights: fp32, bf16 (GPUs since Ampere, and CPUs) or fp16 "
                          "(GPUs only)."),
        click.option("--save-memory", is_flag=True,
                     help="For models larger than the GPU's memory: the VAE works in tiles and slices, and on a "
                          "CUDA device each component moves to the GPU only while it runs (model CPU offload). "
                          "Slower."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def check_placement(device: str, dtype: str, *, here: bool = True):
    """``--device`` and ``--dtype`` as torch objects, or exit 2 in words before anything loads: an unknown
    device or precision, a GPU this machine does not have (``here``; False for devices that are somewhere
    else, e.g. on a Ray cluster's nodes), fp16 on the CPU."""
    from framemark.generator.models import torch_dtype
    from framemark.generator.models.base import check_device

    try:
        precision = torch_dtype(dtype)
        return check_device(device, precision, here=here), precision
    except FramemarkError as exc:
        fail(str(exc))


def runtime_options(**values):
    """``framemark.runtime.Options`` from click values: a path becomes a string, a repeated path option a tuple of
    strings; None stays None (the runtime's default)."""
    from framemark.runtime import Options

    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (tuple, list)):
            return tuple(str(v) for v in value)
        return value

    return Options(**{name: plain(value) for name, value in values.items()})
