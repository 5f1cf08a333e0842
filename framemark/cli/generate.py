"""`framemark generate`: one clip per prompt, marked, signed and recorded through the runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from framemark.errors import FramemarkError
from framemark.manifest import PROMPT_POLICIES

from .common import (EXIT_BAD_INPUT, EXIT_PARTIAL, Progress, check_placement, device_options, echo_notes, fail,
                     runtime_options, user_errors)


def read_prompts(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read prompts file {path}: {exc}")
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        fail(f"prompts file {path} has no prompts (one per line; '#' starts a comment)")
    return prompts


@click.command()
@click.argument("prompt", required=False)
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="MP4 file to write; with --prompts, a folder for the clips.")
@click.option("--prompts", "prompts_file", type=click.Path(path_type=Path),
              help="Text file with one prompt per line: generate one clip for each.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Noise seed; with --prompts, clip i uses seed + i.")
@click.option("--steps", default=None, type=int, help="Sampler steps (default: the model's).")
@click.option("--frames", default=None, type=int, help="Frames, 4k+1 (default: the model's).")
@click.option("--height", default=None, type=int, help="Height in pixels (default: the model's).")
@click.option("--width", default=None, type=int, help="Width in pixels (default: the model's).")
@click.option("--guidance", default=None, type=float, help="Classifier-free guidance scale (default: the model's).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Diffusers model folder (default: the embedded model).")
@device_options
@click.option("--no-watermark", is_flag=True, help="Make an unmarked clip (baselines); marking is on by default.")
@click.option("--key", "key_file", type=click.Path(path_type=Path),
              help="Watermark key file (default: $FRAMEMARK_HOME/watermark-key.json, created when absent).")
@click.option("--clip-id", "clip_id", default=None,
              help="48-bit clip identifier (12 hex digits) to embed instead of a random one; reproduces a marked "
                   "clip bit for bit. With --prompts, clip i gets clip-id + i.")
@click.option("--no-sign", is_flag=True, help="Write no C2PA manifest (baselines); signing is on by default.")
@click.option("--prompt-policy", type=click.Choice(PROMPT_POLICIES), default="hash", show_default=True,
              help="How the prompt appears in the manifest: verbatim, as its SHA-256, or not at all.")
@click.option("--tsa-url", default=None, help="RFC 3161 time-stamp authority for the signature (overrides the one "
                                              "stored by `keys init --tsa-url`).")
@click.option("--ledger", "ledger_path", type=click.Path(path_type=Path),
              help="Ledger database to record marked clips in (default: $FRAMEMARK_HOME/ledger.db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per clip instead of prose.")
def generate(prompt, output, prompts_file, seed, steps, frames, height, width, guidance, model_dir, device, dtype,
             save_memory, no_watermark, key_file, clip_id, no_sign, prompt_policy, tsa_url, ledger_path, as_json):
    """Generate a clip from PROMPT (or one per line of --prompts) as an H.264 MP4.

    Every clip carries the invisible watermark of this machine's key unless --no-watermark is given, and a
    signed C2PA manifest unless --no-sign is given; marked clips are recorded in the ledger. The same prompt,
    seed, settings and payload give the same frames, bit for bit, on the same machine.
    """
    from framemark import runtime
    from framemark.generator.models import GenerationRequest
    from framemark.watermark import Payload

    if (prompt is None) == (prompts_file is None):
        fail("give either a PROMPT or --prompts FILE (not both)")
    check_placement(device, dtype)
    first = first_payload(clip_id) if clip_id is not None else None
    prompts = [prompt] if prompts_file is None else read_prompts(prompts_file)
    requests = [GenerationRequest(prompt=p, seed=seed + i, steps=steps, frames=frames, height=height, width=width,
                                  guidance_scale=guidance) for i, p in enumerate(prompts)]
    if prompts_file is None:
        targets = [output]
    else:
        if output.exists() and not output.is_dir():
            fail(f"--output must be a folder with --prompts: {output} is a file")
        digits = max(4, len(str(len(prompts))))
        targets = [output / f"{i + 1:0{digits}d}.mp4" for i in range(len(prompts))]
    options = runtime_options(key_file=key_file, model_dir=model_dir, ledger_path=ledger_path, device=device,
                              dtype=dtype, save_memory=save_memory, watermark=not no_watermark, sign=not no_sign,
                              tsa_url=tsa_url)
    with user_errors():
        resolved = runtime.resolve(options, "generate")
        # a bad request is refused before a key or a local CA is created on a fresh machine
        rt = resolved.load(check=requests[0] if prompts_file is None else None)
        echo_notes(resolved, rt)
    failures = 0
    progress = Progress("generating", unit="clips")
    with rt:
        with user_errors():  # an unusable output folder or ledger is refused before anything is generated
            if prompts_file is not None:
                output.mkdir(parents=True, exist_ok=True)
            if rt.key is not None:
                rt.writing_ledger()
        for i, (request, target) in enumerate(zip(requests, targets)):
            payload = Payload((first.clip_id + i) % 2**48) if first is not None else None
            try:
                clip = rt.emit(request, target, payload=payload, prompt_policy=prompt_policy)
            except FramemarkError as exc:
                failures += 1
                report_failure(request, target, exc, as_json)
            else:
                report_clip(clip, as_json)
            progress.update(i + 1, len(requests))
    if failures:
        click.echo(f"{failures} of {len(requests)} clips failed", err=True)
        sys.exit(EXIT_PARTIAL if len(requests) > 1 else EXIT_BAD_INPUT)


def first_payload(clip_id: str):
    """--clip-id: at most 12 hex digits (optionally 0x), read as a clip id by the one payload parser."""
    from framemark.watermark import Payload

    digits = clip_id.strip().lower().removeprefix("0x")
    try:
        if 0 < len(digits) <= 12:
            return Payload.from_hex(digits.zfill(12))
    except ValueError:
        pass
    fail(f"--clip-id must be at most 12 hex digits (got {clip_id!r})")


def report_clip(clip, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": True, **clip.to_dict()}))
    else:
        mark = f"watermark {clip.watermark['payload']}" if clip.watermark else "no watermark"
        signed = f"signed by {clip.c2pa['signer']}" if clip.c2pa else "not signed"
        click.echo(f"wrote {clip.path} ({clip.frames} frames {clip.width}x{clip.height}, seed {clip.seed}, {mark}, "
                   f"{signed}, {clip.seconds:.1f} s)")


def report_failure(request, target: Path, exc: Exception, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "path": str(target), "prompt": request.prompt, "seed": request.seed,
                               "error": str(exc)}))
    else:
        click.echo(f"error: {target}: {exc}", err=True)


COMMANDS = [generate]
