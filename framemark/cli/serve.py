"""`framemark serve` and `framemark token`: the HTTP service and its bearer tokens (docs/serve.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from framemark.errors import FramemarkError

from .common import check_placement, device_options, fail, verification_options


@click.command()
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
@click.option("--upload-timeout-s", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Longest wait for the next bytes of an upload's body: a stalled upload is answered 408 and its "
                   "connection and temporary file are let go.")
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
@verification_options
@device_options
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(host, port, workers, max_upload_mb, max_duration_s, max_resolution, upload_timeout_s, queue_limit,
          tokens_file, no_auth,
          keep_uploads, max_generate_steps, threads, fpr, key_file, model_dir, steps, trust_files, ledger_path,
          device, dtype, save_memory, log_level):
    """Serve the HTTP API (verify, generate, C2PA soft-binding resolution) and the web page at /.

    Tokens are required (`framemark token add`) unless --no-auth on a loopback address. One JSON line per request
    goes to stderr. See docs/serve.md for deployment behind a reverse proxy.
    """
    from framemark import serve as service
    from framemark.limits import parse_resolution

    try:
        width, height = parse_resolution(max_resolution)
    except ValueError as exc:
        fail(str(exc))
    check_placement(device, dtype)
    settings = service.Settings(
        host=host, port=port, workers=workers, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_duration_s=max_duration_s, max_width=width, max_height=height, upload_timeout_s=upload_timeout_s,
        queue_limit=queue_limit,
        auth=not no_auth, tokens_file=str(tokens_file) if tokens_file else None,
        keep_uploads=str(keep_uploads) if keep_uploads else None, key_file=str(key_file) if key_file else None,
        model_dir=str(model_dir) if model_dir else None, trust_files=tuple(str(p) for p in trust_files),
        ledger_path=str(ledger_path) if ledger_path else None, fpr=fpr, steps=steps,
        max_generate_steps=max_generate_steps, threads=threads, device=device, dtype=dtype, save_memory=save_memory)
    try:
        for note in service.preflight(settings):
            click.echo(f"note: {note}", err=True)
    except (FramemarkError, OSError) as exc:
        fail(str(exc))
    auth = "tokens from " + str(settings.tokens_path()) if settings.auth else "no auth (loopback only)"
    click.echo(f"framemark serve: http://{host}:{port}/ ({workers} worker(s), {auth})", err=True)
    service.run(settings, log_level=log_level)


# ------------------------------------------------------------------------------------------------------ token

@click.group()
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
        fail(str(exc))
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
        fail(str(exc))
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
        fail(str(exc))
    click.echo(f"revoked token {record.id} ({', '.join(record.scopes)})")


COMMANDS = [serve, token]
