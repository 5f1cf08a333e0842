"""C2PA provenance end to end with the real c2pa library, the real model and real files: signing at emit, the
four manifest states, tamper evidence, and recovery of a stripped manifest through the watermark and the ledger.

One marked, signed clip is generated for the module; its edits are verified in one `framemark verify` run (the
expensive part is the watermark inversion) and each test reads its file's report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from framemark import credentials, manifest, media, provenance
from framemark.lab import attacks
from framemark.signer import LocalKeySigner, der_to_cose_ecdsa
from framemark.soft_binding import SOFT_BINDING_ALG

FIXED_CLIP_ID = "00c0ffee0042"  # with conftest's fixed key: deterministic detection (see conftest)
PROMPT = "a magenta square moving right"


def reports_of(result) -> dict:
    return {Path(r["file"]).name: r for r in json.loads(result.stdout)}


def top_level_boxes(data: bytes) -> dict[str, tuple[int, int]]:
    """MP4 top-level boxes: type -> (offset, size)."""
    boxes, pos = {}, 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        boxes.setdefault(kind, (pos, size))
        if size < 8:
            break
        pos += size
    return boxes


@pytest.fixture(scope="module")
def world(tmp_path_factory, keyed_home, make_clip, cli, watermark_key):
    """A key directory with a local CA, one marked signed clip, its edits, and one verify run over all of them."""
    folder = tmp_path_factory.mktemp("provenance")
    home = keyed_home("provenance-home")
    clip = folder / "clip.mp4"
    record = make_clip(clip, PROMPT, home=home, seed=3, clip_id=FIXED_CLIP_ID)
    data = clip.read_bytes()
    files = {"clip": clip}

    mdat_at, mdat_size = top_level_boxes(data)["mdat"]
    flipped = bytearray(data)
    flipped[mdat_at + mdat_size // 2] ^= 0x01
    files["flipped"] = folder / "flipped.mp4"
    files["flipped"].write_bytes(bytes(flipped))

    files["remuxed"] = folder / "remuxed.mp4"
    attacks.remux(clip, files["remuxed"])

    video = media.read_video(clip)
    files["crf26"] = folder / "crf26.mp4"
    media.write_video(files["crf26"], attacks.reencode(video.frames, crf=26, fps=video.fps), fps=video.fps)

    # a manifest whose soft binding names another payload than the watermark carries, validly signed
    files["mislabelled"] = folder / "mislabelled.mp4"
    lie = manifest.build_manifest(title="mislabelled.mp4", model=record["model"], generation={"seed": 3},
                                    prompt=PROMPT, payload=bytes.fromhex("0000000000010000"), key_id="x")
    provenance.sign_file(files["remuxed"], files["mislabelled"], lie, credentials.load_signer(home))

    # the manifest's structure broken rather than its bytes flipped: the C2PA box renamed (c2pa then finds no
    # manifest), the store's JUMBF superbox header renamed (c2pa cannot parse it)
    uuid_at, _ = top_level_boxes(data)["uuid"]
    renamed = bytearray(data)
    renamed[uuid_at + 4:uuid_at + 8] = b"uuix"
    files["renamed_box"] = folder / "renamed_box.mp4"
    files["renamed_box"].write_bytes(bytes(renamed))
    jumb = data.index(b"jumb", uuid_at)
    broken = bytearray(data)
    broken[jumb:jumb + 4] = b"jumx"
    files["broken_jumbf"] = folder / "broken_jumbf.mp4"
    files["broken_jumbf"].write_bytes(bytes(broken))

    files["truncated"] = folder / "truncated.mp4"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["random"] = folder / "random.mp4"
    files["random"].write_bytes(np.random.default_rng(0).bytes(20_000))
    files["text"] = folder / "notes.mp4"
    files["text"].write_text("this is a text file, not a video\n")

    result = cli("verify", *files.values(), "--json", home=home)
    return {"home": home, "folder": folder, "record": record, "files": files, "result": result,
            "reports": reports_of(result), "key": watermark_key}


def test_generate_signs_and_records_the_clip(world):
    record = world["record"]
    assert record["c2pa"]["alg"] == "es256" and record["c2pa"]["manifest_label"].startswith("urn:c2pa:")
    assert record["c2pa"]["prompt_policy"] == "hash"
    assert record["ledger"]["path"] == str(world["home"] / "ledger.db")
    assert record["watermark"]["clip_id"] == FIXED_CLIP_ID


def test_trusted_round_trip(world):
    report = world["reports"]["clip.mp4"]
    c2pa = report["c2pa"]
    assert c2pa["state"] == "Trusted" and c2pa["codes"] == []
    summary = c2pa["manifest"]
    assert summary["action"] == "c2pa.created"
    assert summary["digital_source_type"] == manifest.TRAINED_ALGORITHMIC_MEDIA
    model = world["record"]["model"]  # the generating model, with the hash of its weights
    assert model["name"] == "framemark-wan-tiny" and model["family"] == "wan" and len(model["weights_sha256"]) == 64
    assert summary["software_agent"] == {"name": "framemark-wan-tiny", "version": model["version"],
                                         "org.framemark.family": "wan",
                                         "org.framemark.weights_sha256": model["weights_sha256"]}
    assert summary["generation"]["model"] == model
    assert summary["soft_binding"]["alg"] == SOFT_BINDING_ALG
    assert summary["soft_binding"]["value"] == world["record"]["watermark"]["payload"]
    assert summary["soft_binding"]["scope"]["timespan"] == {"start": 0, "end": 2125}  # 17 frames at 8 fps
    assert summary["generation"]["seed"] == 3 and summary["generation"]["frames"] == 17
    assert summary["label"] == world["record"]["c2pa"]["manifest_label"]
    assert report["watermark"]["detected"] and report["watermark"]["payload"] == world["record"]["watermark"]["payload"]
    assert c2pa["soft_binding_matches_watermark"] is True
    assert report["ledger"] is None  # the file speaks for itself
    assert report["verdict"] == "signed-synthetic" and report["errors"] == []


def test_the_manifest_carries_a_thumbnail_of_the_middle_frame(world):
    import c2pa as c2pa_lib
    import io

    with open(world["files"]["clip"], "rb") as fh:
        reader = c2pa_lib.Reader("video/mp4", fh)
        uri = reader.get_active_manifest()["thumbnail"]["identifier"]
        out = io.BytesIO()
        reader.resource_to_stream(uri, out)
    assert out.getvalue()[:2] == b"\xff\xd8"  # JPEG


def test_one_flipped_byte_in_mdat_is_invalid_and_tampered(world):
    report = world["reports"]["flipped.mp4"]
    assert report["c2pa"]["state"] == "Invalid"
    assert "assertion.bmffHash.mismatch" in report["c2pa"]["codes"]
    assert report["verdict"] == "tampered"


@pytest.mark.parametrize("name", ["remuxed.mp4", "crf26.mp4"])
def test_stripped_or_reencoded_clip_is_recovered_through_the_ledger(world, name):
    report = world["reports"][name]
    assert report["c2pa"]["state"] == "absent"
    assert report["watermark"]["detected"], report["watermark"]["p_value"]
    assert report["watermark"]["payload"] == world["record"]["watermark"]["payload"]
    led = report["ledger"]
    assert led["looked_up"] and led["found"] and led["recovered"] is True and led["bound_to_file"] is False
    assert "not bound to these bytes" in led["statement"]
    assert led["signature"]["state"] == "Trusted" and led["signature"]["codes"] == []
    assert led["manifest"]["label"] == world["record"]["c2pa"]["manifest_label"]
    assert led["manifest"]["soft_binding"]["value"] == report["watermark"]["payload"]
    assert led["manifest_json"]["active_manifest"] == led["manifest"]["label"]
    assert led["entry"]["key_id"] == world["key"].key_id
    assert led["entry"]["model_sha256"] == world["record"]["model"]["weights_sha256"]
    # the model whose inversion read the mark: the one that made the clip
    assert report["watermark"]["model"] == world["record"]["model"]
    assert report["verdict"] == "watermarked-synthetic" and report["errors"] == []


def test_a_soft_binding_that_contradicts_the_watermark_is_tampered(world):
    report = world["reports"]["mislabelled.mp4"]
    assert report["c2pa"]["state"] == "Trusted"
    assert report["c2pa"]["soft_binding_matches_watermark"] is False
    assert report["verdict"] == "tampered"


@pytest.mark.parametrize("name", ["renamed_box.mp4", "broken_jumbf.mp4"])
def test_a_damaged_manifest_structure_is_damaged_and_tampered_never_absent(world, name):
    """Renaming a box is no softer than flipping a byte inside it: the remains of the manifest are found among the
    top-level boxes (outside mdat), the state is ``damaged``, and the verdict is that of an Invalid manifest."""
    report = world["reports"][name]
    c2pa = report["c2pa"]
    assert c2pa["state"] == provenance.DAMAGED and c2pa["codes"] == [provenance.DAMAGED_CODE]
    assert "the C2PA manifest is damaged" in c2pa["error"] and "remains of one" in c2pa["error"]
    assert report["verdict"] == "tampered"
    assert report["watermark"]["detected"] and report["ledger"]["recovered"]  # the watermark still speaks
    assert not [e for e in report["errors"] if "C2PA" in e]  # evidence, not a failure to check


def test_files_without_a_manifest_hold_no_remnants(world):
    for name in ("remuxed", "crf26"):
        assert provenance.manifest_remnants(world["files"][name]) == []
    assert provenance.manifest_remnants(world["files"]["random"]) == []  # not BMFF: nothing is searched
    assert provenance.manifest_remnants(world["files"]["renamed_box"])  # the uuid box's content, under 'uuix'


@pytest.mark.parametrize("name", ["truncated.mp4", "random.mp4", "notes.mp4"])
def test_damaged_and_non_video_files_are_error_entries(world, name):
    assert world["result"].exit_code == 3
    report = world["reports"][name]
    assert report["errors"], report
    assert all("Traceback" not in e for e in report["errors"])


def test_truncated_signed_file_is_still_checked_and_tampered(world):
    report = world["reports"]["truncated.mp4"]
    assert report["c2pa"]["state"] == "Invalid" and "assertion.bmffHash.mismatch" in report["c2pa"]["codes"]
    assert report["verdict"] in ("tampered", None)


def _other_ca(folder: Path) -> Path:
    pem, _ = credentials.make_local_ca()
    path = folder / "other-ca.pem"
    path.write_bytes(pem)
    return path


def test_wrong_trust_list_is_valid_not_trusted_and_works_without_a_watermark_key(world, tmp_path, cli):
    """Another machine: no local CA, no watermark key. C2PA is still checked; a foreign root gives Valid."""
    elsewhere = tmp_path / "elsewhere"
    result = cli("verify", world["files"]["clip"], "--trust", _other_ca(tmp_path), "--json", home=elsewhere)
    assert result.exit_code == 3  # the watermark could not be checked, and the report says so
    report = reports_of(result)["clip.mp4"]
    assert report["c2pa"]["state"] == "Valid"
    assert "signingCredential.untrusted" in report["c2pa"]["codes"]
    assert report["watermark"] is None and any("no watermark key" in e for e in report["errors"])
    assert report["verdict"] == "signed-synthetic"
    # given the right root, the same machine trusts it
    right = cli("verify", world["files"]["clip"], "--trust", world["home"] / credentials.CA_CERT_FILE, "--json",
                home=elsewhere)
    assert reports_of(right)["clip.mp4"]["c2pa"]["state"] == "Trusted"


def test_bad_trust_file_exits_2(world, tmp_path, cli):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    result = cli("verify", world["files"]["clip"], "--trust", bad)
    assert result.exit_code == 2 and "trust anchor" in result.output


@pytest.mark.parametrize("policy", ["full", "hash", "omit"])
def test_prompt_policy(tmp_path, cli, policy):
    out = tmp_path / "p.mp4"
    made = cli("generate", PROMPT, "-o", out, "--steps", 2, "--no-watermark", "--prompt-policy", policy, "--json")
    assert made.exit_code == 0, made.output
    generation = provenance.read_file(out, credentials.trust_anchors())["manifest"]["generation"]
    assert generation["prompt_policy"] == policy
    text = json.dumps(generation)
    if policy == "full":
        assert generation["prompt"] == PROMPT
    elif policy == "hash":
        import hashlib
        assert generation["prompt_sha256"] == hashlib.sha256(PROMPT.encode()).hexdigest()
        assert PROMPT not in text
    else:
        assert "prompt" not in generation and PROMPT not in text and "prompt_sha256" not in generation


def test_no_sign_writes_a_plain_file(tmp_path, cli):
    out = tmp_path / "u.mp4"
    made = cli("generate", PROMPT, "-o", out, "--steps", 2, "--no-watermark", "--no-sign", "--json")
    assert made.exit_code == 0 and json.loads(made.output.strip().splitlines()[-1])["c2pa"] is None
    assert provenance.read_file(out)["state"] == "absent"


class RemoteStyleSigner:
    """A signer the way a KMS adapter would be written: holds no PEM, returns DER and converts it."""

    def __init__(self, chain_pem: bytes, key_pem: bytes):
        self._key = serialization.load_pem_private_key(key_pem, password=None)  # stands in for the remote key
        self._chain = chain_pem
        self.calls = 0

    alg = "es256"
    tsa_url = None

    @property
    def certificate_chain_pem(self) -> bytes:
        return self._chain

    def sign(self, data: bytes) -> bytes:
        self.calls += 1
        der = self._key.sign(data, ec.ECDSA(hashes.SHA256()))  # what a KMS Sign API returns
        return der_to_cose_ecdsa(der, 32)


def _plain_clip(folder: Path) -> Path:
    path = folder / "plain.mp4"
    frames = np.random.default_rng(1).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    media.write_video(path, frames, fps=8)
    return path


def test_a_remote_style_signer_plugs_into_the_interface(tmp_path):
    credentials.create_local(tmp_path)
    paths = credentials.CredentialPaths.of(tmp_path)
    signer = RemoteStyleSigner(paths.signer_chain.read_bytes(), paths.signer_key.read_bytes())
    src, dst = _plain_clip(tmp_path), tmp_path / "signed.mp4"
    definition = manifest.build_manifest(title="signed.mp4", model={"name": "m", "version": "1"}, generation={},
                                         prompt="x", thumbnail=False)
    store = provenance.sign_file(src, dst, definition, signer)
    assert signer.calls >= 1 and store
    assert provenance.read_file(dst, credentials.trust_anchors(tmp_path))["state"] == "Trusted"
    detached = provenance.read_manifest_store(store, credentials.trust_anchors(tmp_path))
    assert detached["state"] == "Trusted" and detached["bound_to_file"] is False
    assert provenance.read_manifest_store(store, ())["state"] == "Valid"


def test_a_signer_that_signs_with_the_wrong_key_is_refused(tmp_path):
    credentials.create_local(tmp_path)
    paths = credentials.CredentialPaths.of(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    signer = RemoteStyleSigner(paths.signer_chain.read_bytes(), other)
    src, dst = _plain_clip(tmp_path), tmp_path / "signed.mp4"
    definition = manifest.build_manifest(title="x", model={}, generation={}, prompt="x", thumbnail=False)
    # c2pa checks the signature against the leaf certificate when signing: a misconfigured signer fails loudly
    with pytest.raises(provenance.ProvenanceError, match="signature does not match"):
        provenance.sign_file(src, dst, definition, signer)


def test_local_signer_rejects_a_mismatched_or_unsupported_key(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from framemark.signer import SignerError

    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(SignerError, match="not supported"):
        LocalKeySigner(b"", rsa_pem)
    with pytest.raises(SignerError, match="PEM"):
        LocalKeySigner(b"", b"garbage")


def test_generate_offers_the_prompt_policies_provenance_knows():
    """`generate --help` lists the policies without importing c2pa, from a copy that must not drift."""
    from framemark.cli import generate

    assert generate.PROMPT_POLICIES is manifest.PROMPT_POLICIES


def test_the_documented_verdicts_are_the_rules():
    """docs/provenance.md's "Verdicts" table lists `detect.verdict.RULES`: the same names, labels and order."""
    import re

    from framemark.detect.verdict import RULES

    text = (Path(__file__).resolve().parent.parent / "docs" / "provenance.md").read_text(encoding="utf-8")
    section = text.split("## Verdicts\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z-]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    assert [(name, label.strip()) for name, label in rows] == [(r.name, r.label) for r in RULES]
