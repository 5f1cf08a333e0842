"""What the tests share: an isolated $FRAMEMARK_HOME for every test, the one fixed watermark key, the one clip
factory (clips made by the real `framemark generate`), the CLI runner, the embedded model, and the browser.

A fixed key and fixed clip ids keep the tests deterministic: with a fresh random key per run a clean clip can,
rarely, be detected with a payload that fails its CRC (seen once in a fresh-clone CI run, 0 times in 52 random
keys on one clip and in the 50-clip robustness bench). That rate belongs in a bench, not in a test that fails at
random.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from framemark import keys
from framemark.watermark import WatermarkKey

FIXED_KEY = WatermarkKey(bytes(range(32)))


@pytest.fixture(autouse=True)
def _isolated_framemark_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the developer's real keys."""
    monkeypatch.setenv("FRAMEMARK_HOME", str(tmp_path_factory.mktemp("framemark-home")))


@pytest.fixture(scope="session")
def watermark_key() -> WatermarkKey:
    """The tests' one watermark key."""
    return FIXED_KEY


def install_key(home: Path, key: WatermarkKey = FIXED_KEY) -> Path:
    """Write ``key`` as ``home``'s watermark key (mode 0600, as `keys init` does); returns ``home``."""
    keys.write_private(keys.watermark_key_path(Path(home)), json.dumps(key.to_dict()))
    return Path(home)


@pytest.fixture(scope="session")
def keyed_home(tmp_path_factory, watermark_key):
    """``keyed_home(name)``: a new key directory holding the fixed watermark key (the local C2PA CA is made by the
    first signed `generate` in it, as on a user's machine)."""
    def make(name: str = "home") -> Path:
        return install_key(tmp_path_factory.mktemp(name), watermark_key)
    return make


@pytest.fixture(scope="session")
def cli():
    """``cli(*args, home=None)``: the real `framemark` command in this process (its output is checked for
    tracebacks); ``home`` sets $FRAMEMARK_HOME for the call."""
    from framemark.cli import main

    def run(*args, home: Path | None = None, input: str | None = None):
        env = {"FRAMEMARK_HOME": str(home)} if home is not None else None
        result = CliRunner().invoke(main, [str(a) for a in args], env=env, input=input)
        assert "Traceback" not in result.output, result.output
        return result
    return run


@pytest.fixture(scope="session")
def make_clip(cli):
    """The one clip factory: ``make_clip(path, prompt, *, home, seed=0, steps=None, clip_id=None, frames=None,
    watermark=True, sign=True)`` runs `framemark generate --json` with ``home`` as $FRAMEMARK_HOME and returns its
    record (path, watermark payload, c2pa manifest label, ledger row). Identical requests are made once per
    session and copied."""
    made: dict[tuple, tuple[Path, dict]] = {}

    def make(path, prompt: str, *, home: Path, seed: int = 0, steps: int | None = None, clip_id: str | None = None,
             frames: int | None = None, watermark: bool = True, sign: bool = True) -> dict:
        path = Path(path)
        request = (str(home), prompt, seed, steps, clip_id, frames, watermark, sign)
        if request in made:
            first, record = made[request]
            shutil.copyfile(first, path)
            return {**record, "path": str(path)}
        args = ["generate", prompt, "-o", path, "--seed", seed, "--json"]
        args += ["--steps", steps] if steps is not None else []
        args += ["--clip-id", clip_id] if clip_id is not None else []
        args += ["--frames", frames] if frames is not None else []
        args += [] if watermark else ["--no-watermark"]
        args += [] if sign else ["--no-sign"]
        result = cli(*args, home=home)
        assert result.exit_code == 0, result.output
        record = json.loads(result.stdout.strip().splitlines()[-1])
        made[request] = (path, record)
        return record
    return make


@pytest.fixture(scope="session")
def model():
    """The embedded model, loaded once per session (tests must not change it)."""
    import torch

    from framemark.generator.models import load_model

    torch.set_num_threads(2)
    return load_model()


@pytest.fixture
def chromium_path() -> str:
    """Debian's chromium for the real-browser tests. Missing, the test fails where the browser is required
    (``FRAMEMARK_REQUIRE_BROWSER=1``, which `.ci/run` sets after installing it) and is skipped, with the reason
    in the summary, on a developer machine without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "needs Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("FRAMEMARK_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; FRAMEMARK_REQUIRE_BROWSER=1 says this machine must run the browser tests")
        pytest.skip(message)
    return found


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(args: list[str], *, env: dict, log_path: Path, port: int):
    """The real `framemark serve ARGS --port PORT` in a child process, yielded once ``/v1/health`` answers 200
    (within 180 s, else the test fails with the log's end); stopped (terminate, then kill) however the test ends."""
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "framemark.cli", "serve", *args, "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"framemark serve exited {proc.returncode}: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("framemark serve did not answer within 180 s")
            time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
