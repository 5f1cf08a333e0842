"""`framemark models`: the models this machine checks uploads against ($FRAMEMARK_HOME/models.json).

Thin over ``framemark.generator.models.registry``: `verify`, `audit` and `serve` read the registry through the
runtime, so a model added here is checked against from the next run on.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import user_errors


@click.group()
def models() -> None:
    """Register the models uploads are checked against. With none registered, verification uses the embedded
    model; with some, every registered model is tried (the p-value corrected for each) and the embedded one
    only if it is registered too. `--model DIR` on a command overrides the registry."""


@models.command("add")
@click.argument("name")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))
def models_add(name, folder):
    """Register the diffusers model folder DIR under NAME (letters, digits, '.', '_' or '-')."""
    from framemark.generator.models import registry

    with user_errors():
        entry = registry.add(name, folder)
    click.echo(f"registered {entry.name} -> {entry.folder}")


@models.command("list")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array: name, folder, added_at and problem (null, or why it would not load).")
def models_list(as_json):
    """List the registered models, in the order verification tries them."""
    from framemark.generator.models import DEFAULT_MODEL_DIR, registry

    with user_errors():
        entries = registry.registered()
    rows = [{**entry.to_dict(), "problem": registry.problem(entry)} for entry in entries]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no models registered: verification uses the embedded model ({DEFAULT_MODEL_DIR})")
    for row in rows:
        status = f"  ({row['problem']})" if row["problem"] else ""
        click.echo(f"{row['name']}\t{row['folder']}\tadded {row['added_at']}{status}")


@models.command("remove")
@click.argument("name")
def models_remove(name):
    """Unregister the model NAME (its folder is not touched)."""
    from framemark.generator.models import registry

    with user_errors():
        entry = registry.remove(name)
    click.echo(f"removed {entry.name} ({entry.folder})")


COMMANDS = [models]
