"""The ``framemark`` command line: one group, one module per command group, each thin over a library call.

``generate`` (generate.py), ``verify`` (verify.py), ``audit`` (audit.py), ``keys`` (keys.py), ``ledger``
(ledger.py), ``models`` (models.py: the model registry), ``detect`` (detect.py: the passive classifier's
dataset, training and evaluation), ``serve`` and ``token`` (serve.py). Shared options, exit codes and progress:
common.py. Commands import what they need when they run, so ``framemark --help`` loads no torch.
"""

from __future__ import annotations

import click

from framemark import __version__

from .common import EXIT_BAD_INPUT, EXIT_FAIL_ON, EXIT_NOT_FOUND, EXIT_OK, EXIT_PARTIAL  # noqa: F401 - the contract


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="framemark")
def main() -> None:
    """framemark: provenance for generative video."""


def _register() -> None:
    from . import audit, detect, generate, keys, ledger, models, serve, verify

    for module in (generate, verify, audit, keys, ledger, models, detect, serve):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

if __name__ == "__main__":
    main()
