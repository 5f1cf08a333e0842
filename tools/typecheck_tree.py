"""Build build/typecheck/: symbolic links laid out as the import namespace, for type checkers.

pyproject.toml maps ``framemark.generator`` onto ``generator/`` (and so on) with setuptools' ``package-dir``,
which mypy and pyright do not read. This script reads that same table and links every mapped folder's files
into ``build/typecheck/<import path>``, so ``mypy -p framemark`` and pyright (``extraPaths``) resolve
``framemark.*`` as Python does. Run by ``make typecheck``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    shutil.rmtree(TREE, ignore_errors=True)
    for package in config["packages"]:
        # the folder of a package: its own entry in package-dir, else its parent's folder plus its last name
        name, rest = package, []
        while name not in mapping:
            name, _, last = name.rpartition(".")
            rest.insert(0, last)
        source = ROOT / mapping[name] / Path(*rest)
        target = TREE / Path(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.glob("*.py")):
            os.symlink(path, target / path.name)
    print(f"linked {len(config['packages'])} packages under {TREE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
