"""The house rules of docs/architecture.md, checked against the code: which part may import which, and what the
runtime path (generate, verify, audit, serve) never loads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# pyproject.toml's package-dir: folder -> import name
PACKAGES = {"framemark": "framemark", "generator": "framemark.generator", "watermark": "framemark.watermark",
            "detect": "framemark.detect", "lab": "framemark.lab"}

# part -> import prefixes it must never reach (docs/architecture.md, "Which part imports which")
FRONT_DOORS = ("framemark.cli", "framemark.serve", "framemark.audit")
NEVER = {
    "watermark": ("framemark.", "diffusers", "transformers", "c2pa", "av", "cv2"),
    "base": ("framemark.generator", "framemark.detect", "framemark.lab", "framemark.runtime", *FRONT_DOORS),
    "generator": ("framemark.detect", "framemark.lab", "framemark.runtime", *FRONT_DOORS),
    "detect": ("framemark.generator.emit", "framemark.lab", "framemark.runtime", *FRONT_DOORS),
    "runtime": ("framemark.lab", *FRONT_DOORS),
    "serve": ("framemark.lab", "framemark.cli", "framemark.audit"),
    "audit": ("framemark.lab", "framemark.cli", "framemark.serve"),
    "cli": ("framemark.lab",),
    "api": ("framemark.lab", *FRONT_DOORS),
    "lab": FRONT_DOORS,
}
# the one front door to training and evaluation: `framemark detect dataset/train/eval`
ALLOWED = {("framemark.cli.detect", "framemark.lab")}


def modules() -> dict[str, Path]:
    found = {}
    for folder, name in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([name, *parts])] = path
    return found


def part_of(module: str) -> str:
    head = module.split(".")
    if head[1:2] in (["watermark"], ["generator"], ["detect"], ["lab"], ["cli"], ["serve"], ["audit"]):
        return head[1]
    if head[1:2] == ["runtime"] or head[1:2] == ["limits"]:
        return "runtime"
    if head[1:2] == ["api"]:
        return "api"
    return "base"


def imports_of(module: str, path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (function-level imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def test_the_map_of_the_house_covers_every_module():
    found = modules()
    assert "framemark.generator.models.base" in found and "framemark.detect.verdict" in found
    assert "framemark.lab.world" in found and "framemark.runtime" in found
    assert not [m for m in found if m.startswith(("framemark.generator.pipeline", "framemark.detect.inversion"))]


def test_dependencies_point_one_way():
    broken = []
    for module, path in modules().items():
        part = part_of(module)
        for target in imports_of(module, path):
            if part == "watermark" and target.startswith("framemark.watermark"):
                continue  # inside its own package
            for forbidden in NEVER[part]:
                hit = target == forbidden.rstrip(".") or target.startswith(forbidden if forbidden.endswith(".")
                                                                            else forbidden + ".")
                if hit and not any(module == m and target.startswith(t) for m, t in ALLOWED):
                    broken.append(f"{module} ({part}) imports {target}")
    assert not broken, "\n".join(broken)


def test_the_verifier_reaches_the_generator_only_through_the_model_interface():
    """detect/ may name the model interface (framemark.generator.models) and nothing else of the generator."""
    reach = [f"{m} imports {t}" for m, p in modules().items() if part_of(m) == "detect"
             for t in imports_of(m, p) if t.startswith("framemark.generator") and
             not t.startswith("framemark.generator.models")]
    assert not reach, reach


LOADED = """
import json, sys
from click.testing import CliRunner
from framemark.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
print(json.dumps({"exit": result.exit_code, "output": result.output,
                  "modules": sorted(m for m in sys.modules if m.startswith("framemark"))}))
"""


def _loaded(args, home: Path) -> dict:
    import os

    env = {**os.environ, "FRAMEMARK_HOME": str(home), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", LOADED, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def marked_clip(tmp_path_factory, keyed_home, make_clip):
    home = keyed_home("architecture")
    path = tmp_path_factory.mktemp("architecture") / "clip.mp4"
    make_clip(path, "a red circle moving left", home=home, seed=2, steps=4, clip_id="00000000c0de")
    return path, home


@pytest.mark.slow
def test_generate_and_verify_load_no_training_world_oracle_dataset_or_attack_module(marked_clip, tmp_path):
    clip, home = marked_clip
    verified = _loaded(["verify", clip, "--json"], home)
    assert verified["exit"] == 0, verified["output"]
    assert '"watermarked-synthetic"' in verified["output"] or '"signed-synthetic"' in verified["output"]
    generated = _loaded(["generate", "a blue square moving right", "-o", tmp_path / "g.mp4", "--steps", "2"], home)
    assert generated["exit"] == 0, generated["output"]
    for run in (verified, generated):
        assert "framemark.detect.verify" in run["modules"] or run is generated
        assert not [m for m in run["modules"] if m.startswith("framemark.lab")], run["modules"]
