"""Where a machine's secrets live: the key directory ($FRAMEMARK_HOME, default ~/.framemark).

The watermark key is a JSON file readable only by its owner (0600). Commands load it from here; the first
`framemark generate` on a machine without one creates it, so marking is on by default without a set-up step.
The C2PA signing credentials live in the same folder (``framemark.credentials``), written through
:func:`write_private`, and so does the ledger (``framemark.ledger``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from framemark.errors import FramemarkError
from framemark.watermark import WatermarkKey

WATERMARK_KEY_FILE = "watermark-key.json"


class KeyError_(FramemarkError):
    """Key material is missing, unreadable or malformed."""


def framemark_home() -> Path:
    return Path(os.environ.get("FRAMEMARK_HOME") or Path.home() / ".framemark").expanduser()


def watermark_key_path(home: Path | None = None) -> Path:
    return (home or framemark_home()) / WATERMARK_KEY_FILE


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with 0600 from the start (no window where another user could read it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def create_watermark_key(path: Path | None = None, overwrite: bool = False) -> WatermarkKey:
    path = path or watermark_key_path()
    if path.exists() and not overwrite:
        raise KeyError_(f"a watermark key already exists at {path} (refusing to overwrite it: clips marked with it "
                        f"could no longer be verified)")
    key = WatermarkKey.generate()
    write_private(path, json.dumps(key.to_dict(), indent=2) + "\n")
    return key


def load_watermark_key(path: Path | None = None) -> WatermarkKey:
    path = path or watermark_key_path()
    if not path.exists():
        raise KeyError_(f"no watermark key at {path}: run `framemark keys init` (or pass --key FILE)")
    try:
        return WatermarkKey.from_dict(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise KeyError_(f"watermark key {path} is not usable: {exc}") from exc


def load_or_create_watermark_key(path: Path | None = None) -> tuple[WatermarkKey, bool]:
    """The key at ``path``, creating it when absent; the flag says whether it was created."""
    path = path or watermark_key_path()
    if path.exists():
        return load_watermark_key(path), False
    return create_watermark_key(path), True
