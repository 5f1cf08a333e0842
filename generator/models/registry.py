"""The models a machine checks uploads against: ``$FRAMEMARK_HOME/models.json``, names to model folders.

A platform may run several generators. Verification tries the watermark under each registered model (the
p-value corrected for every model tried), so a clip is recognised whichever of them made it; with no model
registered it uses the embedded one. The file is small JSON written atomically; `framemark models add/list/
remove` edit it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from framemark.errors import ModelError
from framemark.keys import framemark_home

REGISTRY_FILE = "models.json"
FORMAT_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    folder: str
    added_at: str

    def to_dict(self) -> dict:
        return asdict(self)


def registry_path(home: Path | None = None) -> Path:
    return (Path(home) if home is not None else framemark_home()) / REGISTRY_FILE


def registered(home: Path | None = None) -> list[RegisteredModel]:
    """The registered models, in the order they were added; [] without a registry file."""
    path = registry_path(home)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}")
        return [RegisteredModel(**entry) for entry in data["models"]]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"the model registry {path} is not readable: {exc}") from exc


def _write(models: list[RegisteredModel], home: Path | None) -> None:
    path = registry_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": FORMAT_VERSION, "models": [m.to_dict() for m in models]}, indent=2)
                   + "\n", encoding="utf-8")
    os.replace(tmp, path)


def add(name: str, folder: str | os.PathLike, home: Path | None = None) -> RegisteredModel:
    """Register ``folder`` under ``name`` (the folder must be a model folder a family loads: checked by its
    ``model_index.json``, without loading weights). Raises ModelError for a bad name, a taken name or folder."""
    from . import family_class

    if not _NAME.fullmatch(name):
        raise ModelError(f"model name must be letters, digits, '.', '_' or '-' (at most 64), got {name!r}")
    path = Path(folder).expanduser().resolve()
    family_class(path)  # a folder no family serves is refused now, in words
    models = registered(home)
    if any(m.name == name for m in models):
        raise ModelError(f"a model named {name!r} is already registered (remove it first)")
    if any(Path(m.folder) == path for m in models):
        raise ModelError(f"{path} is already registered")
    entry = RegisteredModel(name=name, folder=str(path),
                            added_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    _write([*models, entry], home)
    return entry


def problem(entry: RegisteredModel) -> str | None:
    """Why a registered folder would not load now (moved, deleted, no longer a model folder a family serves),
    read from its ``model_index.json`` without loading weights; None when it looks loadable."""
    from . import FAMILIES, pipeline_class

    try:
        name = pipeline_class(Path(entry.folder))
    except ModelError as exc:
        return str(exc)
    return None if name in FAMILIES else f"{entry.folder} holds a {name}; framemark supports {', '.join(sorted(FAMILIES))}"


def remove(name: str, home: Path | None = None) -> RegisteredModel:
    """Unregister ``name`` (its folder is left as it is); ModelError when no model has that name."""
    models = registered(home)
    found = [m for m in models if m.name == name]
    if not found:
        raise ModelError(f"no model named {name!r} is registered")
    _write([m for m in models if m.name != name], home)
    return found[0]
