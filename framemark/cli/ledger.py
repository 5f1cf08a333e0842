"""`framemark ledger`: look emitted clips up by their watermark payload or clip id."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .common import EXIT_NOT_FOUND, fail, runtime_options, user_errors


@click.group()
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
    from framemark import ledger as ledgers
    from framemark import provenance, runtime
    from framemark.watermark import Payload

    try:
        wanted = Payload.from_hex(payload)
    except ValueError as exc:
        fail(str(exc))
    options = runtime_options(ledger_path=ledger_path, trust_files=trust_files, watermark=False, classifier=False)
    with user_errors():
        resolved = runtime.resolve(options, "verify")  # the trust anchors and the ledger's path
        with ledgers.Ledger(resolved.ledger_path, create=False) as db:
            entries = db.lookup(wanted)
    rows = []
    for entry in entries:
        row = entry.to_dict()
        if entry.manifest_store is not None:
            row.update(provenance.stored_manifest(entry.manifest_store, resolved.trust_anchors))
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"clip id {wanted.clip_hex} is not in the ledger", err=True)
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


COMMANDS = [ledger]
