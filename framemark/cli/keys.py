"""`framemark keys`: create and inspect the key material in $FRAMEMARK_HOME (never printing a secret)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import fail, user_errors


@click.group()
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
        fail("--cert and --key go together")
    written = []
    with user_errors():
        wm_path = keystore.watermark_key_path()
        replace_key = force and cert_file is None  # importing a signer never replaces the watermark key
        if replace_key or not wm_path.exists():
            key = keystore.create_watermark_key(overwrite=replace_key)
            written.append(f"watermark key {key.key_id} -> {wm_path}")
        if cert_file is not None:
            chain, private = read_bytes(cert_file, "certificate chain"), read_bytes(key_file, "signing key")
            names = credentials.import_signer(chain, private, tsa_url=tsa_url, overwrite=force)
            written += [f"imported signing credentials -> {keystore.framemark_home() / n}" for n in names[:2]]
        else:
            names = credentials.create_local(overwrite=force, tsa_url=tsa_url)
            written += [f"{n} -> {keystore.framemark_home() / n}" for n in names if n.endswith(".pem")]
    if not written:
        fail(f"key material already exists in {keystore.framemark_home()} (nothing missing; use --force to replace "
              f"it: clips marked with a replaced watermark key can no longer be verified)")
    for line in written:
        click.echo(f"created {line}")


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror or exc}")


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def keys_show(as_json):
    """Print key ids, certificate subjects, expiry and fingerprints, and where they are (never a secret)."""
    from framemark import credentials
    from framemark import keys as keystore

    info: dict = {"home": str(keystore.framemark_home()), "watermark_key": None}
    with user_errors():
        if keystore.watermark_key_path().exists():
            key = keystore.load_watermark_key()
            info["watermark_key"] = {"key_id": key.key_id, "path": str(keystore.watermark_key_path())}
        info.update(credentials.summary())
    if not any(info[k] for k in ("watermark_key", "ca", "signer")):
        fail(f"no key material in {info['home']}: run `framemark keys init`")
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


COMMANDS = [keys]
