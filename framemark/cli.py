"""The ``framemark`` command line: one group, one subcommand per job.

Exit codes are the contract with scripts: 0 success, 2 bad input (arguments, files, model folder), 3 a batch
finished but some items failed (each failure is reported and the rest are kept). No traceback reaches the user for
anything that is their input rather than our bug.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from framemark import __version__
from framemark.detect import DEFAULT_FPR, DEFAULT_INVERSION_STEPS
from framemark.errors import FramemarkError

EXIT_OK, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 2, 3


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="framemark")
def main() -> None:
    """framemark: provenance for generative video."""


# ------------------------------------------------------------------------------------------------------ generate

def _read_prompts(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read prompts file {path}: {exc}")
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        _fail(f"prompts file {path} has no prompts (one per line; '#' starts a comment)")
    return prompts


@main.command()
@click.argument("prompt", required=False)
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="MP4 file to write; with --prompts, a folder for the clips.")
@click.option("--prompts", "prompts_file", type=click.Path(path_type=Path),
              help="Text file with one prompt per line: generate one clip for each.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Noise seed; with --prompts, clip i uses seed + i.")
@click.option("--steps", default=20, show_default=True, type=int, help="Sampler steps.")
@click.option("--frames", default=17, show_default=True, type=int, help="Frames (4k+1).")
@click.option("--height", default=128, show_default=True, type=int)
@click.option("--width", default=128, show_default=True, type=int)
@click.option("--guidance", default=5.0, show_default=True, type=float, help="Classifier-free guidance scale.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Diffusers model folder (default: the embedded model).")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda.")
@click.option("--no-watermark", is_flag=True, help="Make an unmarked clip (baselines); marking is on by default.")
@click.option("--key", "key_file", type=click.Path(path_type=Path),
              help="Watermark key file (default: $FRAMEMARK_HOME/watermark-key.json, created when absent).")
@click.option("--clip-id", "clip_id", default=None,
              help="48-bit clip identifier (12 hex digits) to embed instead of a random one; reproduces a marked "
                   "clip bit for bit. With --prompts, clip i gets clip-id + i.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per clip instead of prose.")
def generate(prompt, output, prompts_file, seed, steps, frames, height, width, guidance, model_dir, device,
             no_watermark, key_file, clip_id, as_json):
    """Generate a clip from PROMPT (or one per line of --prompts) as an H.264 MP4.

    Every clip carries the invisible watermark of this machine's key unless --no-watermark is given. The same
    prompt, seed, settings and payload give the same frames, bit for bit, on the same machine.
    """
    from framemark import keys
    from framemark.generator import emit, pipeline
    from framemark.watermark import Payload

    if (prompt is None) == (prompts_file is None):
        _fail("give either a PROMPT or --prompts FILE (not both)")
    first_id = None
    if clip_id is not None:
        try:
            first_id = int(clip_id, 16)
            Payload(first_id)
        except ValueError:
            _fail(f"--clip-id must be at most 12 hex digits (got {clip_id!r})")
    prompts = [prompt] if prompts_file is None else _read_prompts(prompts_file)
    requests = [pipeline.GenerationRequest(prompt=p, seed=seed + i, steps=steps, frames=frames, height=height,
                                           width=width, guidance_scale=guidance) for i, p in enumerate(prompts)]
    if prompts_file is None:
        try:  # a bad request fails before the model is loaded
            pipeline.validate(requests[0])
        except FramemarkError as exc:
            _fail(str(exc))
        targets = [output]
    else:
        if output.exists() and not output.is_dir():
            _fail(f"--output must be a folder with --prompts: {output} is a file")
        width_digits = max(4, len(str(len(prompts))))
        targets = [output / f"{i + 1:0{width_digits}d}.mp4" for i in range(len(prompts))]
    key = None
    try:
        if not no_watermark:
            if key_file is not None:
                key = keys.load_watermark_key(key_file)
            else:
                key, created = keys.load_or_create_watermark_key()
                if created:
                    click.echo(f"created a watermark key (id {key.key_id}) at {keys.watermark_key_path()}; "
                               f"keep it: verification needs it", err=True)
        pipe = pipeline.load_pipeline(model_dir, device=device)
        if prompts_file is not None:
            output.mkdir(parents=True, exist_ok=True)
    except (FramemarkError, OSError) as exc:
        _fail(str(exc))

    failures = 0
    with click.progressbar(length=len(requests), label="generating", file=sys.stderr,
                           hidden=len(requests) == 1) as bar:
        for i, (request, target) in enumerate(zip(requests, targets)):
            payload = Payload((first_id + i) % 2**48) if first_id is not None else None
            try:
                clip = emit.emit_clip(pipe, request, target, key=key, payload=payload)
            except FramemarkError as exc:
                failures += 1
                _report_failure(request, target, exc, as_json)
            else:
                _report_clip(clip, as_json)
            bar.update(1)
    if failures:
        click.echo(f"{failures} of {len(requests)} clips failed", err=True)
        sys.exit(EXIT_PARTIAL if len(requests) > 1 else EXIT_BAD_INPUT)


def _report_clip(clip, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": True, **clip.to_dict()}))
    else:
        mark = f"watermark {clip.watermark['payload']}" if clip.watermark else "no watermark"
        click.echo(f"wrote {clip.path} ({clip.frames} frames {clip.width}x{clip.height}, seed {clip.seed}, {mark}, "
                   f"{clip.seconds:.1f} s)")


def _report_failure(request, target: Path, exc: Exception, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "path": str(target), "prompt": request.prompt, "seed": request.seed,
                               "error": str(exc)}))
    else:
        click.echo(f"error: {target}: {exc}", err=True)


# ------------------------------------------------------------------------------------------------------ keys

@main.group()
def keys() -> None:
    """Create and inspect the key material in $FRAMEMARK_HOME (default ~/.framemark)."""


@keys.command("init")
@click.option("--force", is_flag=True, help="Replace an existing key (clips marked with the old one become unverifiable).")
def keys_init(force):
    """Create the watermark key (256-bit secret, file mode 0600)."""
    from framemark import keys as keystore

    try:
        key = keystore.create_watermark_key(overwrite=force)
    except (FramemarkError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"watermark key {key.key_id} written to {keystore.watermark_key_path()}")


@keys.command("show")
def keys_show():
    """Print the key id and where the key is (never the secret)."""
    from framemark import keys as keystore

    try:
        key = keystore.load_watermark_key()
    except FramemarkError as exc:
        _fail(str(exc))
    click.echo(f"watermark key {key.key_id} at {keystore.watermark_key_path()}")


# ------------------------------------------------------------------------------------------------------ verify

@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--fpr", default=DEFAULT_FPR, show_default=True, type=click.FloatRange(min=0, max=1, min_open=True),
              help="False-positive rate: detected when the p-value is at most this.")
@click.option("--key", "key_file", type=click.Path(path_type=Path),
              help="Watermark key file (default: $FRAMEMARK_HOME/watermark-key.json).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Diffusers model folder the clips came from (default: the embedded model).")
@click.option("--steps", default=DEFAULT_INVERSION_STEPS, show_default=True, type=click.IntRange(1, 200),
              help="Inversion steps.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
def verify(files, fpr, key_file, model_dir, steps, as_json):
    """Check FILES for the watermark and report a verdict for each.

    Exit 0 when every file was processed, 3 when some could not be (the rest are still reported), 2 when
    nothing could be checked (no key, no model).
    """
    from framemark import keys as keystore
    from framemark.detect import verify as verifier
    from framemark.generator import pipeline

    try:
        key = keystore.load_watermark_key(key_file)
        pipe = pipeline.load_pipeline(model_dir)
    except FramemarkError as exc:
        _fail(str(exc))
    results = []
    with click.progressbar(files, label="verifying", file=sys.stderr, hidden=len(files) == 1) as bar:
        for path in bar:
            results.append(verifier.verify_file(path, key=key, pipe=pipe, fpr=fpr, steps=steps))
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            click.echo(_verdict_line(r))
    if any(r["errors"] for r in results):
        sys.exit(EXIT_PARTIAL)


def _verdict_line(r: dict) -> str:
    if r["verdict"] is None:
        return f"{r['file']}: error: {'; '.join(r['errors'])}"
    mark = r["watermark"]
    if mark is None:
        return f"{r['file']}: {r['verdict']}"
    detail = (f"payload {mark['payload']} (crc {'ok' if mark['crc_ok'] else 'bad'}), p = {mark['p_value']:.3g}"
              if mark["detected"] else f"no watermark of key {mark['key_id']} (p = {mark['p_value']:.3g})")
    return f"{r['file']}: {r['verdict']}: {detail}"


if __name__ == "__main__":
    main()
